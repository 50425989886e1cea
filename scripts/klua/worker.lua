-- klua.worker: at-least-once handler workers on a consumer group, with retries (in place or
-- through a retry topic), a dead-letter topic, de-duplication, per-partition or per-key
-- ordering and a graceful stop.
--
--   local w = klua.worker{                    -- or require("klua.worker"){...}
--     group = "billing", topics = { "orders" },
--     handlers = { orders = function(msg, info) charge(msg) end },   -- or one function for all topics
--     order = "key",                          -- or "partition" (the default)
--     retry = { max = 3, base_ms = 100, max_ms = 5000, jitter = 0.2 },   -- topic = "billing.retry"
--     dead_letter = "orders.dlq",             -- or { topic = "orders.dlq", format = "envelope" }
--     dedupe = { window = 10000 },            -- key = function(msg) return id or nil end
--     concurrency = 4, max_queued = 10000,    -- handlers at once; messages held per partition
--     ["auto.commit.interval.ms"] = 1000,     -- dotted keys go to the consumer
--   }
--   klua.spawn(function() klua.sleep(60000); w:stop() end)
--   local counters, err = w:run()             -- yields until stopped; counters, or nil, err
--
-- Semantics
-- - At-least-once: each assigned partition has a lane (scripts/klua/worker/lane.lua) that tracks
--   the offsets polled but not finished. A message is finished when its handler succeeded (and
--   the records it sent through info.send were delivered), it was dropped as a duplicate, it
--   was handed to the retry topic, or dead-lettered (deliveries confirmed). The offset stored
--   (c:store, committed by auto-commit, on revoke and at stop) is the end of the partition's
--   contiguous finished prefix: a commit never skips an unfinished message.
-- - Order: a lane runs one handler at a time; at most `concurrency` (default 4) lanes run a
--   handler at once. order="partition": a message waiting for a retry holds back its partition
--   only. order="key": it holds back only the later messages with the same key (nil keys are
--   one key), which run in offset order once it is finished; the other keys go on.
-- - Flow: `max_queued` (default 10000) bounds each partition's polled, unfinished messages: at
--   the bound the partition is paused (c:pause), and resumed at half; the others keep flowing.
-- - A handler fails when it raises, or returns nil/false plus an error, or runs longer than
--   `handler_timeout_ms` (it is cancelled at its next wait; a KLUA_TIMEOUT error naming
--   "topic [partition] at offset N"). It is retried `retry.max` times (default 3) after
--   min(max_ms, base_ms * 2^(n-1)) * (1 +- jitter) ms (defaults 100, 10000, 0.2), on a timer
--   (scripts/klua/worker/timers.lua): a message in back-off holds no task. `info.attempt` is
--   the attempt number (1-based).
-- - retry.topic (retry-topic mode, for long back-offs): a failed attempt goes to that topic
--   (scripts/klua/worker/retry_topic.lua) and the lane goes on at once; the worker reads it
--   too, and a record whose time has not come pauses that partition until then. One retry
--   topic per group; it must exist.
-- - Retries exhausted (or no handler for the topic): with `dead_letter`, the message goes there
--   with its key, value and headers byte for byte, plus headers x-dead-letter-reason
--   ("retries-exhausted" | "no-handler"), x-exception-type (a klua error's name, a table's
--   `type`/`name`, else "error"), x-exception-code (a table error's `code`, if any),
--   x-exception-message (M.exception_message: readable text), x-original-topic, x-original-partition,
--   x-original-offset, x-attempts, x-failed-at (epoch ms); format="envelope" sends
--   klua.envelope.dead_letter's JSON instead. Without `dead_letter` (or when the dead-letter
--   produce fails) the worker stops: nothing is stored for that message, so it is redelivered
--   at the next start, and run() returns nil, err (name "KLUA_WORKER", `cause` the handler's or
--   the produce's error).
-- - De-duplication (opt-in, `dedupe = {}`): key(msg) defaults to the last "x-event-id" header
--   (messages without one are never duplicates). The ids of successfully handled messages are
--   kept in w.seen, an LRU of `window` ids (default 10000) in memory; a message whose id is in
--   it is skipped and finished.
-- - Revoke: the partition's queued messages and those waiting in back-off are dropped (never
--   handled after on_revoke returns, never stored), its handler in flight and deliveries
--   finish, the stored offsets are committed, then it is given up.
-- - Stop: w:stop() (callable from anywhere, does not wait) or SIGINT/SIGTERM. Queued messages and
--   pending retries are dropped (never stored: redelivered later), in-flight handlers finish,
--   stored offsets are committed, the group is left, and the counters are printed on stderr
--   (quiet = true to silence). Handlers run in shielded tasks (klua.spawn_shielded), which a
--   signal does not cancel: run() raises KLUA_CANCELLED in its task while the drain finishes in
--   a shielded task of its own (the process exits 130/143 after it).
-- - Events: every outcome is reported through klua.worker.events (handled, retried with the
--   handler's latency, dead_lettered, deduplicated, failed, queue_depth every 100 ms); served
--   metrics (klua.metrics.serve) include the klua_worker_* families (worker/metrics.lua).
-- - w:counters(): consumed, processed, retried, dead_lettered, failed, deduplicated, in_flight,
--   queued, elapsed_ms, lag (the last w:lag()). w:lag() yields: the group's total lag (klua.lag).
--
-- Other options: producer (a klua.producer or its config table, for dead-letter, retry and
-- info.send records), consumer (extra klua.consumer options, e.g. hook_timeout_ms), brokers,
-- on_assign, on_revoke (called after the worker's own), quiet. The consumer defaults to
-- auto.offset.reset=earliest.
-- key_deserializer, value_deserializer (also accepted inside `consumer`): applied by the worker
-- to the handler's view of each message (klua.serde's dec, or any fn(bytes, msg, field)), so
-- that retry records and dead letters keep the original bytes; a message that cannot be
-- deserialized is dead-lettered at once, never retried (x-dead-letter-reason
-- "deserialization-failed"), or without `dead_letter` it stops the worker like a failed handler.
local internal = require("klua.worker.internal")
local log = debug.getregistry()["klua.private"].log -- warnings through klua's log (host/lua/log.lua)
local events = require("klua.worker.events")
local lane_mod = require("klua.worker.lane")
local timers = require("klua.worker.timers")
local retry_topic = require("klua.worker.retry_topic")
local new_lru = require("klua.worker.lru")
local worker_metrics = require("klua.worker.metrics")

local M = {}
M.exception_message = internal.exception_message

local KNOWN = {
  group = true, topics = true, handlers = true, retry = true, dead_letter = true, dedupe = true,
  concurrency = true, producer = true, consumer = true, brokers = true, on_assign = true,
  on_revoke = true, max_queued = true, quiet = true, batch = true, exactly_once = true,
  order = true, handler_timeout_ms = true, key_deserializer = true, value_deserializer = true,
}
local RETRY_KEYS = { max = true, base_ms = true, max_ms = true, jitter = true, topic = true }
local POLL_MS = 100
local BATCH = 64    -- messages polled before the handlers get a turn
local DEPTH_MS = 100 -- queue_depth events at most this often

local is_cancel, emit, now = internal.is_cancel, events.emit, klua.now


-- Not part of the module (the REPL completes its names): tests reach the internals through the
-- registry, debug.getregistry()["klua.private"].worker.lru / .lane.
do
  local reg = debug.getregistry()
  reg["klua.private"] = reg["klua.private"] or {}
  reg["klua.private"].worker = { lru = new_lru, lane = lane_mod.new }
end

---------------------------------------------------------------------------------------------
local W = {}
-- The worker's internals: functions of a worker, kept off its public metatable (the REPL completes
-- methods through it). I.lane(w, topic, partition) and so on; the lanes' scheduling is in
-- worker/flow.lua, the handling of one message in worker/handle.lua.
local I = {}
W.__index = W
require("klua.worker.flow")(I)
require("klua.worker.handle")(I, M)

