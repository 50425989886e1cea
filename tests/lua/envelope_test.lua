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

-- Seed 001's CustomItemCreatedEvent, verbatim from ../shared/seeds/001_*.txt: its fields sit flat
-- beside eventId, timestamp, eventType, eventVersion, sourceService, correlationId.
local SEED001_CREATED = [[
{
  "eventId": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
  "timestamp": "2025-11-30T10:30:00Z",
  "eventType": "created",
  "eventVersion": "1.0",
  "sourceService": "customservice",
  "correlationId": "abc123-def456",
  "customItemId": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
  "name": "Sample Item",
  "description": "Item description",
  "userId": "550e8400-e29b-41d4-a716-446655440000",
  "categoryId": "660e8400-e29b-41d4-a716-446655440000",
  "status": "Active"
}
]]

test("decode reads seed 001's own flat JSON: the fields beside the envelope's are the payload", function()
  local env = assert(envelope.decode(SEED001_CREATED))
  assert_eq(env.layout, "flat")
  assert_eq(env.id, "3fa85f64-5717-4562-b3fc-2c963f66afa6")
  assert_eq(env.time, envelope.parse_time("2025-11-30T10:30:00Z"))
  assert_eq(env.time, 1764498600000)
  assert_eq(env.type, "created")
  assert_eq(env.version, "1.0")
  assert_eq(env.source, "customservice")
  assert_eq(env.correlation_id, "abc123-def456")
  assert_eq(env.payload, { customItemId = "7c9e6679-7425-40de-944b-e07fc1f90ae7", name = "Sample Item",
                           description = "Item description", userId = "550e8400-e29b-41d4-a716-446655440000",
                           categoryId = "660e8400-e29b-41d4-a716-446655440000", status = "Active" })
  -- Encoded again in its own layout it is the same JSON object, field for field.
  assert_eq(klua.json.decode(envelope.encode(env)), klua.json.decode((SEED001_CREATED:gsub("10:30:00Z", "10:30:00.000Z"))))
end)

test("the flat layout: new{layout=}, encode/message{layout=} override it, and decode tells the two apart", function()
  local payload = { customItemId = "i-1", userId = "u-1", name = "n" }
  local flat = envelope.new { type = "created", source = "customservice", payload = payload, layout = "flat",
                              time = 1764498600000 }
  assert_eq(flat.layout, "flat")
  local wire = klua.json.decode(envelope.encode(flat))
  assert_eq(wire.payload, nil)
  assert_eq(wire.userId, "u-1")
  assert_eq(wire.eventType, "created")
  assert_eq(wire.timestamp, "2025-11-30T10:30:00.000Z")
  local m = envelope.message(flat, { topic = "customservice.item.created", key_field = "userId" })
  assert_eq(m.key, "u-1")
  local back = assert(envelope.decode(m))
  assert_eq(back.layout, "flat")
  assert_eq(back.payload, payload)
  assert_eq(back.correlation_id, flat.correlation_id)
  -- the default stays nested; a per-call layout overrides the envelope's
  local nested = envelope.new { type = "created", source = "s", payload = payload }
  assert_eq(nested.layout, "nested")
  assert_eq(klua.json.decode(envelope.encode(nested)).payload, payload)
  assert_eq(klua.json.decode(envelope.encode(nested, { layout = "flat" })).userId, "u-1")
  assert_eq(klua.json.decode(envelope.message(flat, { layout = "nested" }).value).payload, payload)
  local d = assert(envelope.decode(envelope.encode(nested)))
  assert_eq(d.layout, "nested")
  assert_eq(d.payload, payload)
  -- a flat event may have a field named "payload" among its own
  local odd = assert(envelope.decode(envelope.encode(envelope.new {
    type = "t", source = "s", layout = "flat", payload = { payload = 1, other = 2 } })))
  assert_eq(odd.layout, "flat")
  assert_eq(odd.payload, { payload = 1, other = 2 })
  -- forcing the layout: a nested value read as flat keeps "payload" as a field; an event without
  -- fields is flat only when asked for
  assert_eq(assert(envelope.decode(envelope.encode(nested), { layout = "flat" })).payload, { payload = payload })
  local bare = envelope.encode(envelope.new { type = "t", source = "s", layout = "flat", payload = {} })
  local _, err = envelope.decode(bare)
  assert_error(err, "KLUA_INVALID_ENVELOPE")
  assert_eq(err.field, "payload")
  assert_eq(klua.json.encode(assert(envelope.decode(bare, { layout = "flat" })).payload), "{}")
  _, err = envelope.decode(SEED001_CREATED, { layout = "nested" })
  assert_eq(err.field, "payload")
  -- programmer errors name the argument
  assert_raises(function() envelope.new { type = "t", source = "s", payload = {}, layout = "deep" } end, "'layout' must be")
  assert_raises(function() envelope.new { type = "t", source = "s", payload = "x", layout = "flat" } end, "table of fields")
  assert_raises(function() envelope.encode(envelope.new { type = "t", source = "s", layout = "flat",
                                                           payload = { eventType = "clash" } }) end,
                "payload field 'eventType' would overwrite")
  assert_raises(function() envelope.encode(nested, { colour = 1 }) end, "unknown option 'colour'")
  assert_raises(function() envelope.decode(SEED001_CREATED, { layout = 1 }) end, "'layout' must be")
end)

