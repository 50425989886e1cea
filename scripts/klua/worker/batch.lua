-- klua.worker.batch: the worker's batch handlers and its exactly-once (transactional) mode.
-- klua.worker{} checks the options with M.check and W:run hands the whole run to M.run when
-- either `batch` or `exactly_once` is given.
--
-- One loop, one polled batch at a time (c:poll_batch): the batch is split by partition (offset
-- order kept); the partitions' groups run at once (up to `concurrency`), each in a shielded task.
--   batch = {max, timeout_ms}   handlers take (msgs, info): one partition's messages. A failed
--                               batch is retried whole (the worker's back-off); when retries are
--                               exhausted each message is dead-lettered, or the worker stops.
--   exactly_once                handlers (per message, or per batch) only buffer their outputs
--                               (info.send); when every group of the polled batch is done, one
--                               transaction sends the outputs and dead-letter records and the
--                               input offsets (p:send_offsets with the consumer's group metadata).
--                               A failed transaction is aborted, its partitions are sought back to
--                               the batch's first offsets, and the batch runs again.
-- Without exactly_once, a group's outputs are produced (deliveries confirmed) and then its last
-- offset is stored (committed by auto-commit, on revoke and at stop): at-least-once.
local events = require("klua.worker.events")
local log = debug.getregistry()["klua.private"].log -- warnings through klua's log (host/lua/log.lua)
local emit = events.emit

local M = {}

local POLL_MS = 100
local EOS_BATCH = 1000 -- messages per transaction with per-message handlers (no `batch` option)
-- The transactional producer's retry.backoff.ms unless given: a transaction that begins right
-- after the previous one's commit meets CONCURRENT_TRANSACTIONS while the broker writes the
-- markers, retried after this back-off. librdkafka's 100 ms held 1,000-message transactions on
-- the test broker to 15.5K msg/s; 20 ms gave 28.5K, 5 ms 33K (Java's producer uses 20 ms there).
local EOS_RETRY_BACKOFF_MS = 10

local function is_cancel(e) return type(e) == "table" and e.name == "KLUA_CANCELLED" end

-- true when the current task was cancelled (its waits raise KLUA_CANCELLED)
local function self_cancelled()
  local ok, e = pcall(klua.sleep, 0)
  return not ok and is_cancel(e)
end

local function bad(detail) klua.errors.bad_argument("klua.worker", 1, detail) end

local internal = require("klua.worker.internal") -- shared with the per-message modes
local werr = internal.werr

local function copy(t)
  local r = {}
  for k, v in pairs(t or {}) do r[k] = v end
  return r
end

local exception_message = internal.exception_message

-- The options of both modes, checked when the worker is made (klua.worker{}): nil when neither
-- is given, else {max=, timeout_ms=, batch_handlers=, eos=(producer properties or nil)}.
function M.check(opts)
  local b, x = opts.batch, opts.exactly_once
  if b == nil and (x == nil or x == false) then return nil end
  local mode = { max = EOS_BATCH, timeout_ms = POLL_MS, batch_handlers = false }
  if b ~= nil then
    if type(b) ~= "table" then bad("'batch' must be a table {max=, timeout_ms=}") end
    for k in pairs(b) do
      if k ~= "max" and k ~= "timeout_ms" then bad("unknown batch option '" .. tostring(k) .. "' (allowed: max, timeout_ms)") end
    end
    mode.max, mode.timeout_ms, mode.batch_handlers = b.max or 1000, b.timeout_ms or 100, true
    if type(mode.max) ~= "number" or not (mode.max >= 1) or mode.max ~= math.floor(mode.max) or mode.max == math.huge then
      bad("batch.max must be a whole number >= 1")
    end
    -- (not (x >= 0): NaN is refused too)
    if type(mode.timeout_ms) ~= "number" or not (mode.timeout_ms >= 0) or mode.timeout_ms == math.huge then
      bad("batch.timeout_ms must be a number >= 0")
    end
  end
  if x ~= nil and x ~= false then
    if x ~= true and type(x) ~= "table" then
      bad("'exactly_once' must be true or a table of producer properties")
    end
    mode.eos = x == true and {} or copy(x)
    local p = opts.producer
    if p ~= nil and not (type(p) == "table" and getmetatable(p) == nil) then
      bad("exactly_once makes its own transactional producer: give its properties in 'exactly_once' or 'producer' (a table), not a producer")
    end
    for k, v in pairs(opts) do
      if (k == "enable.auto.commit" and v ~= false and v ~= "false")
        or (k == "isolation.level" and v ~= "read_committed") then
        bad("exactly_once needs " .. k .. (k == "enable.auto.commit" and "=false" or "=read_committed"))
      end
    end
  end
  if type(opts.retry) == "table" and opts.retry.topic ~= nil then
    bad("retry.topic is not available with 'batch' or 'exactly_once' (their retries run in place)")
  end
  return mode
end

---------------------------------------------------------------------------------------------
-- The run's state: R = { w, mode, c, p, eos, retry, dl, current = batch or nil, rev_gen,
-- revoked_at = {[pkey] = rev_gen} }. Each on_revoke adds 1 to rev_gen and marks its partitions
-- with it: a message handed out before its partition's last revoke is stale, even when the
-- partition came back since (the consumer starts it again at the committed offset, so handling
-- or committing the old copy would duplicate it).
local R = {}
R.__index = R

local function pkey(topic, partition) return topic .. "\0" .. partition end

local function hostname()
  local f = io.open("/proc/sys/kernel/hostname", "r")
  local h = f and f:read("*l")
  if f then f:close() end
  return h or os.getenv("HOSTNAME") or "localhost"
end

-- The default transactional.id: stable for a group's member on a host, so that a restarted
-- worker fences its dead predecessor and aborts its open transaction at init_transactions.
function M.default_transactional_id(group, client_id)
  return "klua-worker." .. group .. "." .. hostname() .. (client_id and ("." .. client_id) or "")
end

-- The worker's own retry options (checked by klua.worker{}), one back-off rule for every mode.
function R:backoff(n) return internal.backoff(self.retry, n) end

-- true when the partition (key) was revoked after rev_gen `gen`
function R:stale(key, gen)
  local at = self.revoked_at[key]
  return at ~= nil and at > gen
end

-- Sleeps ms, ending early when the worker stops or the group g's partition is revoked.
function R:sleep(ms, g)
  local deadline = klua.now() + ms
  while not self.w.stopping and not (g and self:stale(g.key, g.gen)) do
    local left = deadline - klua.now()
    if left <= 0 then return end
    klua.sleep(math.min(left, 50))
  end
end

function R:warn(...)
  if self.w.quiet then return end
  log.say("warn", "klua.worker", "klua.worker " .. self.w.group, table.concat({ ... }), { worker = self.w.group })
end

function R:consumer_config()
  local w = self.w
  local cfg = { group = w.group, topics = w.topics, ["auto.offset.reset"] = "earliest" }
  for k, v in pairs(w.opts) do
    if type(k) == "string" and k:find(".", 1, true) then cfg[k] = v end
  end
  if w.opts.brokers then cfg.brokers = w.opts.brokers end
  for k, v in pairs(w.opts.consumer or {}) do cfg[k] = v end
  if self.eos then
    cfg["isolation.level"] = "read_committed"
    cfg["enable.auto.commit"] = false
  end
  local user_assign, user_revoke = w.opts.on_assign, w.opts.on_revoke
  cfg.on_assign = function(parts)
    if user_assign then user_assign(parts) end
  end
  cfg.on_revoke = function(parts)
    local mine = {}
    self.rev_gen = self.rev_gen + 1
    for _, tp in ipairs(parts) do
      local k = pkey(tp.topic, tp.partition)
      self.revoked_at[k] = self.rev_gen
      mine[k] = true
    end
    -- A transaction being committed finishes first (its offsets carry this generation). A batch
    -- still in its handlers is not waited for in exactly-once mode: the revoked partitions'
    -- groups are left out of its transaction (their outputs were only buffered). Otherwise the
    -- revoked partitions' groups finish (and store) before the commit.
    while true do
      local cur, busy = self.current, false
      if cur and cur.phase == "committing" then
        busy = true
      elseif cur and not self.eos then
        for _, g in ipairs(cur.groups) do if mine[g.key] and not g.finished then busy = true end end
      end
      if not busy then break end
      klua.sleep(5)
    end
    if not self.eos and not self.closing then
      local ok, r, err = pcall(self.c.commit, self.c)
      if not (ok and r) then self:warn("commit on revoke: ", tostring(ok and err or r)) end
    end
    if user_revoke then user_revoke(parts) end
  end
  return cfg
end

function R:make_producer()
  local w = self.w
  if self.eos then
    local cfg = copy(type(w.opts.producer) == "table" and w.opts.producer or nil)
    for k, v in pairs(self.mode.eos) do cfg[k] = v end
    if w.opts.brokers and cfg.brokers == nil then cfg.brokers = w.opts.brokers end
    if cfg["retry.backoff.ms"] == nil then cfg["retry.backoff.ms"] = EOS_RETRY_BACKOFF_MS end
    if cfg["transactional.id"] == nil then
      cfg["transactional.id"] = M.default_transactional_id(w.group, w.opts["client.id"])
    end
    self.txid = cfg["transactional.id"]
    self.p = klua.producer(cfg)
    self.own_producer = true
    return
  end
  local p = w.opts.producer
  if p ~= nil and not (type(p) == "table" and getmetatable(p) == nil) then
    self.p = p
  else
    local cfg = copy(p)
    if w.opts.brokers and cfg.brokers == nil then cfg.brokers = w.opts.brokers end
    self.p = klua.producer(cfg)
    self.own_producer = true
  end
end

-- The dead-letter record of msg, exactly as the per-message modes write it.
function R:dead_letter_record(msg, err, attempts, reason, stack)
  return internal.dead_letter_record(self.dl, msg, err, {
    attempts = attempts, reason = reason, stack = stack, group = self.w.group,
    client_id = self.w.opts["client.id"] or (self.w.opts.consumer or {})["client.id"] })
end

---------------------------------------------------------------------------------------------
-- One attempt of a handler: ok, err, stack, outputs. Outputs are what it gave info.send.
local function traceback(e)
  return { e = e, stack = type(e) == "string" and debug.traceback(e, 2) or debug.traceback("", 2) }
end

-- One call in a task of its own, cancelled at its next wait after handler_timeout_ms: a failed
-- attempt with a KLUA_TIMEOUT error naming the coordinates (a batch's first offset and range).
local function call_task(handler, arg, info)
  local ok, r1, r2 = xpcall(handler, traceback, arg, info)
  return { ok = ok, r1 = r1, r2 = r2 }
end

local function where(arg)
  local m = arg.topic and arg or arg[1]
  local s = string.format("%s [%d] at offset %d", m.topic, m.partition, m.offset)
  if not arg.topic and #arg > 1 then s = s .. string.format(" (a batch of %d to offset %d)", #arg, arg[#arg].offset) end
  return s
end

function R:call(handler, arg, info)
  local ms = self.w.opts.handler_timeout_ms
  if not ms then return xpcall(handler, traceback, arg, info) end
  local t = klua.spawn_shielded(call_task, handler, arg, info)
  local res = t:join{ timeout_ms = ms }
  if res then return res.ok, res.r1, res.r2 end
  t:cancel()
  t:join()
  local m = arg.topic and arg or arg[1]
  return false, { e = klua.errors.new{ name = "KLUA_TIMEOUT", timeout_ms = ms, topic = m.topic, partition = m.partition,
    message = string.format("handler timed out after %d ms on %s", ms, where(arg)) } }
end

function R:attempt(handler, arg, attempt)
  local out = {}
  local info = {
    attempt = attempt, worker = self.w,
    send = function(record)
      if type(record) ~= "table" then klua.errors.bad_argument("info.send", 1, "a record table expected, got " .. type(record)) end
      out[#out + 1] = record
    end,
  }
  local t0 = klua.now()
  local ok, r1, r2 = self:call(handler, arg, info)
  local latency = (klua.now() - t0) / 1000
  if ok and (r1 ~= nil and r1 ~= false or r2 == nil) then return true, nil, nil, out, latency end
  if ok then return false, r2, nil, nil, latency end
  if is_cancel(r1.e) and self_cancelled() then error(r1.e, 0) end
  return false, r1.e, r1.stack, nil, latency
end

-- Produces records and waits for every delivery (the at-least-once modes): true or nil, err.
function R:deliver(records)
  if #records == 0 then return true end
  local res, err = self.p:produce_batch(records)
  if not res then return nil, err end
  for _, r in ipairs(res) do if r.error then return nil, r.error end end
  return true
end

-- Filters out duplicates (dedupe): the messages to handle, and their ids.
function R:dedupe(g)
  local w, seen = self.w, self.w.seen
  if not (w.dedupe and seen) then return g.msgs, {} end
  local key = w.dedupe.key or function(m) return m:header("x-event-id") end
  local keep, ids = {}, {}
  for _, m in ipairs(g.msgs) do
    local id = key(m)
    if id ~= nil and (seen:has(id) or self.pending_ids[id]) then
      w.n.deduplicated = w.n.deduplicated + 1
      emit(w, "deduplicated", m.topic, m.partition, nil)
    else
      keep[#keep + 1] = m
      if id ~= nil then ids[#ids + 1] = id; self.pending_ids[id] = true end
    end
  end
  return keep, ids
end

-- Retries fn(arg) (a handler of msgs) until it succeeds or retries are exhausted. Returns
-- "done", outputs | "exhausted", err, attempts, stack | "abandoned" (stop or revoke).
function R:with_retries(g, handler, arg, count)
  local w, n, attempts = self.w, self.w.n, 0
  while true do
    attempts = attempts + 1
    local ok, err, stack, out, latency = self:attempt(handler, arg, attempts)
    if ok and not self.eos then
      local dok, derr = self:deliver(out) -- at-least-once: outputs confirmed before the store
      if not dok then ok, err = false, derr end
    end
    if ok then
      local msgs = count == 1 and { arg } or arg
      for _, m in ipairs(msgs) do emit(w, "handled", m.topic, m.partition, latency) end
      return "done", out
    end
    if attempts > self.retry.max then return "exhausted", err, attempts, stack, latency end
    if w.stopping or self:stale(g.key, g.gen) then return "abandoned" end
    n.retried = n.retried + count
    local msgs = count == 1 and { arg } or arg
    for _, m in ipairs(msgs) do emit(w, "retried", m.topic, m.partition, latency) end
    w.in_backoff = w.in_backoff + count -- retries in flight (worker/metrics.lua)
    local sok, serr = pcall(self.sleep, self, self:backoff(attempts), g)
    w.in_backoff = w.in_backoff - count
    if not sok then error(serr, 0) end
    if w.stopping or self:stale(g.key, g.gen) then return "abandoned" end
  end
end

-- Dead-letters msgs (retries exhausted or no handler), or raises the worker's failure. latency:
-- the last attempt's (nil when no handler ran), for the events.
function R:dead_letter(g, msgs, err, attempts, reason, stack, latency)
  local w, n = self.w, self.w.n
  local first = msgs[1]
  local where = string.format("%s [%d] at offset %d", first.topic, first.partition, first.offset)
  if #msgs > 1 then where = where .. string.format(" (a batch of %d to offset %d)", #msgs, msgs[#msgs].offset) end
  if not self.dl then
    n.failed = n.failed + #msgs
    for _, m in ipairs(msgs) do emit(w, "failed", m.topic, m.partition, attempts, latency) end
    error(werr(string.format("handler failed for %s after %d attempt(s): %s", where, attempts, exception_message(err)),
      { topic = first.topic, partition = first.partition, cause = err }), 0)
  end
  local records = {}
  for i, m in ipairs(msgs) do records[i] = self:dead_letter_record(m, err, attempts, reason, stack) end
  if self.eos then
    for _, r in ipairs(records) do g.records[#g.records + 1] = r end
  else
    local ok, perr = self:deliver(records)
    if not ok then
      n.failed = n.failed + #msgs
      for _, m in ipairs(msgs) do emit(w, "failed", m.topic, m.partition, attempts, latency) end
      error(werr(string.format("dead-letter produce to %s failed for %s: %s", self.dl.topic, where, tostring(perr)),
        { topic = first.topic, partition = first.partition, cause = perr }), 0)
    end
  end
  g.dead = (g.dead or 0) + #msgs
  for _, m in ipairs(msgs) do emit(w, "dead_lettered", m.topic, m.partition, attempts, latency) end
end

-- Handles one partition's group to its end: g.ok = true with g.records (exactly-once) and
-- g.handled / g.dead counts, or g.abandoned. Raises the worker's failure.
function R:handle_group(g)
  local w = self.w
  if self:stale(g.key, g.gen) then g.abandoned = true; return end -- revoked before it started
  local msgs, ids = self:dedupe(g)
  g.ids, g.records, g.handled, g.dead = ids, {}, 0, 0
  local handler = w.handlers[g.topic] or w.handlers["*"]
  if #msgs == 0 then
    -- only duplicates
  elseif not handler then
    self:dead_letter(g, msgs, werr("no handler for topic " .. g.topic), 0, "no-handler")
  elseif self.mode.batch_handlers then
    local st, a, b, c, d = self:with_retries(g, handler, msgs, #msgs)
    if st == "abandoned" then g.abandoned = true; return end
    if st == "done" then
      for _, r in ipairs(a) do g.records[#g.records + 1] = r end
      g.handled = #msgs
    else
      self:dead_letter(g, msgs, a, b, "retries-exhausted", c, d)
    end
  else
    for _, m in ipairs(msgs) do
      local st, a, b, c, d = self:with_retries(g, handler, m, 1)
      if st == "abandoned" then g.abandoned = true; return end
      if st == "done" then
        for _, r in ipairs(a) do g.records[#g.records + 1] = r end
        g.handled = g.handled + 1
      else
        self:dead_letter(g, { m }, a, b, "retries-exhausted", c, d)
      end
    end
  end
  if not self.eos then
    -- at-least-once: outputs and dead letters are confirmed; store the group's last offset
    do -- (on_revoke waits for this group: the partition is still ours)
      local ok, err = self.c:store(g.msgs[#g.msgs])
      if not ok then self:warn("store: ", tostring(err)) end
    end
    self:account(g)
  end
  g.ok = true
end

-- Counters and dedupe ids of a group whose effects are final (stored, or committed).
function R:account(g)
  local w = self.w
  w.n.processed = w.n.processed + g.handled
  w.n.dead_lettered = w.n.dead_lettered + g.dead
  for _, id in ipairs(g.ids) do
    if w.seen then w.seen:add(id) end
  end
end

-- Runs the groups of a polled batch, up to `concurrency` at once, each in a shielded task.
-- Returns the first error raised by a group (the worker's failure), if any.
function R:run_groups(groups)
  local w = self.w
  local nxt, first_err = 0, nil
  local function runner()
    while first_err == nil do
      nxt = nxt + 1
      local g = groups[nxt]
      if not g then return end
      local ok, e = pcall(self.handle_group, self, g)
      g.finished = true -- ended, one way or another (on_revoke waits for that)
      if not ok then first_err = first_err or e end
    end
  end
  local tasks = {}
  for i = 1, math.min(w.concurrency or 4, #groups) do tasks[i] = klua.spawn_shielded(runner) end
  for _, t in ipairs(tasks) do t:join() end
  return first_err
end

-- The transaction of a polled batch: the finished groups' records and input offsets. true, or
-- nil, err (aborted; err.fatal when the producer is unusable).
function R:commit_transaction(groups)
  local p, c = self.p, self.c
  local ok, err = p:begin()
  if not ok then return nil, err end
  local offsets = {}
  for _, g in ipairs(groups) do
    for _, r in ipairs(g.records) do
      ok, err = p:send(r)
      if not ok then break end
    end
    if err then break end
    offsets[#offsets + 1] = { topic = g.topic, partition = g.partition, offset = g.msgs[#g.msgs].offset + 1 }
  end
  if not err then
    ok, err = p:send_offsets(c, offsets)
    if ok then ok, err = p:commit() end
    if ok then return true end
  end
  if not err.fatal then
    local aok, aerr = p:abort()
    if not aok then
      self:warn("abort: ", tostring(aerr))
      if aerr and aerr.fatal then err = aerr end
    end
  end
  return nil, err
end

-- A batch: up to mode.max messages, gathered for up to mode.timeout_ms after the first came
-- (c:poll_batch returns with what is buffered; connectors want fuller batches). The wait for the
-- first is short, so that a stop is seen. Messages of partitions revoked after they were handed
-- out are left out. Returns msgs, err (an error ends the gathering; what came before it is
-- handled) and the rev_gen at which the messages are current.
function R:gather()
  local mode, c = self.mode, self.c
  local msgs, err = c:poll_batch(mode.max, { timeout_ms = POLL_MS })
  if not msgs then return {}, err, self.rev_gen end
  if #msgs == 0 or #msgs >= mode.max or mode.timeout_ms <= 0 then return msgs, nil, self.rev_gen end
  local gens, gen = { [#msgs] = self.rev_gen }, self.rev_gen -- gens[i]: rev_gen when msgs[..i] came
  local deadline = klua.now() + mode.timeout_ms
  while #msgs < mode.max and not self.w.stopping do
    local left = deadline - klua.now()
    if left <= 0 then break end
    local more
    more, err = c:poll_batch(mode.max - #msgs, { timeout_ms = left })
    if not more or #more == 0 then break end
    for _, m in ipairs(more) do msgs[#msgs + 1] = m end
    gens[#msgs] = self.rev_gen
  end
  if self.rev_gen ~= gen then -- a revoke while gathering
    local keep, g = {}, nil
    for i = #msgs, 1, -1 do
      g = gens[i] or g
      local m = msgs[i]
      if not self:stale(pkey(m.topic, m.partition), g) then keep[#keep + 1] = m end
    end
    msgs = {}
    for i = #keep, 1, -1 do msgs[#msgs + 1] = keep[i] end
  end
  return msgs, err, self.rev_gen
end

-- Handles one polled batch (current at rev_gen gen). Raises the worker's failure.
function R:run_batch(msgs, gen)
  local w = self.w
  local groups, by = {}, {}
  for _, m in ipairs(msgs) do
    local k = pkey(m.topic, m.partition)
    local g = by[k]
    if not g then
      g = { key = k, topic = m.topic, partition = m.partition, msgs = {}, gen = gen }
      by[k] = g
      groups[#groups + 1] = g
    end
    g.msgs[#g.msgs + 1] = m
  end
  emit(w, "queue_depth", nil, nil, #msgs)
  w.n.consumed = w.n.consumed + #msgs
  w.inflight, w.unfinished = #msgs, #msgs -- (unfinished: the lanes' count, which counters() reads too)
  local batch = { groups = groups, phase = "handling" }
  self.current = batch
  self.pending_ids = {}
  local err = self:run_groups(groups)
  if self.eos and not err then
    local commit = {}
    for _, g in ipairs(groups) do
      if g.ok and not self:stale(g.key, g.gen) then commit[#commit + 1] = g end
    end
    if #commit > 0 then
      batch.phase = "committing"
      local ok, terr = self:commit_transaction(commit)
      batch.phase = "done"
      if ok then
        self.txn_failures = 0
        for _, g in ipairs(commit) do self:account(g) end
      else
        self:rewind(commit, terr)
      end
    end
  end
  self.current = nil
  w.inflight, w.unfinished = 0, 0
  if err then error(err, 0) end
end

-- After an aborted transaction: its partitions go back to the batch's first offsets (the next
-- polls hand the same messages out again) after a back-off; the worker stops when the producer
-- is fenced or unusable, or after retry.max failed transactions in a row.
function R:rewind(groups, err)
  local w = self.w
  self.txn_failures = (self.txn_failures or 0) + 1
  if err.fatal then
    local hint = (err.name == "_FENCED" or err.name == "PRODUCER_FENCED" or err.name == "INVALID_PRODUCER_EPOCH")
      and " (another producer with transactional.id " .. tostring(self.txid) .. " started: give each worker process its own)" or ""
    error(werr("exactly-once transaction failed: " .. tostring(err) .. hint, { cause = err }), 0)
  end
  if self.txn_failures > self.retry.max then
    error(werr(string.format("exactly-once transaction failed %d times in a row: %s", self.txn_failures, tostring(err)),
      { cause = err }), 0)
  end
  self:warn("transaction aborted (", tostring(err), "): running the batch again")
  for _, g in ipairs(groups) do
    if not self:stale(g.key, g.gen) then
      local ok, serr = self.c:seek(g.topic, g.partition, g.msgs[1].offset)
      if not ok then self:warn("seek ", g.topic, " [", g.partition, "]: ", tostring(serr)) end
    end
  end
  self:sleep(self:backoff(self.txn_failures))
end

function R:summary()
  local c = self.w:counters()
  return string.format("klua.worker %s: consumed=%d processed=%d retried=%d dead_lettered=%d deduplicated=%d failed=%d in %.1fs",
    self.w.group, c.consumed, c.processed, c.retried, c.dead_lettered, c.deduplicated, c.failed, c.elapsed_ms / 1000)
end

function R:fail(e)
  local w = self.w
  if not w.error then w.error = e end
  w.stopping = true
end

function R:drain(runner)
  local w = self.w
  w.stopping = true
  if runner then pcall(runner.join, runner) end
  if not self.eos and self.c then
    local ok, err = self.c:commit()
    if not ok then self:warn("final commit: ", tostring(err)) end
  end
  self.closing = true
  if self.c then self.c:close() end
  if w.seen and type(w.seen.close) == "function" then pcall(w.seen.close, w.seen) end
  if self.own_producer and self.p then self.p:close() end
  w.state = "stopped"
  w.stopped_at = klua.now()
  if not w.quiet then require("klua.worker.internal").say_summary(w, self:summary()) end
end

-- W:run for the batch and exactly-once modes.
function M.run(w)
  if w.state ~= "new" then klua.errors.misuse("worker:run", "run() was already called") end
  w.state = "running"
  w.started = klua.now()
  w.inflight, w.queued, w.unfinished = 0, 0, 0
  local mode = w.batch_mode
  local self = setmetatable({ w = w, mode = mode, eos = mode.eos ~= nil, rev_gen = 0, revoked_at = {}, pending_ids = {},
                              dl = w.dead_letter }, R)
  self.retry = w.retry
  local cancelled, runner
  local setup_ok, setup_err = pcall(function()
    self:make_producer()
    if self.eos then
      -- Before the consumer exists: fences a dead predecessor with this transactional.id and
      -- aborts its open transaction, so the committed offsets read at the assignment are final.
      local ok, err = self.p:init_transactions()
      if not ok then error(werr("init_transactions (transactional.id " .. tostring(self.txid) .. "): " .. tostring(err), { cause = err }), 0) end
    end
    self.c = klua.consumer(self:consumer_config())
  end)
  if not setup_ok then
    w.stopping = true
    if is_cancel(setup_err) then cancelled = setup_err else self:fail(setup_err) end
  end
  while not w.stopping do
    local ok, msgs, err, gen = pcall(self.gather, self)
    if not ok then
      if is_cancel(msgs) then cancelled = msgs; break end
      self:fail(msgs)
    else
      if err then
        if err.fatal then self:fail(err) else self:warn(tostring(err)) end
      end
      if #msgs > 0 and not w.stopping then
        -- shielded: a signal does not cut a batch short; run() waits for it (or the drain does)
        runner = klua.spawn_shielded(self.run_batch, self, msgs, gen)
        local jok, r, e = pcall(runner.join, runner)
        if not jok then
          if is_cancel(r) then cancelled = r; break end
          self:fail(r)
        elseif r == nil and e ~= nil then
          self:fail(e)
        end
        runner = nil
      end
    end
  end
  w.stopping = true
  local drain = klua.spawn_shielded(self.drain, self, runner)
  if cancelled then error(cancelled, 0) end
  local ok, e = pcall(drain.join, drain)
  if not ok then error(e, 0) end
  if drain:status() == "failed" then error(select(2, drain:join()), 0) end
  if w.error then return nil, w.error end
  return w:counters()
end

return M
