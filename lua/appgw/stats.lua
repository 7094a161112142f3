-- Counts requests per route (access phase), status classes and latency (log phase, static
-- routes), and token last use, in `appgw_stats`.
local _M = {}

local stats = ngx.shared.appgw_stats

-- Counters accumulate in per-worker tables and are flushed to the shared dict once a second
-- (init_worker starts the timer), so a request costs table updates, not shared-dict writes or
-- key concatenations. Shared-dict keys: req:<route>, st:<class>:<route>, ms:<route>, lu:<token>.
local requests = {}   -- route -> count
local classes = {}    -- route -> { ["2xx"] = n, ... }
local millis = {}     -- route -> total ms
local last_used = {}  -- token id -> unix time, to write at the next flush

-- A token's last use reaches the shared dict (and the store's `last_used_at`) on its first request
-- in a worker and then at most once a minute: with 10,000 tokens in use, writing every token every
-- second stalled the worker 3-7 ms each second (10,000 shared-dict writes), which the p99 showed.
-- `noted` (token id -> the time last noted) is forgotten whole at NOTED_MAX ids: it stays bounded.
local LAST_USED_STEP = 60
local NOTED_MAX = 100000
local noted, noted_n = {}, 0
local time = ngx.time

--- Access phase, every proxied request: counts it for its route and notes its token's use.
function _M.count(route, token)
  requests[route] = (requests[route] or 0) + 1
  if token then
    local now = time()
    local t = noted[token]
    if t and now - t < LAST_USED_STEP then return end
    if not t then
      if noted_n >= NOTED_MAX then noted, noted_n = {}, 0 end
      noted_n = noted_n + 1
    end
    noted[token] = now
    last_used[token] = now
  end
end

local req_start = ngx.req.start_time
local now = ngx.now

--- Log phase, static routes only (task routes skip the log phase): status class and latency,
--- and the in-flight release of bounded-load balancing.
function _M.log()
  local ctx = ngx.ctx
  local counted = ctx.appgw_counted
  if counted then require("appgw.pick").release(counted) end
  local route = ctx.appgw_route
  if not route then return end
  local status = ngx.status
  local class = status >= 500 and "5xx" or status >= 400 and "4xx" or status >= 300 and "3xx" or "2xx"
  local c = classes[route]
  if not c then
    c = {}
    classes[route] = c
  end
  c[class] = (c[class] or 0) + 1
  millis[route] = (millis[route] or 0) + (now() - req_start()) * 1000
end

--- Moves this worker's counters into the shared dict.
function _M.flush()
  local rq, cl, ms, lu = requests, classes, millis, last_used
  requests, classes, millis, last_used = {}, {}, {}, {}
  for route, n in pairs(rq) do stats:incr("req:" .. route, n, 0) end
  for route, byclass in pairs(cl) do
    for class, n in pairs(byclass) do stats:incr("st:" .. class .. ":" .. route, n, 0) end
  end
  for route, n in pairs(ms) do stats:incr("ms:" .. route, n, 0) end
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
