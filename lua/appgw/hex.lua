-- Lowercase hex encoding of a binary string.
local byte, format, concat = string.byte, string.format, table.concat
local HEX = {}
for i = 0, 255 do HEX[i] = format("%02x", i) end

return function(s)
  local out = {}
  for i = 1, #s do out[i] = HEX[byte(s, i)] end
  return concat(out)
end
