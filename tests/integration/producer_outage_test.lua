-- A broker outage loses nothing (issue 16): with every broker down the producer purges nothing;
-- the script hears _ALL_BROKERS_DOWN at once (on_error) and a message fails only at
-- message.timeout.ms, librdkafka's own rule. Until issue 16 klua purged the queue 5 s into an
-- outage: a broker killed and restarted in 16 s lost 61,000 of 100,000 sends.
--
-- The outage is real: a broker of this test's own (its state next to the shared one's, so the
-- shared broker other tests run against is never touched) is stopped with `tools/kafka-broker
-- stop --keep`, 10,000 messages are sent into the outage, and `tools/kafka-broker start` brings
-- the same broker back at the same address. kcat, not klua, counts what arrived.
local sh, quote = klua.testkit.sh, klua.testkit.quote
local STATE = assert(os.getenv("KLUA_BROKER_STATE"), "KLUA_BROKER_STATE is not set") .. "-outage"
local N = 10000
local TIMEOUT_MS = 30000  -- seed 001's MessageTimeoutMs

local function broker(args)
  local out, status = sh("KLUA_BROKER_STATE=" .. quote(STATE) .. " tools/kafka-broker " .. args .. " 2>&1")
  assert(status == 0, "tools/kafka-broker " .. args .. " failed (" .. tostring(status) .. "):\n" .. out)
  return out
end

test("a broker down for longer than 5 s: all 10,000 messages sent into the outage are delivered, none failed",
  function()
  local ok, err = pcall(function()
    local addr = broker("start"):match("(127%.0%.0%.1:%d+)%s*$")
    assert_not_nil(addr, "no address from tools/kafka-broker start")
    local topic = klua.testkit.fresh("outage")
    local a = klua.admin{ brokers = addr }
    assert_eq(assert(a:create_topics{ { name = topic, partitions = 3 } })[1].error, nil)
    a:close()

    local down_at, delivered, failed, first_failure = nil, 0, 0, nil
    local down_heard = klua.spawn(function() klua.sleep(60000) end)
    local p = klua.producer{
      brokers = addr, ["message.timeout.ms"] = TIMEOUT_MS, ["linger.ms"] = 5,
      on_log = function() end,
      on_error = function(e)
        if e.name == "_ALL_BROKERS_DOWN" and not down_at then
          down_at = klua.now()
          down_heard:cancel()
        end
      end,
      on_delivery = function(report, e)
        if e then
          failed = failed + 1
          first_failure = first_failure or e
        else
          delivered = delivered + 1
        end
      end,
    }
    -- A first message, so the producer has its id and the topic's metadata before the outage.
    assert(p:produce{ topic = topic, value = "before" })

    local stopped_at = klua.now()
    broker("stop --keep")
    pcall(down_heard.join, down_heard)
    assert_not_nil(down_at, "on_error never heard _ALL_BROKERS_DOWN")
    -- "At once": within librdkafka's reconnect round of the stop (which itself takes seconds).
    assert_true(down_at - stopped_at < 15000, string.format("_ALL_BROKERS_DOWN came %.0f ms after the stop",
      down_at - stopped_at))

    local sent_at = klua.now()
    for i = 1, N do assert(p:send{ topic = topic, key = tostring(i % 100), value = "m" .. i }) end
    -- Keep the broker down past the old 5 s purge, then bring it back: the messages must still
    -- be waiting, neither purged nor failed.
    klua.sleep(math.max(0, 6000 - (klua.now() - down_at)))
    assert_eq(failed, 0, "a message failed during the outage: " .. tostring(first_failure))
    assert_eq(p:outq_len(), N, "messages left the queue while every broker was down")
    broker("start")
    local restarted_after = klua.now() - sent_at
    assert_true(restarted_after < TIMEOUT_MS - 5000,
      string.format("the broker took %.0f ms to come back: too close to message.timeout.ms", restarted_after))

    assert(p:flush{ timeout_ms = TIMEOUT_MS + 10000 })
    print(string.format("outage: _ALL_BROKERS_DOWN %.0f ms after the stop began; the broker was back %.0f ms after "
      .. "the %d sends; every delivery confirmed %.0f ms after them", down_at - stopped_at, restarted_after, N,
      klua.now() - sent_at))
    assert_eq(failed, 0, "failed deliveries; first: " .. tostring(first_failure))
    assert_eq(delivered, N)  -- the first message went through p:produce, not on_delivery
    p:close()

    -- kcat reads the topic back: each value once, none missing.
    local out, status = sh("kcat -b " .. quote(addr) .. " -C -t " .. quote(topic) .. " -e -q -f '%s\\n'")
    assert_eq(status, 0, out)
    local seen, count = {}, 0
    for v in out:gmatch("([^\n]*)\n") do
      if v ~= "before" then
        assert_nil(seen[v], "duplicate value " .. v)
        seen[v] = true
        count = count + 1
      end
    end
    assert_eq(count, N)
    for i = 1, N do assert_true(seen["m" .. i], "m" .. i .. " is missing") end
  end)
  broker("stop")  -- always: the test's own broker, data dir and all
  if not ok then error(err, 0) end
end, { timeout_ms = 240000 })