-- A message as the consumer hands it over, with a binary or a UTF-8 key and value.
local function failed_message(key, value)
  return { topic = "orders", partition = 3, offset = 42, key = key, value = value, timestamp = 1764498600123,
           headers = { { "x-correlation-id", "abc123-def456" }, { "bin", "\0\255\1" }, { "empty", nil },
                       { "trace", "1" }, { "trace", "2" } } }
end

-- Python's json module reads the dead-letter JSON; prints hex of the key, value and header bytes.
local PY = [[
import base64, json, sys
d = json.loads(sys.stdin.buffer.read().decode("utf-8"))
def raw(obj, field, enc):
    v = obj[field]
    if v is None: return "nil"
    b = base64.b64decode(v, validate=True) if obj.get(enc) == "base64" else v.encode("utf-8")
    return b.hex()
print(raw(d, "key", "keyEncoding"))
print(raw(d, "value", "valueEncoding"))
print(" ".join(raw(h, "name", "nameEncoding") + "=" + raw(h, "value", "valueEncoding") for h in d["headers"]))
print(d["originalTopic"], d["partition"], d["offset"], d["originalTimestamp"], d["attempts"], d["reason"])
print(d["exceptionType"], d["exceptionCode"], d["exceptionMessage"])
print(d["correlationId"], d["group"], d["clientId"], d["stackTrace"] is not None, bool(d["host"]))
]]

local function hex(s)
  if s == nil then return "nil" end
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

