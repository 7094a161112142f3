-- Who is calling: checks a gateway token (`appgw_<id>_<secret>`) against the pushed token table.
-- Returns an identity table, or nil and a reason code. Never logs or returns the secret.
local state = require "appgw.state"
local sha256 = require "appgw.sha256"

local _M = {}

local TOKEN_PATTERN = "^appgw_([a-z0-9]+)_([A-Za-z0-9_%-]+)$"
local MAX_LEN = 256

--- Parses a token string; returns id, secret or nil.
function _M.parse(value)
  if type(value) ~= "string" or #value > MAX_LEN then return nil end
  local id, secret = value:match(TOKEN_PATTERN)
  if not id or #id > 32 or #secret < 20 then return nil end
  return id, secret
end

--- Checks a presented token. Returns identity {id, user, admin, groups, routes} or nil, reason.
function _M.check_token(value)
  local id, secret = _M.parse(value)
  if not id then return nil, "malformed_token" end
  local rec = state.token(id)
  if not rec then return nil, "unknown_token" end
  local digest = sha256.hex(secret)
  if not digest or digest ~= rec.h then return nil, "bad_token" end
  if rec.e and rec.e <= ngx.time() then return nil, "expired_token" end
  return { id = id, user = rec.u, admin = rec.a == true, groups = rec.g, routes = rec.r }
end

--- The gateway token presented with the request (X-Gateway-Token), or nil.
function _M.presented()
  local v = ngx.var.http_x_gateway_token
  if type(v) == "table" then return v[1] end
  return v
end

return _M
