-- The producer's hot paths (bindings/producer_lua.cpp loads this once per runtime), compiled by
-- LuaJIT together with the script's own loop: p:send takes messages of plain fields straight to
-- librdkafka through the FFI (no Lua/C transition the JIT cannot compile), and delivery reports
-- for the producer-level on_delivery are built here from a C array, one call per batch.
-- Everything else (headers, timestamps, callbacks, bad input, a full queue, a closed handle)
-- goes through slow_send, the C function, which checks, raises and waits.
--
--   ffi (from the chunk of bindings/ffi.h: klua_dr_entry and klua_producer_send_fn are declared
--   there); slow_send(self, msg); PRODUCERS: weak-keyed set of producer userdata (the type check);
--   send_fast_ptr: the klua_producer_send_fn; report: producer.lua's report builder;
--   dr_entry_size: sizeof(klua_dr_entry) to C++; methods: producer.lua's methods, whose produce
--   and produce_batch are wrapped here for producers with serializers.
-- PRODUCERS[p] is true, or for a producer made with key_serializer/value_serializer the table
-- {key=, value=} of them: the one lookup the fast path makes tells both.
-- Returns send(self, msg) and dispatch(cb, names, entries, n).
local ffi, slow_send, PRODUCERS, send_fast_ptr, report, dr_entry_size, methods = ...
if ffi.sizeof("klua_dr_entry") ~= dr_entry_size then
  error(string.format("klua_dr_entry is %d bytes to LuaJIT's FFI but %d to C++ (bindings/ffi.h)",
    ffi.sizeof("klua_dr_entry"), dr_entry_size))
end
local send_fast = ffi.cast("klua_producer_send_fn", send_fast_ptr)
local entries = ffi.typeof("const klua_dr_entry*")
local cast, next, type = ffi.cast, next, type

-- Up to four fields, read without a loop so that the JIT compiles send into the caller's loop,
-- and into locals rather than a table (the JIT did not sink that table: one allocation per send).
-- ok is false for any other field.
local function field(k, v, topic, value, key, partition)
  if k == "topic" then return true, v, value, key, partition
  elseif k == "value" then return true, topic, v, key, partition
  elseif k == "key" then return true, topic, value, v, partition
  elseif k == "partition" then return true, topic, value, key, v
  end
  return false
end

local function plain_send(self, msg)
  if type(msg) ~= "table" then return slow_send(self, msg) end
  local ok, topic, value, key, partition = true, nil, nil, nil, nil
  local k, v = next(msg)
  if k ~= nil then
    ok, topic, value, key, partition = field(k, v, topic, value, key, partition)
    if not ok then return slow_send(self, msg) end
    k, v = next(msg, k)
    if k ~= nil then
      ok, topic, value, key, partition = field(k, v, topic, value, key, partition)
      if not ok then return slow_send(self, msg) end
      k, v = next(msg, k)
      if k ~= nil then
        ok, topic, value, key, partition = field(k, v, topic, value, key, partition)
        if not ok then return slow_send(self, msg) end
        k, v = next(msg, k)
        if k ~= nil then
          ok, topic, value, key, partition = field(k, v, topic, value, key, partition)
          if not ok then return slow_send(self, msg) end
          if next(msg, k) ~= nil then return slow_send(self, msg) end
        end
      end
    end
  end
  if type(topic) ~= "string" then return slow_send(self, msg) end
  local vlen, klen = 0, 0
  if value ~= nil then
    if type(value) ~= "string" then return slow_send(self, msg) end
    vlen = #value
  end
  if key ~= nil then
    if type(key) ~= "string" then return slow_send(self, msg) end
    klen = #key
  end
  if partition == nil then
    partition = -1
  elseif type(partition) ~= "number" or not (partition >= 0 and partition < 2147483648) or partition % 1 ~= 0 then
    return slow_send(self, msg)
  end
  if send_fast(self, topic, #topic, value, vlen, key, klen, partition) == 0 then return true end
  return slow_send(self, msg)
end

-- Serializers (klua.producer{key_serializer=, value_serializer=}): a copy of the message with the
-- key and value serialized (nil stays nil: a tombstone), the script's table untouched. Each is
-- called as fn(v, msg, field): msg is the ctx (topic, headers), field "key" or "value".
local tostring = tostring
local function serialize(msg, s)
  local out = {}
  local k, v = next(msg)
  while k ~= nil do
    out[k] = v
    k, v = next(msg, k)
  end
  local fk, fv = s.key, s.value
  for i = 1, 2 do
    local f, field = fk, "key"
    if i == 2 then f, field = fv, "value" end
    local x = msg[field]
    if f ~= nil and x ~= nil then
      local bytes, err = f(x, msg, field)
      if bytes == nil then
        if not klua.errors.is(err) then
          err = klua.errors.new{ name = "KLUA_SERIALIZATION", topic = msg.topic,
            message = tostring(msg.topic) .. ", " .. field .. ": the " .. field .. "_serializer failed: " .. tostring(err) }
          err.field = field
        end
        return nil, err
      end
      out[field] = bytes
    end
  end
  return out
end

local function send(self, msg)
  -- PRODUCERS has an entry for every producer userdata and nothing else: it is the type check
  -- (getmetatable of a userdata would stop the JIT's trace).
  local s = PRODUCERS[self]
  if s == true then return plain_send(self, msg) end
  if s == nil or type(msg) ~= "table" then return slow_send(self, msg) end
  local out, err = serialize(msg, s)
  if out == nil then return nil, err end
  return plain_send(self, out)
end

local produce, produce_batch = methods.produce, methods.produce_batch
function methods.produce(self, msg)
  local s = PRODUCERS[self]
  if s == true or s == nil or type(msg) ~= "table" then return produce(self, msg) end
  local out, err = serialize(msg, s)
  if out == nil then return nil, err end
  return produce(self, out)
end

-- A batch is serialized before anything is sent: a message that cannot be fails the call
-- (nil, err with err.index, its place in the list) and none is sent.
function methods.produce_batch(self, list)
  local s = PRODUCERS[self]
  if s == true or s == nil or type(list) ~= "table" then return produce_batch(self, list) end
  local out = {}
  for i = 1, #list do
    local m = list[i]
    if type(m) == "table" then
      local err
      m, err = serialize(m, s)
      if m == nil then
        if klua.errors.is(err) then err.index = i end
        return nil, err
      end
    end
    out[i] = m
  end
  return produce_batch(self, out)
end

-- Successful reports for the producer-level on_delivery: cb(report, nil) for each.
local function dispatch(cb, names, buf, n)
  local e = cast(entries, buf)
  for i = 0, n - 1 do
    local r = e[i]
    cb(report(names[r.topic], r.partition, r.offset, r.timestamp, r.tstype), nil)
  end
end

return send, dispatch