test("dead_letter: Python's json module gets the key, value and headers back byte for byte", function()
  local binary = "\0\1\2\254\255\128 not text \192\175"   -- \192\175: an overlong '/', not UTF-8
  local text = "ünïcödé ✓ {\"quoted\": \"json\"}\n\t"
  local cases = {
    { key = "k-1", value = binary, value_enc = "base64", key_enc = nil },
    { key = "\255key", value = text, value_enc = nil, key_enc = "base64" },
    { key = nil, value = "", value_enc = nil, key_enc = nil },
  }
  for _, case in ipairs(cases) do
    local msg = failed_message(case.key, case.value)
    local err = klua.errors.new { name = "KLUA_HANDLER", code = 17, message = "stock service said no" }
    local json = envelope.dead_letter(msg, err, { attempts = 4, reason = "retries-exhausted", stack = debug.traceback("x"),
                                                  group = "billing", client_id = "billing-1" })
    local obj = klua.json.decode(json)
    assert_eq(obj.valueEncoding, case.value_enc)
    assert_eq(obj.keyEncoding, case.key_enc)
    local out, status = klua.testkit.sh("python3 -c " .. klua.testkit.quote(PY), json)
    assert_eq(status, 0, out)
    local lines = {}
    for l in out:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
    assert_eq(lines[1], hex(case.key))
    assert_eq(lines[2], hex(case.value))
    local hs = {}
    for _, h in ipairs(msg.headers) do hs[#hs + 1] = hex(h[1]) .. "=" .. hex(h[2]) end
    assert_eq(lines[3], table.concat(hs, " "))
    assert_eq(lines[4], "orders 3 42 1764498600123 4 retries-exhausted")
    assert_eq(lines[5], "KLUA_HANDLER 17 stock service said no")
    assert_eq(lines[6], "abc123-def456 billing billing-1 True True")
  end
end)

test("dead_letter: seed 003's field names, the error's readable text, and decode_dead_letter's round trip", function()
  local t0 = klua.time()
  local msg = failed_message("\255k", "\0v")
  local tostring_err = setmetatable({ code = "E42" }, { __tostring = function() return "custom failure" end })
  local obj = klua.json.decode(envelope.dead_letter(msg, tostring_err, { attempts = 1, reason = "no-handler" }))
  -- seed 003's DeadLetterEnvelope names, with their meaning
  assert_eq(obj.originalTopic, "orders")
  assert_eq(obj.partition, 3)
  assert_eq(obj.offset, 42)
  assert_eq(obj.exceptionType, "table")
  assert_eq(obj.exceptionMessage, "custom failure")   -- never "table: 0x..."
  assert_eq(obj.exceptionCode, "E42")
  assert_eq(obj.stackTrace, klua.json.null)
  assert_eq(obj.correlationId, "abc123-def456")
  local failed_at = assert(envelope.parse_time(obj.timestamp))
  assert_true(failed_at >= t0 - 1 and failed_at <= klua.time() + 1, obj.timestamp)
  assert_eq(type(obj.host), "string")
  assert_eq(obj.group, klua.json.null)
  -- a plain string error, and a table with neither message nor __tostring (its pretty form)
  local s = klua.json.decode(envelope.dead_letter(msg, "boom"))
  assert_eq(s.exceptionType, "error")
  assert_eq(s.exceptionMessage, "boom")
  assert_eq(s.exceptionCode, klua.json.null)
  assert_eq(s.attempts, klua.json.null)
  -- text fields are never base64: bytes that are not UTF-8 become U+FFFD
  assert_eq(klua.json.decode(envelope.dead_letter(msg, "bad \255 byte", { stack = "at \192" })).exceptionMessage,
            "bad \239\191\189 byte")
  local p = klua.json.decode(envelope.dead_letter(msg, { reason = "bad sku" }))
  assert_match(p.exceptionMessage, "bad sku")
  assert_false(p.exceptionMessage:find("table: 0x", 1, true))
  -- decode_dead_letter gives back the message's bytes and the failure
  local d = assert(envelope.decode_dead_letter(envelope.dead_letter(msg, klua.errors.new { name = "X", code = 5, message = "m" },
    { attempts = 3, reason = "retries-exhausted", group = "g", client_id = "c", host = "h" })))
  assert_eq(d.topic, "orders")
  assert_eq(d.partition, 3)
  assert_eq(d.offset, 42)
  assert_eq(d.timestamp, 1764498600123)
  assert_eq(d.key, "\255k")
  assert_eq(d.value, "\0v")
  assert_eq(d.headers, { { "x-correlation-id", "abc123-def456" }, { "bin", "\0\255\1" }, { "empty", nil },
                         { "trace", "1" }, { "trace", "2" } })
  assert_eq(d.error, { type = "X", code = 5, message = "m" })
  assert_eq(d.attempts, 3)
  assert_eq(d.host, "h")
  assert_eq(d.client_id, "c")
  local _, err = envelope.decode_dead_letter('{"originalTopic": "t", "partition": 0, "offset": 1, "value": "%%%", "valueEncoding": "base64"}')
  assert_error(err, "KLUA_INVALID_ENVELOPE")
  assert_eq(err.field, "value")
  -- programmer errors
  assert_raises(function() envelope.dead_letter("x", "e") end, "expects the failed message")
  assert_raises(function() envelope.dead_letter(msg, "e", { attempt = 1 }) end, "unknown field 'attempt'")
  assert_raises(function() envelope.dead_letter(msg, "e", { attempts = "3" }) end, "'attempts' must be a number")
end)
