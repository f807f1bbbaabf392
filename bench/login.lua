-- wrk script: POST /api/v1/auth/login with the seeded coordinator's email and
-- password. Each login verifies an argon2id hash (deliberately slow: about
-- 20 ms of CPU), so the instance's CPU is the bottleneck and the load balancer
-- and the load generator cost next to nothing per request: the mix that shows
-- how capacity grows with instances on a machine with few cores.
--
--   wrk -t1 -c16 -d15s --latency -s bench/login.lua URL -- EMAIL PASSWORD
--
-- Prints the same BENCH line as bench/get_family.lua (read by bench/lib.sh).

local body
local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }

function init(args)
   local email, password = args[1], args[2]
   if email == nil or password == nil then
      error("usage: wrk ... -s login.lua URL -- EMAIL PASSWORD")
   end
   body = string.format('{"email":"%s","password":"%s"}', email, password)
end

function request()
   return wrk.format("POST", "/api/v1/auth/login", headers, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d socket_errors=%d connect=%d read=%d write=%d timeout=%d non2xx=%d\n",
      summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
      e.connect, e.read, e.write, e.timeout, e.status))
end
