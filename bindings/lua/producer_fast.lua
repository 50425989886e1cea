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
--   dr_entry_size: sizeof(klua_dr_entry) to C++.
-- Returns send(self, msg) and dispatch(cb, names, entries, n).
local ffi, slow_send, PRODUCERS, send_fast_ptr, report, dr_entry_size = ...
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

local function send(self, msg)
  -- PRODUCERS has an entry for every producer userdata and nothing else: it is the type check
  -- (getmetatable of a userdata would stop the JIT's trace).
  if PRODUCERS[self] == nil or type(msg) ~= "table" then return slow_send(self, msg) end
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

-- Successful reports for the producer-level on_delivery: cb(report, nil) for each.
local function dispatch(cb, names, buf, n)
  local e = cast(entries, buf)
  for i = 0, n - 1 do
    local r = e[i]
    cb(report(names[r.topic], r.partition, r.offset, r.timestamp, r.tstype), nil)
  end
end

return send, dispatch