local function copy(t)
  local r = {}
  for k, v in pairs(t or {}) do r[k] = v end
  return r
end

local function bad(detail) klua.errors.bad_argument("klua.worker", 1, detail) end

-- A number option: finite (NaN passes every `<` test), >= min, <= max, whole when asked.
local function check_number(name, v, min, whole, max)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge or v < min or (max and v > max)
     or (whole and v ~= math.floor(v)) then
    bad(("'%s' must be a %s %s, got %s"):format(name, whole and "whole number" or "number",
      max and ("from " .. min .. " to " .. max) or (">= " .. min), type(v) == "number" and tostring(v) or type(v)))
  end
end

local function default_dedupe_key(msg) return msg:header("x-event-id") end

local function check_dead_letter(dl)
  if dl == nil then return nil end
  if type(dl) == "string" then return { topic = dl, format = "headers" } end
  if type(dl) ~= "table" then bad("'dead_letter' must be a topic name or {topic=, format=}") end
  for k in pairs(dl) do
    if k ~= "topic" and k ~= "format" then bad("unknown dead_letter option '" .. tostring(k) .. "'") end
  end
  if type(dl.topic) ~= "string" then bad("dead_letter.topic (a topic name) is required") end
  local format = dl.format or "headers"
  if format ~= "headers" and format ~= "envelope" then bad("dead_letter.format must be \"headers\" or \"envelope\"") end
  return { topic = dl.topic, format = format }
