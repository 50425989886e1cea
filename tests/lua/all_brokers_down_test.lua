-- With every bootstrap broker unreachable, each client's on_error hook hears _ALL_BROKERS_DOWN
-- within 2 s. librdkafka 2.12's CMake build never raised it (HAVE_ATOMICS_32_ATOMIC undefined;
-- fixed in 2.15.0); klua's own build of 2.15 must, or scripts hear of a dead cluster only at the
-- 300 s message timeout.

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
