-- Read access to the data the router pushes (routes, tokens) in the shared dict `appgw_data`,
-- with a per-worker cache of decoded entries that is dropped whenever the data version changes.
local cjson = require "cjson.safe"

local _M = {}

local data = ngx.shared.appgw_data
local cache_version = -1
local cache = {}
local cache_size = 0
local MAX_CACHE = 20000

local function check_version()
  local v = data:get("meta:version") or 0
  if v ~= cache_version then
    cache = {}
    cache_size = 0
    cache_version = v
  end
end

local MISSING = {}

local function get(key)
  check_version()
  local hit = cache[key]
  if hit ~= nil then
    if hit == MISSING then return nil end
    return hit
  end
  local raw = data:get(key)
  local val = raw and cjson.decode(raw) or nil
  if cache_size >= MAX_CACHE then cache = {}; cache_size = 0 end
  cache[key] = val == nil and MISSING or val
  cache_size = cache_size + 1
  return val
end

--- The route record for a route key (`e:<id>` or `s:<name>`), or nil.
function _M.route(key) return get("r:" .. key) end

--- The token record for a token id, or nil.
function _M.token(id) return get("t:" .. id) end

--- The user record (admin flag, groups) for a user id, or nil.
function _M.user(id) return get("u:" .. id) end

local EMPTY = {}

--- Gateway settings pushed by the router (cookie names, secure flag).
function _M.settings() return get("meta:settings") or EMPTY end

--- Version of the pushed data, 0 before the first push.
function _M.version() return data:get("meta:version") or 0 end

return _M
