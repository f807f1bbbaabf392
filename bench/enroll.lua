-- wrk script: POST /api/v1/families, a new family with a new email per request.
--
--   wrk -t2 -c64 -d20s --latency -s bench/enroll.lua URL -- COOKIE [TAG]
--
-- COOKIE: the coordinator's Cookie header value, "coop_session=TOKEN"
--         (written by bench/seed.py --cookie-out).
-- TAG:    goes into every email, so runs against the same co-op never collide
--         (email is unique per co-op); default: the start time.
--
-- Emails are TAG-tTHREAD-RANDOM-N@example.org: the thread number keeps wrk's
-- threads apart, N counts each thread's requests, and RANDOM (drawn per thread)
-- keeps two runs apart even when they are given the same TAG. Each request is
-- built in request(), so no two requests carry the same body.
--
-- With BENCH_STATUS_DETAIL=1 in the environment the script also counts every
-- response by status code (costs loader CPU, off by default).
--
-- Prints one machine-readable line at the end for bench/jobs.sh (the same
-- fields as bench/get_family.lua's, which bench/lib.sh's wrk_summary reads):
--   BENCH requests=.. duration_us=.. socket_errors=.. connect=.. read=.. write=..
--         timeout=.. non2xx=.. [status_CODE=..]

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("thread_no", counter)
   table.insert(threads, thread)
end

local headers = {}
local prefix = ""
local n = 0

function init(args)
   local cookie = args[1]
   local tag = args[2] or tostring(os.time())
   if cookie == nil or cookie == "" then
      error("usage: wrk ... -s enroll.lua URL -- COOKIE [TAG]")
   end
   if not tag:match("^[%w._-]+$") then
      error("TAG may hold only letters, digits, '.', '_' and '-': " .. tag)
   end
   headers["Cookie"] = cookie
   headers["Content-Type"] = "application/json"
   headers["Accept"] = "application/json"
   math.randomseed(os.time() * 1000 + (thread_no or 0) * 7919 + math.floor(os.clock() * 1e6))
   prefix = string.format("%s-t%d-%06x", tag, thread_no or 0, math.random(0, 0xffffff))
end

function request()
   n = n + 1
   local id = prefix .. "-" .. n
   local body = '{"family_name":"Bench family ' .. id .. '","email":"' .. id .. '@example.org"}'
   return wrk.format("POST", "/api/v1/families", headers, body)
end

if os.getenv("BENCH_STATUS_DETAIL") == "1" then
   statuses = {}
   non2xx = 0
   function response(status, _headers, _body)
      statuses[status] = (statuses[status] or 0) + 1
      if status < 200 or status > 299 then
         non2xx = non2xx + 1
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   local socket = e.connect + e.read + e.write + e.timeout
   local non2xx_total = e.status
   local by_code = ""
   if os.getenv("BENCH_STATUS_DETAIL") == "1" then
      non2xx_total = 0
      local merged = {}
      for _, t in ipairs(threads) do
         non2xx_total = non2xx_total + (t:get("non2xx") or 0)
         local s = t:get("statuses") or {}
         for code, count in pairs(s) do
            merged[code] = (merged[code] or 0) + count
         end
      end
      for code, count in pairs(merged) do
         by_code = by_code .. string.format(" status_%d=%d", code, count)
      end
   end
   io.write(string.format(
      "BENCH requests=%d duration_us=%d socket_errors=%d connect=%d read=%d write=%d timeout=%d non2xx=%d%s\n",
      summary.requests, summary.duration, socket, e.connect, e.read, e.write, e.timeout,
      non2xx_total, by_code))
end
