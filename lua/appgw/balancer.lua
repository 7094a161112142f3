-- balancer_by_lua: the backend chosen in the access phase first; when a connection to it fails,
-- the next ones in rendezvous order for the request's affinity key (worked out only then), and
-- the failed backend cools down.
local balancer = require "ngx.balancer"
local pick = require "appgw.pick"

local _M = {}

function _M.run()
  local ctx = ngx.ctx
  local backends = ctx.appgw_backends
  if not backends then return ngx.exit(500) end
  local n = #backends
  local i = (ctx.appgw_try or 0) + 1
  local peer, id
  if i == 1 then
    local first = ctx.appgw_first
    peer = backends[first]
    if n > 1 then
      id = pick.id(backends, first)
      balancer.set_more_tries(n - 1)
    end
  else
    -- the backend that just failed is the one counted for this request
    if balancer.get_last_failure() and ctx.appgw_counted then pick.mark_down(ctx.appgw_counted) end
    local order, ids = ctx.appgw_order, ctx.appgw_ids
    if not order then
      order, ids = pick.order_from(backends, ctx.appgw_key or "", ctx.appgw_first)
      ctx.appgw_order, ctx.appgw_ids = order, ids
    end
    peer, id = order[i], ids[i]
  end
  if not peer then return ngx.exit(502) end
  ctx.appgw_try = i
  local ok, err = balancer.set_current_peer(peer[1], peer[2])
  if not ok then
    ngx.log(ngx.ERR, "appgw: cannot set peer: ", err)
    return ngx.exit(500)
  end
  if n > 1 then
    if ctx.appgw_counted then pick.release(ctx.appgw_counted) end
    pick.acquire(id)
    ctx.appgw_counted = id
  end
end

return _M
