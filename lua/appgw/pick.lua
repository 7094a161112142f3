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
local state = require "appgw.state"

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

--- Pure. Score of `key` on the backend with seed `seed` (exposed for tests and benchmarks).
function _M.score(key, seed)
  return fmix(bxor(crc32(key), seed))
end

-- per backends list (a decoded route record's `b`, stable until the data version changes):
-- { ids = {"host:port", ...}, seeds = {crc32(id), ...} }
local meta = setmetatable({}, { __mode = "k" })
state.on_change(function() meta = setmetatable({}, { __mode = "k" }) end)

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

-- scratch arrays reused by every call (a worker runs one Lua handler at a time and order() does
-- not yield)
local s_idx, s_score, s_down = {}, {}, {}

--- Returns the list of {host, port} peers to try, in order, and a parallel list of their ids.
function _M.order(backends, key)
  local n = #backends
  local m = meta_of(backends)
  if n <= 1 then return backends, m.ids end
  local t = now()
  if t - down_at >= DOWN_REFRESH then refresh_down(t) end
  local ids, seeds = m.ids, m.seeds
  local h = crc32(key)
  local total = 0
  for i = 1, n do
    local id = ids[i]
    local d = down[id] and 1 or 0
    local sc = fmix(bxor(h, seeds[i]))
    total = total + (inflight[id] or 0)
    -- insertion sort: up first, then highest score first (ties by position)
    local j = i - 1
    while j >= 1 and (s_down[j] > d or (s_down[j] == d and s_score[j] < sc)) do
      s_idx[j + 1], s_score[j + 1], s_down[j + 1] = s_idx[j], s_score[j], s_down[j]
      j = j - 1
    end
    s_idx[j + 1], s_score[j + 1], s_down[j + 1] = i, sc, d
  end
  -- bounded load: skip over backends above their cap (the first one under it goes first);
  -- the cap never drops below MIN_CAP so light traffic always keeps its affinity
  local cap = ceil(LOAD_FACTOR * (total + n) / n)
  if cap < MIN_CAP then cap = MIN_CAP end
  local first = 1
  if (inflight[ids[s_idx[1]]] or 0) >= cap then
    for i = 2, n do
      local id = ids[s_idx[i]]
      if s_down[i] == 0 and (inflight[id] or 0) < cap then
        first = i
        break
      end
    end
  end
  local out, out_ids = {}, {}
  out[1], out_ids[1] = backends[s_idx[first]], ids[s_idx[first]]
  local k = 1
  for i = 1, n do
    if i ~= first then
      k = k + 1
      out[k], out_ids[k] = backends[s_idx[i]], ids[s_idx[i]]
    end
  end
  return out, out_ids
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
