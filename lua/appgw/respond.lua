-- Error responses of the edge: JSON for programs, a small readable page for browsers.
local cjson = require "cjson.safe"

local _M = {}

local TITLES = {
  [400] = "Bad request", [401] = "Sign-in required", [403] = "Access denied",
  [404] = "Not found", [413] = "Request too large", [502] = "Backend unavailable",
  [503] = "Service unavailable", [504] = "Backend timed out",
}

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }))
end

--- True when the client prefers an HTML page (a browser navigation).
function _M.wants_html()
  local accept = ngx.var.http_accept
  if not accept then return false end
  return accept:find("text/html", 1, true) ~= nil
end

--- Ends the request with `status`: JSON `{"error": code, "message": msg, ...extra}` or an HTML page.
function _M.error(status, code, message, extra)
  ngx.status = status
  local retry = extra and extra.retry_after
  if retry then ngx.header["Retry-After"] = tostring(retry) end
  ngx.header["Cache-Control"] = "no-store"
  if status == 401 then ngx.header["WWW-Authenticate"] = 'Bearer realm="appgw"' end
  if _M.wants_html() then
    ngx.header["Content-Type"] = "text/html; charset=utf-8"
    local title = TITLES[status] or "Error"
    ngx.say("<!doctype html><html><head><meta charset=\"utf-8\"><title>", status, " ", title,
      "</title><style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;color:#222}",
      "code{background:#f3f3f3;padding:.1em .3em}</style></head><body><h1>", title, "</h1><p>",
      html_escape(message), "</p><p><small>", status, " · <code>", html_escape(code),
      "</code> · AI Application Gateway</small></p></body></html>")
  else
    ngx.header["Content-Type"] = "application/json"
    local body = { error = code, message = message, status = status }
    if extra then for k, v in pairs(extra) do body[k] = v end end
    ngx.say(cjson.encode(body))
  end
  return ngx.exit(status)
end

return _M