end

function M.new(opts)
  if type(opts) ~= "table" then bad("expected an options table") end
  for k in pairs(opts) do
    if type(k) ~= "string" then bad("option keys must be strings") end
    if not k:find(".", 1, true) and not KNOWN[k] then bad("unknown option '" .. k .. "'") end
  end
  if type(opts.group) ~= "string" then bad("'group' (a string) is required") end
  local topics = opts.topics
  if type(topics) == "string" then topics = { topics } end
  if type(topics) ~= "table" or #topics == 0 then bad("'topics' (a list of names) is required") end
  local handlers = opts.handlers
  if type(handlers) == "function" then
    handlers = { ["*"] = handlers }
  elseif type(handlers) ~= "table" then
    bad("'handlers' must be a table {[topic] = function(msg, info)} or a function")
  end
  for t, fn in pairs(handlers) do
    if type(fn) ~= "function" then bad("handlers[" .. tostring(t) .. "] must be a function") end
  end
  local r = opts.retry or {}
  if type(r) ~= "table" then bad("'retry' must be a table") end
  for k in pairs(r) do
    if not RETRY_KEYS[k] then bad("unknown retry option '" .. tostring(k) .. "'") end
  end
  local retry = { max = r.max or 3, base_ms = r.base_ms or 100, max_ms = r.max_ms or 10000, jitter = r.jitter or 0.2 }
  if retry.max ~= math.huge then check_number("retry.max", retry.max, 0, true) end  -- math.huge: for ever
  check_number("retry.base_ms", retry.base_ms, 0)
  check_number("retry.max_ms", retry.max_ms, 0)
  check_number("retry.jitter", retry.jitter, 0, false, 1)
  if r.topic ~= nil and type(r.topic) ~= "string" then bad("retry.topic must be a topic name") end
  local dedupe
  if opts.dedupe then
    if type(opts.dedupe) ~= "table" then bad("'dedupe' must be a table {key=, window=}") end
    dedupe = { key = opts.dedupe.key or default_dedupe_key, window = opts.dedupe.window or 10000 }
    if type(dedupe.key) ~= "function" then bad("dedupe.key must be a function") end
    check_number("dedupe.window", dedupe.window, 1, true)
    dedupe.topic, dedupe.window_ms = opts.dedupe.topic, opts.dedupe.window_ms -- the Kafka-backed store (dedupe_store.lua)
    if dedupe.topic ~= nil and (type(dedupe.topic) ~= "string" or type(dedupe.window_ms) ~= "number" or not (dedupe.window_ms >= 1) or dedupe.window_ms == math.huge) then
      bad("dedupe.topic must be a topic name, with dedupe.window_ms (ms >= 1)")
    end
  end
  local dead_letter = check_dead_letter(opts.dead_letter)
  local order = opts.order or "partition"
  if order ~= "partition" and order ~= "key" then bad("'order' must be \"partition\" or \"key\"") end
  local timeout = opts.handler_timeout_ms
  if timeout ~= nil then check_number("handler_timeout_ms", timeout, 1) end
  local max_queued = opts.max_queued or 10000
  check_number("max_queued", max_queued, 1, true)
  local concurrency = opts.concurrency or 4
  check_number("concurrency", concurrency, 1, true)
  -- a literal subscription needs a handler now, not when its first record arrives
  for _, t in ipairs(topics) do
    if type(t) ~= "string" then bad("'topics' must be a list of names") end
    if t:sub(1, 1) ~= "^" and t ~= r.topic and not handlers[t] and not handlers["*"] then
      bad("no handler for topic '" .. t .. "' (give handlers['" .. t .. "'] or a '*' handler)")
    end
  end
  local batch_mode = require("klua.worker.batch").check(opts) -- batch / exactly_once (worker/batch.lua)
  local deser = {}
  for _, field in ipairs{ "key", "value" } do
    local name = field .. "_deserializer"
    local f = opts[name]
    if f == nil and type(opts.consumer) == "table" then f = opts.consumer[name] end
    if f ~= nil and type(f) ~= "function" then bad("'" .. name .. "' must be a function (such as klua.serde.avro's dec)") end
    deser[field] = f
  end
  if not (deser.key or deser.value) then deser = nil end
  if deser and batch_mode then bad("key_deserializer and value_deserializer are for per-message handlers, not batch or exactly_once") end
  local w = setmetatable({
    batch_mode = batch_mode, deser = deser,
    opts = opts, group = opts.group, topics = topics, handlers = handlers, retry = retry,
    retry_topic = r.topic, dead_letter = dead_letter, dedupe = dedupe,
    seen = dedupe and new_lru(dedupe.window), key_mode = order == "key", order = order,
    handler_timeout_ms = timeout, concurrency = concurrency, max_queued = max_queued,
    resume_at = math.floor(max_queued / 2), quiet = opts.quiet,
    lanes = {}, runq = { h = 1, t = 0 }, active = 0, inflight = 0, unfinished = 0, pending = 0, in_backoff = 0,
    timers = timers.new(opts.group), state = "new", stopping = false,
    n = { consumed = 0, processed = 0, retried = 0, dead_lettered = 0, failed = 0, deduplicated = 0 },
  }, W)
  worker_metrics.track(w)
  return w
