-- SASL against Kafka 4.1 (tools/kafka-broker's SASL_PLAINTEXT listener, KLUA_SASL_BROKERS): SCRAM users
-- created through klua's own alter_user_scram_credentials (on the PLAINTEXT listener); a klua producer and
-- consumer authenticate with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 and round-trip a message; a wrong
-- password fails within seconds with an authentication error naming the mechanism, never the password.
local SASL = os.getenv("KLUA_SASL_BROKERS") or ""
local admin = klua.admin()   -- PLAINTEXT: ANONYMOUS, a super user

local fresh = klua.testkit.fresh

test("the test broker has a SASL listener", function()
  assert_match(SASL, "^127%.0%.0%.1:%d+$")
  assert_true(SASL ~= os.getenv("KLUA_BROKERS"), "a listener of its own")
end)

local function sasl_conf(mechanism, user, password, extra)
  local c = { brokers = SASL, ["security.protocol"] = "SASL_PLAINTEXT", ["sasl.mechanism"] = mechanism,
              ["sasl.username"] = user, ["sasl.password"] = password }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

-- Produces one message with the credentials and reads it back (assigned partition, no group) with them.
local function roundtrip(topic, mechanism, user, password)
  local value = mechanism .. " " .. klua.uuid()
  local p = klua.producer(sasl_conf(mechanism, user, password))
  local report = assert(p:produce { topic = topic, partition = 0, value = value, timeout_ms = 20000 })
  p:close()
  local c = klua.consumer(sasl_conf(mechanism, user, password, { group = fresh("g") }))
  assert(c:assign({ { topic = topic, partition = 0, offset = report.offset } }))
  local m = c:poll(15000)
  c:close()
  assert_not_nil(m, "no message read back with " .. mechanism)
  assert_eq(m.value, value)
end

-- The broker learns a new SCRAM credential through its metadata log: ask until it describes it.
local function wait_for_credentials(user, n)
  local deadline = klua.now() + 15000
  while klua.now() < deadline do
    local d = assert(admin:describe_user_scram_credentials({ user }))
    if d[1].credentials and #d[1].credentials == n then return end
  end
  error("credentials of " .. user .. " not visible")
end

describe("SCRAM and PLAIN round-trips", function()
  local topic = fresh("t")
  local user, pw256, pw512 = fresh("user"), "pw256-" .. klua.uuid(), "pw512-" .. klua.uuid()
  setup(function()
    assert_eq(assert(admin:create_topics({ { name = topic, partitions = 1, replication_factor = 1 } }))[1].error, nil)
    local res = assert(admin:alter_user_scram_credentials({
      { user = user, mechanism = "SCRAM-SHA-256", password = pw256 },
      { user = user, mechanism = "SCRAM-SHA-512", password = pw512, iterations = 8192 } }))
    assert_eq(res[1].error, nil)
    assert_eq(res[2].error, nil)
    wait_for_credentials(user, 2)
  end)
  it("PLAIN", function() roundtrip(topic, "PLAIN", "klua-plain", "klua-plain-secret") end)
  it("SCRAM-SHA-256", function() roundtrip(topic, "SCRAM-SHA-256", user, pw256) end)
  it("SCRAM-SHA-512", function() roundtrip(topic, "SCRAM-SHA-512", user, pw512) end)

  for _, case in ipairs { { "SCRAM-SHA-256", "wrong-256-" .. klua.uuid() }, { "SCRAM-SHA-512", "wrong-512-" .. klua.uuid() },
                          { "PLAIN", "wrong-plain-" .. klua.uuid() } } do
    local mechanism, wrong = case[1], case[2]
    it("a wrong password fails within seconds with " .. mechanism .. " named, the password nowhere", function()
      local heard = {}
      local t0 = klua.now()
      local name = mechanism == "PLAIN" and "klua-plain" or user
      local p = klua.producer(sasl_conf(mechanism, name, wrong, {
        on_error = function(err) heard[#heard + 1] = err end,
        on_log = function(l) heard[#heard + 1] = l.message end }))
      local report, err = p:produce { topic = topic, partition = 0, value = "x", timeout_ms = 8000 }
      assert_eq(report, nil)
      -- produce's own error is the cause (the message was purged unsent after the login failed)
      assert_error(err, "_AUTHENTICATION")
      assert_match(err.message, mechanism:gsub("%-", "%%-"))
      local auth
      for _, e in ipairs(heard) do
        if type(e) == "table" and e.name == "_AUTHENTICATION" then auth = auth or e end
      end
      assert_not_nil(auth, "on_error heard no _AUTHENTICATION error")
      assert_match(auth.message, mechanism:gsub("%-", "%%-"))
      assert_true(klua.now() - t0 < 9000)
      -- the password is in no error, log line or message
      for _, e in ipairs(heard) do assert_eq(tostring(e):find(wrong, 1, true), nil) end
      assert_eq(tostring(err):find(wrong, 1, true), nil)
      p:close()
    end)
  end
end)

test("a bad password on the admin path: the pending call fails with the authentication error, not a timeout", function()
  local wrong = "admin-wrong-" .. klua.uuid()
  local heard = {}
  local a = klua.admin(sasl_conf("SCRAM-SHA-256", "nobody-" .. klua.uuid():sub(1, 8), wrong,
                                 { timeout_ms = 30000, on_error = function(e) heard[#heard + 1] = e end }))
  local t0 = klua.now()
  local r, err = a:describe_cluster()
  assert_eq(r, nil)
  assert_error(err, "_AUTHENTICATION")
  assert_eq(err.op, "admin:describe_cluster")
  assert_match(err.message, "SCRAM%-SHA%-256")
  assert_true(klua.now() - t0 < 5000, "failed after " .. (klua.now() - t0) .. " ms")
  assert_eq(tostring(err):find(wrong, 1, true), nil)
  local auth
  for _, e in ipairs(heard) do if e.name == "_AUTHENTICATION" then auth = e end end
  assert_not_nil(auth)
  assert_match(auth.message, "SCRAM%-SHA%-256")
  assert_eq(tostring(auth):find(wrong, 1, true), nil)
  a:close()
end)

test("klua config show masks the SASL password", function()
  local bin = os.getenv("KLUA_BIN") or "build/klua"
  local out = klua.testkit.sh(bin .. " -X sasl.password=hunter2-secret -X sasl.username=u config show")
  assert_eq(out:find("hunter2-secret", 1, true), nil)
  assert_match(out, "sasl%.username")
end)
