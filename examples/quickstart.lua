-- klua quickstart: produce a few keyed events with headers, read them back.
--   klua run examples/quickstart.lua            (embedded cluster, no Kafka needed)
--   klua -b localhost:9092 run examples/quickstart.lua
local topic = "quickstart-" .. klua.uuid():sub(1, 8)
local users = { "alice", "bob", "carol" }

local p = klua.producer()
for i, user in ipairs(users) do
  local report, err = p:produce{
    topic = topic,
    key = user,  -- same key, same partition: per-user order is kept
    value = klua.json.encode{ event = "signed_up", user = user, n = i },
    headers = { { "x-correlation-id", klua.uuid() }, { "event-type", "signed_up" } },
  }
  assert(report, err)
  print(string.format("produced  %s [%d] @%d  key=%s", report.topic, report.partition, report.offset, user))
end

local c = klua.consumer{
  group = "quickstart-" .. klua.uuid():sub(1, 8),
  topics = { topic },
  ["auto.offset.reset"] = "earliest",
}
local seen = 0
while seen < #users do
  local msg, err = c:poll(10000)
  assert(not err, err)
  assert(msg, "no message within 10 s")
  seen = seen + 1
  print(string.format("consumed  %s [%d] @%d  key=%s value=%s type=%s", msg.topic, msg.partition, msg.offset,
    msg.key, msg.value, msg:header("event-type")))
  c:commit(msg)
end
c:close()
print(string.format("ok: %d events round-tripped through %s", seen, topic))
