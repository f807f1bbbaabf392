-- wrk script: GET /api/v1/families/{id} with a random seeded id per request.
--
--   wrk -t2 -c64 -d15s --latency -s bench/get_family.lua URL -- IDS_FILE COOKIE
--
-- IDS_FILE: family ids, one per line (written by bench/seed.py).
-- COOKIE:   the value for the Cookie header, e.g. "coop_session=TOKEN".
--
-- With BENCH_STATUS_DETAIL=1 in the environment the script also counts every
-- response by status code and reports non-2xx counts by code. Off by default:
-- a Lua `response` hook makes wrk parse every response into Lua tables, which
-- costs loader CPU on a machine where the loader shares cores with the server.
-- Without it, the non-2xx count comes from wrk's own summary (status >= 400).

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("thread_no", counter)
   table.insert(threads, thread)
end

local ids = {}
local headers = {}
local path_prefix = "/api/v1/families/"

function init(args)
   local ids_file = args[1]
   local cookie = args[2]
   if ids_file == nil then
      error("usage: wrk ... -s get_family.lua URL -- IDS_FILE [COOKIE]")
   end
   local f = assert(io.open(ids_file, "r"))
   for line in f:lines() do
      line = line:gsub("%s+", "")
      if line ~= "" then
         ids[#ids + 1] = line
      end
   end
   f:close()
   if #ids == 0 then
      error("no ids in " .. ids_file)
   end
   if cookie ~= nil and cookie ~= "" then
      headers["Cookie"] = cookie
   end
   headers["Accept"] = "application/json"
   -- A different sequence per thread.
   math.randomseed(os.time() * 1000 + (thread_no or 0) * 7919)
end

function request()
   local id = ids[math.random(#ids)]
   return wrk.format("GET", path_prefix .. id, headers)
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
         for code, n in pairs(s) do
            merged[code] = (merged[code] or 0) + n
         end
      end
      for code, n in pairs(merged) do
         by_code = by_code .. string.format(" status_%d=%d", code, n)
      end
   end
   -- One machine-readable line for bench/run.sh (which also parses wrk's text).
   io.write(string.format(
      "BENCH requests=%d duration_us=%d socket_errors=%d connect=%d read=%d write=%d timeout=%d non2xx=%d%s\n",
      summary.requests, summary.duration, socket, e.connect, e.read, e.write, e.timeout,
      non2xx_total, by_code))
end
