-- access_by_lua (set once per server): resolves the route of the request, checks the caller,
-- chooses the backend order, strips the route prefix and gateway credentials.
local state = require "appgw.state"
local auth = require "appgw.auth"
local pick = require "appgw.pick"
local respond = require "appgw.respond"

local _M = {}

local var = ngx.var
local ctx_of = function() return ngx.ctx end

-- `/service/<task>/...` or `/service/<task>-<name>/...`
local SERVICE = "^/service/([a-z0-9]+)(%-?[a-z0-9_]*)(/?)"

local function resolve()
  local kind = var.appgw_kind
  if kind == "service" then
    local uri = var.uri
    local task, name, slash = uri:match(SERVICE)
    if not task or #task > 40 or (name ~= "" and #name < 2) then return nil end
    local id = task .. name
    return state.route("e:" .. id), "/service/" .. id, slash == "", "e:" .. id
  elseif kind == "static" then
    local key = var.appgw_route
    local route = state.route(key)
    return route, route and route.p, false, key
  end
  return nil
end

local function affinity_key(ident)
  local sid = var.http_x_session_id
  if sid and sid ~= "" then return "s:" .. sid end
  local ck = var.cookie_appgw_affinity
  if ck and ck ~= "" then return "c:" .. ck end
  if ident and ident.id then return "t:" .. ident.id end
  return "a:" .. var.remote_addr
end

local function authorize(ident, route)
  if ident.admin then return true end
  return false
end

function _M.run()
  -- locations without a kind (health, the 404 fallback) answer from their content handler
  if var.appgw_kind == "" then return end
  local route, prefix, needs_slash, key = resolve()
  if not route then
    return respond.error(404, "route_not_found", "No route matches " .. (var.uri or "/") .. ".")
  end

  local presented = auth.presented()
  if not presented then
    return respond.error(401, "credentials_required", "This route needs a gateway token in the X-Gateway-Token header.")
  end
  local ident, reason = auth.check_token(presented)
  if not ident then
    return respond.error(401, reason, "The gateway token is not valid.")
  end
  if not authorize(ident, route) then
    return respond.error(403, "forbidden", "This identity may not use this route.", { route = route.n })
  end

  if needs_slash then
    local args = var.args
    return ngx.redirect(prefix .. "/" .. (args and ("?" .. args) or ""), 301)
  end

  local backends = route.b
  if not backends or #backends == 0 then
    return respond.error(503, "no_backend", "The route " .. (route.n or key) .. " has no live backend right now.",
      { route = route.n, retry_after = 5 })
  end

  local ctx = ctx_of()
  ctx.appgw_order = pick.order(backends, affinity_key(ident))
  ctx.appgw_route = key
  ctx.appgw_token = ident.id
  var.appgw_log_route = key
  var.appgw_log_token = ident.id

  if route.s and prefix then
    local rest = var.uri:sub(#prefix + 1)
    if rest == "" or rest:byte(1) ~= 47 then rest = "/" .. rest end
    ngx.req.set_uri(rest, false)
    var.appgw_prefix = prefix
  end
  var.appgw_user = ident.user or ""
  var.appgw_groups = ident.groups and table.concat(ident.groups, ",") or ""
  ngx.req.clear_header("X-Gateway-Token")
end

return _M
