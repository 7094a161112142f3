-- body filter: a streamed response (SSE, chunked: no Content-Length) authorised by a token is
-- ended as soon as that token is revoked or expires, at the next chunk the backend sends; nothing
-- after that point reaches the client. A response with a Content-Length is a body of known size
-- and is not cut (the client would wait for the missing bytes). One hook, no header filter: the
-- first chunk reads the response header and the decision is kept for the request.
local state = require "appgw.state"

local _M = {}

function _M.body()
  local ctx = ngx.ctx
  local id = ctx.appgw_token
  if not id then return end
  local watch = ctx.appgw_watch
  if watch == nil then
    watch = not ngx.header["Content-Length"]
    ctx.appgw_watch = watch
  end
  if not watch then return end
  if ctx.appgw_closed then
    ngx.arg[1] = nil
    return ngx.ERROR
  end
  state.sync()
  if state.token_valid(id) then return end
  ctx.appgw_closed = "credential_revoked"
  ngx.arg[1] = nil
  ngx.arg[2] = true
end

return _M
