-- klua.envelope: event envelopes with tracing headers, and their validating decoder.
--
--   local envelope = require("klua.envelope")          -- also reachable as klua.envelope
--   local env = envelope.new { type = "created", version = "1.0", source = "customservice",
--                              payload = { userId = "u-1", name = "x" } }   -- id: klua.uuid(7) by default
--   local msg = envelope.message(env, { topic = "customservice.item.created", key_field = "userId" })
--   assert(klua.producer():produce(msg))
--   -- consumer side:
--   local got, err = envelope.decode(m)                 -- m: a consumed message (or {value=, headers=})
--   if not got then print(err.field, err.message) end   -- err names the field that failed
--
-- An envelope (Lua side): id, time (epoch ms), type, version, source, correlation_id, payload.
-- On the wire the value is a JSON object with camelCase fields eventId, timestamp (ISO-8601 UTC with
-- milliseconds), eventType, eventVersion, sourceService, correlationId, payload. Headers set by
-- message(): x-correlation-id, traceparent (W3C: 00-<trace id>-<span id>-01; a new trace, or the
-- parent's trace with a new span when {parent = traceparent string or consumed message}), x-event-id,
-- x-event-type, content-type: application/json. decode() returns the envelope plus `trace`
-- ({trace_id, span_id, flags}) and `key`; errors are KLUA_INVALID_ENVELOPE with `field` set.
--
-- Two layouts of the value: "nested" (the default: the event's own fields under `payload`) and
-- "flat" (seed 001's: the payload's fields at the top level beside eventId, timestamp...). new{}
-- records the layout (env.layout), encode/message take `layout` to override it, decode reads
-- both (see decode).
--
-- dead_letter(msg, err, info) -> the JSON of a dead-letter record (seed 003's DeadLetterEnvelope
-- names: originalTopic, partition, offset, exceptionType, exceptionMessage, stackTrace,
-- timestamp, correlationId), carrying the message's own key, value and headers byte-exact
-- (text when UTF-8, else base64 with keyEncoding/valueEncoding "base64"); decode_dead_letter
-- reads it back.
local M = {}

local ENVELOPE_ERROR = "KLUA_INVALID_ENVELOPE"
M.CONTENT_TYPE = "application/json"

local NEW_KEYS = { id = true, time = true, type = true, version = true, source = true, correlation_id = true,
                   payload = true, uuid_version = true, layout = true }
local MSG_KEYS = { topic = true, key = true, key_field = true, parent = true, partition = true, headers = true,
                   timestamp = true, layout = true }
local LAYOUTS = { nested = true, flat = true }
-- The envelope's own fields on the wire; in the flat layout every other top-level field is the payload's.
local WIRE_FIELDS = { eventId = true, timestamp = true, eventType = true, eventVersion = true, sourceService = true,
                      correlationId = true }

-- Programmer errors: KLUA_INVALID_ARGUMENT at the caller's line, naming the function and argument.
local function argerr(fn, n, fmt, ...)
  klua.errors.bad_argument("klua.envelope." .. fn, n, fmt:format(...))
end

local function invalid(field, fmt, ...)
  local e = klua.errors.new { name = ENVELOPE_ERROR, message = ("envelope field \"%s\" " .. fmt):format(field, ...) }
  e.field = field
  return e
end

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- ISO-8601 UTC with milliseconds, from epoch ms.
function M.iso8601(ms)
  if type(ms) ~= "number" or not (ms >= -62135596800000 and ms < 253402300800000) then  -- years 1..9999
    klua.errors.bad_argument("klua.envelope.iso8601", 1, "expected epoch milliseconds, got " .. tostring(ms))
  end
  local secs = math.floor(ms / 1000)
  local frac = ms - secs * 1000
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. (".%03dZ"):format(frac)
end

-- Epoch ms from ISO-8601 (Z or an offset; fraction optional), or nil and a message.
local TIME_HELP = "expected an ISO-8601 time such as 2024-05-01T12:00:00.000Z or 2024-05-01T14:00:00+02:00"
local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
function M.parse_time(s)
  if type(s) ~= "string" then return nil, TIME_HELP .. ", got " .. type(s) end
  local bad = TIME_HELP .. ", got '" .. s .. "'"
  local y, mo, d, h, mi, sec, frac, tz = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)%.?(%d*)(.*)$")
  if not y then return nil, bad end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  local leap = mo == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)
  if mo < 1 or mo > 12 or d < 1 or d > MONTH_DAYS[mo] + (leap and 1 or 0) or tonumber(h) > 23 or tonumber(mi) > 59
     or tonumber(sec) > 60 then
    return nil, bad
  end
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  local ms = ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(sec) * 1000
  if frac ~= "" then ms = ms + math.floor(tonumber("0." .. frac) * 1000 + 0.5) end
  if tz == "Z" then return ms end
  local sign, th, tm = tz:match("^([+-])(%d%d):?(%d%d)$")
  if not sign or tonumber(th) > 18 or tonumber(tm) > 59 then return nil, bad end
  local off = (tonumber(th) * 60 + tonumber(tm)) * 60000
  return sign == "+" and ms - off or ms + off
