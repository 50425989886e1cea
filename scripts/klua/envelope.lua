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
local M = {}

local ENVELOPE_ERROR = "KLUA_INVALID_ENVELOPE"
M.CONTENT_TYPE = "application/json"

local NEW_KEYS = { id = true, time = true, type = true, version = true, source = true, correlation_id = true,
                   payload = true, uuid_version = true }
local MSG_KEYS = { topic = true, key = true, key_field = true, parent = true, partition = true, headers = true,
                   timestamp = true }

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
  local secs = math.floor(ms / 1000)
  local frac = ms - secs * 1000
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. (".%03dZ"):format(frac)
end

-- Epoch ms from ISO-8601 (Z or an offset; fraction optional), or nil.
function M.parse_time(s)
  local y, mo, d, h, mi, sec, frac, tz = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)%.?(%d*)(.*)$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or tonumber(h) > 23 or tonumber(mi) > 59 or tonumber(sec) > 60 then
    return nil
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
  if not sign then return nil end
  local off = (tonumber(th) * 60 + tonumber(tm)) * 60000
  return sign == "+" and ms - off or ms + off
end

-- W3C trace context.
function M.new_traceparent(parent_trace_id)
  local trace_id = parent_trace_id or hex(klua.random_bytes(16))
  local span_id = hex(klua.random_bytes(8))
  return ("00-%s-%s-01"):format(trace_id, span_id)
end

function M.parse_traceparent(s)
  if type(s) ~= "string" then return nil end
  local v, trace_id, span_id, flags = s:match("^(%x%x)%-(%x+)%-(%x+)%-(%x%x)$")
  if not v or v == "ff" or #trace_id ~= 32 or #span_id ~= 16 or s:match("%u") then return nil end
  if trace_id == ("0"):rep(32) or span_id == ("0"):rep(16) then return nil end
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

-- new{type=, version=, source=, payload=, correlation_id=, id=, time=, uuid_version=4|7}
function M.new(t)
  if type(t) ~= "table" then argerr("new", 1, "new expects a table, got %s", type(t)) end
  for k in pairs(t) do
    if not NEW_KEYS[k] then
      argerr("new", 1, "unknown field '%s' (fields: type, version, source, payload, correlation_id, id, time, uuid_version)",
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
  return { id = id, time = math.floor(time), type = t.type, version = version, source = t.source,
           correlation_id = t.correlation_id or id, payload = t.payload }
end

function M.encode(env)
  return klua.json.encode {
    eventId = env.id, timestamp = M.iso8601(env.time), eventType = env.type, eventVersion = env.version,
    sourceService = env.source, correlationId = env.correlation_id, payload = env.payload,
  }
end

-- message(env, {topic=, key= | key_field=, parent=, partition=, headers=, timestamp=}) -> a producer message.
-- key: a string or function(env) -> string; key_field: a payload field (e.g. "userId"). parent: the
-- traceparent string or the consumed message this event follows (its trace and correlation id carry on).
function M.message(env, o)
  o = o or {}
  if type(env) ~= "table" or env.id == nil then argerr("message", 1, "message expects an envelope from envelope.new") end
  for k in pairs(o) do
    if not MSG_KEYS[k] then
      argerr("message", 2, "unknown option '%s' (options: topic, key, key_field, parent, partition, headers, timestamp)", tostring(k))
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
  return { topic = o.topic, key = key, value = M.encode(env), headers = headers, partition = o.partition,
           timestamp = o.timestamp or env.time }
end

-- decode(msg | json string) -> envelope (+ trace, key, headers_correlation_id) or nil, err naming the field.
function M.decode(msg)
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
  if obj.payload == nil or obj.payload == klua.json.null then return nil, invalid("payload", "is missing") end
  env.payload = obj.payload
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

return M
