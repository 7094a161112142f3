-- balancer_by_lua: picks the backend chosen in the access phase, with failover to the next
-- candidate (rendezvous order) when a connection fails.
local balancer = require "ngx.balancer"
local pick = require "appgw.pick"

local _M = {}

local health = ngx.shared.appgw_health
local COOLDOWN = 10

function _M.run()
  local ctx = ngx.ctx
  local order = ctx.appgw_order
  if not order then return ngx.exit(500) end
  local i = (ctx.appgw_try or 0) + 1
  if i > 1 then
    local prev = order[i - 1]
    local state = balancer.get_last_failure()
    if state and prev then health:set("down:" .. prev[1] .. ":" .. prev[2], true, COOLDOWN) end
  end
  local peer = order[i]
  if not peer then return ngx.exit(502) end
  ctx.appgw_try = i
  if i == 1 and #order > 1 then balancer.set_more_tries(#order - 1) end
  local ok, err = balancer.set_current_peer(peer[1], peer[2])
  if not ok then
    ngx.log(ngx.ERR, "appgw: cannot set peer: ", err)
    return ngx.exit(500)
  end
  if ctx.appgw_counted then pick.release(ctx.appgw_counted) end
  if #order > 1 then
    pick.acquire(peer)
    ctx.appgw_counted = peer
  end
  ctx.appgw_peer = peer
end

return _M
