-- klua.envelope: building, keying, tracing headers, a produce/consume round trip, and decode errors
-- that name the field.
local envelope = require("klua.envelope")

local function header(msg, name)
  for _, h in ipairs(msg.headers) do if h[1] == name then return h[2] end end
end

test("new fills id (v7 by default, v4 on request), time, version and correlation id", function()
  local t0 = klua.time()
  local e = envelope.new { type = "created", source = "customservice", payload = { userId = "u-1" } }
  assert_match(e.id, "^%x+%-%x+%-7%x+%-%x+%-%x+$")
  assert_eq(e.version, "1.0")
  assert_eq(e.correlation_id, e.id)
  assert_true(e.time >= t0 - 1 and e.time <= klua.time() + 1)
  local v4 = envelope.new { type = "x", source = "s", payload = {}, uuid_version = 4, correlation_id = "c-9",
                            version = 2 }
  assert_match(v4.id, "^%x+%-%x+%-4%x+%-")
  assert_eq(v4.correlation_id, "c-9")
  assert_eq(v4.version, "2")
  assert_raises(function() envelope.new { type = "x", source = "s" } end, "'payload' is required")
  assert_raises(function() envelope.new { type = "", source = "s", payload = 1 } end, "'type' must be")
  assert_raises(function() envelope.new { type = "x", source = "s", payload = 1, colour = 1 } end, "unknown field 'colour'")
end)

test("message: key by payload field, tracing headers, wire format with camelCase fields", function()
  local e = envelope.new { type = "updated", source = "svc", payload = { userId = 42, name = "n" },
                           time = 1764498600123, correlation_id = "abc123" }
  local m = envelope.message(e, { topic = "svc.item.updated", key_field = "userId" })
  assert_eq(m.key, "42")
  assert_eq(m.topic, "svc.item.updated")
  assert_eq(m.timestamp, 1764498600123)
  assert_eq(header(m, "x-correlation-id"), "abc123")
  assert_eq(header(m, "x-event-id"), e.id)
  assert_eq(header(m, "x-event-type"), "updated")
  assert_eq(header(m, "content-type"), "application/json")
  local tp = envelope.parse_traceparent(header(m, "traceparent"))
  assert_true(tp ~= nil, "traceparent parses")
  assert_eq(tp.flags, "01")
  local wire = klua.json.decode(m.value)
  assert_eq(wire.timestamp, "2025-11-30T10:30:00.123Z")
  assert_eq(wire.eventType, "updated")
  assert_eq(wire.sourceService, "svc")
  assert_eq(wire.payload.userId, 42)
  -- a function key; a missing key field raises
  assert_eq(envelope.message(e, { key = function(env) return "k-" .. env.type end }).key, "k-updated")
  assert_raises(function() envelope.message(e, { key_field = "tenantId" }) end, "no field 'tenantId'")
  assert_raises(function() envelope.message(e, { colour = 1 }) end, "unknown option 'colour'")
end)

test("a follow-up event continues the parent's trace and correlation id with a new span", function()
  local first = envelope.message(envelope.new { type = "created", source = "a", payload = {} }, { topic = "t" })
  local e2 = envelope.new { type = "notified", source = "b", payload = {} }
  local second = envelope.message(e2, { topic = "t2", parent = first })
  local p1 = envelope.parse_traceparent(header(first, "traceparent"))
  local p2 = envelope.parse_traceparent(header(second, "traceparent"))
  assert_eq(p2.trace_id, p1.trace_id)
  assert_true(p2.span_id ~= p1.span_id, "a new span")
  assert_eq(header(second, "x-correlation-id"), header(first, "x-correlation-id"))
  assert_raises(function() envelope.message(e2, { parent = "00-zz" }) end, "not a valid traceparent")
  assert_eq(envelope.parse_traceparent("00-" .. ("0"):rep(32) .. "-0123456789abcdef-01"), nil)
end)

test("round trip through the embedded cluster: decode gives back the envelope, key and trace", function()
  local topic = "env-" .. klua.uuid():sub(1, 8)
  assert(klua.admin():create_topics({ { name = topic, partitions = 1 } }))
  local e = envelope.new { type = "deleted", source = "svc", payload = { userId = "u-7", bytes = "\0\1" } }
  local m = envelope.message(e, { topic = topic, key_field = "userId" })
  local report = assert(klua.producer():produce(m))
  local c = klua.consumer { group = "env-" .. klua.uuid(), ["auto.offset.reset"] = "earliest" }
  assert(c:assign({ { topic = topic, partition = report.partition, offset = report.offset } }))
  local got = c:poll(10000)
  assert_true(got ~= nil, "the message came back")
  local d = assert(envelope.decode(got))
  assert_eq(d.id, e.id)
  assert_eq(d.time, e.time)
  assert_eq(d.type, "deleted")
  assert_eq(d.source, "svc")
  assert_eq(d.correlation_id, e.id)
  assert_eq(d.payload, { userId = "u-7", bytes = "\0\1" })
  assert_eq(d.key, "u-7")
  assert_eq(d.trace.trace_id, envelope.parse_traceparent(got:header("traceparent")).trace_id)
end)

test("decode errors name the field", function()
  local good = klua.json.decode(envelope.encode(envelope.new { type = "t", source = "s", payload = { a = 1 } }))
  local function with(field, value)
    local copy = {}
    for k, v in pairs(good) do copy[k] = v end
    copy[field] = value
    return klua.json.encode(copy)
  end
  local cases = {
    { with("eventId", "not-a-uuid"), "eventId", "must be a UUID" },
    { with("eventId", nil), "eventId", "is missing" },
    { with("timestamp", "yesterday"), "timestamp", "ISO%-8601" },
    { with("eventType", 5), "eventType", "non%-empty string" },
    { with("eventVersion", nil), "eventVersion", "is missing" },
    { with("sourceService", ""), "sourceService", "non%-empty" },
    { with("payload", nil), "payload", "is missing" },
    { "{not json", "value", "is not JSON" },
    { "[1,2]", "value", "JSON object" },
  }
  for _, case in ipairs(cases) do
    local env, err = envelope.decode(case[1])
    assert_eq(env, nil)
    assert_error(err, "KLUA_INVALID_ENVELOPE")
    assert_eq(err.field, case[2])
    assert_match(err.message, case[3])
    assert_match(tostring(err), '"' .. case[2]:gsub("%-", "%%-") .. '"')
  end
  local _, err = envelope.decode({ value = klua.json.encode(good), headers = { { "traceparent", "bogus" } } })
  assert_eq(err.field, "traceparent")
  _, err = envelope.decode({ value = klua.json.encode(good), headers = { { "x-correlation-id", "other" } } })
  assert_eq(err.field, "x-correlation-id")
  _, err = envelope.decode({ key = "k" })
  assert_eq(err.field, "value")
  -- epoch-ms timestamps and offsets are accepted
  assert_eq(assert(envelope.decode(with("timestamp", 1000))).time, 1000)
  assert_eq(assert(envelope.decode(with("timestamp", "1970-01-01T01:00:01+01:00"))).time, 1000)
end)
