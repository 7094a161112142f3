-- init_by_lua: loads every module once in the master so workers share the compiled code.
local _M = {}

function _M.init()
  require "resty.core"
  for _, name in ipairs({ "appgw.hex", "appgw.memo", "appgw.sha256", "appgw.cookies", "appgw.authz", "appgw.respond", "appgw.state", "appgw.auth",
                          "appgw.pick", "appgw.tunnel", "appgw.access", "appgw.balancer", "appgw.push", "appgw.health",
                          "appgw.stats", "appgw.watch" }) do
    require(name)
  end
  if not require("appgw.sha256").available then
    ngx.log(ngx.WARN, "appgw: libcrypto SHA256 not found; every token will be refused")
  end
end

return _M
