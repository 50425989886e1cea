-- The producer against faults and bad input (issue 17): persisted status of failed deliveries,
-- header names with NUL bytes, argument ranges. Embedded cluster.
local name = klua.testkit.fresh

-- librdkafka's rd_kafka_message_status, on every failed delivery: "not_persisted" means the broker
-- never got the message (safe to send again).
test("a delivery that fails before reaching a broker says not_persisted (error and report)", function()
  local t = name("persist")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer{ ["message.timeout.ms"] = 500 }
  -- A partition that does not exist: refused locally.
  local r, err = p:produce{ topic = t, partition = 7, value = "x" }
  assert_nil(r)
  assert_eq(err.name, "_UNKNOWN_PARTITION")
  assert_eq(err.persisted, "not_persisted")
  -- Every broker down: the message times out in the queue, never sent.
  for id = 1, 3 do klua.embedded.broker_down(id) end
  local seen = {}
  local ok, res = pcall(function()
    p:send{ topic = t, value = "y", on_delivery = function(rep, e) seen[#seen + 1] = { rep = rep, err = e } end }
    return p:produce_batch{ { topic = t, value = "z" } }
  end)
  for id = 1, 3 do klua.embedded.broker_up(id) end
  assert_true(ok, tostring(res))
  p:flush()
  assert_eq(#seen, 1)
  assert_eq(seen[1].err.name, "_MSG_TIMED_OUT")
  assert_eq(seen[1].err.persisted, "not_persisted")
  assert_eq(seen[1].rep.persisted, "not_persisted")
  assert_eq(res[1].error.name, "_MSG_TIMED_OUT")
  assert_eq(res[1].persisted, "not_persisted")
  assert_eq(res[1].error.persisted, "not_persisted")
  -- A delivered message's report has no persisted field: delivered means persisted.
  p:close()
  local p2 = klua.producer()
  local rep = assert(p2:produce{ topic = t, value = "ok" })
  assert_nil(rep.persisted)
  p2:close()
end, { timeout_ms = 30000 })
