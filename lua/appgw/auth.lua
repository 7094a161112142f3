-- Who is calling. Credentials, first present wins: X-Gateway-Token; Authorization: Bearer with the
-- gateway token prefix; ?gw_token= (exchanged for the session cookie by access.lua); the gateway
-- session cookie; the ClearML web session cookie (validated through the router, cached briefly).
-- Returns identity {id, user, admin, groups, routes, e (expiry), groups_header, affinity} or nil,
-- status, reason (a ClearML session's identity has no id, expiry or affinity).
-- Never logs or returns a secret.
local state = require "appgw.state"
local sha256 = require "appgw.sha256"
local cookies = require "appgw.cookies"
local cjson = require "cjson.safe"

local _M = {}

local TOKEN_PATTERN = "^appgw_([a-z0-9]+)_([A-Za-z0-9_%-]+)$"
local MAX_LEN = 256
local sessions = ngx.shared.appgw_sessions
local SESSION_TTL = 30
local NEGATIVE_TTL = 5

--- Parses a token string; returns id, secret or nil.
function _M.parse(value)
  if type(value) ~= "string" or #value > MAX_LEN then return nil end
  local id, secret = value:match(TOKEN_PATTERN)
  if not id or #id > 32 or #secret < 20 then return nil end
  return id, secret
end

-- Per-worker memo of verified tokens (memo.lua): presented string -> identity. The identity is
-- built once from the token record and shared by every request that presents the same string
-- (callers must not modify it). Emptied whenever the pushed data changes (a revocation is a
-- push), so it never outlives its record; the expiry is still checked on every request.
local verified = require("appgw.memo").new(16384)
state.on_change(function() verified:clear() end)

local concat = table.concat

-- Identities share their group lists (one table per distinct list) and the empty list:
-- ten thousand tokens of a few teams are ten thousand small tables for the collector to walk,
-- not thirty thousand.
local EMPTY_LIST = {} -- never modified
local group_lists = {}
state.on_change(function() group_lists = {} end)

local function new_identity(id, rec)
  local groups = type(rec.g) == "table" and rec.g or EMPTY_LIST
  local header = concat(groups, ",")
  local shared = group_lists[header]
  if shared then
    groups = shared
  else
    group_lists[header] = groups
  end
  local routes = rec.r
  if type(routes) ~= "table" or #routes == 0 then routes = EMPTY_LIST end
  return {
    id = id, user = rec.u, admin = rec.a == true, groups = groups, routes = routes, e = rec.e,
    groups_header = header, affinity = "t:" .. id,
  }
end

--- Checks a gateway token. Returns identity or nil, reason. Called after state.sync().
function _M.check_token(value)
  local ident = verified:get(value)
  if not ident then
    local id, secret = _M.parse(value)
    if not id then return nil, "malformed_token" end
    local rec = state.token_uncached(id)
    if not rec then return nil, "unknown_token" end
    local digest = sha256.hex(secret)
    if not digest or digest ~= rec.h then return nil, "bad_token" end
    ident = new_identity(id, rec)
    verified:set(value, ident)
  end
  local e = ident.e
  if e and e <= ngx.time() then return nil, "expired_token" end
  return ident
end

local function first(v)
  if type(v) == "table" then return v[1] end
  return v
end

--- The name of the gateway session cookie.
function _M.session_cookie_name()
  local s = state.settings()
  if s.secure then return "__Host-appgw_session" end
  return "appgw_session"
end

-- ClearML session: asks the router (unix socket, through an internal location), caches briefly.
local function clearml_identity(cookie)
  local key = "c:" .. (sha256.hex(cookie) or "")
  local cached = sessions:get(key)
  if cached then
    local ident = cjson.decode(cached)
    if ident and ident.user then return ident end
    return nil, 401, "invalid_session"
  end
  local res = ngx.location.capture("/_appgw_clearml_session", {
    method = ngx.HTTP_POST, body = cookie, ctx = {}, copy_all_vars = false,
  })
  if res.status == 200 then
    local ident = cjson.decode(res.body)
    if ident and type(ident.user) == "string" then
      local u = state.user(ident.user)
      ident.admin = (u and u.a == true) or ident.role == "admin" or ident.role == "root" or ident.role == "system"
      ident.groups = u and u.g or {}
      ident.groups_header = concat(ident.groups, ",")
      sessions:set(key, cjson.encode(ident), SESSION_TTL)
      return ident
    end
  elseif res.status == 401 or res.status == 403 then
    sessions:set(key, "{}", NEGATIVE_TTL)
    return nil, 401, "invalid_session"
  end
  -- the router or ClearML is unreachable: fail closed, and do not cache
  return nil, 503, "session_check_unavailable"
end

--- Finds and checks the caller's credential. Returns ident, or nil, status, reason. Called
--- after state.sync() in the same handler. The identity of a token is shared between requests:
--- read it, never modify it.
--- ctx.appgw_strip_auth is set when the Authorization header carried the gateway token;
--- ctx.appgw_exchange holds a valid ?gw_token= to be exchanged for the session cookie.
function _M.identify(ctx)
  local var = ngx.var
  local h = first(var.http_x_gateway_token)
  if h then
    local ident, reason = _M.check_token(h)
    if not ident then return nil, 401, reason end
    return ident
  end
  local authz = first(var.http_authorization)
  if authz then
    local tok = authz:match("^[Bb]earer%s+(appgw_%S+)%s*$")
    if tok then
      ctx.appgw_strip_auth = true
      local ident, reason = _M.check_token(tok)
      if not ident then return nil, 401, reason end
      return ident
    end
  end
  local q = var.arg_gw_token
  if q then
    q = ngx.unescape_uri(q)
    local ident, reason = _M.check_token(q)
    if not ident then return nil, 401, reason end
    ctx.appgw_exchange = q
    return ident
  end
  local header = var.http_cookie
  if header then
    local s = cookies.get(header, _M.session_cookie_name())
    if s then
      local ident, reason = _M.check_token(ngx.unescape_uri(s))
      if not ident then return nil, 401, reason end
      return ident
    end
    local name = state.settings().clearml_cookie
    local c = name and cookies.get(header, name)
    if c and c ~= "" then
      if #c > 8192 then return nil, 401, "invalid_session" end
      return clearml_identity(c)
    end
  end
  return nil, 401, "credentials_required"
end

-- The cookies the gateway owns, removed before a request is proxied (rebuilt per data version:
-- the ClearML cookie name comes from the pushed settings).
local owned_cookies = nil
state.on_change(function() owned_cookies = nil end)

--- Removes the gateway credentials that config cannot remove: the Authorization header when it
--- carried a gateway token, and the gateway's (and ClearML's) cookies. X-Gateway-Token is
--- removed by `proxy_set_header X-Gateway-Token ""` (server-common.conf) for every proxied
--- location, and by tunnel.lua's hop-by-hop list for WebSockets.
function _M.strip(ctx)
  if ctx.appgw_strip_auth then ngx.req.clear_header("Authorization") end
  local header = ngx.var.http_cookie
  if header then
    local drop = owned_cookies
    if not drop then
      drop = { appgw_session = true, ["__Host-appgw_session"] = true, appgw_affinity = true }
      local name = state.settings().clearml_cookie
      if name then drop[name] = true end
      owned_cookies = drop
    end
    local kept = cookies.without(header, drop)
    if kept then ngx.req.set_header("Cookie", kept) else ngx.req.clear_header("Cookie") end
  end
end

return _M
