-- header/body filters: a streamed response (SSE, chunked, no Content-Length) authorised by a
-- token is ended as soon as that token is revoked or expires, at the next chunk the backend
-- sends; nothing after that point reaches the client.
local state = require "appgw.state"

local _M = {}

function _M.header()
  local ctx = ngx.ctx
  if not ctx.appgw_token then return end
  local ct = ngx.header["Content-Type"]
  if (type(ct) == "string" and ct:find("text/event-stream", 1, true)) or not ngx.header["Content-Length"] then
    ctx.appgw_watch = true
  end
end

function _M.body()
  local ctx = ngx.ctx
  if not ctx.appgw_watch then return end
  if ctx.appgw_closed then
    ngx.arg[1] = nil
    return ngx.ERROR
  end
  local rec = state.token(ctx.appgw_token)
  if rec and (not rec.e or rec.e > ngx.time()) then return end
  ctx.appgw_closed = "credential_revoked"
  ngx.arg[1] = nil
  ngx.arg[2] = true
end

return _M
