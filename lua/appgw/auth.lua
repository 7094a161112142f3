-- Who is calling. Credentials, first present wins: X-Gateway-Token; Authorization: Bearer with the
-- gateway token prefix; ?gw_token= (exchanged for the session cookie by access.lua); the gateway
-- session cookie; the ClearML web session cookie (validated through the router, cached briefly).
-- Returns identity {id, user, admin, groups, routes, company, via} or nil, status, reason.
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

-- Per-worker LRU memo of tokens whose secret was verified: presented string -> token id. Dropped
-- whenever the pushed data changes (a revocation is a push), so it never outlives the record;
-- the record and its expiry are still read on every request. LRU, so more tokens in use than it
-- holds cost a hash for the least recent ones only (no flush-all cliff).
local lrucache = require "resty.lrucache"
local MAX_VERIFIED = 20000
local verified = assert(lrucache.new(MAX_VERIFIED))
local verified_version = -1

local function identity(id, rec)
  if rec.e and rec.e <= ngx.time() then return nil, "expired_token" end
  return { id = id, user = rec.u, admin = rec.a == true, groups = rec.g, routes = rec.r }
end

--- Checks a gateway token. Returns identity or nil, reason.
function _M.check_token(value)
  local v = state.version()
  if v ~= verified_version then
    verified:flush_all()
    verified_version = v
  end
  local known = verified:get(value)
  if known then
    local rec = state.token(known)
    if rec then return identity(known, rec) end
  end
  local id, secret = _M.parse(value)
  if not id then return nil, "malformed_token" end
  local rec = state.token(id)
  if not rec then return nil, "unknown_token" end
  local digest = sha256.hex(secret)
  if not digest or digest ~= rec.h then return nil, "bad_token" end
  verified:set(value, id)
  return identity(id, rec)
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
      ident.via = "clearml"
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

--- Finds and checks the caller's credential. Returns ident, or nil, status, reason.
--- ctx.appgw_strip_auth is set when the Authorization header carried the gateway token;
--- ctx.appgw_exchange holds a valid ?gw_token= to be exchanged for the session cookie.
function _M.identify(ctx)
  local var = ngx.var
  local h = first(var.http_x_gateway_token)
  if h then
    local ident, reason = _M.check_token(h)
    if not ident then return nil, 401, reason end
    ident.via = "header"
    return ident
  end
  local authz = first(var.http_authorization)
  if authz then
    local tok = authz:match("^[Bb]earer%s+(appgw_%S+)%s*$")
    if tok then
      ctx.appgw_strip_auth = true
      local ident, reason = _M.check_token(tok)
      if not ident then return nil, 401, reason end
      ident.via = "bearer"
      return ident
    end
  end
  local q = var.arg_gw_token
  if q then
    q = ngx.unescape_uri(q)
    local ident, reason = _M.check_token(q)
    if not ident then return nil, 401, reason end
    ident.via = "query"
    ctx.appgw_exchange = q
    return ident
  end
  local header = var.http_cookie
  if header then
    local s = cookies.get(header, _M.session_cookie_name())
    if s then
      local ident, reason = _M.check_token(ngx.unescape_uri(s))
      if not ident then return nil, 401, reason end
      ident.via = "cookie"
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

--- Removes every gateway credential from the request before it is proxied.
function _M.strip(ctx)
  ngx.req.clear_header("X-Gateway-Token")
  if ctx.appgw_strip_auth then ngx.req.clear_header("Authorization") end
  local header = ngx.var.http_cookie
  if header then
    local drop = { appgw_session = true, ["__Host-appgw_session"] = true, appgw_affinity = true }
    local name = state.settings().clearml_cookie
    if name then drop[name] = true end
    local kept = require("appgw.cookies").without(header, drop)
    if kept then ngx.req.set_header("Cookie", kept) else ngx.req.clear_header("Cookie") end
  end
end

return _M
