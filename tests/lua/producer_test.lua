-- The producer on the embedded cluster.
local topic_name = klua.testkit.fresh

test("produce waits for the delivery report and returns topic, partition, offset, timestamp", function()
  local p = klua.producer()
  local t = topic_name("produce")
  klua.embedded.create_topic(t, 1)
  local before = klua.time()
  local r1 = assert(p:produce{ topic = t, key = "k", value = "v1" })
  local r2 = assert(p:produce{ topic = t, key = "k", value = "v2" })
  assert_eq(r1.topic, t)
  assert_eq(r1.partition, 0)
  assert_eq(r1.offset, 0)
  assert_eq(r2.offset, 1)
  if r1.timestamp_type == "create" then
    assert_true(r1.timestamp >= before - 1 and r1.timestamp <= klua.time() + 1, "timestamp " .. tostring(r1.timestamp))
  else
    -- librdkafka's mock (2.0.2 and 2.15 alike) answers produce requests with a fixed log-append time
    assert_eq(r1.timestamp_type, "log_append")
  end
  p:close()
end)

test("an explicit partition and timestamp are kept", function()
  local p = klua.producer()
  local t = topic_name("part")
  klua.embedded.create_topic(t, 4)
  local r = assert(p:produce{ topic = t, value = "x", partition = 2, timestamp = 1700000000000 })
  assert_eq(r.partition, 2)
  if r.timestamp_type == "create" then assert_eq(r.timestamp, 1700000000000) end
end)

test("invalid topic names fail at once, naming the topic and the rule; an empty name raises", function()
  local p = klua.producer()
  for _, bad in ipairs({ ".", "..", "has space", "ünïcode", string.rep("a", 250) }) do
    local r, err = p:produce{ topic = bad, value = "x" }
    assert_eq(r, nil)
    assert_error(err, "KLUA_INVALID_ARGUMENT")
    assert_eq(err.topic, bad)
    assert_match(err.message, "invalid topic name")
  end
  -- "" is a programmer error (an unset variable), raised like a missing topic (docs/producer.md)
  for _, method in ipairs { "produce", "send" } do
    assert_raises(function() p[method](p, { topic = "", value = "x" }) end,
                  "bad argument #2 to 'p:" .. method .. "' %(message field 'topic' must be a non%-empty topic name%)")
  end
  local ok, err = p:send{ topic = "bad/name", value = "x" }
  assert_eq(ok, nil)
  assert_match(err.message, "may contain only ASCII letters")
end)

test("a produce that raises on a bad field leaves no wait behind; the next one is reported", function()
  local p = klua.producer()
  local t = topic_name("badfield")
  klua.embedded.create_topic(t, 1)
  assert_raises(function() p:produce{ topic = t, value = "x", bogus = 1 } end, "unknown message field 'bogus'")
  assert_raises(function() p:produce{ topic = t, value = "x", on_delivery = print } end, "for p:send only")
  -- the task is not left waiting: it goes on, and the next produce gets its own report
  local r = assert(p:produce{ topic = t, value = "ok", timeout_ms = 5000 })
  assert_eq(r.offset, 0)
  local r2 = assert(p:produce{ topic = t, value = "ok2" })
  assert_eq(r2.offset, 1)
  p:close()
end)

