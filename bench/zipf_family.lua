-- wrk script: GET /api/v1/families/{id}, ids drawn from a Zipf distribution.
--
--   wrk -t1 -c32 -d15s --latency -s bench/zipf_family.lua URL -- IDS_FILE COOKIE [SEED] [S]
--
-- IDS_FILE: family ids, one per line (written by bench/seed.py). The line
--           number is the rank: line k is asked for with probability
--           proportional to 1/k^S, so the file order is the (deterministic)
--           shuffle of which id is popular.
-- COOKIE:   the value for the Cookie header ("coop_session=TOKEN"), or "".
-- SEED:     random seed (default 1); give each concurrent wrk its own.
-- S:        the Zipf exponent (default 1.0).
--
-- The CDF is built once per wrk thread in init (bench/cache.sh runs one thread
-- per wrk); each request draws u in [0,1) and binary-searches the CDF (about 17
-- steps for 100,000 ids). A formatted request is kept per rank once built, so
-- the popular ranks cost no string work.
--
-- Prints one machine-readable line at the end for bench/cache.sh:
--   BENCH requests=.. duration_us=.. socket_errors=.. connect=.. read=.. write=..
--         timeout=.. non2xx=.. distinct_ranks=.. rank1=.. p999_us=.. max_us=..
-- (non2xx is wrk's count of responses with status >= 400, the figure of its
-- "Non-2xx or 3xx responses" line; distinct_ranks and rank1 count the requests
-- made, so the sampler can be checked: rank 1 should get 1/H(N,S) of them.)

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("thread_no", counter)
   table.insert(threads, thread)
end

local ids = {}
local cdf = {}
local reqs = {}
local n = 0
local headers = {}
local path_prefix = "/api/v1/families/"

-- Globals, read by done() through thread:get.
distinct = 0
rank1 = 0

function init(args)
   local ids_file = args[1]
   local cookie = args[2]
   local seed = tonumber(args[3] or "1") or 1
   local s = tonumber(args[4] or "1.0") or 1.0
   if ids_file == nil then
      error("usage: wrk ... -s zipf_family.lua URL -- IDS_FILE [COOKIE] [SEED] [S]")
   end
   local f = assert(io.open(ids_file, "r"))
   for line in f:lines() do
      line = line:gsub("%s+", "")
      if line ~= "" then
         n = n + 1
         ids[n] = line
      end
   end
   f:close()
   if n == 0 then
      error("no ids in " .. ids_file)
   end
   -- cdf[k] = sum_{j<=k} j^-s / sum_{j<=n} j^-s
   local sum = 0
   for k = 1, n do
      sum = sum + k ^ (-s)
      cdf[k] = sum
   end
   for k = 1, n do
      cdf[k] = cdf[k] / sum
   end
   cdf[n] = 1.0
   if cookie ~= nil and cookie ~= "" then
      headers["Cookie"] = cookie
   end
   headers["Accept"] = "application/json"
   math.randomseed(seed * 7919 + (thread_no or 0))
end

-- The smallest rank k with cdf[k] >= u.
local function sample()
   local u = math.random()
   local lo, hi = 1, n
   while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] < u then
         lo = mid + 1
      else
         hi = mid
      end
   end
   return lo
end

function request()
   local k = sample()
   if k == 1 then
      rank1 = rank1 + 1
   end
   local r = reqs[k]
   if r == nil then
      r = wrk.format("GET", path_prefix .. ids[k], headers)
      reqs[k] = r
      distinct = distinct + 1
   end
   return r
end

function done(summary, latency, requests)
   local e = summary.errors
   local socket = e.connect + e.read + e.write + e.timeout
   local d, r1 = 0, 0
   for _, t in ipairs(threads) do
      d = d + (t:get("distinct") or 0)
      r1 = r1 + (t:get("rank1") or 0)
   end
   io.write(string.format(
      "BENCH requests=%d duration_us=%d socket_errors=%d connect=%d read=%d write=%d timeout=%d non2xx=%d distinct_ranks=%d rank1=%d p999_us=%d max_us=%d\n",
      summary.requests, summary.duration, socket, e.connect, e.read, e.write, e.timeout,
      e.status, d, r1, latency:percentile(99.9), latency.max))
end
