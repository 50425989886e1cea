-- klua side of bench/http's client benchmark (Python: bench/http_aiohttp_client.py).
--
--   klua run bench/http_client.lua --url URL [--requests 10000] [--concurrency 100]
--                                  [--warmup N] [--expect-size BYTES]
--
-- `concurrency` tasks each take the next request number and klua.http.get the URL until
-- `requests` GETs are done (so `concurrency` are in flight). A warm-up of `concurrency` GETs
-- (untimed) opens the connections; the timed phase runs from just before the first GET to the
-- last response. Every response must be 200 with a body of --expect-size bytes (when given).
-- Prints one line of JSON (cpu_s: the process's CPU time over the timed phase, os.clock):
--   {"requests":N,"seconds":T,"rps":R,"cpu_s":C,"errors":E,"bytes":B,"p50_ms":..,"p99_ms":..}

local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg,
  { url = "string", requests = "positive", concurrency = "positive", warmup = "count", ["expect-size"] = "count" },
  { requests = 10000, concurrency = 100 })
assert(o.url, "--url is required")
local warmup = o.warmup or o.concurrency

local function batch(n, lat)
  local next_i, errors, bytes, first_error = 0, 0, 0, nil
  local function worker()
    while next_i < n do
      next_i = next_i + 1
      local t0 = klua.now()
      local res, err = klua.http.get(o.url)
      if lat then lat[#lat + 1] = klua.now() - t0 end
      if res then
        bytes = bytes + #res.body
        if res.status ~= 200 or (o.expect_size and #res.body ~= o.expect_size) then
          errors = errors + 1
          first_error = first_error or ("status " .. res.status .. ", " .. #res.body .. " bytes")
        end
      else
        errors = errors + 1
        first_error = first_error or tostring(err and err.message or err)
      end
    end
  end
  local tasks = {}
  for i = 1, math.min(o.concurrency, n) do tasks[i] = klua.spawn(worker) end
  for _, t in ipairs(tasks) do t:join() end
  return errors, bytes, first_error
end

if warmup > 0 then batch(warmup) end
local lat = {}
local t0, c0 = klua.now(), os.clock()
local errors, bytes, first_error = batch(o.requests, lat)
local secs, cpu = (klua.now() - t0) / 1000, os.clock() - c0
table.sort(lat)
local function pick(q)
  if #lat == 0 then return nil end
  return lat[math.max(1, math.min(#lat, math.ceil(q * #lat)))]
end
print(klua.json.encode{
  requests = #lat, seconds = secs, rps = #lat / secs, cpu_s = cpu, errors = errors, bytes = bytes,
  p50_ms = pick(0.50), p99_ms = pick(0.99), first_error = first_error,
})