test("send with a producer-level on_delivery reports every message once, flush waits for all", function()
  local seen, errors = {}, 0
  local t = topic_name("send")
  klua.embedded.create_topic(t, 8)
  local p = klua.producer{ on_delivery = function(report, err)
    if err then errors = errors + 1 return end
    seen[#seen + 1] = report
  end }
  for i = 1, 5000 do assert(p:send{ topic = t, key = tostring(i), value = "value " .. i }) end
  assert_eq(p:flush{ timeout_ms = 10000 }, true)
  assert_eq(#seen, 5000)
  assert_eq(errors, 0)
  for _, r in ipairs(seen) do assert_true(r.offset >= 0 and r.partition >= 0 and r.partition < 8) end
end)

test("send with a per-message on_delivery and opaque", function()
  local p = klua.producer()
  local got
  assert(p:send{ topic = topic_name("cb"), value = "x", opaque = { id = 7 },
                 on_delivery = function(report, err) got = { report = report, err = err } end })
  assert_eq(p:flush(), true)
  assert_eq(got.err, nil)
  assert_eq(got.report.opaque, { id = 7 })
end)

test("send past the local queue limit waits for room instead of failing", function()
  local t = topic_name("full")
  klua.embedded.create_topic(t, 4)
  local delivered = 0
  local p = klua.producer{ ["queue.buffering.max.messages"] = 100,
                           on_delivery = function(_, err) if not err then delivered = delivered + 1 end end }
  for i = 1, 2000 do assert(p:send{ topic = t, value = "m" .. i }) end
  assert_eq(p:flush(), true)
  assert_eq(delivered, 2000)
end)

test("produce_batch returns one result per message in input order", function()
  local p = klua.producer()
  local t = topic_name("batch")
  klua.embedded.create_topic(t, 1)
  local res = assert(p:produce_batch{
    { topic = t, value = "a" },
    { topic = "no such/topic", value = "b" },
    { topic = t, value = "c", headers = { { "h", "1" }, { "h", "2" } } },
  })
  assert_eq(#res, 3)
  assert_eq(res[1].offset, 0)
  assert_eq(res[1].error, nil)
  assert_error(res[2].error, "KLUA_INVALID_ARGUMENT")
  assert_eq(res[3].offset, 1)
  assert_eq(res[3].error, nil)
end)

test("produce_batch waits for room in a small local queue", function()
  local p = klua.producer{ ["queue.buffering.max.messages"] = 50 }
  local t = topic_name("bigbatch")
  local list = {}
  for i = 1, 500 do list[i] = { topic = t, value = tostring(i) } end
  local res = assert(p:produce_batch(list))
  assert_eq(#res, 500)
  for i = 1, 500 do assert_eq(res[i].error, nil, "message " .. i) end
end)

test("wrong argument types and unknown fields raise, naming them", function()
  local p = klua.producer()
  assert_raises(function() p:send("x") end, "bad argument #2")
  assert_raises(function() p:send{ topic = "t", value = {} } end, "message field 'value' must be a string")
  assert_raises(function() p:send{ topic = "t", valeu = "x" } end, "unknown message field 'valeu'")
  assert_raises(function() p:send{ value = "x" } end, "message field 'topic' is required")
  assert_raises(function() p:send{ topic = "t", partition = -1 } end, "0%-based")
  assert_raises(function() p:send{ topic = "t", headers = { { 1, "x" } } } end, "header names must be strings")
end)

test("bad configuration raises naming the property and librdkafka's reason", function()
  local err = assert_raises(function() klua.producer{ ["no.such.property"] = 1 } end,
    'bad configuration property "no.such.property"')
  assert_error(err, "KLUA_INVALID_ARGUMENT")
  assert_raises(function() klua.producer{ ["linger.ms"] = "soon" } end, 'property "linger.ms"')
  assert_raises(function() klua.producer{ lingerms = 5 } end, "unknown option 'lingerms'")
  assert_raises(function() klua.producer{ ["sasl.password"] = {} } end, "must be a string, number or boolean")
end)

test("a closed producer raises KLUA_CLOSED; close is idempotent", function()
  local p = klua.producer()
  assert_eq(p:close(), true)
  assert_eq(p:close(), true)
  local err = assert_raises(function() p:send{ topic = "t", value = "x" } end, "closed")
  assert_error(err, "KLUA_CLOSED")
end)

test("when every broker is down, produce fails at message.timeout.ms with _MSG_TIMED_OUT", function()
  -- Nothing is purged for an outage (issue 16): librdkafka's own timeout decides.
  local p = klua.producer{ brokers = "127.0.0.1:1", ["message.timeout.ms"] = 2000,
                           on_error = function() end, on_log = function() end }
  local t0 = klua.now()
  local r, err = p:produce{ topic = "down", value = "x" }
  assert_eq(r, nil)
  assert_error(err, "_MSG_TIMED_OUT")
  assert_true(klua.now() - t0 >= 1900 and klua.now() - t0 < 10000, "took " .. (klua.now() - t0) .. " ms")
  assert_true(p:flush{ timeout_ms = 100 } or true)
end, { timeout_ms = 20000 })

test("the producer's on_error hook receives client errors as klua errors", function()
  local errs = {}
  -- A short message.timeout.ms: the message waits that long for a broker, at exit too.
  local p = klua.producer{ brokers = "127.0.0.1:1", on_error = function(e) errs[#errs + 1] = e end,
                           on_log = function() end, ["message.timeout.ms"] = 1000,
                           on_delivery = function() end }
  p:send{ topic = "down", value = "x" }
  for _ = 1, 50 do if #errs > 0 then break end klua.sleep(100) end
  assert_true(#errs > 0, "no error event")
  assert_true(errs[1].name == "_TRANSPORT" or errs[1].name == "_ALL_BROKERS_DOWN", errs[1].name)
  assert_eq(errs[1].code ~= nil, true)
end, { timeout_ms = 20000 })

test("after a fatal error the producer raises it on every call", function()
  local errors = {}
  local p = klua.producer{ on_error = function(e) errors[#errors + 1] = e end }
  assert(p:produce{ topic = "fatal-" .. klua.uuid():sub(1, 8), value = "x" })
  -- librdkafka's fatal-error test hook is not a method (private methods stay off the public
  -- metatable): klua keeps its test hooks in a table reachable only through debug.getregistry().
  assert_eq(p._inject_fatal_error, nil)
  local testing = debug.getregistry()["klua.private"].producer
  testing.inject_fatal_error(p, "test")
  for _ = 1, 50 do if #errors > 0 then break end klua.sleep(20) end
  assert_eq(errors[1] and errors[1].fatal, true)
  local err = assert_raises(function() p:send{ topic = "t", value = "x" } end, "OUT_OF_ORDER_SEQUENCE_NUMBER")
  assert_eq(err.fatal, true)
end)

test("produce in a task cancelled before it runs raises KLUA_CANCELLED and sends nothing", function()
  local t = "cancelled-" .. klua.uuid():sub(1, 8)
  klua.embedded.create_topic(t, 1)
  local p = klua.producer()
  local task = klua.spawn(function() return p:produce{ topic = t, value = "never" } end)
  task:cancel()
  local r, err = task:join()
  assert_error(err, "KLUA_CANCELLED")
  local c = klua.consumer{ group = "g-" .. klua.uuid():sub(1, 8) }
  local low, high = c:watermarks(t, 0)
  assert_eq(high, 0)
  c:close()
end)

test("two producers sending to different topics keep their topics apart", function()
  local a, b = klua.producer(), klua.producer()
  local ta, tb = "pa-" .. klua.uuid():sub(1, 8), "pb-" .. klua.uuid():sub(1, 8)
  for i = 1, 200 do
    local ra = assert(a:produce{ topic = ta .. (i % 3), value = "a" })
    local rb = assert(b:produce{ topic = tb .. (i % 5), value = "b" })
    assert_eq(ra.topic, ta .. (i % 3))
    assert_eq(rb.topic, tb .. (i % 5))
    if i % 50 == 0 then collectgarbage() end
  end
end, { timeout_ms = 60000 })

test("flush sends at once: with linger.ms=1000 one message is flushed in under 50 ms", function()
  local t = topic_name("linger")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer{ ["linger.ms"] = 1000 }
  assert(p:produce{ topic = t, value = "warm-up" })  -- the producer id and the leader are known
  local worst = 0
  for i = 1, 5 do
    assert(p:send{ topic = t, value = "m" .. i })
    local t0 = klua.now()
    assert_eq(p:flush{ timeout_ms = 5000 }, true)
    worst = math.max(worst, klua.now() - t0)
    klua.sleep(20)  -- no flush of the previous round still running
  end
  assert_true(worst < 50, ("a flush took %.1f ms"):format(worst))
  p:close()
end)

test("p:flush takes {timeout_ms=}; the old positional p:flush(ms) still works and warns once", function()
  local p = klua.producer()
  assert_eq(p:flush{ timeout_ms = 1000 }, true)
  assert_eq(p:flush{}, true)
  assert_eq(p:flush(), true)
  assert_raises(function() p:flush{ timeout = 5 } end, "unknown option 'timeout'")
  assert_raises(function() p:flush{ timeout_ms = "5" } end, "'timeout_ms' must be a number")
  assert_raises(function() p:flush("5") end, "expected an options table")
  p:close()
  -- the deprecated spelling, in a process of its own to see its stderr
  local exe = os.getenv("KLUA_BIN")
  if not exe then
    local h = io.popen("readlink /proc/$PPID/exe")
    exe = h:read("*l")
    h:close()
  end
  local h = io.popen(exe .. [[ -e 'local p = klua.producer(); assert(p:flush(1000) == true); ]] ..
                     [[assert(p:flush(1000) == true); print("ok")' 2>&1]])
  local out = h:read("*a")
  h:close()
  assert_match(out, "ok")
  local _, warnings = out:gsub("deprecated: p:flush%(timeout_ms%)", "")
  assert_eq(warnings, 1)
  assert_match(out, "use p:flush{timeout_ms = N}")
end)
