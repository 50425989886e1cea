-- A worker served by `klua run --metrics` for tests/metrics/prometheus_worker_test.py and
-- dashboard_test.py: creates TOPIC (3 partitions), prints "ready BOOTSTRAP" on stdout, and handles
-- what others produce until SIGTERM. A handler takes DELAY_MS (so that the lag, which counts what
-- the worker has not polled yet, stays above 0 for a few scrapes: max_queued holds polling back).
-- With TRAFFIC=1 (the dashboard) it also produces, commits and aborts a transaction, and fails a
-- delivery, so that every built-in family has series.
local topic, group, delay_ms = ...
delay_ms = tonumber(delay_ms) or 0
local bootstrap = klua.config()["bootstrap.servers"] or klua.embedded.bootstrap()
local res = assert(klua.admin():create_topics({ { name = topic, partitions = 3 } }, { if_not_exists = true }))
assert(res[1].error == nil, tostring(res[1].error))

local keep = {}  -- the traffic's clients stay open (a closed client's series go with it)
if os.getenv("TRAFFIC") == "1" then
  local out = topic .. "-out"
  local p = klua.producer{ ["client.id"] = "traffic-producer" }
  for i = 1, 20 do assert(p:produce{ topic = out, key = "k" .. i, value = ("v"):rep(i) }) end
  local tx = klua.producer{ ["client.id"] = "traffic-tx", ["transactional.id"] = "tx-" .. topic }
  assert(tx:init_transactions())
  for _, commit in ipairs{ true, false } do
    assert(tx:begin())
    assert(tx:produce{ topic = out, value = "in a transaction" })
    if commit then assert(tx:commit()) else assert(tx:abort()) end
  end
  -- A delivery that fails: a message larger than the topic accepts is refused by the broker
  -- (MSG_SIZE_TOO_LARGE in the report), or times out on a topic whose leader is down.
  local small = klua.producer{ ["client.id"] = "traffic-failing", ["message.timeout.ms"] = 300 }
  klua.embedded.broker_down(1); klua.embedded.broker_down(2); klua.embedded.broker_down(3)
  local r, err = small:produce{ topic = out .. "-nowhere", value = "lost" }
  assert(r == nil and err, "the delivery should have failed")
  klua.embedded.broker_up(1); klua.embedded.broker_up(2); klua.embedded.broker_up(3)
  keep = { p, tx, small }
end

print("ready " .. bootstrap) io.stdout:flush()
local w = klua.worker{ group = group, topics = { topic }, quiet = true, max_queued = 5,
  handlers = function() if delay_ms > 0 then klua.sleep(delay_ms) end end }
assert(w:run())
for _, c in ipairs(keep) do c:close() end
