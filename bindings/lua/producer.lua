-- The producer's Lua half (bindings/producer_lua.cpp loads it once per runtime): the method
-- table of klua.producer, built around the C primitives in `raw`, and the one function that
-- builds a delivery report table.
--
--   raw: send, produce, produce_batch (C functions that may resume with RETRY: call again),
--        flush(self, timeout_ms), close (already wrapped: a cancellation raises), outq_len,
--        not_transactional(self, op), warn_deprecated(what, instead)
--   CANCEL, RETRY: the scheduler's cancel sentinel and the producer's retry marker
-- Returns the methods table and report(topic, partition, offset, timestamp, tstype).
local raw, CANCEL, RETRY = ...
local error, type, pairs, tostring = error, type, pairs, tostring

-- Programmer errors raise KLUA_INVALID_ARGUMENT "bad argument #n to 'p:flush' (...)" at the
-- script's line (klua.errors.bad_argument; self is argument #1).
local function bad_argument(fn, n, fmt, ...)
  klua.errors.bad_argument(fn, n, fmt:format(...))
end

-- The delivery report: {topic, partition, offset[, timestamp, timestamp_type]}. tstype is 0 when
-- the broker gave no timestamp, 1 for create time, 2 for log-append time. Every report a script
-- sees is made here (p:produce, p:produce_batch, on_delivery, the fast path's batches).
local function report(topic, partition, offset, timestamp, tstype)
  if tstype == 0 then return { topic = topic, partition = partition, offset = offset } end
  return { topic = topic, partition = partition, offset = offset, timestamp = timestamp,
           timestamp_type = tstype == 1 and "create" or "log_append" }
end

-- fn(self, arg) may resume with RETRY (it let the loop run, or waited for room in the queue):
-- call it again with the same arguments.
local function retrying(fn)
  local function call(self, a)
    local r, e = fn(self, a)
    if r == RETRY then return call(self, a) end
    if r == CANCEL then error(e, 0) end
    return r, e
  end
  return call
end

local raw_produce = raw.produce
-- p:produce(msg): the C function yields and is resumed with the report's fields, nil and an
-- error, or the retry or cancel markers.
local function produce(self, msg)
  local topic, partition, offset, timestamp, tt = raw_produce(self, msg)
  if type(topic) == "string" then return report(topic, partition, offset, timestamp, tt) end
  if topic == RETRY then return produce(self, msg) end
  if topic == CANCEL then error(partition, 0) end
  return topic, partition
end

-- Old spellings warn once per runtime, naming the script's line (bindings/deprecation.cpp).
local deprecate = raw.warn_deprecated

-- p:flush{timeout_ms=} -> true | nil, err. The old positional p:flush(timeout_ms) still works
-- for one release, with a warning printed once.
local raw_flush = raw.flush
local function flush(self, opts)
  local timeout
  if type(opts) == "table" then
    for k in pairs(opts) do
      if k ~= "timeout_ms" then
        bad_argument("p:flush", 2, "unknown option '%s' (options: timeout_ms)", tostring(k))
      end
    end
    timeout = opts.timeout_ms
    if timeout ~= nil and type(timeout) ~= "number" then
      bad_argument("p:flush", 2, "option 'timeout_ms' must be a number, got %s", type(timeout))
    end
  elseif type(opts) == "number" then
    deprecate("p:flush(timeout_ms)", "p:flush{timeout_ms = N}")
    timeout = opts
  elseif opts ~= nil then
    bad_argument("p:flush", 2, "expected an options table {timeout_ms = N}, got %s", type(opts))
  end
  return raw_flush(self, timeout)
end

-- A producer made without transactional.id answers the transactional calls with
-- _NOT_CONFIGURED (klua.producer with a transactional.id makes a transactional producer, whose
-- methods bindings/lua/transactions.lua adds to these).
local not_transactional = raw.not_transactional
local function refuse(op)
  return function(self) return not_transactional(self, op) end
end

local methods = {
  send = retrying(raw.send),  -- replaced by the fast path (producer_fast.lua), which falls back to it
  produce = produce,
  produce_batch = retrying(raw.produce_batch),
  flush = flush,
  close = raw.close,
  outq_len = raw.outq_len,
  init_transactions = refuse("p:init_transactions"),
  begin = refuse("p:begin"),
  send_offsets = refuse("p:send_offsets"),
  commit = refuse("p:commit"),
  abort = refuse("p:abort"),
  transaction = refuse("p:transaction"),
}
return methods, report
