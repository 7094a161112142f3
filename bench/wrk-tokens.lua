-- wrk script of the auth benchmark (bench/auth-bench.ts): every request carries the next token of
-- a file (one token a line), in rotation, in a header (default X-Gateway-Token). The request
-- strings are built once in init(), so a request costs the client the same whatever the file
-- holds (1 token or 10,000) and whatever the target (plain nginx, the gateway, CHP).
--
--   wrk -t1 -c50 -d10s --latency -s bench/wrk-tokens.lua URL -- TOKEN_FILE [HEADER_NAME]
local reqs = {}
local n = 0
local i = 0

function init(args)
  local file = args[1]
  if not file then error("wrk-tokens.lua: pass the token file after --") end
  local header = args[2] or "X-Gateway-Token"
  local host = wrk.headers["Host"]
  for line in io.lines(file) do
    if line ~= "" then
      n = n + 1
      local h = {}
      if host then h["Host"] = host end
      h[header] = line
      reqs[n] = wrk.format(nil, nil, h)
    end
  end
  if n == 0 then error("wrk-tokens.lua: no token in " .. file) end
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end
