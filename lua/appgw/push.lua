-- The router's push channel (served only on a unix socket in the run dir): replaces the routes
-- and tokens in the shared dict with a complete, versioned snapshot.
local cjson = require "cjson.safe"

local _M = {}

local data = ngx.shared.appgw_data

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local path = ngx.req.get_body_file()
  if not path then return nil end
  local f = io.open(path, "rb")
  if not f then return nil end
  body = f:read("*a")
  f:close()
  return body
end

local function reply(status, tbl)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(tbl))
  return ngx.exit(status)
end

local function put_all(prefix, entries, keep)
  for id, rec in pairs(entries) do
    if type(id) ~= "string" then return nil, "bad key" end
    local enc = cjson.encode(rec)
    if not enc then return nil, "cannot encode " .. id end
    local key = prefix .. id
    keep[key] = true
    local ok, err = data:safe_set(key, enc)
    if not ok then return nil, "shared dict: " .. tostring(err) end
  end
  return true
end

local DATA_KEY = { ["r:"] = true, ["t:"] = true, ["u:"] = true }

-- The settings of a push, when it sends them. Returns ok, err.
local function put_settings(snap)
  if type(snap.settings) ~= "table" then return true end
  return data:safe_set("meta:settings", cjson.encode(snap.settings))
end

-- The end of every push, after its records: the time, then the version — written last, because
-- readers drop their caches when it changes.
local function commit(snap, extra)
  data:set("meta:pushed_at", ngx.now())
  data:set("meta:version", snap.version)
  local out = { ok = true, version = snap.version }
  for k, v in pairs(extra or {}) do out[k] = v end
  return reply(200, out)
end

-- A delta against the version the proxy holds: {epoch, version, base, set = {key = "<record as
-- JSON>"}, del = {key, ...}, settings?}. Records arrive already encoded and are stored as they
-- are, so a revocation among ten thousand tokens is a few hundred bytes and a few shared-dict
-- writes, not the whole table. Refused with 409 unless the proxy holds exactly `base` of the
-- same epoch: the router then sends a full snapshot.
local function apply_delta(snap, current, epoch)
  if snap.epoch ~= epoch or snap.base ~= current then
    return reply(409, { error = "base_mismatch", version = current, epoch = epoch })
  end
  -- a delta that does not move the version would leave every worker's caches as they are
  if snap.version <= current then return reply(400, { error = "bad_delta", version = current }) end
  local set, del = snap.set, snap.del
  if (set ~= nil and type(set) ~= "table") or (del ~= nil and type(del) ~= "table") then
    return reply(400, { error = "bad_delta" })
  end
  for key, enc in pairs(set or {}) do
    if type(key) ~= "string" or not DATA_KEY[key:sub(1, 2)] or type(enc) ~= "string" then
      return reply(400, { error = "bad_delta", key = type(key) == "string" and key:sub(1, 80) or nil })
    end
  end
  for _, key in ipairs(del or {}) do
    if type(key) ~= "string" or not DATA_KEY[key:sub(1, 2)] then return reply(400, { error = "bad_delta" }) end
  end
  for key, enc in pairs(set or {}) do
    local ok, err = data:safe_set(key, enc)
    if not ok then return reply(507, { error = "store_failed", message = "shared dict: " .. tostring(err) }) end
  end
  for _, key in ipairs(del or {}) do data:delete(key) end
  local ok, err = put_settings(snap)
  if not ok then return reply(507, { error = "store_failed", message = "shared dict: " .. tostring(err) }) end
  return commit(snap, { delta = true })
end

--- POST /_internal/push: a full snapshot {epoch, version, routes = {key = rec}, tokens = {id =
--- rec}, users, settings}, or a delta (see apply_delta).
function _M.push()
  if ngx.req.get_method() ~= "POST" then return reply(405, { error = "method_not_allowed" }) end
  local body = read_body()
  if not body then return reply(400, { error = "empty_body" }) end
  local snap = cjson.decode(body)
  if type(snap) ~= "table" or type(snap.version) ~= "number" then return reply(400, { error = "bad_snapshot" }) end
  local current = data:get("meta:version") or 0
  local epoch = data:get("meta:epoch")
  if snap.delta == true then return apply_delta(snap, current, epoch) end
  if type(snap.routes) ~= "table" then return reply(400, { error = "bad_snapshot" }) end
  if snap.epoch == epoch and snap.version < current then
    return reply(409, { error = "stale", version = current })
  end
  local keep = {}
  local ok, err = put_all("r:", snap.routes, keep)
  if ok then ok, err = put_all("t:", snap.tokens or {}, keep) end
  if ok then ok, err = put_all("u:", snap.users or {}, keep) end
  if ok then ok, err = put_settings(snap) end
  if not ok then return reply(507, { error = "store_failed", message = err }) end
  local keys = data:get_keys(0)
  for _, key in ipairs(keys) do
    local p = key:sub(1, 2)
    if (p == "r:" or p == "t:" or p == "u:") and not keep[key] then data:delete(key) end
  end
  data:set("meta:epoch", snap.epoch)
  return commit(snap)
end

--- POST /_internal/denials: hands the queued edge denials to the router (at most 1000 per call).
function _M.denials()
  local audit = ngx.shared.appgw_audit
  local out = {}
  for i = 1, 1000 do
    local v = audit:lpop("q")
    if not v then break end
    out[i] = v
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say("[", table.concat(out, ","), "]")
end

--- GET /_internal/state: what the proxy holds, so the router can tell a restarted proxy.
function _M.state()
  return reply(200, {
    version = data:get("meta:version") or 0,
    epoch = data:get("meta:epoch"),
    pushed_at = data:get("meta:pushed_at"),
    pid = ngx.worker.pid(),
  })
end

return _M
