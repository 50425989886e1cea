-- An unreachable cluster whose brokers do listen (tests/lua/unreachable_test.lua covers refused
-- and unresolvable addresses without a broker): TLS spoken to the PLAINTEXT listener, and a wrong
-- SASL password on the SASL listener. Every broker connection fails, so waiting calls end with
-- _ALL_BROKERS_DOWN after klua.unreachable.timeout.ms, naming the address and the cause.
local BROKERS = assert(os.getenv("KLUA_BROKERS"), "KLUA_BROKERS is not set")
local SASL = os.getenv("KLUA_SASL_BROKERS") or ""
local BOUND, MARGIN = 1000, 2500

local function conf(extra)
  local c = { ["klua.unreachable.timeout.ms"] = BOUND, on_error = function() end, on_log = function() end }
  for k, v in pairs(extra) do c[k] = v end
  return c
end

local function fails_unreachable(address, cause, what, call)
  local t0 = klua.now()
  local res, err = call()
  local took = klua.now() - t0
  assert_eq(res, nil, what .. " returned a result")
  assert_eq(err.name, "_ALL_BROKERS_DOWN", what .. ": " .. tostring(err))
  assert_true(err.message:find(address, 1, true), what .. ": " .. err.message)
  assert_true(err.message:find(cause, 1, true), what .. ": the cause is missing: " .. err.message)
  assert_true(took >= BOUND - 20 and took < BOUND + MARGIN, string.format("%s took %.0f ms", what, took))
  return err
end

test("TLS spoken to a PLAINTEXT listener: _ALL_BROKERS_DOWN naming the SSL failure", function()
  local a = klua.admin(conf{ brokers = BROKERS, ["security.protocol"] = "SSL" })
  fails_unreachable(BROKERS, "SSL", "list_topics", function() return a:list_topics() end)
  a:close()
  local c = klua.consumer(conf{ brokers = BROKERS, ["security.protocol"] = "SSL", group = klua.testkit.group("tls") })
  fails_unreachable(BROKERS, "SSL", "c:watermarks", function() return c:watermarks("unreachable-tls", 0) end)
  c:close()
end, { timeout_ms = 60000 })

test("a wrong SASL password: _ALL_BROKERS_DOWN naming the authentication failure, never the password", function()
  assert_match(SASL, "^127%.0%.0%.1:%d+$")
  local secret = "wrong-" .. klua.uuid()
  local c = klua.consumer(conf{ brokers = SASL, ["security.protocol"] = "SASL_PLAINTEXT", ["sasl.mechanism"] = "PLAIN",
                                ["sasl.username"] = "nobody", ["sasl.password"] = secret,
                                group = klua.testkit.group("sasl") })
  local err = fails_unreachable(SASL, "PLAIN", "c:committed", function()
    return c:committed({ { topic = "unreachable-sasl", partition = 0 } })
  end)
  assert_false(err.message:find(secret, 1, true), err.message)
  c:close()
end, { timeout_ms = 60000 })

test("the same calls on the reachable listener answer", function()
  local topic = klua.testkit.topic("unreachable-ok")
  local c = klua.consumer(conf{ brokers = BROKERS, group = klua.testkit.group("ok") })
  local low, high = c:watermarks(topic, 0)
  assert_eq(low, 0)
  assert_eq(high, 0)
  local committed = assert(c:committed({ { topic = topic, partition = 0 } }))
  assert_eq(committed[1].offset, nil)
  c:close()
end, { timeout_ms = 60000 })