end

-- W3C trace context.
function M.new_traceparent(parent_trace_id)
  if parent_trace_id ~= nil and (type(parent_trace_id) ~= "string" or not parent_trace_id:match("^%x+$")
     or #parent_trace_id ~= 32 or parent_trace_id:match("%u") or parent_trace_id == ("0"):rep(32)) then
    klua.errors.bad_argument("klua.envelope.new_traceparent", 1,
      "trace_id must be 32 lowercase hex digits, not all zero, got " .. tostring(parent_trace_id))
  end
  local trace_id = parent_trace_id or hex(klua.random_bytes(16))
  local span_id = hex(klua.random_bytes(8))
  return ("00-%s-%s-01"):format(trace_id, span_id)
end

local TRACEPARENT_HELP = "expected a traceparent 00-<32 hex>-<16 hex>-<2 hex> (lowercase, ids not all zero)"
function M.parse_traceparent(s)
  if type(s) ~= "string" then return nil, TRACEPARENT_HELP .. ", got " .. type(s) end
  local bad = TRACEPARENT_HELP .. ", got '" .. s .. "'"
  local v, trace_id, span_id, flags = s:match("^(%x%x)%-(%x+)%-(%x+)%-(%x%x)$")
  if not v or v == "ff" or #trace_id ~= 32 or #span_id ~= 16 or s:match("%u") then return nil, bad end
  if trace_id == ("0"):rep(32) or span_id == ("0"):rep(16) then return nil, bad end
  return { version = v, trace_id = trace_id, span_id = span_id, flags = flags }
end

-- Reads a header's last value from a consumed message (list of pairs) or a {name = value} map.
local function header(msg, name)
  if type(msg) ~= "table" then return nil end
  if type(msg.header) == "function" then return msg:header(name) end
  local h = msg.headers
  if type(h) ~= "table" then return nil end
  if h[1] ~= nil then
    local v
    for _, pair in ipairs(h) do if pair[1] == name then v = pair[2] end end
    return v
  end
  return h[name]
end
M.header = header

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local function check_layout(fn, n, layout)
  if layout ~= nil and not LAYOUTS[layout] then
    argerr(fn, n, "'layout' must be \"nested\" or \"flat\", got %s", tostring(layout))
  end
  return layout
end

-- new{type=, version=, source=, payload=, correlation_id=, id=, time=, uuid_version=4|7, layout=}
function M.new(t)
  if type(t) ~= "table" then argerr("new", 1, "new expects a table, got %s", type(t)) end
  for k in pairs(t) do
    if not NEW_KEYS[k] then
      argerr("new", 1, "unknown field '%s' (fields: type, version, source, payload, correlation_id, id, time, uuid_version, layout)",
        tostring(k))
    end
  end
  for _, f in ipairs { "type", "source" } do
    if type(t[f]) ~= "string" or t[f] == "" then argerr("new", 1, "'%s' must be a non-empty string", f) end
  end
  if t.payload == nil then argerr("new", 1, "'payload' is required") end
  local version = t.version or "1.0"
  if type(version) == "number" then version = tostring(version) end
  if type(version) ~= "string" then argerr("new", 1, "'version' must be a string") end
  local uv = t.uuid_version or 7
  if uv ~= 4 and uv ~= 7 then argerr("new", 1, "'uuid_version' must be 4 or 7") end
  local id = t.id or klua.uuid(uv)
  local time = t.time or klua.time()
  if type(time) ~= "number" then argerr("new", 1, "'time' must be epoch milliseconds") end
  if t.correlation_id ~= nil and type(t.correlation_id) ~= "string" then argerr("new", 1, "'correlation_id' must be a string") end
  local layout = check_layout("new", 1, t.layout) or "nested"
  if layout == "flat" and (type(t.payload) ~= "table" or t.payload[1] ~= nil) then
    argerr("new", 1, "the flat layout needs a payload that is a table of fields (a JSON object)")
  end
  return { id = id, time = math.floor(time), type = t.type, version = version, source = t.source,
           correlation_id = t.correlation_id or id, payload = t.payload, layout = layout }
end

-- encode(env [, {layout=}]): layout overrides env.layout (default "nested").
function M.encode(env, o)
  if type(env) ~= "table" or env.id == nil then argerr("encode", 1, "encode expects an envelope from envelope.new") end
  if o ~= nil and type(o) ~= "table" then argerr("encode", 2, "options must be a table, got %s", type(o)) end
  for k in pairs(o or {}) do
    if k ~= "layout" then argerr("encode", 2, "unknown option '%s' (options: layout)", tostring(k)) end
  end
  local layout = check_layout("encode", 2, o and o.layout) or check_layout("encode", 1, env.layout) or "nested"
  local wire = {
    eventId = env.id, timestamp = M.iso8601(env.time), eventType = env.type, eventVersion = env.version,
    sourceService = env.source, correlationId = env.correlation_id,
  }
  if layout == "nested" then
    wire.payload = env.payload
  else
    if type(env.payload) ~= "table" or env.payload[1] ~= nil then
      argerr("encode", 1, "the flat layout needs a payload that is a table of fields (a JSON object)")
    end
    for k, v in pairs(env.payload) do
      if WIRE_FIELDS[k] then
        argerr("encode", 1, "payload field '%s' would overwrite the envelope's own field in the flat layout", k)
      end
      wire[k] = v
    end
  end
  return klua.json.encode(wire)
end

-- message(env, {topic=, key= | key_field=, parent=, partition=, headers=, timestamp=}) -> a producer message.
-- key: a string or function(env) -> string; key_field: a payload field (e.g. "userId"). parent: the
-- traceparent string or the consumed message this event follows (its trace and correlation id carry on).
function M.message(env, o)
  o = o or {}
  if type(env) ~= "table" or env.id == nil then argerr("message", 1, "message expects an envelope from envelope.new") end
  for k in pairs(o) do
    if not MSG_KEYS[k] then
      argerr("message", 2, "unknown option '%s' (options: topic, key, key_field, parent, partition, headers, timestamp, layout)", tostring(k))
    end
  end
  local key = o.key
  if type(key) == "function" then key = key(env) end
  if o.key_field then
    key = type(env.payload) == "table" and env.payload[o.key_field] or nil
    if key == nil then argerr("message", 2, "payload has no field '%s' to key the message by", o.key_field) end
    key = tostring(key)
  end
  if key ~= nil and type(key) ~= "string" then argerr("message", 2, "the key must be a string, got %s", type(key)) end
  local parent_trace
  if type(o.parent) == "string" then
    parent_trace = M.parse_traceparent(o.parent)
    if not parent_trace then argerr("message", 2, "parent is not a valid traceparent: %s", o.parent) end
  elseif type(o.parent) == "table" then
    parent_trace = M.parse_traceparent(header(o.parent, "traceparent"))
    local cid = header(o.parent, "x-correlation-id")
    if cid and env.correlation_id == env.id then env.correlation_id = cid end
  end
  local headers = {
    { "x-correlation-id", env.correlation_id },
    { "traceparent", M.new_traceparent(parent_trace and parent_trace.trace_id) },
    { "x-event-id", env.id },
    { "x-event-type", env.type },
    { "content-type", M.CONTENT_TYPE },
  }
  for name, v in pairs(o.headers or {}) do headers[#headers + 1] = { name, v } end
  check_layout("message", 2, o.layout)
  return { topic = o.topic, key = key, value = M.encode(env, { layout = o.layout }), headers = headers, partition = o.partition,
           timestamp = o.timestamp or env.time }
end

-- decode(msg | json string [, {layout=}]) -> envelope (+ layout, trace, key) or nil, err naming the field.
-- Which layout: {layout = "nested" | "flat"} says; without it the value's top-level fields decide.
-- Fields other than the envelope's own (eventId, timestamp, eventType, eventVersion, sourceService,
-- correlationId) make it flat, and they are the payload (a field named "payload" among others is one
-- of them); `payload` alone beside the envelope's fields is the nested layout; neither is an error.
function M.decode(msg, o)
  if o ~= nil and type(o) ~= "table" then argerr("decode", 2, "options must be a table, got %s", type(o)) end
  for k in pairs(o or {}) do
    if k ~= "layout" then argerr("decode", 2, "unknown option '%s' (options: layout)", tostring(k)) end
  end
  local want = check_layout("decode", 2, o and o.layout)
  local value = type(msg) == "string" and msg or (type(msg) == "table" and msg.value)
  if type(value) ~= "string" then return nil, invalid("value", "is missing (no message value)") end
  local obj, jerr = klua.json.decode(value)
  if obj == nil then return nil, invalid("value", "is not JSON: %s", tostring(jerr and jerr.message or jerr)) end
  if type(obj) ~= "table" or obj[1] ~= nil then return nil, invalid("value", "must be a JSON object") end
  local function str(field, pattern, what)
    local v = obj[field]
    if v == nil or v == klua.json.null then return nil, invalid(field, "is missing") end
    if type(v) ~= "string" or v == "" then return nil, invalid(field, "must be a non-empty string, got %s", type(v)) end
    if pattern and not v:match(pattern) then return nil, invalid(field, "must be %s, got %q", what, v) end
    return v
  end
  local env, err = {}, nil
  env.id, err = str("eventId", UUID, "a UUID")
  if err then return nil, err end
  local ts = obj.timestamp
  if type(ts) == "number" then
    env.time = ts
  elseif type(ts) == "string" then
    env.time = M.parse_time(ts)
    if not env.time then return nil, invalid("timestamp", "must be ISO-8601 (2025-11-30T10:30:00Z), got %q", ts) end
  else
    return nil, invalid("timestamp", ts == nil and "is missing" or "must be an ISO-8601 string or epoch ms")
  end
  env.type, err = str("eventType")
  if err then return nil, err end
  env.version, err = str("eventVersion")
  if err then return nil, err end
  env.source, err = str("sourceService")
  if err then return nil, err end
  if obj.correlationId ~= nil and obj.correlationId ~= klua.json.null then
    env.correlation_id, err = str("correlationId")
    if err then return nil, err end
  end
  local extra, only_payload = nil, true
  for k in pairs(obj) do
    if not WIRE_FIELDS[k] then
      extra = true
      if k ~= "payload" then only_payload = false end
    end
  end
  local layout = want or (extra and not only_payload and "flat") or "nested"
  if layout == "nested" then
    if obj.payload == nil or obj.payload == klua.json.null then
      return nil, invalid("payload", want and "is missing" or
        "is missing (and no other field is there for the flat layout: the event has no data)")
    end
    env.payload = obj.payload
  else
    env.payload = klua.json.object()
    for k, v in pairs(obj) do
      if not WIRE_FIELDS[k] then env.payload[k] = v end
    end
  end
  env.layout = layout
  if type(msg) == "table" then
    env.key = msg.key
    local tp = header(msg, "traceparent")
    if tp ~= nil then
      env.trace = M.parse_traceparent(tp)
      if not env.trace then return nil, invalid("traceparent", "header is not W3C trace context: %q", tostring(tp)) end
    end
    local hc = header(msg, "x-correlation-id")
    if hc ~= nil and env.correlation_id ~= nil and hc ~= env.correlation_id then
      return nil, invalid("x-correlation-id", "header %q disagrees with correlationId %q", hc, env.correlation_id)
    end
    env.correlation_id = env.correlation_id or hc
  end
  return env
end

-- Dead-letter envelope ---------------------------------------------------------------------------

-- Valid UTF-8 by klua.json's rule (the JSON writer's own check), so text goes out as text.
local function utf8_ok(s)
  local out = rawget(klua, "_stdout")
  if out and out.utf8 then return out.utf8(s) end
  return (pcall(klua.json.encode, s))
