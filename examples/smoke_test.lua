-- A deployment smoke test written with `klua test` and klua.testkit: after a release, check that
-- the orders service's path through Kafka works end to end (envelope in, worker, audit out,
-- poison to the dead-letter topic) on the real cluster, with fresh topics so it never touches
-- production data.
--   klua -b BROKERS test examples/smoke_test.lua [--tap | --junit smoke.xml]
-- Prints one line per check and "4 passed, 0 failed" (exit 1 on any failure).
local kit = klua.testkit
local envelope = klua.envelope

describe("orders service smoke", function()
  local orders, audit, dlq, worker, worker_task

  setup(function()
    orders = assert(kit.topic("smoke.orders", { partitions = 3 }))
    audit = assert(kit.topic("smoke.audit", { partitions = 1 }))
    dlq = assert(kit.topic("smoke.orders.dlq", { partitions = 1 }))
    local p = klua.producer()
    -- the service under test: a worker that audits every order and rejects negative amounts
    worker = klua.worker{
      group = kit.group("smoke-orders"), topics = { orders }, dead_letter = dlq, quiet = true,
      retry = { max = 1, base_ms = 10 },
      handlers = { [orders] = function(msg)
        local env = assert(envelope.decode(msg))
        if env.payload.amount < 0 then error({ type = "ValidationError", message = "negative amount" }) end
        assert(p:produce{ topic = audit, key = msg.key, value = klua.json.encode{ order = env.payload.orderId,
          status = "accepted" }, headers = { { "x-correlation-id", env.correlation_id } } })
      end },
    }
    worker_task = klua.spawn(function() return worker:run() end)
  end)

  teardown(function()
    worker:stop()
    assert(worker_task:join({ timeout_ms = 30000 }))
  end)

  it("an order envelope round-trips with its tracing headers", function()
    local env = envelope.new{ type = "order.created", source = "smoke", payload = { orderId = "o-1", userId = "u-1", amount = 5 } }
    local got = assert(kit.roundtrip(orders, { envelope.message(env, { key_field = "userId" }) }))
    local back = assert(envelope.decode(got[1]))
    assert_eq({ back.id, back.type, back.payload }, { env.id, "order.created", { orderId = "o-1", userId = "u-1", amount = 5 } })
    assert_match(got[1]:header("traceparent"), "^00%-%x+%-%x+%-01$")
  end)

  it("the worker audits an accepted order", function()
    local env = envelope.new{ type = "order.created", source = "smoke", payload = { orderId = "o-2", userId = "u-2", amount = 12 } }
    assert(kit.produce(orders, { envelope.message(env, { key_field = "userId" }) }))
    local m = assert(kit.expect_message(audit, function(msg) return msg.value:find('"o%-2"') end, { timeout_ms = 20000 }))
    assert_eq(klua.json.decode(m.value), { order = "o-2", status = "accepted" })
    assert_eq(m:header("x-correlation-id"), env.correlation_id)
  end)

  it("a rejected order lands in the dead-letter topic with the reason", function()
    local env = envelope.new{ type = "order.created", source = "smoke", payload = { orderId = "o-3", userId = "u-3", amount = -1 } }
    assert(kit.produce(orders, { envelope.message(env, { key_field = "userId" }) }))
    local m = assert(kit.expect_message(dlq, { key = "u-3" }, { timeout_ms = 20000 }))
    assert_eq({ m:header("x-dead-letter-reason"), m:header("x-exception-type"), m:header("x-original-topic"),
                m:header("x-attempts") }, { "retries-exhausted", "ValidationError", orders, "2" })
    assert_eq(assert(envelope.decode(m)).payload.orderId, "o-3")
  end)

  it("the worker's counters add up", function()
    local c = worker:counters()
    assert_eq({ c.dead_lettered, c.failed }, { 1, 0 })
    assert_true(c.processed >= 2, "processed " .. c.processed)
  end)
end)
