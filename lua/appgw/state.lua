-- Read access to the data the router pushes (routes, tokens, users) in the shared dict
-- `appgw_data`, with per-worker caches of decoded entries that are dropped whenever the data
-- version changes. Other modules keep derived per-worker caches (verified tokens, backend hash
-- seeds) and register with on_change() to drop them at the same moment.
--
-- Accessors do not read the version: every handler calls sync() once before it looks at records
-- (access.run, login, logout, the body filter, the WebSocket watcher), so a request reads the
-- version once however many records it looks at, and no accessor needs to be told.
local cjson = require "cjson.safe"

local _M = {}

local data = ngx.shared.appgw_data
local cache_version = -1
local MAX_CACHE = 20000
local MISSING = {}
local EMPTY = {}

-- one cache per kind of record (by shared-dict key prefix), keyed by the id itself: no key
-- concatenation on a hit
local caches, settings = { ["r:"] = {}, ["t:"] = {}, ["u:"] = {} }, nil
local size = 0
local listeners = {}

local function drop()
  caches, settings = { ["r:"] = {}, ["t:"] = {}, ["u:"] = {} }, nil
  size = 0
end

--- Reads the data version and, when it changed, drops every per-worker cache. Returns it.
local function sync()
  local v = data:get("meta:version") or 0
  if v ~= cache_version then
    drop()
    cache_version = v
    for i = 1, #listeners do listeners[i]() end
  end
  return v
end
_M.sync = sync

-- The decoded record `prefix .. id`, or nil; decoded once per data version. At MAX_CACHE
-- decoded records the caches start over.
local function get(prefix, id)
  local cache = caches[prefix]
  local hit = cache[id]
  if hit ~= nil then
    if hit == MISSING then return nil end
    return hit
  end
  local raw = data:get(prefix .. id)
  local val = raw and cjson.decode(raw) or nil
  if size >= MAX_CACHE then
    drop()
    cache = caches[prefix]
  end
  size = size + 1
  cache[id] = val == nil and MISSING or val
  return val
end

--- The route record for a route key (`e:<id>` or `s:<name>`), or nil.
function _M.route(key) return get("r:", key) end

--- Whether token `id` still admits: its record is there (not revoked) and not expired. For the
--- checks of open streams and WebSockets (watch.lua, tunnel.lua).
function _M.token_valid(id)
  local rec = get("t:", id)
  return rec ~= nil and (not rec.e or rec.e > ngx.time())
end

--- The token record for a token id, or nil, read from the shared dict and not cached: for
--- callers that keep what they derive from it (auth.lua's memo of verified tokens), so that ten
--- thousand tokens in use do not also sit in this cache as decoded tables the collector walks.
function _M.token_uncached(id)
  local raw = data:get("t:" .. id)
  return raw and cjson.decode(raw) or nil
end

--- The user record (admin flag, groups) for a user id, or nil.
function _M.user(id) return get("u:", id) end

--- Gateway settings pushed by the router (cookie names, secure flag).
function _M.settings()
  if settings == nil then
    local raw = data:get("meta:settings")
    settings = raw and cjson.decode(raw) or EMPTY
  end
  return settings
end

--- Version of the pushed data, 0 before the first push.
function _M.version() return data:get("meta:version") or 0 end

--- Registers fn, called (in this worker) whenever the data version changes.
function _M.on_change(fn) listeners[#listeners + 1] = fn end

return _M