end

-- Puts bytes s at obj[field]: text when UTF-8, else base64 with obj[enc_field] = "base64"; nil -> null.
local function put_bytes(obj, field, enc_field, s)
  if s == nil then
    obj[field] = klua.json.null
  elseif utf8_ok(s) then
    obj[field] = s
  else
    obj[field] = klua.base64.encode(s)
    obj[enc_field] = "base64"
  end
end

-- Text fields (error text, stack, names) are never base64: bytes that are not UTF-8 become U+FFFD.
local function text(s)
  if s == nil then return klua.json.null end
  s = tostring(s)
  if utf8_ok(s) then return s end
  return klua.json.decode(klua.json.encode(s, { invalid_utf8 = "replace" }))
end

local function get_bytes(obj, field, enc_field)
  local v, enc = obj[field], obj[enc_field]
  if v == nil or v == klua.json.null then return nil end
  if type(v) ~= "string" then return nil, invalid(field, "must be a string or null, got %s", type(v)) end
  if enc == nil or enc == klua.json.null then return v end
  if enc ~= "base64" then return nil, invalid(enc_field, "must be \"base64\", got %q", tostring(enc)) end
  local bytes, err = klua.base64.decode(v)
  if not bytes then return nil, invalid(field, "is not base64: %s", tostring(err and err.message or err)) end
  return bytes
