-- balancer_by_lua: picks the backend chosen in the access phase, with failover to the next
-- candidate (rendezvous order) when a connection fails; a failed backend cools down.
local balancer = require "ngx.balancer"
local pick = require "appgw.pick"

local _M = {}

function _M.run()
  local ctx = ngx.ctx
  local order = ctx.appgw_order
  if not order then return ngx.exit(500) end
  local ids = ctx.appgw_ids
  local i = (ctx.appgw_try or 0) + 1
  local n = #order
  if i > 1 then
    local state = balancer.get_last_failure()
    if state and ids[i - 1] then pick.mark_down(ids[i - 1]) end
  end
  local peer = order[i]
  if not peer then return ngx.exit(502) end
  ctx.appgw_try = i
  if i == 1 and n > 1 then balancer.set_more_tries(n - 1) end
  local ok, err = balancer.set_current_peer(peer[1], peer[2])
  if not ok then
    ngx.log(ngx.ERR, "appgw: cannot set peer: ", err)
    return ngx.exit(500)
  end
  if n > 1 then
    if ctx.appgw_counted then pick.release(ctx.appgw_counted) end
    pick.acquire(ids[i])
    ctx.appgw_counted = ids[i]
  end
  ctx.appgw_peer = peer
end

return _M