end

setmetatable(M, { __call = function(_, opts) return M.new(opts) end })

---------------------------------------------------------------------------------------------
-- The consumer and its rebalances

function I.consumer_config(self)
  local topics = copy(self.topics)
  if self.retry_topic then topics[#topics + 1] = self.retry_topic end
  local cfg = { group = self.group, topics = topics, ["auto.offset.reset"] = "earliest" }
  for k, v in pairs(self.opts) do
    if k:find(".", 1, true) then cfg[k] = v end
  end
  if self.opts.brokers then cfg.brokers = self.opts.brokers end
  for k, v in pairs(self.opts.consumer or {}) do cfg[k] = v end
  -- the worker deserializes for its handlers (worker/handle.lua): the consumer hands out bytes
  cfg.key_deserializer, cfg.value_deserializer = nil, nil
  local user_assign, user_revoke = self.opts.on_assign, self.opts.on_revoke
  cfg.on_assign = function(parts)
    for _, tp in ipairs(parts) do
      local bt = self.lanes[tp.topic]
      local old = bt and bt[tp.partition]
      if old then I.retire(self, old) end
      I.lane(self, tp.topic, tp.partition)
    end
    if self.seen and self.seen.sync then self.seen:sync() end -- the previous owner's adds (flushed at its revoke)
    if user_assign then user_assign(parts) end
  end
  cfg.on_revoke = function(parts)
    local mine = {}
    for _, tp in ipairs(parts) do
      local bt = self.lanes[tp.topic]
      local lane = bt and bt[tp.partition]
      if lane then
        lane.revoked = true -- its back-off timers and queued messages are dropped
        lane:drop()
        mine[#mine + 1] = lane
      end
    end
    -- the handlers in flight and the deliveries pending finish (and store) before the commit
    local busy = true
    while busy do
      busy = false
      for _, lane in ipairs(mine) do if lane.running or lane.pending > 0 then busy = true end end
      if busy then klua.sleep(5) end
    end
    for _, lane in ipairs(mine) do
      if lane.paused then pcall(self.c.resume, self.c, lane.tp) end -- leave no pause behind
      I.retire(self, lane)
    end
    if self.seen and self.seen.flush then self.seen:flush() end -- the next owner's sync will read these ids
    if not self.closing then -- at close librdkafka commits the stored offsets itself
      local ok, r, err = pcall(self.c.commit, self.c)
      if not (ok and r) and not self.quiet then
        log.say("warn", "klua.worker", "klua.worker " .. self.group, "commit on revoke: " .. tostring(ok and err or r),
          { worker = self.group })
      end
    end
    if user_revoke then user_revoke(parts) end
  end
  return cfg
end

-- Retry-topic mode needs its topic: UNKNOWN_TOPIC_OR_PART at start, naming it, when it is missing.
function I.check_retry_topic(self)
  local admin = klua.admin{ brokers = self.opts.brokers }
  local d, err = admin:describe_topics({ self.retry_topic }, { configs = false })
  admin:close()
  if not d then
    if err and err.name == "KLUA_EMBEDDED_UNSUPPORTED" then return true end
    return nil, err
  end
  local e = d[1] and d[1].error
  if e then
    return nil, klua.errors.new{ name = "UNKNOWN_TOPIC_OR_PART", kafka = true, topic = self.retry_topic,
      message = string.format("retry topic %s: %s (create it before the worker starts: one retry topic per group, e.g. \"%s.retry\")",
                              self.retry_topic, M.exception_message(e), self.group) }
  end
  return true
end

---------------------------------------------------------------------------------------------
-- Public methods

function W:counters()
  local c = copy(self.n)
  c.in_flight, c.queued, c.lag = self.inflight, self.unfinished - self.inflight, self.last_lag
  c.elapsed_ms = self.started and ((self.stopped_at or klua.now()) - self.started) or 0
  return c
end

function W:lag()
  local names = {}
  for _, t in ipairs(self.topics) do
    if t:sub(1, 1) == "^" then names = nil; break end
    names[#names + 1] = t
  end
  if names and self.retry_topic then names[#names + 1] = self.retry_topic end
  local l, err = klua.lag(self.group, names)
  if not l then return nil, err end
  self.last_lag = l.lag
  return l.lag
end

function W:stop() self.stopping = true end

function I.summary(self)
  local c = self:counters()
  return string.format("klua.worker %s: consumed=%d processed=%d retried=%d dead_lettered=%d deduplicated=%d failed=%d in %.1fs",
    self.group, c.consumed, c.processed, c.retried, c.dead_lettered, c.deduplicated, c.failed, c.elapsed_ms / 1000)
end

function I.drain(self)
  self.stopping = true
  for _, bt in pairs(self.lanes) do
    for _, lane in pairs(bt) do lane:drop() end -- never stored: redelivered later
  end
  self.timers:stop()
  self.in_backoff = 0 -- those timers are gone
  -- runners end after their current message; deliveries confirm (or fail) what was handed over
  while self.active > 0 or self.pending > 0 do klua.sleep(5) end
  self.unfinished = 0 -- what is left was dropped
  if self.seen and self.seen.close then self.seen:close() end -- the store's adds are delivered before the commit
  local ok, err = self.c:commit()
  if not ok and not self.quiet then
    log.say("warn", "klua.worker", "klua.worker " .. self.group, "final commit: " .. tostring(err), { worker = self.group })
  end
  self.closing = true
  self.c:close()
  if self.own_producer and self.p then self.p:close() end
  self.state = "stopped"
  self.stopped_at = klua.now()
  if not self.quiet then internal.say_summary(self, I.summary(self)) end
end

function W:run()
  if self.batch_mode then return require("klua.worker.batch").run(self) end
  if self.state ~= "new" then klua.errors.misuse("worker:run", "run() was already called") end
  self.state = "running"
  self.started = klua.now()
  if self.retry_topic then
    local ok, err = I.check_retry_topic(self)
    if not ok then
      self.state, self.stopped_at = "stopped", klua.now()
      return nil, err
    end
  end
  if self.dedupe and self.dedupe.topic then -- the store outlives the process: opened before the consumer
    local ds = require("klua.worker.dedupe_store")
    local o = ds.connection_keys(self.opts, self.opts.consumer) -- security.protocol, sasl.*, ssl.*, ...
    o.topic, o.window_ms, o.brokers, o.producer, o.quiet = self.dedupe.topic, self.dedupe.window_ms, self.opts.brokers, self.opts.producer, self.quiet
    local store, err = ds.open(o)
    if not store then self.state = "stopped"; return nil, err end
    self.seen = store
  end
  self.c = klua.consumer(I.consumer_config(self))
  local cancelled
  local c, polled, depth_at = self.c, 0, klua.now()
  while not self.stopping do
    local ok, msg, err = pcall(c.poll, c, POLL_MS)
    if not ok then
      if is_cancel(msg) then cancelled = msg; break end
      I.fail(self, msg)
    elseif msg then
      I.dispatch(self, msg)
      polled = polled + 1
      -- let the handlers run between batches: the poll takes buffered messages without yielding
      if polled % BATCH == 0 then coroutine.yield() end
    elseif err then
      if err.fatal then I.fail(self, err)
      elseif not self.quiet then log.say("warn", "klua.worker", "klua.worker " .. self.group, err, { worker = self.group }) end
    end
    local t = now()
    if t - depth_at >= DEPTH_MS then
      depth_at = t
      emit(self, "queue_depth", nil, nil, self.unfinished)
    end
  end
  -- The drain (wait for in-flight handlers, commit, leave) runs shielded, so a signal arriving
  -- now cannot cut it short; when run() itself was cancelled, it goes on after run() raises.
  self.stopping = true
  local drain = klua.spawn_shielded(I.drain, self)
  if cancelled then error(cancelled, 0) end
  local ok, e = pcall(drain.join, drain)
  if not ok then error(e, 0) end
  if drain:status() == "failed" then error(select(2, drain:join()), 0) end
  if self.error then return nil, self.error end
  return self:counters()
end

return M