end

local hostname
local function host()
  if hostname == nil then
    hostname = false
    local ok, ffi = pcall(require, "ffi")
    if ok then
      pcall(ffi.cdef, "int gethostname(char *name, size_t len);")
      local buf = ffi.new("char[256]")
      local got, rc = pcall(function() return ffi.C.gethostname(buf, 256) end)
      if got and rc == 0 then hostname = ffi.string(buf) end
    end
    if not hostname then hostname = os.getenv("HOSTNAME") or false end
  end
  return hostname or nil
end

local DL_INFO_KEYS = { attempts = true, reason = true, stack = true, group = true, client_id = true, host = true }

-- The error's type as the worker's x-exception-type header gives it: a table's name or type, else "error".
local function exception_type(e)
  if type(e) == "table" then return tostring(e.name or e.type or "table") end
  return "error"
end

local function opt_string(fn, name, v)
  if v ~= nil and type(v) ~= "string" then argerr(fn, 3, "'%s' must be a string, got %s", name, type(v)) end
  return v
end

-- dead_letter(msg, err, info) -> JSON string. msg: the consumed message; err: the handler's error
-- (any value); info: {attempts=, reason=, stack=, group=, client_id=, host=} (all optional).
function M.dead_letter(msg, err, info)
  if type(msg) ~= "table" then argerr("dead_letter", 1, "dead_letter expects the failed message, got %s", type(msg)) end
  if type(msg.topic) ~= "string" then argerr("dead_letter", 1, "the message has no topic") end
  for _, f in ipairs { "partition", "offset" } do
    if type(msg[f]) ~= "number" then argerr("dead_letter", 1, "the message's '%s' must be a number, got %s", f, type(msg[f])) end
  end
  for _, f in ipairs { "key", "value" } do
    if msg[f] ~= nil and type(msg[f]) ~= "string" then
      argerr("dead_letter", 1, "the message's '%s' must be a string or nil, got %s", f, type(msg[f]))
    end
  end
  if info ~= nil and type(info) ~= "table" then argerr("dead_letter", 3, "info must be a table, got %s", type(info)) end
  info = info or {}
  for k in pairs(info) do
    if not DL_INFO_KEYS[k] then
      argerr("dead_letter", 3, "unknown field '%s' (fields: attempts, reason, stack, group, client_id, host)", tostring(k))
    end
  end
  if info.attempts ~= nil and type(info.attempts) ~= "number" then
    argerr("dead_letter", 3, "'attempts' must be a number, got %s", type(info.attempts))
  end
  for _, f in ipairs { "reason", "stack", "group", "client_id", "host" } do opt_string("dead_letter", f, info[f]) end

  local null = klua.json.null
  local obj = {
    originalTopic = msg.topic, partition = msg.partition, offset = msg.offset,
    originalTimestamp = msg.timestamp or null,
    timestamp = M.iso8601(klua.time()),
    exceptionType = text(exception_type(err)),
    exceptionMessage = text(require("klua.worker").exception_message(err)),
    exceptionCode = null,
    stackTrace = text(info.stack),
    attempts = info.attempts or null,
    reason = text(info.reason),
    group = text(info.group),
    clientId = text(info.client_id),
    host = text(info.host or host()),
    correlationId = text(header(msg, "x-correlation-id")),
  }
  local code = type(err) == "table" and err.code
  if type(code) == "number" then obj.exceptionCode = code elseif type(code) == "string" then obj.exceptionCode = text(code) end
  put_bytes(obj, "key", "keyEncoding", msg.key)
  put_bytes(obj, "value", "valueEncoding", msg.value)
  local headers = klua.json.array()
  local list = type(msg.headers) == "table" and msg.headers or {}
  if list[1] == nil and next(list) ~= nil then   -- a {name = value} map: sorted, so the output is stable
    local names = {}
    for name in pairs(list) do names[#names + 1] = name end
    table.sort(names)
    local pairs_ = {}
    for i, name in ipairs(names) do pairs_[i] = { name, list[name] } end
    list = pairs_
  end
  for i, h in ipairs(list) do
    local e = {}
    put_bytes(e, "name", "nameEncoding", tostring(h[1]))
    put_bytes(e, "value", "valueEncoding", h[2])
    headers[i] = e
  end
  obj.headers = headers
  return klua.json.encode(obj)
end

-- decode_dead_letter(msg | json string) -> {topic, partition, offset, timestamp, key, value, headers,
-- failed_at, error = {type, code, message}, stack, attempts, reason, group, client_id, host,
-- correlation_id} with key, value and header values back as the original bytes; or nil, err.
function M.decode_dead_letter(msg)
  local value = type(msg) == "string" and msg or (type(msg) == "table" and msg.value)
  if type(value) ~= "string" then return nil, invalid("value", "is missing (no message value)") end
  local obj, jerr = klua.json.decode(value)
  if obj == nil then return nil, invalid("value", "is not JSON: %s", tostring(jerr and jerr.message or jerr)) end
  if type(obj) ~= "table" or obj[1] ~= nil then return nil, invalid("value", "must be a JSON object") end
  local null = klua.json.null
  local function opt(v) if v == null then return nil end return v end
  if type(obj.originalTopic) ~= "string" then return nil, invalid("originalTopic", "must be a string") end
  for _, f in ipairs { "partition", "offset" } do
    if type(obj[f]) ~= "number" then return nil, invalid(f, "must be a number") end
  end
  local r = { topic = obj.originalTopic, partition = obj.partition, offset = obj.offset,
              timestamp = opt(obj.originalTimestamp), failed_at = type(obj.timestamp) == "string" and M.parse_time(obj.timestamp) or nil,
              error = { type = opt(obj.exceptionType), code = opt(obj.exceptionCode), message = opt(obj.exceptionMessage) },
              stack = opt(obj.stackTrace), attempts = opt(obj.attempts), reason = opt(obj.reason), group = opt(obj.group),
              client_id = opt(obj.clientId), host = opt(obj.host), correlation_id = opt(obj.correlationId) }
  local err
  r.key, err = get_bytes(obj, "key", "keyEncoding")
  if err then return nil, err end
  r.value, err = get_bytes(obj, "value", "valueEncoding")
  if err then return nil, err end
  r.headers = {}
  for i, h in ipairs(type(obj.headers) == "table" and obj.headers or {}) do
    if type(h) ~= "table" then return nil, invalid("headers", "item %d must be an object", i) end
    local name, v
    name, err = get_bytes(h, "name", "nameEncoding")
    if err or name == nil then return nil, err or invalid("headers", "item %d has no name", i) end
    v, err = get_bytes(h, "value", "valueEncoding")
    if err then return nil, err end
    r.headers[i] = { name, v }
  end
  return r
end

return M
