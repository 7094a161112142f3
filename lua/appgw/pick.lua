-- Backend order for a request: rendezvous (highest random weight) hashing of the affinity key
-- over the route's backends, so a key sticks to one backend and only the keys of a removed
-- backend move. Bounded load: a backend with more than LOAD_FACTOR (2) times its fair share of the
-- route's in-flight requests yields to the next one on the key's order. Backends in cool-down
-- (a recent connection failure or 502/503/504) go to the end of the order.
local md5_bin = ngx.md5_bin
local byte = string.byte
local sort = table.sort
local ceil = math.ceil

local _M = {}

local health = ngx.shared.appgw_health
local LOAD_FACTOR = 2
local MIN_CAP = 8

-- 32-bit score of (key, backend): the first four bytes of an MD5, so scores of different
-- backends are independent (CRC32 is affine, and its scores for one key are correlated).
local function score(key, id)
  local a, b, c, d = byte(md5_bin(key .. "|" .. id), 1, 4)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local function by_score(a, b)
  if a[3] ~= b[3] then return a[3] < b[3] end
  return a[2] > b[2]
end

--- Returns the list of {host, port} peers to try, in order.
function _M.order(backends, key)
  local n = #backends
  if n <= 1 then return backends end
  local scored = {}
  local total = 0
  for i = 1, n do
    local b = backends[i]
    local id = b[1] .. ":" .. b[2]
    local down = health:get("down:" .. id) and 1 or 0
    local load = health:get("load:" .. id) or 0
    total = total + load
    scored[i] = { b, score(key, id), down, load }
  end
  sort(scored, by_score)
  -- bounded load: skip over backends above their cap (the first one under it goes first);
  -- the cap never drops below MIN_CAP so light traffic always keeps its affinity
  local cap = ceil(LOAD_FACTOR * (total + n) / n)
  if cap < MIN_CAP then cap = MIN_CAP end
  if scored[1][4] >= cap then
    for i = 2, n do
      local s = scored[i]
      if s[3] == 0 and s[4] < cap then
        table.remove(scored, i)
        table.insert(scored, 1, s)
        break
      end
    end
  end
  local out = {}
  for i = 1, n do out[i] = scored[i][1] end
  return out
end

--- In-flight accounting for bounded load (balancer: +1 on the chosen peer; log: -1).
function _M.acquire(peer)
  health:incr("load:" .. peer[1] .. ":" .. peer[2], 1, 0, 3600)
end

function _M.release(peer)
  local v = health:incr("load:" .. peer[1] .. ":" .. peer[2], -1, 0)
  if v and v < 0 then health:set("load:" .. peer[1] .. ":" .. peer[2], 0) end
end

return _M
