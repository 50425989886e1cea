-- klua.worker: at-least-once handler workers on a consumer group, with retries, a dead-letter
-- topic, de-duplication, per-partition ordering and a graceful stop.
--
--   local w = klua.worker{                    -- or require("klua.worker"){...}
--     group = "billing", topics = { "orders" },
--     handlers = { orders = function(msg, info) charge(msg) end },   -- or one function for all topics
--     retry = { max = 3, base_ms = 100, max_ms = 5000, jitter = 0.2 },
--     dead_letter = "orders.dlq",
--     dedupe = { window = 10000 },            -- key = function(msg) return id or nil end
--     concurrency = 4,
--     ["auto.commit.interval.ms"] = 1000,     -- dotted keys go to the consumer
--   }
--   klua.spawn(function() klua.sleep(60000); w:stop() end)
--   local counters, err = w:run()             -- yields until stopped; counters, or nil, err
--
-- Semantics
-- - At-least-once: a message's offset is stored (c:store, then committed by auto-commit, on revoke
--   and at stop) only after its handler succeeded, it was dropped as a duplicate, or it was
--   dead-lettered with a confirmed delivery (p:produce). Nothing else is ever committed.
-- - Order: one task per partition handles that partition's messages one at a time, in offset
--   order; at most `concurrency` (default 4) partitions run at once. A rebalance's revoke drops
--   the partition's queued messages, waits for its in-flight handler, commits, then gives it up.
-- - A handler fails when it raises, or returns nil/false plus an error. It is retried `retry.max`
--   times (default 3) after sleeping min(max_ms, base_ms * 2^(n-1)) * (1 +- jitter) ms (defaults
--   100, 10000, 0.2). `info.attempt` is the attempt number (1-based).
-- - Retries exhausted (or no handler for the topic): with `dead_letter`, the message goes there
--   with its key, value and headers byte for byte, plus headers x-dead-letter-reason
--   ("retries-exhausted" | "no-handler"), x-exception-type (a klua error's name, a table's
--   `type`/`name`, else "error"), x-exception-code (a table error's `code`, if any),
--   x-exception-message (M.exception_message: readable text), x-original-topic, x-original-partition,
--   x-original-offset, x-attempts, x-failed-at (epoch ms). Without `dead_letter` (or when the
--   dead-letter produce fails) the worker stops: nothing is stored for that message, so it is
--   redelivered at the next start, and run() returns nil, err (name "KLUA_WORKER", `cause` the
--   handler's or the produce's error).
-- - De-duplication (opt-in, `dedupe = {}`): key(msg) defaults to the last "x-event-id" header
--   (messages without one are never duplicates); for a JSON field use
--   key = function(m) local t = klua.json.decode(m.value or "") return t and t.eventId end.
--   The ids of successfully handled messages are kept in an LRU of `window` ids (default
--   10000), in memory and per worker; a message whose id is in it is skipped and stored.
-- - Stop: w:stop() (callable from anywhere, does not wait) or SIGINT/SIGTERM. Queued messages are
--   dropped (they were never stored), in-flight handlers finish, pending retries are abandoned
--   (redelivered later), stored offsets are committed, the group is left, and the counters are
--   printed on stderr (quiet = true to silence). Handlers run in shielded tasks
--   (klua.spawn_shielded), which a signal does not cancel: on SIGINT/SIGTERM the polling stops,
--   a handler in flight runs to its end (once) and its offset is stored, then the drain commits
--   and leaves the group. run() raises KLUA_CANCELLED in its task while the drain finishes in a
--   shielded task of its own (the process exits 130/143 after it; a second signal exits at once).
--   A pending retry's backoff ends at once on stop; that message is abandoned (not stored).
-- - w:counters(): consumed, processed, retried, dead_lettered, failed, deduplicated, in_flight,
--   queued, elapsed_ms, lag (the last w:lag()). w:lag() yields: the group's total lag (klua.lag).
--
-- Other options: producer (a klua.producer or its config table, for the dead-letter topic),
-- consumer (extra klua.consumer options, e.g. hook_timeout_ms), brokers, on_assign, on_revoke
-- (called after the worker's own), max_queued (messages polled but not handled, default 1000),
-- quiet. The consumer defaults to auto.offset.reset=earliest.
local M = {}

local KNOWN = {
  group = true, topics = true, handlers = true, retry = true, dead_letter = true, dedupe = true,
  concurrency = true, producer = true, consumer = true, brokers = true, on_assign = true,
  on_revoke = true, max_queued = true, quiet = true, batch = true, exactly_once = true,
}
local POLL_MS = 100
local BATCH = 64 -- messages a partition task handles before letting a waiting partition run

local function is_cancel(e) return type(e) == "table" and e.name == "KLUA_CANCELLED" end

local function werr(message, fields)
  local e = klua.errors.new{ name = "KLUA_WORKER", message = message }
  for k, v in pairs(fields or {}) do e[k] = v end
  return e
end

-- true when the current task was cancelled (its waits raise KLUA_CANCELLED)
local function self_cancelled()
  local ok, e = pcall(klua.sleep, 0)
  return not ok and is_cancel(e)
end

---------------------------------------------------------------------------------------------
-- LRU of ids
local Lru = {}
local LruI = {}  -- internals, off the metatable
Lru.__index = Lru
local function new_lru(n)
  local head = {}
  head.prev, head.next = head, head
  return setmetatable({ n = n, size = 0, map = {}, head = head }, Lru)
end
local function unlink(node) node.prev.next, node.next.prev = node.next, node.prev end
function LruI.front(self, node)
  local h = self.head
  node.prev, node.next = h, h.next
  h.next.prev = node
  h.next = node
end
function Lru:has(id)
  local node = self.map[id]
  if not node then return false end
  unlink(node); LruI.front(self, node)
  return true
end
function Lru:add(id)
  if self:has(id) then return end
  local node = { id = id }
  self.map[id] = node
  LruI.front(self, node)
  self.size = self.size + 1
  if self.size > self.n then
    local last = self.head.prev
    unlink(last)
    self.map[last.id] = nil
    self.size = self.size - 1
  end
end
-- Not part of the module (the REPL completes its names): tests reach the LRU through the registry,
-- debug.getregistry()["klua.private"].worker.lru.
do
  local reg = debug.getregistry()
  reg["klua.private"] = reg["klua.private"] or {}
  reg["klua.private"].worker = { lru = new_lru }
end

---------------------------------------------------------------------------------------------
local W = {}
-- The worker's internals: functions of a worker, kept off its public metatable (the REPL completes
-- methods through it). I.part(w, topic, partition) and so on.
local I = {}
W.__index = W

local function copy(t)
  local r = {}
  for k, v in pairs(t or {}) do r[k] = v end
  return r
end

local function default_dedupe_key(msg) return msg:header("x-event-id") end

function M.new(opts)
  if type(opts) ~= "table" then klua.errors.bad_argument("klua.worker", 1, "expected an options table") end
  for k in pairs(opts) do
    if type(k) ~= "string" then klua.errors.bad_argument("klua.worker", 1, "option keys must be strings") end
    if not k:find(".", 1, true) and not KNOWN[k] then
      klua.errors.bad_argument("klua.worker", 1, "unknown option '" .. k .. "'")
    end
  end
  if type(opts.group) ~= "string" then klua.errors.bad_argument("klua.worker", 1, "'group' (a string) is required") end
  local topics = opts.topics
  if type(topics) == "string" then topics = { topics } end
  if type(topics) ~= "table" or #topics == 0 then klua.errors.bad_argument("klua.worker", 1, "'topics' (a list of names) is required") end
  local handlers = opts.handlers
  if type(handlers) == "function" then
    handlers = { ["*"] = handlers }
  elseif type(handlers) ~= "table" then
    klua.errors.bad_argument("klua.worker", 1, "'handlers' must be a table {[topic] = function(msg, info)} or a function")
  end
  for t, fn in pairs(handlers) do
    if type(fn) ~= "function" then klua.errors.bad_argument("klua.worker", 1, "handlers[" .. tostring(t) .. "] must be a function") end
  end
  local r = opts.retry or {}
  if type(r) ~= "table" then klua.errors.bad_argument("klua.worker", 1, "'retry' must be a table") end
  for k in pairs(r) do
    if k ~= "max" and k ~= "base_ms" and k ~= "max_ms" and k ~= "jitter" then
      klua.errors.bad_argument("klua.worker", 1, "unknown retry option '" .. tostring(k) .. "'")
    end
  end
  local retry = { max = r.max or 3, base_ms = r.base_ms or 100, max_ms = r.max_ms or 10000, jitter = r.jitter or 0.2 }
  if retry.jitter < 0 or retry.jitter > 1 then klua.errors.bad_argument("klua.worker", 1, "retry.jitter must be within 0..1") end
  local dedupe
  if opts.dedupe then
    if type(opts.dedupe) ~= "table" then klua.errors.bad_argument("klua.worker", 1, "'dedupe' must be a table {key=, window=}") end
    dedupe = { key = opts.dedupe.key or default_dedupe_key, window = opts.dedupe.window or 10000 }
    if type(dedupe.key) ~= "function" then klua.errors.bad_argument("klua.worker", 1, "dedupe.key must be a function") end
    dedupe.topic, dedupe.window_ms = opts.dedupe.topic, opts.dedupe.window_ms -- the Kafka-backed store (dedupe_store.lua)
    if dedupe.topic ~= nil and (type(dedupe.topic) ~= "string" or type(dedupe.window_ms) ~= "number" or dedupe.window_ms < 1) then
      klua.errors.bad_argument("klua.worker", 1, "dedupe.topic must be a topic name, with dedupe.window_ms (ms >= 1)")
    end
  end
  if opts.dead_letter ~= nil and type(opts.dead_letter) ~= "string" then
    klua.errors.bad_argument("klua.worker", 1, "'dead_letter' must be a topic name")
  end
  local batch_mode = require("klua.worker.batch").check(opts) -- batch / exactly_once (worker/batch.lua)
  local w = setmetatable({
    batch_mode = batch_mode, opts = opts, group = opts.group, topics = topics, handlers = handlers, retry = retry,
    dead_letter = opts.dead_letter, dedupe = dedupe, seen = dedupe and new_lru(dedupe.window),
    concurrency = opts.concurrency or 4, max_queued = opts.max_queued or 1000, quiet = opts.quiet,
    parts = {}, waiting = {}, active = 0, queued = 0, inflight = 0,
    state = "new", stopping = false,
    n = { consumed = 0, processed = 0, retried = 0, dead_lettered = 0, failed = 0, deduplicated = 0 },
  }, W)
  return w
end

setmetatable(M, { __call = function(_, opts) return M.new(opts) end })

local function pkey(topic, partition) return topic .. "\0" .. partition end

function I.part(self, topic, partition)
  local k = pkey(topic, partition)
  local ps = self.parts[k]
  if not ps then
    ps = { topic = topic, partition = partition, q = {}, head = 1, tail = 0 }
    self.parts[k] = ps
  end
  return ps
end

function I.drop_queue(self, ps)
  self.queued = self.queued - (ps.tail - ps.head + 1)
  ps.q, ps.head, ps.tail = {}, 1, 0
end

function I.consumer_config(self)
  local cfg = { group = self.group, topics = self.topics, ["auto.offset.reset"] = "earliest" }
  for k, v in pairs(self.opts) do
    if k:find(".", 1, true) then cfg[k] = v end
  end
  if self.opts.brokers then cfg.brokers = self.opts.brokers end
  for k, v in pairs(self.opts.consumer or {}) do cfg[k] = v end
  local user_assign, user_revoke = self.opts.on_assign, self.opts.on_revoke
  cfg.on_assign = function(parts)
    for _, tp in ipairs(parts) do
      local old = self.parts[pkey(tp.topic, tp.partition)]
      if old then old.revoked = true; I.drop_queue(self, old) end
      self.parts[pkey(tp.topic, tp.partition)] = nil
      I.part(self, tp.topic, tp.partition)
    end
    if self.seen and self.seen.sync then self.seen:sync() end -- the previous owner's adds (flushed at its revoke)
    if user_assign then user_assign(parts) end
  end
  cfg.on_revoke = function(parts)
    local mine = {}
    for _, tp in ipairs(parts) do
      local ps = self.parts[pkey(tp.topic, tp.partition)]
      if ps then
        ps.revoked = true
        I.drop_queue(self, ps)
        mine[#mine + 1] = ps
      end
    end
    -- the in-flight handlers of these partitions finish (and store) before the commit
    local busy = true
    while busy do
      busy = false
      for _, ps in ipairs(mine) do if ps.inflight then busy = true end end
      if busy then klua.sleep(5) end
    end
    if self.seen and self.seen.flush then self.seen:flush() end -- the next owner's sync will read these ids
    if not self.closing then -- at close librdkafka commits the stored offsets itself
      local ok, r, err = pcall(self.c.commit, self.c)
      if not (ok and r) and not self.quiet then
        io.stderr:write("klua.worker ", self.group, ": commit on revoke: ", tostring(ok and err or r), "\n")
      end
    end
    for _, ps in ipairs(mine) do
      if self.parts[pkey(ps.topic, ps.partition)] == ps then self.parts[pkey(ps.topic, ps.partition)] = nil end
    end
    if user_revoke then user_revoke(parts) end
  end
  return cfg
end

function I.producer(self)
  if self.p then return self.p end
  local p = self.opts.producer
  if p ~= nil and not (type(p) == "table" and getmetatable(p) == nil) then
    self.p = p -- a producer object
  else
    local cfg = copy(p)
    if self.opts.brokers and cfg.brokers == nil then cfg.brokers = self.opts.brokers end
    self.p = klua.producer(cfg)
    self.own_producer = true
  end
  return self.p
end

function I.backoff(self, n)
  local r = self.retry
  local d = math.min(r.max_ms, r.base_ms * 2 ^ (n - 1))
  d = d * (1 + r.jitter * (2 * math.random() - 1))
  return math.max(0, d)
end

local function exception_type(e)
  if type(e) == "table" then return tostring(e.name or e.type or "table") end
  return "error"
end

-- An error's readable text for a dead-letter header or a failure message: a table's `message`,
-- else its __tostring (one that raises is not trusted), else its pretty form; never
-- "table: 0x...".
function M.exception_message(e)
  if type(e) ~= "table" then return tostring(e) end
  if type(e.message) == "string" then return e.message end
  local mt = getmetatable(e)
  if type(mt) == "table" and mt.__tostring then
    local ok, text = pcall(tostring, e)
    if ok and type(text) == "string" then return text end
    -- Its __tostring raised: print its fields without the metatable (the pretty printer would
    -- call the same __tostring).
    local fields = {}
    for k, v in next, e do fields[k] = v end
    e = fields
  end
  local ok, text = pcall(require("klua.pretty").format, e)
  return ok and text or "(an error value that cannot be printed)"
end

-- Sleeps ms, waking early when the worker stops: a long backoff must not hold up a stop (the
-- runners are shielded from signals, so nothing else would cut it short).
function I.sleep(self, ms)
  local deadline = klua.now() + ms
  while not self.stopping do
    local left = deadline - klua.now()
    if left <= 0 then return end
    klua.sleep(math.min(left, 50))
  end
end

function I.store(self, msg)
  local ok, err = self.c:store(msg)
  if not ok and not self.quiet then
    io.stderr:write("klua.worker ", self.group, ": store: ", tostring(err), "\n")
  end
end

-- Handles one message to the end: handled, duplicate or dead-lettered (offset stored), or
-- abandoned because the worker stops (not stored). Raises KLUA_CANCELLED when its own task was
-- cancelled, and a KLUA_WORKER error when the message can be neither handled nor dead-lettered.
function I.process(self, msg, first_attempt)
  local n = self.n
  local id
  if self.dedupe then
    id = self.dedupe.key(msg)
    if id ~= nil and self.seen:has(id) then
      n.deduplicated = n.deduplicated + 1
      I.store(self, msg)
      return
    end
  end
  local handler = self.handlers[msg.topic] or self.handlers["*"]
  local attempts, last, reason = (first_attempt or 1) - 1, nil, "retries-exhausted"
  if not handler then
    reason, last = "no-handler", werr("no handler for topic " .. msg.topic)
  else
    while true do
      attempts = attempts + 1
      local ok, r1, r2 = pcall(handler, msg, { attempt = attempts, worker = self })
      if ok and (r1 ~= nil and r1 ~= false or r2 == nil) then
        n.processed = n.processed + 1
        if id ~= nil then self.seen:add(id) end
        I.store(self, msg)
        return
      end
      last = ok and r2 or r1
      if not ok and is_cancel(last) and self_cancelled() then error(last, 0) end
      if attempts > self.retry.max then break end
      if self.stopping then return "abandoned" end
      n.retried = n.retried + 1
      I.sleep(self, I.backoff(self, attempts)) -- a cancellation here propagates: finished in a fresh task
      if self.stopping then return "abandoned" end
    end
  end
  local where = string.format("%s [%d] at offset %d", msg.topic, msg.partition, msg.offset)
  if not self.dead_letter then
    n.failed = n.failed + 1
    error(werr(string.format("handler failed for %s after %d attempt(s): %s", where, attempts,
                             M.exception_message(last)),
      { topic = msg.topic, partition = msg.partition, cause = last }), 0)
  end
  local headers = {}
  for i, h in ipairs(msg.headers or {}) do headers[i] = { h[1], h[2] } end
  local extra = {
    { "x-dead-letter-reason", reason }, { "x-exception-type", exception_type(last) },
    { "x-exception-message", M.exception_message(last) }, { "x-original-topic", msg.topic },
    { "x-original-partition", tostring(msg.partition) }, { "x-original-offset", string.format("%d", msg.offset) },
    { "x-attempts", tostring(attempts) }, { "x-failed-at", string.format("%d", klua.time()) },
  }
  if type(last) == "table" and last.code ~= nil then
    table.insert(extra, 3, { "x-exception-code", tostring(last.code) })
  end
  for _, h in ipairs(extra) do headers[#headers + 1] = h end
  local report, perr = I.producer(self):produce{ topic = self.dead_letter, key = msg.key, value = msg.value,
                                                 headers = headers }
  if not report then
    n.failed = n.failed + 1
    error(werr(string.format("dead-letter produce to %s failed for %s: %s", self.dead_letter, where, tostring(perr)),
      { topic = msg.topic, partition = msg.partition, cause = perr }), 0)
  end
  n.dead_lettered = n.dead_lettered + 1
  I.store(self, msg)
end

function I.fail(self, e)
  if not self.error then self.error = e end
  self.stopping = true
end

-- Runs one message with in-flight accounting; when this task is cancelled mid-message (runners are
-- shielded from signals, so only an explicit task:cancel() does that), the
-- message is finished in a fresh (uncancelled) task. Returns false when the task must end.
function I.run_one(self, ps, msg)
  ps.inflight = msg
  self.inflight = self.inflight + 1
  local ok, e = pcall(I.process, self, msg)
  if not ok and is_cancel(e) then
    klua.spawn(function()
      local ok2, e2 = pcall(I.process, self, msg)
      ps.inflight = nil
      self.inflight = self.inflight - 1
      if not ok2 then I.fail(self, e2) end
    end)
    self.stopping = true -- this task was cancelled: the whole worker stops
    return false
  end
  ps.inflight = nil
  self.inflight = self.inflight - 1
  if not ok then I.fail(self, e); return false end
  return true
end

function I.runner(self, ps)
  while ps do
    local count = 0
    while not self.stopping and not ps.revoked and ps.head <= ps.tail do
      local msg = ps.q[ps.head]
      ps.q[ps.head] = nil
      ps.head = ps.head + 1
      self.queued = self.queued - 1
      if not I.run_one(self, ps, msg) then break end
      count = count + 1
      if count >= BATCH and #self.waiting > 0 then break end
    end
    if not self.stopping and not ps.revoked and ps.head <= ps.tail then
      self.waiting[#self.waiting + 1] = ps -- let a waiting partition run; this one goes to the back
    else
      ps.scheduled = false
    end
    ps = nil
    while not self.stopping and #self.waiting > 0 do
      local nxt = table.remove(self.waiting, 1)
      if not nxt.revoked then ps = nxt; break end
      nxt.scheduled = false
    end
  end
  self.active = self.active - 1
end

function I.dispatch(self, msg)
  self.n.consumed = self.n.consumed + 1
  local ps = I.part(self, msg.topic, msg.partition)
  ps.tail = ps.tail + 1
  ps.q[ps.tail] = msg
  self.queued = self.queued + 1
  if not ps.scheduled then
    ps.scheduled = true
    if self.active < self.concurrency then
      self.active = self.active + 1
      -- shielded: a signal must not interrupt a handler in flight; the runner sees `stopping`
      -- after the current message and ends
      klua.spawn_shielded(I.runner, self, ps)
    else
      self.waiting[#self.waiting + 1] = ps
    end
  end
end

function W:counters()
  local c = copy(self.n)
  c.in_flight, c.queued, c.lag = self.inflight, self.queued, self.last_lag
  c.elapsed_ms = self.started and ((self.stopped_at or klua.now()) - self.started) or 0
  return c
end

function W:lag()
  local names = {}
  for _, t in ipairs(self.topics) do
    if t:sub(1, 1) == "^" then names = nil; break end
    names[#names + 1] = t
  end
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
  for _, ps in pairs(self.parts) do I.drop_queue(self, ps) end
  self.waiting = {}
  while self.inflight > 0 do klua.sleep(5) end
  if self.seen and self.seen.close then self.seen:close() end -- the store's adds are delivered before the commit
  local ok, err = self.c:commit()
  if not ok and not self.quiet then io.stderr:write("klua.worker ", self.group, ": final commit: ", tostring(err), "\n") end
  self.closing = true
  self.c:close()
  if self.own_producer and self.p then self.p:close() end
  self.state = "stopped"
  self.stopped_at = klua.now()
  if not self.quiet then io.stderr:write(I.summary(self), "\n") end
end

function W:run()
  if self.batch_mode then return require("klua.worker.batch").run(self) end
  if self.state ~= "new" then klua.errors.misuse("worker:run", "run() was already called") end
  self.state = "running"
  self.started = klua.now()
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
  while not self.stopping do
    local ok, msg, err
    if self.queued >= self.max_queued then
      ok, msg = pcall(klua.sleep, 5)
    else
      ok, msg, err = pcall(self.c.poll, self.c, POLL_MS)
    end
    if not ok then
      if is_cancel(msg) then cancelled = msg; break end
      I.fail(self, msg)
    elseif msg then
      local ps = self.parts[pkey(msg.topic, msg.partition)]
      if not (ps and ps.revoked) then I.dispatch(self, msg) end
    elseif err then
      if err.fatal then I.fail(self, err)
      elseif not self.quiet then io.stderr:write("klua.worker ", self.group, ": ", tostring(err), "\n") end
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
