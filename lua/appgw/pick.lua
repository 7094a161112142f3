-- Backend order for a request: rendezvous (highest random weight) hashing of the affinity key
-- over the route's backends, so a key sticks to one backend and only the keys of a removed
-- backend move. Bounded load: a backend with more than LOAD_FACTOR (2) times its fair share of the
-- route's in-flight requests yields to the next one on the key's order. Backends in cool-down
-- (a recent connection failure or 502/503/504) go to the end of the order.
--
-- Cost matters here (every request on a route with several backends): the score of (key,
-- backend) is CRC32 of the key mixed with a per-backend seed by MurmurHash3's 32-bit finalizer,
-- in LuaJIT bit operations; seeds and backend ids are computed once per data version; in-flight
-- counts are kept per worker (each worker bounds its own share of the load, no shared-dict
-- write per request); cool-down marks are shared between workers through `appgw_health` and
-- read into a per-worker set at most every DOWN_REFRESH seconds (the worker that saw the
-- failure knows at once).
local bit = require "bit"
local bxor, rshift, band, lshift, tobit = bit.bxor, bit.rshift, bit.band, bit.lshift, bit.tobit
local crc32 = ngx.crc32_short
local ceil = math.ceil
local now = ngx.now

local _M = {}

local health = ngx.shared.appgw_health
local LOAD_FACTOR = 2
local MIN_CAP = 8
local COOLDOWN = 10
local DOWN_REFRESH = 0.2

-- 32-bit multiply modulo 2^32 (doubles hold 53 bits: split b into 16-bit halves)
local function mul32(a, b)
  return tobit(a * band(b, 0xffff) + lshift(tobit(a * rshift(b, 16)), 16))
end

-- MurmurHash3 fmix32: every input bit affects every output bit, so the scores of one key on
-- different backends are independent even though CRC32 is affine.
local function fmix(h)
  h = bxor(h, rshift(h, 16))
  h = mul32(h, 0x85ebca6b)
  h = bxor(h, rshift(h, 13))
  h = mul32(h, 0xc2b2ae35)
  return bxor(h, rshift(h, 16))
end

-- Score of a key (its CRC32, `h`) on the backend with seed `seed`.
local function score(h, seed)
  return fmix(bxor(h, seed))
end

-- per backends list (a decoded route record's `b`, never modified; a new data version decodes new
-- lists, and the weak keys let the old entries go): { ids = {"host:port", ...}, seeds = {crc32(id), ...} }
local meta = setmetatable({}, { __mode = "k" })

local function meta_of(backends)
  local m = meta[backends]
  if m then return m end
  local ids, seeds = {}, {}
  for i = 1, #backends do
    local b = backends[i]
    ids[i] = b[1] .. ":" .. b[2]
    seeds[i] = crc32(ids[i])
  end
  m = { ids = ids, seeds = seeds }
  meta[backends] = m
  return m
end

-- in-flight requests of this worker per backend id
local inflight = {}

-- cool-down: shared marks (down:<id> in appgw_health, with a TTL) read into a per-worker set
local down, down_at = {}, -1

local function refresh_down(t)
  local set = {}
  for _, k in ipairs(health:get_keys(0)) do
    if k:sub(1, 5) == "down:" then set[k:sub(6)] = true end
  end
  down, down_at = set, t
end

--- Marks backend `id` down for COOLDOWN seconds, for every worker.
function _M.mark_down(id)
  health:set("down:" .. id, true, COOLDOWN)
  down[id] = true
end

-- scratch arrays reused by every call (a worker runs one Lua handler at a time and these
-- functions do not yield)
local s_score, s_down = {}, {}

--- The index in `backends` of the backend for `key`: the highest score among backends not in
--- cool-down (all of them when every one is), unless it holds its cap of in-flight requests,
--- then the highest-scored one under the cap. One pass, no sorting, nothing allocated: the full
--- order is only needed on a retry (order_from).
function _M.first(backends, key)
  local n = #backends
  if n <= 1 then return 1 end
  local m = meta_of(backends)
  local t = now()
  if t - down_at >= DOWN_REFRESH then refresh_down(t) end
  local ids, seeds = m.ids, m.seeds
  local h = crc32(key)
  local total, best = 0, 0
  local best_d, best_s = 2, 0
  for i = 1, n do
    local id = ids[i]
    local d = down[id] and 1 or 0
    local sc = score(h, seeds[i])
    s_score[i], s_down[i] = sc, d
    total = total + (inflight[id] or 0)
    if d < best_d or (d == best_d and sc > best_s) then best, best_d, best_s = i, d, sc end
  end
  -- bounded load: the cap never drops below MIN_CAP so light traffic always keeps its affinity
  local cap = ceil(LOAD_FACTOR * (total + n) / n)
  if cap < MIN_CAP then cap = MIN_CAP end
  if (inflight[ids[best]] or 0) < cap then return best end
  local alt, alt_s = nil, 0
  for i = 1, n do
    if i ~= best and s_down[i] == 0 and (inflight[ids[i]] or 0) < cap and (not alt or s_score[i] > alt_s) then
      alt, alt_s = i, s_score[i]
    end
  end
  return alt or best
end

--- The peers to try, in order, and their ids: backend `first` (from first()), then the others
--- by score for `key`, backends in cool-down last. For retries and WebSocket tunnels.
function _M.order_from(backends, key, first)
  local n = #backends
  local m = meta_of(backends)
  if n <= 1 then return backends, m.ids end
  local ids, seeds = m.ids, m.seeds
  local h = crc32(key)
  local rest = {}
  for i = 1, n do
    if i ~= first then
      rest[#rest + 1] = { i, score(h, seeds[i]), down[ids[i]] and 1 or 0 }
    end
  end
  table.sort(rest, function(a, b)
    if a[3] ~= b[3] then return a[3] < b[3] end
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] < b[1]
  end)
  local out, out_ids = { backends[first] }, { ids[first] }
  for k = 1, #rest do
    out[k + 1], out_ids[k + 1] = backends[rest[k][1]], ids[rest[k][1]]
  end
  return out, out_ids
end

--- The id ("host:port") of backend i of `backends`.
function _M.id(backends, i)
  return meta_of(backends).ids[i]
end

--- In-flight accounting for bounded load (balancer: +1 on the chosen peer; log: -1).
function _M.acquire(id)
  inflight[id] = (inflight[id] or 0) + 1
end

function _M.release(id)
  local v = (inflight[id] or 0) - 1
  inflight[id] = v > 0 and v or nil
end

return _M
