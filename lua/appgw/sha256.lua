-- SHA-256 and random bytes through LuaJIT FFI to OpenSSL's libcrypto, which both Debian's nginx and OpenResty
-- link. Returns the lowercase hex digest, or nil and an error.
local ffi = require "ffi"

local _M = {}

ffi.cdef [[
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
int RAND_bytes(unsigned char *buf, int num);
]]

local function find(sym)
  local ok, fn = pcall(function() return ffi.C[sym] end)
  if ok and fn then return fn end
  for _, name in ipairs({ "crypto", "libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so" }) do
    local lok, lib = pcall(ffi.load, name)
    if lok then
      local sok, f = pcall(function() return lib[sym] end)
      if sok and f then return f end
    end
  end
  return nil
end

local SHA256 = find("SHA256")
local RAND_bytes = find("RAND_bytes")
local buf = ffi.new("unsigned char[32]")
local to_hex = require("appgw.hex")

--- Lowercase hex SHA-256 of s; nil, err when libcrypto is not reachable.
function _M.hex(s)
  if not SHA256 then return nil, "libcrypto SHA256 not found" end
  SHA256(s, #s, buf)
  return to_hex(ffi.string(buf, 32))
end

--- n random bytes from OpenSSL's CSPRNG, as a URL-safe base64 string; nil if unavailable.
function _M.random(n)
  if not RAND_bytes then return nil end
  local b = ffi.new("unsigned char[?]", n)
  if RAND_bytes(b, n) ~= 1 then return nil end
  return (ngx.encode_base64(ffi.string(b, n), true):gsub("%+", "-"):gsub("/", "_"))
end

_M.available = SHA256 ~= nil and RAND_bytes ~= nil

return _M
