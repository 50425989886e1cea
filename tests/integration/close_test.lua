-- Closing clients in the situations where librdkafka 2.0.x could hang in rd_kafka_destroy (a
-- consumer whose partitions were lost or whose topic was deleted; fixed in 2.1.0). klua destroys
-- handles on the loop's worker pool and waits for them (bindings/kafka_handle.cpp), with no time-out
-- and no abandoned handle: these tests show that the close finishes, and quickly.
local tk = klua.testkit
local admin = klua.admin()

-- The close must come back well within the consumer's group timings (6 s sessions on the broker).
local CLOSE_BOUND_MS = 8000

local function closes_quickly(c, what)
  local t0 = klua.now()
  assert_eq(c:close(), true)
  local took = klua.now() - t0
  assert_true(took < CLOSE_BOUND_MS, what .. ": close took " .. math.floor(took) .. " ms")
end

local function produce(topic, n, partitions)
  local msgs = {}
  for i = 1, n do msgs[i] = { value = "v" .. i, partition = (i - 1) % partitions } end
  assert(tk.produce(topic, msgs))
end

test("a subscribed consumer closes promptly after its topic was deleted", function()
  local topic = assert(tk.topic("close-deleted", { partitions = 3 }))
  produce(topic, 30, 3)
  local c = klua.consumer{ group = tk.group("close-g"), topics = { topic }, ["auto.offset.reset"] = "earliest",
                           on_error = function() end, on_log = function() end }
  assert_eq(#tk.poll_n(c, 30, 30000), 30)
  local res = assert(admin:delete_topics{ topic })
  assert_eq(res[1].error, nil)
  -- Let the consumer meet the deletion (fetch errors, a metadata refresh) before it closes.
  c:poll(2000)
  closes_quickly(c, "after topic deletion")
end, { timeout_ms = 60000 })

test("an assigned consumer closes promptly after its topic was deleted mid-fetch", function()
  local topic = assert(tk.topic("close-assigned", { partitions = 2 }))
  produce(topic, 20, 2)
  local c = klua.consumer{ group = tk.group("close-a"), ["enable.auto.commit"] = false,
                           on_error = function() end, on_log = function() end }
  assert(c:assign{ { topic = topic, partition = 0, offset = "beginning" },
                   { topic = topic, partition = 1, offset = "beginning" } })
  assert_eq(#tk.poll_n(c, 20, 30000), 20)
  assert_eq(assert(admin:delete_topics{ topic })[1].error, nil)
  c:poll(2000)
  closes_quickly(c, "assigned, topic deleted")
end, { timeout_ms = 60000 })

test("a consumer closes promptly while a rebalance moves its partitions to another member", function()
  local topic = assert(tk.topic("close-rebalance", { partitions = 4 }))
  produce(topic, 40, 4)
  local group = tk.group("close-r")
  local conf = { group = group, topics = { topic }, ["auto.offset.reset"] = "earliest" }
  local first = klua.consumer(conf)
  assert_true(#tk.poll_n(first, 1, 30000) >= 1)
  local second = klua.consumer(conf)
  -- The second member's join starts a rebalance; close the first in the middle of it.
  second:poll(500)
  closes_quickly(first, "during a rebalance")
  closes_quickly(second, "after the other member left")
end, { timeout_ms = 90000 })
