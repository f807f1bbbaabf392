-- wrk script: GET /api/v1/families/{id} for every seeded id in turn, to fill
-- the caches before a steady-state measurement (bench/cache.sh, PREWARM=1).
--
--   wrk -t1 -c8 -d20s -s bench/sweep_family.lua URL -- IDS_FILE COOKIE
--
-- Each connection's requests walk the id list from its own offset; after the
-- last id the walk starts again, so a run long enough visits every id.

local ids = {}
local n = 0
local i = 0
local headers = {}

function init(args)
   local ids_file = args[1]
   local cookie = args[2]
   if ids_file == nil then
      error("usage: wrk ... -s sweep_family.lua URL -- IDS_FILE [COOKIE]")
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
   if cookie ~= nil and cookie ~= "" then
      headers["Cookie"] = cookie
   end
   headers["Accept"] = "application/json"
end

function request()
   i = i + 1
   return wrk.format("GET", "/api/v1/families/" .. ids[((i - 1) % n) + 1], headers)
end
