-- klua side of the produce benchmark; the baseline is bench/raw_produce.cpp.
--
--   klua run bench/produce.lua [--count N] [--size S] [--warmup W] [--topic NAME] [--metrics off|on]
--
-- Same job as the raw loop: a 32-partition topic on klua's embedded mock
-- cluster, a producer with klua's default configuration, a warm-up of W
-- messages (flushed, not timed), then N messages of S bytes timed from just
-- before the first send until the last delivery report has been seen.
-- With a broker configured (-b, KLUA_BROKERS, -X/-F: bench/run's shared mock
-- cluster or a real broker) it produces to an existing topic instead.
-- --metrics on: what a service that exposes metrics pays per message. klua.metrics.serve (on an
-- ephemeral port) runs before the producer exists, as `klua run --metrics` does: built-in client
-- metrics registered, statistics every 5 s; and the send loop adds one user counter:inc() and one
-- histogram:observe() per message. (The built-in counters themselves are always on.)
-- Prints one line of JSON:
--   {"msgs":N,"bytes":S,"seconds":T,"msgs_per_s":R,"delivered":D,"errors":E,"metrics":"off"|"on"}

local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { count = "count", size = "count", warmup = "count", topic = "string",
                                  metrics = { "off", "on" } },
                           { count = 1000000, size = 100, warmup = 10000, topic = "bench", metrics = "off" })
local count, size, warmup, topic = o.count, o.size, o.warmup, o.topic

local server, sent, send_seconds
if o.metrics == "on" then
  server = assert(klua.metrics.serve{ port = 0 })
  sent = klua.metrics.counter{ name = "bench_sent_total", help = "Messages sent", labels = { "topic" } }:labels(topic)
  send_seconds = klua.metrics.histogram{ name = "bench_send_seconds", help = "A latency per message",
                                         labels = { "topic" } }:labels(topic)
end

local cfg = klua.config()
if not (cfg["bootstrap.servers"] or cfg["metadata.broker.list"]) then
  klua.embedded.create_topic(topic, 32, 1)
end

local delivered, errors, first_error = 0, 0, nil
local target, t_last = -1, nil -- reports count that ends the timed phase, and when it was reached

local p = klua.producer{
  on_delivery = function(report, err)
    if err == nil then
      delivered = delivered + 1
    else
      errors = errors + 1
      if first_error == nil then first_error = tostring(err) end
    end
    if delivered + errors == target then t_last = klua.now() end
  end,
}

local payload = string.rep("x", size)

-- Sends n messages and waits for all their delivery reports. Returns seconds
-- from just before the first send until the last report was handled.
local function batch(n)
  local base = delivered + errors
  target = base + n
  t_last = nil
  local msg = { topic = topic, value = payload }
  local t0 = klua.now()
  if sent then
    for i = 1, n do
      local _, err = p:send(msg)
      if err ~= nil then error("send: " .. tostring(err), 0) end
      sent:inc()
      send_seconds:observe((i % 64) * 1e-4)  -- 0 to 6.3 ms: the first buckets, a search of a few steps
    end
  else
    for _ = 1, n do
      local _, err = p:send(msg)
      if err ~= nil then error("send: " .. tostring(err), 0) end
    end
  end
  local ok, err = p:flush{ timeout_ms = 60000 }
  if not ok then error("flush: " .. tostring(err), 0) end
  -- flush() returns once librdkafka has nothing outstanding; in case the last
  -- callbacks are still queued for the loop, give them a moment.
  local deadline = klua.now() + 10000
  while delivered + errors < target and klua.now() < deadline do klua.sleep(1) end
  if delivered + errors < target then
    error(("only %d of %d delivery reports arrived"):format(delivered + errors - base, n), 0)
  end
  return ((t_last or klua.now()) - t0) / 1000
end

if warmup > 0 then
  batch(warmup)
  if errors > 0 then error("warm-up delivery failed: " .. tostring(first_error), 0) end
end
local d0, e0 = delivered, errors

local secs = batch(count)

local d, e = delivered - d0, errors - e0
print(('{"msgs":%d,"bytes":%d,"seconds":%.6f,"msgs_per_s":%.1f,"delivered":%d,"errors":%d,"metrics":"%s"}'):format(
  count, size, secs, secs > 0 and count / secs or 0, d, e, o.metrics))
io.stdout:flush()
if server then
  -- The counts are exact: the built-in counter equals what was delivered (warm-up included).
  local want = ('klua_producer_messages_total{client="%s",client_id="rdkafka",topic="%s"} %d')
    :format(tostring(p):match("%((.-)%)"), topic, warmup + count)
  if not klua.metrics.expose():find(want, 1, true) then error("the exposition lacks " .. want, 0) end
  server:close()
end
p:close()
if e > 0 then
  io.stderr:write("produce.lua: first delivery error: ", tostring(first_error), "\n")
  os.exit(1)
end
