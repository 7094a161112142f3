-- A per-worker memo of bounded size with no flush-all cliff: two generations of at most `half`
-- entries each. A hit in the older one moves the entry to the newer one; when the newer one is
-- full it becomes the older one (and the old older one, emptied, the newer). So the `half` most
-- recently used keys are always held, more keys than that cost their owner a recomputation for
-- the least recent ones only, and nothing is ever emptied whole except by clear(). Both tables
-- are allocated once at full size and reused (table.clear keeps their slots): no rehash while
-- they fill, no garbage when they turn over, and no write at all once a working set of at most
-- `half` keys has been seen. Used for verified tokens (auth.lua) and static path lookups
-- (access.lua).
local new_tab = require "table.new"
local clear_tab = require "table.clear"

local _M = {}
local mt = { __index = _M }

--- A memo holding at least the `half` most recently used keys.
function _M.new(half)
  return setmetatable({ cur = new_tab(0, half), old = new_tab(0, half), n = 0, half = half }, mt)
end

--- Stores `value` (not nil) under `key`.
function _M:set(key, value)
  if self.n >= self.half then
    self.cur, self.old = self.old, self.cur
    clear_tab(self.cur)
    self.n = 0
  end
  self.cur[key] = value
  self.n = self.n + 1
end

--- The value under `key`, or nil.
function _M:get(key)
  local v = self.cur[key]
  if v ~= nil then return v end
  v = self.old[key]
  if v ~= nil then
    self.old[key] = nil
    self:set(key, v)
  end
  return v
end

--- Forgets everything (the tables keep their size).
function _M:clear()
  clear_tab(self.cur)
  clear_tab(self.old)
  self.n = 0
end

return _M
