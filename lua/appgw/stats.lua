-- log_by_lua: counts requests, status classes and latency per route in `appgw_stats`.
local _M = {}

local stats = ngx.shared.appgw_stats

function _M.log()
  local ctx = ngx.ctx
  if ctx.appgw_counted then require("appgw.pick").release(ctx.appgw_counted) end
  local route = ctx.appgw_route
  if not route then return end
  local status = ngx.status
  local class = status >= 500 and "5xx" or status >= 400 and "4xx" or status >= 300 and "3xx" or "2xx"
  stats:incr("req:" .. route, 1, 0)
  stats:incr("st:" .. class .. ":" .. route, 1, 0)
  local rt = tonumber(ngx.var.request_time)
  if rt then stats:incr("ms:" .. route, rt * 1000, 0) end
  local token = ctx.appgw_token
  if token then stats:set("lu:" .. token, ngx.time()) end
end

--- POST /_internal/last-used (push socket): hands the router the last-use time of each token
--- seen since the previous call, and forgets them.
function _M.drain_last_used()
  local out = {}
  for _, k in ipairs(stats:get_keys(0)) do
    if k:sub(1, 3) == "lu:" then
      out[k:sub(4)] = stats:get(k)
      stats:delete(k)
    end
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(require("cjson.safe").encode(out))
end

return _M
