-- wrk script for aigw's benchmark: POSTs a chat request and prints one
-- machine-readable summary line at the end.
--
--   AIGW_BENCH_BODY=/path/body.json AIGW_BENCH_HEADERS=/path/headers \
--       wrk -s bench/post.lua http://127.0.0.1:PORT/v1/chat/completions
--
-- AIGW_BENCH_BODY     the request body (bench/run.sh writes one; without it
--                     a built-in chat request is sent)
-- AIGW_BENCH_HEADERS  "Name: value" lines, one a line (default: only
--                     Content-Type: application/json)
--
-- The request is static, so wrk formats it once per thread: no Lua runs per
-- request, and response() is not defined, so wrk does not hand bodies to Lua.

local function slurp(path)
   local f = io.open(path, "rb")
   if f == nil then
      error("post.lua: cannot open " .. path)
   end
   local s = f:read("*a")
   f:close()
   return s
end

local body_file = os.getenv("AIGW_BENCH_BODY")
local headers_file = os.getenv("AIGW_BENCH_HEADERS")

wrk.method = "POST"

if body_file and body_file ~= "" then
   wrk.body = slurp(body_file):gsub("%s+$", "")
else
   wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user",'
           .. '"content":"Say hello."}]}'
end

wrk.headers["Content-Type"] = "application/json"

if headers_file and headers_file ~= "" then
   for line in slurp(headers_file):gmatch("[^\r\n]+") do
      local name, value = line:match("^([^:]+):%s*(.*)$")
      if name then
         wrk.headers[name] = value
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d "
      .. "p99_us=%d max_us=%d bytes=%d non2xx=%d sockerr=%d\n",
      summary.requests, summary.duration,
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, summary.bytes,
      e.status, e.connect + e.read + e.write + e.timeout))
end
