-- access_by_lua (set once per server): resolves the route of the request, identifies and
-- authorizes the caller, chooses the backend order, strips the route prefix and every gateway
-- credential. Denials are queued for the router's audit log.
local state = require "appgw.state"
local auth = require "appgw.auth"
local authz = require "appgw.authz"
local pick = require "appgw.pick"
local respond = require "appgw.respond"
local cjson = require "cjson.safe"
local tunnel = require "appgw.tunnel"
local sha256 = require "appgw.sha256"
local stats = require "appgw.stats"
local health = require "appgw.health"

local _M = {}

local var = ngx.var
local audit = ngx.shared.appgw_audit
local AUDIT_MAX = 10000

-- `/service/<task>/...` or `/service/<task>-<name>/...`: captures the route id, the task part
-- and the character after the id ("" when the path ends there)
local SERVICE = "^/service/(([a-z0-9]+)%-?[a-z0-9_]*)(/?)"

-- Static path routes: the rendered map `$appgw_path_route` (nginx.conf, one line per route in
-- conf.d/path/) answers "s:<name> <path>" for a path prefix set in `$appgw_path_probe`, or "".
-- A worker's map never changes (a new generation means new workers), so the answer for a
-- request's first four segments is memoised (memo.lua) for the worker's life.
local find, sub = string.find, string.sub
local paths = require("appgw.memo").new(5000)
local NO_ROUTE = { false }

-- The route key for exactly `candidate` (a path ending in "/"), or nil.
local function probe(candidate)
  var.appgw_path_probe = candidate
  local v = var.appgw_path_route
  if not v or v == "" then return nil end
  local key, path = v:match("^(s:[a-z0-9-]+) (.+)$")
  if path ~= candidate then return nil end -- map strings match ignoring case; paths do not
  return key
end

-- Returns {key, bare} for `uri`: the static path route with the longest path that prefixes it,
-- or (bare = true) the route whose path is `uri` plus "/" (redirected to the slash form, as nginx
-- does for a prefix location); or NO_ROUTE.
local function static_path(uri)
  local s1 = find(uri, "/", 2, true)
  local s2 = s1 and find(uri, "/", s1 + 1, true)
  local s3 = s2 and find(uri, "/", s2 + 1, true)
  local s4 = s3 and find(uri, "/", s3 + 1, true)
  -- the memo key: the first four segments, or the whole URI when it has no more (a bare path)
  local head = s4 and sub(uri, 1, s4) or uri
  local hit = paths:get(head)
  if hit then return hit end
  hit = NO_ROUTE
  local bare = not s4 and sub(uri, -1) ~= "/" and uri .. "/"
  local key = bare and probe(bare)
  if key then
    hit = { key, true }
  else
    -- longest first: the slash ending the 4th, 3rd, 2nd, 1st segment, where the path has one
    for _, e in ipairs({ s4 or false, s3 or false, s2 or false, s1 or false }) do
      key = e and probe(sub(uri, 1, e))
      if key then
        hit = { key, false }
        break
      end
    end
  end
  paths:set(head, hit)
  return hit
end

-- Returns route (or nil), the route's path prefix, whether it needs a trailing-slash redirect,
-- and the route key. Called after state.sync().
local function resolve(kind, uri)
  if kind == "service" then
    local id, task, slash = uri:match(SERVICE)
    if not id or #task > 40 then return nil end
    local name_len = #id - #task
    if name_len == 1 then return nil end -- a name part is at least 2 characters ("-" and one more)
    local key = "e:" .. id
    local route = state.route(key)
    if not route then return nil, nil, false, key end
    return route, route.p, slash == "", key
  elseif kind == "path" then
    local hit = static_path(uri)
    local key = hit[1]
    if not key then return nil end
    local route = state.route(key)
    if hit[2] then return route, uri, true, key end
    return route, route and route.p, false, key
  elseif kind == "static" then
    local key = var.appgw_route
    local route = state.route(key)
    return route, route and route.p, false, key
  end
  return nil
end

