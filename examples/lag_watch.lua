-- Watch a consumer group's lag: an aligned table every few seconds, with consume and produce rates.
--   klua run examples/lag_watch.lua GROUP [INTERVAL_MS] [ROUNDS]
-- With no GROUP, it makes a demo: a producer and a slow consumer on the embedded cluster.
local group, interval, rounds = arg[1] ~= "" and arg[1] or nil, tonumber(arg[2] or "") or 2000, tonumber(arg[3] or "") or 5

local topics  -- the demo names its topic: its new group has committed nothing at first
if not group then
  group = "lag-demo-" .. klua.uuid():sub(1, 6)
  local topic = group
  topics = { topic }
  assert(klua.admin():create_topics({ { name = topic, partitions = 2 } }))
  local p = klua.producer()
  klua.spawn(function()
    for i = 1, 1e9 do p:send{ topic = topic, value = tostring(i) }; klua.sleep(2) end
  end)
  klua.spawn(function()
    local c = klua.consumer{ group = group, topics = { topic }, ["auto.offset.reset"] = "earliest" }
    for msg in c:messages() do c:store(msg); klua.sleep(4) end
  end)
end

local n = 0
klua.lag.watch(group, { interval = interval, topics = topics }, function(snap, rates)
  n = n + 1
  if not snap then  -- (snap, rates) is (nil, err) when a snapshot failed: a group not found yet, a timeout
    print(string.format("%s  group %s: %s", os.date("%H:%M:%S"), group, tostring(rates)))
    return n < rounds
  end
  print(string.format("%s  group %s  lag %d  consumed %.0f/s  produced %.0f/s", os.date("%H:%M:%S"), group,
    snap.lag, rates and rates.consumed_per_s or 0, rates and rates.produced_per_s or 0))
  print(string.format("  %-24s %9s %10s %10s %8s", "TOPIC", "PARTITION", "COMMITTED", "HIGH", "LAG"))
  for _, p in ipairs(snap.partitions) do
    print(string.format("  %-24s %9d %10s %10d %8d", p.topic, p.partition, tostring(p.committed or "-"), p.high, p.lag))
  end
  return n < rounds
end)
print(string.format("watched %d snapshots of group %s", n, group))
klua.exit(0)
