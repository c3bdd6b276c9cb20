-- wrk script of bench/semantic.sh -c: a chat request whose question is
-- new at every request (a counter a thread), so that each is an exact
-- miss and a semantic lookup (and, unless no-store, a store of a vector).
--
--   AIGW_SEM_TAG     a word in every question, per run (default "q")
--   AIGW_SEM_NOSTORE "1": Cache-Control: no-store (looked up, not stored)

local tag = os.getenv("AIGW_SEM_TAG") or "q"
local n = 0
local id = 0

function setup(thread)
   id = id + 1
   thread:set("id", id)
end

function init(args)
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"

   if os.getenv("AIGW_SEM_NOSTORE") == "1" then
      wrk.headers["Cache-Control"] = "no-store"
   end
end

function request()
   n = n + 1
   return wrk.format(nil, nil, nil,
      '{"model":"gpt-4o","messages":[{"role":"system","content":"bench"},'
      .. '{"role":"user","content":"Question ' .. tag .. ' ' .. id .. ' '
      .. n .. ', please?"}]}')
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d "
      .. "non2xx=%d sockerr=%d\n",
      summary.requests, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(99), latency.max,
      e.status, e.connect + e.read + e.write + e.timeout))
end