-- Affinity key (routes with several backends), first present wins: X-Session-Id, the affinity
-- cookie, the token id; else the gateway sets an affinity cookie so the browser sticks too.
local function affinity_key(ident)
  local sid = var.http_x_session_id
  if sid and sid ~= "" then return "s:" .. sid end
  local ck = var.cookie_appgw_affinity
  if ck and ck ~= "" then return "c:" .. ck end
  local k = ident and ident.affinity -- "t:<token id>" (auth.lua), none for ClearML sessions
  if k then return k end
  local v = sha256.random(12) or ngx.md5(ngx.now() .. var.remote_addr .. var.remote_port)
  ngx.header["Set-Cookie"] = "appgw_affinity=" .. v .. "; Path=/; HttpOnly; SameSite=Lax"
  return "c:" .. v
end

--- Queues a denial for the audit log (route, credential id, reason, client); never a secret.
local function record_denial(status, reason, key, ident)
  if audit:llen("q") >= AUDIT_MAX then return end
  audit:rpush("q", cjson.encode({
    ts = ngx.now(), status = status, reason = reason, route = key,
    token = ident and ident.id or nil, user = ident and ident.user or nil,
    client = var.remote_addr, path = var.uri,
  }))
end

local function session_cookie(token, expires)
  local s = state.settings()
  local max_age = 12 * 3600
  if expires then max_age = math.max(0, math.min(max_age, expires - ngx.time())) end
  local c = auth.session_cookie_name() .. "=" .. ngx.escape_uri(token) .. "; Path=/; HttpOnly; SameSite=Lax; Max-Age=" .. max_age
  if s.secure then c = c .. "; Secure" end
  return c
end

local function path_only()
  return (var.request_uri or "/"):match("^[^?#]*")
end

