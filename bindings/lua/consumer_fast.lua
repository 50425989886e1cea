-- c:poll's hot path (bindings/consumer_poll.cpp), compiled by LuaJIT together with the script's loop:
-- a plain message is copied out of librdkafka's through the FFI into a message table built
-- here, with no Lua/C transition the JIT cannot compile. Everything else (nothing taken yet,
-- errors, headers, a cancelled task, a closed handle, bad arguments) goes to the C function,
-- which checks and waits.
-- The types come from bindings/ffi.h (`ffi` is what its chunk returns: they are declared there).
local ffi, slow_poll, _, MSG_MT, NAMES, take_ptr, release_ptr, view_size = ...
if ffi.sizeof("klua_msg_view") ~= view_size then
  error(string.format("klua_msg_view is %d bytes to LuaJIT's FFI but %d to C++ (bindings/ffi.h)",
    ffi.sizeof("klua_msg_view"), view_size))
end
local take = ffi.cast("klua_consumer_take_fn", take_ptr)
local release = ffi.cast("klua_consumer_release_fn", release_ptr)
local view = ffi.new("klua_msg_view")
local str, setmetatable = ffi.string, setmetatable
local tostring = tostring

-- Deserializers (klua.consumer{key_deserializer=, value_deserializer=}): names.serde = {key=,
-- value=} on the consumer's topic-names table (bindings/consumer.cpp), read with the names the
-- fast path looks up anyway. Each is called as fn(bytes, msg, field) (nil stays nil): msg is the
-- ctx (topic, partition, offset), field "key" or "value". A failure gives nil, err: err.raw is
-- the message as it came (c:store(err.raw) skips it), with its topic, partition and offset.
local function failed(m, err, field)
  if not klua.errors.is(err) then
    err = klua.errors.new{ name = "KLUA_DESERIALIZATION",
      message = tostring(m.topic) .. " [" .. tostring(m.partition) .. "] at offset " .. tostring(m.offset) .. ", "
        .. field .. ": the " .. field .. "_deserializer failed: " .. tostring(err) }
  end
  err.raw = m
  err.topic, err.partition, err.offset, err.field = m.topic, m.partition, m.offset, field
  return nil, err
end

local function deserialize(m, d)
  local key, value = m.key, m.value
  local f = d.key
  if f ~= nil and key ~= nil then
    local v, err = f(key, m, "key")
    if err ~= nil then return failed(m, err, "key") end
    key = v
  end
  f = d.value
  if f ~= nil and value ~= nil then
    local v, err = f(value, m, "value")
    if err ~= nil then return failed(m, err, "value") end
    value = v
  end
  m.key, m.value = key, value
  return m
end

-- The next buffered message, or nil when the full path must answer (nil, err when a deserializer
-- failed).
local function fast(self)
  -- NAMES has an entry for every consumer userdata and nothing else: it is the type check
  -- (getmetatable of a userdata would stop the JIT's trace).
  local names = NAMES[self]
  if names == nil or take(self, view) ~= 0 then return nil end
  local v = view
  local key, value
  if v.has_key ~= 0 then key = str(v.key, v.key_len) end
  if v.has_value ~= 0 then value = str(v.value, v.value_len) end
  release(self)  -- the data is copied: librdkafka's message goes now
  local topic, tt, m = names[v.topic], v.tstype
  if tt == 0 then
    m = { topic = topic, partition = v.partition, offset = v.offset, key = key, value = value }
  else
    m = { topic = topic, partition = v.partition, offset = v.offset, key = key, value = value,
          timestamp = v.timestamp, timestamp_type = tt == 1 and "create" or "log_append" }
  end
  setmetatable(m, MSG_MT)
  local d = names.serde
  if d ~= nil then return deserialize(m, d) end
  return m
end

-- A message of the full path, deserialized when the consumer has deserializers.
local function finish(self, m, err)
  if m ~= nil then
    local names = NAMES[self]
    local d = names and names.serde
    if d ~= nil then return deserialize(m, d) end
  end
  return m, err
end

-- messages() (consumer_messages.lua, loaded after this chunk) takes poll_until_end from the
-- consumer's private table: its messages are deserialized too.
do
  local private = debug.getregistry()["klua.private"].consumer
  local until_end = private.poll_until_end
  private.poll_until_end = function(self, ms) return finish(self, until_end(self, ms)) end
end

local type = type
local function poll(self, timeout_ms)
  -- anything but a number or nil goes to the full path, which checks (and raises)
  if timeout_ms == nil or type(timeout_ms) == "number" then
    local m, err = fast(self)
    if m then return m end
    if err ~= nil then return nil, err end
  end
  return finish(self, slow_poll(self, timeout_ms))
end

-- c:poll_batch(max [, opts]): up to max messages; waits (opts.timeout_ms, or the consumer's
-- poll_timeout_ms) only for the first, then takes what is buffered (polls of 0 ms, which never
-- yield: no rebalance hook runs while a batch is assembled). An error met after the first message
-- ends the batch and is returned by the next call, before anything else (weak keys: a collected
-- consumer keeps nothing here).
local pending = setmetatable({}, { __mode = "k" })
local floor = math.floor
local function poll_batch(self, max, opts)
  if type(max) ~= "number" or max < 1 or max ~= floor(max) then
    klua.errors.bad_argument("c:poll_batch", 1, "max must be a whole number >= 1, got " .. tostring(max))
  end
  local err = pending[self]
  if err ~= nil then
    pending[self] = nil
    return nil, err
  end
  local m
  m, err = poll(self, opts)  -- a table (or anything else) is checked by the full path
  if m == nil then
    if err ~= nil then return nil, err end
    return {}
  end
  local batch, n = { m }, 1
  while n < max do
    m, err = poll(self, 0)
    if m == nil then
      if err ~= nil then pending[self] = err end
      break
    end
    n = n + 1
    batch[n] = m
  end
  return batch
end

return poll, fast, poll_batch
