-- GET /_gateway/health: answers without credentials with the live generation and data version.
local cjson = require "cjson.safe"
local state = require "appgw.state"

local _M = {}

function _M.serve()
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.say(cjson.encode({
    status = "ok",
    generation = ngx.var.appgw_generation,
    data_version = state.version(),
  }))
end

--- Any path no route claims: 404 JSON or page.
function _M.not_found()
  return require("appgw.respond").error(404, "route_not_found", "No route matches " .. (ngx.var.uri or "/") .. ".")
end

return _M
