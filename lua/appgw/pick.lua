-- Backend order for a request: rendezvous (highest random weight) hashing of the affinity key
-- over the route's backends, so a key sticks to one backend and only the keys of a removed
-- backend move. Backends in cool-down go to the end of the order.
local crc32 = ngx.crc32_short
local sort = table.sort

local _M = {}

local health = ngx.shared.appgw_health

--- Returns the list of {host, port} peers to try in order.
function _M.order(backends, key)
  local n = #backends
  if n <= 1 then return backends end
  local scored = {}
  for i = 1, n do
    local b = backends[i]
    local id = b[1] .. ":" .. b[2]
    local down = health:get("down:" .. id) and 1 or 0
    scored[i] = { b, crc32(key .. "|" .. id), down }
  end
  sort(scored, function(a, b)
    if a[3] ~= b[3] then return a[3] < b[3] end
    return a[2] > b[2]
  end)
  local out = {}
  for i = 1, n do out[i] = scored[i][1] end
  return out
end

return _M
