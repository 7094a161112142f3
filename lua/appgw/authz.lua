-- May this identity use this route? Ephemeral routes: the task's owner, users and groups it is
-- shared with, admins, and (policy "company") every user of the tenant. Static routes: members
-- of the allowed groups (no groups: any authenticated identity) and admins. A route-scoped token
-- passes only on its static routes.
local _M = {}

local function contains(list, v)
  if not list or v == nil then return false end
  for i = 1, #list do if list[i] == v then return true end end
  return false
end

local function intersects(a, b)
  if not a or not b then return false end
  for i = 1, #a do if contains(b, a[i]) then return true end end
  return false
end

--- Returns true, or false and a reason code.
function _M.allowed(ident, route)
  local scope = ident.routes
  if scope and #scope > 0 then
    if route.k == "s" and contains(scope, route.n) then return true end
    return false, "outside_token_scope"
  end
  if ident.admin then return true end
  if route.k == "e" then
    if route.o and ident.user == route.o then return true end
    if contains(route.su, ident.user) then return true end
    if intersects(route.sg, ident.groups) then return true end
    if route.pol == "company" and ident.company and ident.company == route.c then return true end
    return false, "not_shared_with_you"
  end
  local groups = route.g
  if not groups or #groups == 0 then return true end
  if intersects(groups, ident.groups) then return true end
  return false, "not_in_allowed_groups"
end

return _M
