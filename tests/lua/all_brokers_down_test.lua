-- With every bootstrap broker unreachable, each client's on_error hook hears _ALL_BROKERS_DOWN
-- within 2 s. librdkafka 2.12's CMake build never raised it (HAVE_ATOMICS_32_ATOMIC undefined;
-- fixed in 2.15.0); klua's own build of 2.15 must, or scripts hear of a dead cluster only at the
-- message timeout. A producer purges nothing for an outage (issue 16; it used to purge its queue
-- 5 s in): its messages wait for the brokers and fail only at message.timeout.ms, librdkafka's own
-- rule (tests/integration/producer_outage_test.lua: a real broker stopped and started again).

-- Port 1 on loopback: nothing listens there, so every connect is refused at once.
local NOWHERE = "127.0.0.1:1"

-- Yields until on_error receives _ALL_BROKERS_DOWN or 2 s pass; returns the milliseconds it took.
local function heard_within_2s(make_client)
  local waiter = klua.spawn(function() klua.sleep(2000) end)
  local heard_at
  local t0 = klua.now()
  local client = make_client(function(err)
    if err.name == "_ALL_BROKERS_DOWN" and not heard_at then
      heard_at = klua.now() - t0
      waiter:cancel()
    end
  end)
  waiter:join()
  client:close()
  assert_true(heard_at ~= nil, "no _ALL_BROKERS_DOWN within 2 s")
  return heard_at
end

test("a producer hears _ALL_BROKERS_DOWN within 2 s", function()
  heard_within_2s(function(on_error)
    local p = klua.producer{ brokers = NOWHERE, on_error = on_error, on_log = function() end }
    return p
  end)
end, { timeout_ms = 20000 })

test("a consumer hears _ALL_BROKERS_DOWN within 2 s", function()
  heard_within_2s(function(on_error)
    return klua.consumer{ brokers = NOWHERE, group = "nowhere", topics = { "nowhere" },
                          on_error = on_error, on_log = function() end }
  end)
end, { timeout_ms = 20000 })

test("an admin client hears _ALL_BROKERS_DOWN within 2 s", function()
  heard_within_2s(function(on_error)
    return klua.admin{ brokers = NOWHERE, on_error = on_error, on_log = function() end }
  end)
end, { timeout_ms = 20000 })

test("a producer purges nothing when all brokers are down: its messages fail at message.timeout.ms", function()
  local TIMEOUT = 8000
  local failures, delivered, down_at = {}, 0, nil
  local heard = klua.spawn(function() klua.sleep(5000) end)
  local p = klua.producer{ brokers = NOWHERE, ["message.timeout.ms"] = TIMEOUT, on_log = function() end,
    on_error = function(err)
      if err.name == "_ALL_BROKERS_DOWN" and not down_at then down_at = klua.now(); heard:cancel() end
    end,
    on_delivery = function(_, err)
      if err then failures[#failures + 1] = { err = err, at = klua.now() } else delivered = delivered + 1 end
    end }
  local sent_at = klua.now()
  for i = 1, 100 do assert(p:send{ topic = "nowhere", value = "m" .. i }) end
  pcall(heard.join, heard)
  assert_true(down_at ~= nil and down_at - sent_at < 2000, "no _ALL_BROKERS_DOWN within 2 s")
  -- 6 s into the outage (the old rule purged at 5 s) every message is still queued.
  klua.sleep(6000 - (klua.now() - down_at))
  assert_eq(#failures, 0)
  assert_eq(p:outq_len(), 100)
  assert_true(klua.now() - sent_at < TIMEOUT - 500, "the machine is too slow for this test's timing")
  assert(p:flush{ timeout_ms = TIMEOUT + 5000 })  -- on_delivery heard the failures
  assert_eq(delivered, 0)
  assert_eq(#failures, 100)
  for _, f in ipairs(failures) do
    assert_error(f.err, "_MSG_TIMED_OUT")
    assert_true(f.at - sent_at >= TIMEOUT - 100, string.format("failed after %.0f ms", f.at - sent_at))
  end
  p:close()
end, { timeout_ms = 30000 })
