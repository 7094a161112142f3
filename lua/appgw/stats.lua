-- Counts requests per route (access phase), status classes and latency (log phase, static
-- routes), and token last use, in `appgw_stats`.
local _M = {}

local stats = ngx.shared.appgw_stats

-- Counters accumulate in a per-worker table and are flushed to the shared dict once a second
-- (init_worker starts the timer), so a request costs table updates, not shared-dict writes.
local pending = {}
local last_used = {}

local function add(key, n)
  pending[key] = (pending[key] or 0) + n
end

--- Access phase, every proxied request: counts it for its route and notes its token's use.
function _M.count(route, token)
  add("req:" .. route, 1)
  if token then last_used[token] = ngx.time() end
end

--- Log phase, static routes only (task routes skip the log phase: it costs ~3 µs a request):
--- status class and latency, and the in-flight release of bounded-load balancing.
function _M.log()
  local ctx = ngx.ctx
  if ctx.appgw_counted then require("appgw.pick").release(ctx.appgw_counted) end
  local route = ctx.appgw_route
  if not route then return end
  local status = ngx.status
  local class = status >= 500 and "5xx" or status >= 400 and "4xx" or status >= 300 and "3xx" or "2xx"
  add("st:" .. class .. ":" .. route, 1)
  local rt = tonumber(ngx.var.request_time)
  if rt then add("ms:" .. route, rt * 1000) end
end

--- Moves this worker's counters into the shared dict.
function _M.flush()
  local p, lu = pending, last_used
  pending, last_used = {}, {}
  for k, n in pairs(p) do stats:incr(k, n, 0) end
  for id, ts in pairs(lu) do stats:set("lu:" .. id, ts) end
end

--- init_worker: flush every second.
function _M.start()
  local ok, err = ngx.timer.every(1, function(premature)
    if not premature then _M.flush() end
  end)
  if not ok then ngx.log(ngx.ERR, "appgw: cannot start the stats timer: ", err) end
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