-- The same URL without gw_token, other arguments kept in their order and encoding.
local function without_gw_token()
  local kept = {}
  for part in (var.args or ""):gmatch("[^&]+") do
    if not part:find("^gw_token=") and part ~= "gw_token" then kept[#kept + 1] = part end
  end
  return path_only() .. (#kept > 0 and ("?" .. table.concat(kept, "&")) or "")
end

local function wants_login()
  return respond.wants_html() and ngx.req.get_method() == "GET"
end

local function deny(status, reason, key, ident, message, extra)
  record_denial(status, reason, key, ident)
  if status == 401 and wants_login() then
    return ngx.redirect("/_gateway/login?next=" .. ngx.escape_uri(var.request_uri or "/"), 302)
  end
  return respond.error(status, reason, message, extra)
end

local MESSAGES = {
  credentials_required = "This route needs a gateway token (X-Gateway-Token header, or Authorization: Bearer appgw_…) or a signed-in session.",
  malformed_token = "The gateway token is malformed.",
  unknown_token = "The gateway token is not valid.",
  bad_token = "The gateway token is not valid.",
  expired_token = "The gateway token has expired or was revoked.",
  invalid_session = "The ClearML session is not valid; sign in again.",
  session_check_unavailable = "The session cannot be checked right now; try again shortly.",
}

function _M.run()
  -- locations without a kind (health, login, logout) answer from their content handler
  local kind = var.appgw_kind
  if kind == "" then return end
  state.sync()
  local ctx = ngx.ctx
  local uri = var.uri
  local route, prefix, needs_slash, key = resolve(kind, uri)
  -- a path no route claims: 404 at once, before any credential is asked for
  if not key and kind == "path" then return health.not_found() end

  local ident, status, reason = auth.identify(ctx)
  if not ident then
    if status == 401 and reason == "unknown_token" then reason = "bad_token" end
    return deny(status, reason, key, nil, MESSAGES[reason] or "Not signed in.", status == 503 and { retry_after = 5 } or nil)
  end
  local token_id = ident.id
  if kind == "admin" then
    if not ident.admin then
      return deny(403, "admin_required", "admin", ident, "The admin API needs an admin identity.")
    end
    var.appgw_user = ident.user or ""
    var.appgw_log_route = "admin"
    var.appgw_log_token = token_id or ""
    auth.strip(ctx)
    return
  end
  if not route then
    return health.not_found()
  end
  local ok, why = authz.allowed(ident, route)
  if not ok then
    return deny(403, why, key, ident, "You are signed in as " .. tostring(ident.user) .. ", who may not use this route.", { route = route.n })
  end
  if ctx.appgw_exchange then
    ngx.header["Set-Cookie"] = session_cookie(ctx.appgw_exchange, ident.e)
    return ngx.redirect(without_gw_token(), 302)
  end
  if needs_slash then
    local args = var.args
    return ngx.redirect(prefix .. "/" .. (args and ("?" .. args) or ""), 301)
  end

  local backends = route.b
  local n = backends and #backends or 0
  if n == 0 then
    return respond.error(503, "no_backend", "The route " .. (route.n or key) .. " has no live backend right now.",
      { route = route.n, retry_after = 5 })
  end

  ctx.appgw_backends = backends
  if n == 1 then
    ctx.appgw_first = 1
  else
    local akey = affinity_key(ident)
    ctx.appgw_key = akey
    ctx.appgw_first = pick.first(backends, akey)
  end
  ctx.appgw_route = key
  ctx.appgw_token = token_id
  var.appgw_log_route = key
  if token_id then var.appgw_log_token = token_id end
  stats.count(key, token_id)

  if route.s and prefix then
    local rest = uri:sub(#prefix + 1)
    if rest == "" or rest:byte(1) ~= 47 then rest = "/" .. rest end
    ngx.req.set_uri(rest, false)
    var.appgw_prefix = prefix
  end
  var.appgw_user = ident.user or ""
  local groups = ident.groups_header
  if groups and groups ~= "" then var.appgw_groups = groups end
  auth.strip(ctx)
  if var.http_upgrade then
    -- tunnelled in Lua so that revoking the token closes the connection
    local order = pick.order_from(backends, ctx.appgw_key or "", ctx.appgw_first)
    return tunnel.run(order, ident, (state.settings().read_timeout_s or 3600) * 1000)
  end
end

--- GET /_gateway/login: a small page where a token can be pasted; with ?gw_token= it sets the
--- session cookie and returns to `next` (same-site paths only).
function _M.login()
  state.sync()
  local args = ngx.req.get_uri_args(10)
  local nxt = type(args.next) == "string" and args.next or "/"
  if nxt:sub(1, 1) ~= "/" or nxt:sub(1, 2) == "//" or nxt:find("[\\%c]") then nxt = "/" end
  local tok = type(args.gw_token) == "string" and args.gw_token or nil
  local err
  if tok then
    local ident, reason = auth.check_token(tok)
    if ident then
      ngx.header["Set-Cookie"] = session_cookie(tok, ident.e)
      return ngx.redirect(nxt, 302)
    end
    record_denial(401, reason, "login", nil)
    err = MESSAGES[reason] or "The token is not valid."
    ngx.status = 401
  end
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  local esc = function(s) return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" })) end
  ngx.say("<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in · AI Application Gateway</title>",
    "<style>body{font-family:system-ui,sans-serif;max-width:32em;margin:4em auto;color:#222}",
    "input{width:100%;padding:.5em;font-family:monospace}button{margin-top:1em;padding:.5em 1.5em}",
    ".err{color:#a00}</style></head><body><h1>Sign in</h1>",
    err and ("<p class=\"err\">" .. esc(err) .. "</p>") or "",
    "<p>Paste a gateway access token (it starts with <code>appgw_</code>), or sign in to ClearML in this browser.</p>",
    "<form method=\"get\" action=\"/_gateway/login\"><input type=\"hidden\" name=\"next\" value=\"", esc(nxt), "\">",
    "<input type=\"password\" name=\"gw_token\" autocomplete=\"off\" placeholder=\"appgw_…\" required>",
    "<button type=\"submit\">Continue</button></form></body></html>")
end

--- GET /_gateway/logout: clears the session cookie.
function _M.logout()
  state.sync()
  local s = state.settings()
  ngx.header["Set-Cookie"] = auth.session_cookie_name() .. "=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0" .. (s.secure and "; Secure" or "")
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.say('{"signed_out":true}')
end

return _M
