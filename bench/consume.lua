-- klua side of the consume benchmark; the baseline is bench/raw_consume.cpp.
--
--   klua run bench/consume.lua [--count N] [--size S] [--topic NAME]
--   klua -b BROKERS run bench/consume.lua --topic NAME [--count N] [--size S] [--assign P]
--
-- Same job as the raw loop. On the embedded cluster (no broker configured) it
-- creates a 32-partition topic and first fills it with N messages of S bytes
-- (no key, message i to partition i % 32, untimed), since the mock cluster lives
-- only in this process. With a broker configured (-b, KLUA_BROKERS, -X/-F) it
-- reads an existing topic that already holds at least N messages.
-- Then a consumer with klua's default configuration, a fresh group and
-- auto.offset.reset=earliest reads N messages with c:messages(), touching key
-- and value; timed from the first message to the N-th. Prints one line of JSON:
--   {"msgs":N,"seconds":T,"msgs_per_s":R,"bytes":B,"size":S}
-- where B is the sum of key and value lengths of the N messages.
-- With --assign P it assigns partitions 0..P-1 from the beginning instead of
-- subscribing (no group join, as kcat -C, which bench/run compares by wall time).
-- --fetch-queue-backoff-ms MS sets librdkafka's fetch.queue.backoff.ms (default 10, klua's
-- own default); the raw baseline is given the same value, and the JSON line repeats it.
-- --poll-batch B reads with c:poll_batch(B) instead of c:messages() (the JSON line says which).
-- --metrics on: klua.metrics.serve (ephemeral port) before the consumer exists, as `klua run
-- --metrics` does (built-in client metrics registered, statistics every 5 s), and one user
-- counter:inc() plus one histogram:observe() per message in the loop. The JSON line says which;
-- with on, the built-in consumed count is checked against the messages read.

local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { count = "count", size = "count", topic = "string", assign = "count",
                                  ["fetch-queue-backoff-ms"] = "count", ["poll-batch"] = "count",
                                  metrics = { "off", "on" } },
                           { count = 1000000, size = 100, topic = "bench", assign = 0,
                             ["fetch-queue-backoff-ms"] = 10, ["poll-batch"] = 0, metrics = "off" })
local count, size, topic, assign = o.count, o.size, o.topic, o.assign
local PARTITIONS = 32
local IDLE_TIMEOUT_MS = 60000 -- give up when no message arrives for this long
if count < 1 then error("--count must be >= 1", 0) end

local cfg = klua.config()
local embedded = not (cfg["bootstrap.servers"] or cfg["metadata.broker.list"])

if embedded then
  -- The mock cluster keeps only about 5 MiB per partition and drops older batches.
  if count * (size + 20) / PARTITIONS > 4.5 * 1024 * 1024 then
    error("count x size too large for the embedded cluster (about 5 MiB per partition, 32 partitions)", 0)
  end
  klua.embedded.create_topic(topic, PARTITIONS, 1)
  local p = klua.producer()
  local msg = { topic = topic, value = string.rep("x", size), partition = 0 }
  for k = 0, count - 1 do
    msg.partition = k % PARTITIONS
    local ok, err = p:send(msg)
    if not ok then error("fill: send: " .. tostring(err), 0) end
  end
  local ok, err = p:flush{ timeout_ms = 120000 }
  if not ok then error("fill: flush: " .. tostring(err), 0) end
  p:close()
end

local server, handled, handle_seconds
if o.metrics == "on" then
  server = assert(klua.metrics.serve{ port = 0 })
  handled = klua.metrics.counter{ name = "bench_handled_total", help = "Messages handled", labels = { "topic" } }
    :labels(topic)
  handle_seconds = klua.metrics.histogram{ name = "bench_handle_seconds", help = "A latency per message",
                                           labels = { "topic" } }:labels(topic)
end

local c = klua.consumer{
  group = "klua-bench-lua-" .. klua.uuid(),
  topics = assign == 0 and { topic } or nil,
  ["auto.offset.reset"] = "earliest",
  ["fetch.queue.backoff.ms"] = o.fetch_queue_backoff_ms,
}
if assign > 0 then
  local parts = {}
  for p = 0, assign - 1 do parts[#parts + 1] = { topic = topic, partition = p, offset = "beginning" } end
  local ok, err = c:assign(parts)
  if not ok then error("assign: " .. tostring(err), 0) end
end

local now = klua.now
local n, bytes, t0, t1 = 0, 0, nil, nil
local pb = o.poll_batch
if pb > 0 then
  local opts = { timeout_ms = IDLE_TIMEOUT_MS }
  while n < count do
    local batch = assert(c:poll_batch(math.min(pb, count - n), opts))
    if #batch == 0 then break end
    if n == 0 then t0 = now() end
    for i = 1, #batch do
      local msg = batch[i]
      bytes = bytes + #msg.value + (msg.key and #msg.key or 0)
    end
    n = n + #batch
  end
  t1 = now()
elseif handled then
  for msg in c:messages{ timeout_ms = IDLE_TIMEOUT_MS } do
    if n == 0 then t0 = now() end
    n = n + 1
    bytes = bytes + #msg.value + (msg.key and #msg.key or 0)
    handled:inc()
    handle_seconds:observe((n % 64) * 1e-4)  -- 0 to 6.3 ms: the first buckets, a search of a few steps
    if n == count then t1 = now(); break end
  end
else
  for msg in c:messages{ timeout_ms = IDLE_TIMEOUT_MS } do
    if n == 0 then t0 = now() end
    n = n + 1
    bytes = bytes + #msg.value + (msg.key and #msg.key or 0)
    if n == count then t1 = now(); break end
  end
end
if n < count then
  error(("no message for %d s after %d of %d"):format(IDLE_TIMEOUT_MS / 1000, n, count), 0)
end

local secs = (t1 - t0) / 1000
print(('{"msgs":%d,"seconds":%.6f,"msgs_per_s":%.1f,"bytes":%d,"size":%d,"fetch_queue_backoff_ms":%d%s,"metrics":"%s"}'):format(
  n, secs, secs > 0 and n / secs or 0, bytes, size, o.fetch_queue_backoff_ms,
  pb > 0 and (',"poll_batch":%d'):format(pb) or "", o.metrics))
io.stdout:flush()
if server then
  -- The built-in count is exact: the messages handed to this loop.
  local text = klua.metrics.expose()
  local got = 0
  for v in text:gmatch('klua_consumer_messages_total{client="' .. tostring(c):match("([^%s(),]+#consumer%-%d+)"):gsub("%p", "%%%0")
                      .. '",[^}]*} (%d+)') do
    got = got + tonumber(v)
  end
  if got ~= n then error(("klua_consumer_messages_total says %d, the loop read %d"):format(got, n), 0) end
  server:close()
end
c:close()
