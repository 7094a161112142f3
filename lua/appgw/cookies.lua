-- Cookie header parsing and filtering (names compared exactly; values never logged).
local _M = {}

--- Returns the value of cookie `name` from the Cookie header, or nil.
function _M.get(header, name)
  if not header then return nil end
  if type(header) == "table" then header = table.concat(header, "; ") end
  for pair in header:gmatch("[^;]+") do
    local k, v = pair:match("^%s*([^=%s]+)%s*=%s*(.-)%s*$")
    if k == name then return v end
  end
  return nil
end

--- Returns the Cookie header without the cookies named in `drop` (a set), or nil if none is left.
function _M.without(header, drop)
  if not header then return nil end
  if type(header) == "table" then header = table.concat(header, "; ") end
  local kept = {}
  for pair in header:gmatch("[^;]+") do
    local k = pair:match("^%s*([^=%s]+)")
    if k and not drop[k] then kept[#kept + 1] = pair:match("^%s*(.-)%s*$") end
  end
  if #kept == 0 then return nil end
  return table.concat(kept, "; ")
end

return _M
