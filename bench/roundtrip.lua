-- klua side of the round-trip latency benchmark; the baseline is bench/raw_roundtrip.cpp.
--
--   klua -b BROKERS run bench/roundtrip.lua --topic T --partitions P [--rate 10000]
--        [--seconds 5] [--warmup-seconds 1] [--size 100] [--fetch-wait-ms N]
--
-- One process produces at a fixed rate (messages due every millisecond are sent
-- together, as the raw program does) and consumes the same topic (partitions
-- 0..P-1 assigned at their end, no group join). Each value starts with its send
-- time (klua.now(), monotonic ms); latency is receive time minus send time.
-- Messages sent during the warm-up are not counted (nor required: the first
-- ones may precede the consumer's end offsets). Producer and consumer use
-- klua's default configuration, plus fetch.wait.max.ms when --fetch-wait-ms is
-- given (the mock cluster answers a fetch only after that wait, 500 ms by
-- default, which would hide everything else). Prints one line of JSON:
--   {"sent":N,"received":N,"measured":M,"rate":R,"p50_ms":..,"p99_ms":..,"p999_ms":..,"max_ms":..}

local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { topic = "string", partitions = "positive", rate = "number", seconds = "number",
                                  ["warmup-seconds"] = "number", size = "count", ["fetch-wait-ms"] = "count" },
                           { rate = 10000, seconds = 5, ["warmup-seconds"] = 1, size = 100 })
local topic, partitions, rate, seconds, warmup, size, fetch_wait =
  o.topic, o.partitions, o.rate, o.seconds, o.warmup_seconds, o.size, o.fetch_wait_ms
if not topic or not partitions then error("--topic and --partitions are required", 0) end
if size < 20 then error("--size must be >= 20 (the value carries a timestamp)", 0) end

local now = klua.now
local total = math.floor((warmup + seconds) * rate)
local warm_count = math.floor(warmup * rate)
local pad = string.rep("x", size - 20)

local c = klua.consumer{ group = "klua-bench-rt-" .. klua.uuid(), ["fetch.wait.max.ms"] = fetch_wait }
local parts = {}
for p = 0, partitions - 1 do parts[#parts + 1] = { topic = topic, partition = p, offset = "end" } end
assert(c:assign(parts))
local p = klua.producer()

local lat, received = {}, 0
local consumer = klua.spawn(function()
  for msg in c:messages{ timeout_ms = 30000 } do
    local t = now()
    local seq = tonumber(msg.value:sub(1, 9))
    if seq and seq >= warm_count then
      local d = t % 1e7 - tonumber(msg.value:sub(10, 20))
      lat[#lat + 1] = d < 0 and d + 1e7 or d -- the stamp is now() modulo 1e7 ms (it fits 11 characters)
    end
    received = received + 1
    if #lat == total - warm_count then break end
  end
end)

-- Give the consumer's fetchers a moment to start at the end offsets.
klua.sleep(500)
local sent, t0 = 0, now()
while sent < total do
  local due = math.min(total, math.floor((now() - t0) * rate / 1000) + 1)
  while sent < due do
    local ok, err = p:send{ topic = topic, partition = sent % partitions,
                            value = ("%09d%011.3f"):format(sent, now() % 1e7) .. pad }
    if not ok then error("send: " .. tostring(err), 0) end
    sent = sent + 1
  end
  klua.sleep(1)
end
assert(p:flush{ timeout_ms = 30000 })
local ok, err = consumer:join({ timeout_ms = 60000 })
if not ok and err then error(err, 0) end
if #lat < total - warm_count then
  error(("received %d of the %d measured messages"):format(#lat, total - warm_count), 0)
end

table.sort(lat)
local function pct(q) return lat[math.max(1, math.ceil(q * #lat))] end
print(('{"sent":%d,"received":%d,"measured":%d,"rate":%d,"p50_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f}')
  :format(sent, received, #lat, rate, pct(0.5), pct(0.99), pct(0.999), lat[#lat]))
io.stdout:flush()
c:close()
p:close()
