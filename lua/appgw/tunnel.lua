-- WebSocket (Upgrade) requests are tunnelled here, in Lua, instead of by proxy_pass, so that the
-- gateway can close an open tunnel within a second of its token being revoked or expiring.
-- Runs at the end of the access phase: connects to the backend (in balancer order), sends the
-- request head with gateway credentials removed and forwarding headers set, relays the answer,
-- then pumps bytes both ways until either side closes or the credential stops being valid.
local state = require "appgw.state"
local respond = require "appgw.respond"

local _M = {}

local HOP = {
  ["connection"] = true, ["keep-alive"] = true, ["proxy-connection"] = true, ["te"] = true,
  ["trailer"] = true, ["transfer-encoding"] = true, ["x-gateway-token"] = true,
  ["x-forwarded-user"] = true, ["x-forwarded-groups"] = true, ["x-forwarded-prefix"] = true,
  ["x-forwarded-for"] = true, ["x-forwarded-proto"] = true, ["x-forwarded-host"] = true,
  ["x-real-ip"] = true,
}
local CHECK_EVERY = 0.25
local BUF = 65536

local function still_valid(ident)
  if not ident.id then return true end
  state.sync()
  return state.token_valid(ident.id)
end

local function request_head(var)
  local path = ngx.escape_uri(var.uri, 0)
  if var.args and var.args ~= "" then path = path .. "?" .. var.args end
  local lines = { ngx.req.get_method() .. " " .. path .. " HTTP/1.1" }
  local headers = ngx.req.get_headers(100, true)
  for name, value in pairs(headers) do
    local lower = name:lower()
    if not HOP[lower] then
      if type(value) == "table" then
        for _, v in ipairs(value) do lines[#lines + 1] = name .. ": " .. v end
      else
        lines[#lines + 1] = name .. ": " .. value
      end
    end
  end
  local xff = var.http_x_forwarded_for
  lines[#lines + 1] = "Connection: Upgrade"
  lines[#lines + 1] = "X-Real-IP: " .. var.remote_addr
  lines[#lines + 1] = "X-Forwarded-For: " .. (xff and (xff .. ", ") or "") .. var.remote_addr
  lines[#lines + 1] = "X-Forwarded-Proto: " .. var.scheme
  lines[#lines + 1] = "X-Forwarded-Host: " .. (var.host or "")
  if var.appgw_prefix ~= "" then lines[#lines + 1] = "X-Forwarded-Prefix: " .. var.appgw_prefix end
  lines[#lines + 1] = "X-Forwarded-User: " .. var.appgw_user
  lines[#lines + 1] = "X-Forwarded-Groups: " .. var.appgw_groups
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

local function pump(from, to)
  while true do
    local data, err = from:receiveany(BUF)
    if not data then return err end
    local ok, serr = to:send(data)
    if not ok then return serr end
  end
end

--- Tunnels the current Upgrade request to the first reachable peer of `order`; never returns.
--- The request's headers are read after auth.strip removed the gateway credentials.
function _M.run(order, ident, read_timeout_ms)
  local var = ngx.var
  local up, err
  for _, peer in ipairs(order) do
    up = ngx.socket.tcp()
    up:settimeouts(5000, 60000, read_timeout_ms)
    local ok
    ok, err = up:connect(peer[1], peer[2])
    if ok then break end
    up = nil
  end
  if not up then
    return respond.error(502, "backend_unreachable", "The backend did not accept the connection.")
  end
  local ok, serr = up:send(request_head(var))
  if not ok then
    up:close()
    return respond.error(502, "backend_unreachable", "The backend closed the connection: " .. tostring(serr))
  end
  local down, derr = ngx.req.socket(true)
  if not down then
    up:close()
    ngx.log(ngx.WARN, "appgw: no raw client socket for the tunnel: ", derr)
    return ngx.exit(444)
  end
  down:settimeouts(5000, 60000, read_timeout_ms)

  local t_up = ngx.thread.spawn(pump, up, down)
  local t_down = ngx.thread.spawn(pump, down, up)
  local t_watch = ngx.thread.spawn(function()
    while true do
      ngx.sleep(CHECK_EVERY)
      if not still_valid(ident) then return "revoked" end
    end
  end)
  local _, why = ngx.thread.wait(t_up, t_down, t_watch)
  if why == "revoked" then ngx.ctx.appgw_closed = "credential_revoked" end
  ngx.thread.kill(t_watch)
  up:close()
  ngx.thread.kill(t_up)
  ngx.thread.kill(t_down)
  return ngx.exit(444)
end

return _M
