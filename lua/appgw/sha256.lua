-- SHA-256 through LuaJIT FFI to OpenSSL's libcrypto, which both Debian's nginx and OpenResty
-- link. Returns the lowercase hex digest, or nil and an error.
local ffi = require "ffi"

local _M = {}

ffi.cdef [[
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
]]

local function find_sha256()
  local ok, fn = pcall(function() return ffi.C.SHA256 end)
  if ok and fn then return fn end
  for _, name in ipairs({ "crypto", "libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so" }) do
    local lok, lib = pcall(ffi.load, name)
    if lok then
      local sok, f = pcall(function() return lib.SHA256 end)
      if sok and f then return f end
    end
  end
  return nil
end

local SHA256 = find_sha256()
local buf = ffi.new("unsigned char[32]")
local to_hex = require("appgw.hex")

--- Lowercase hex SHA-256 of s; nil, err when libcrypto is not reachable.
function _M.hex(s)
  if not SHA256 then return nil, "libcrypto SHA256 not found" end
  SHA256(s, #s, buf)
  return to_hex(ffi.string(buf, 32))
end

_M.available = SHA256 ~= nil

return _M
