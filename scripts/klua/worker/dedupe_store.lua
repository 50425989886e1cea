-- klua.worker.dedupe_store: a de-duplication store that survives a restart and is shared by the
-- members of a consumer group, backed by a Kafka topic of the worker's own.
--
--   local store = require("klua.worker.dedupe_store")
--   local s, err = store.open{ topic = "billing.dedupe", window_ms = 86400000 }
--   if not s:has(id) then handle(msg); s:add(id) end
--   s:close()
--
-- Each s:add(id) records the id in memory at once and sends one record to the topic (key = the
-- id, value = the epoch-ms time as decimal text), without waiting for its delivery. The topic is
-- created when missing with cleanup.policy=compact,delete, retention.ms = window_ms,
-- segment.ms = window_ms within [10 min, 7 days] (retention deletes whole closed segments only) and
-- PARTITIONS partitions: every member reads every partition, so partitions add no reading
-- parallelism; three spread the store's writes and leaders over a typical three-broker cluster
-- and let one fetch request bring back three partitions' records during the replay. An existing
-- topic with another cleanup.policy, or a retention.ms below the window, is refused.
--
-- open replays the topic: all its partitions are assigned (no group, nothing committed) from the
-- first record inside the window (ListOffsets by time) up to the end offsets read at open; records
-- older than the window are skipped; s.replay_ms is how long that took and s.loaded the ids it
-- loaded. Then a background task keeps reading the topic, so that the ids other members add
-- become visible (best effort: after their delivery and this member's fetch, milliseconds
-- usually). s:sync() waits until everything in the topic when it was called has been read: the
-- worker calls it when it is given partitions, after the previous owner flushed its adds at its
-- revoke, which makes de-duplication exact within a partition across rebalances and restarts.
--
-- Memory: ids expire window_ms after their time. They are kept in time buckets of window_ms/64
-- (at least 1 ms); expiry drops whole buckets older than the window, so an add costs O(1) and an
-- id may stay up to one bucket (1/64 of the window) longer than the window in memory (s:has
-- checks the time itself, so it answers false from window_ms on).
--
-- The embedded mock cluster has no log compaction: open returns nil, KLUA_EMBEDDED_UNSUPPORTED;
-- the in-memory store (dedupe without topic) is the one to use there.
-- warnings through klua's log (host/lua/log.lua): "klua dedupe store TOPIC: ..." in text
local function store_say(self, message)
  debug.getregistry()["klua.private"].log.say("warn", "klua.dedupe_store", "klua dedupe store " .. tostring(self.topic),
    message, { topic = self.topic })
end

local M = {}

local PARTITIONS = 3
local BUCKETS = 64
local MIN_SEGMENT_MS, MAX_SEGMENT_MS = 600000, 604800000
local POLL_MS = 200

local floor, max, min, tonumber, tostring, type = math.floor, math.max, math.min, tonumber, tostring, type
local fmt = string.format

local function is_cancel(e) return type(e) == "table" and e.name == "KLUA_CANCELLED" end

---------------------------------------------------------------------------------------------
-- The in-memory part: id -> time, with a time-bucketed expiry. Every function takes `now` (epoch
-- ms), so that tests can drive the clock.
local Mem = {}
Mem.__index = Mem

local function new_mem(window_ms)
  return setmetatable({ window = window_ms, bucket_ms = max(1, floor(window_ms / BUCKETS)),
                        ts = {}, buckets = {}, bmin = nil, nbuckets = 0, size = 0 }, Mem)
end

-- Records id at time t (a later time of the same id replaces an earlier one). Returns true when
-- the id was not held before.
function Mem:insert(id, t)
  local ts = self.ts
  local old = ts[id]
  if old and old >= t then return false end
  ts[id] = t
  local bms = self.bucket_ms
  local b = floor(t / bms)
  if old and floor(old / bms) == b then return false end
  local arr = self.buckets[b]
  if not arr then
    arr = {}
    self.buckets[b] = arr
    self.nbuckets = self.nbuckets + 1
    if not self.bmin or b < self.bmin then self.bmin = b end
  end
  arr[#arr + 1] = id
  if not old then self.size = self.size + 1; return true end
  return false
end

function Mem:has(id, now)
  local t = self.ts[id]
  return t ~= nil and t > now - self.window
end

-- Drops the buckets wholly older than the window: a cheap check when there is nothing to drop.
function Mem:expire(now)
  local bmin = self.bmin
  if not bmin then return end
  local bms = self.bucket_ms
  local last = floor((now - self.window) / bms) - 1 -- buckets up to this one end at or before the cutoff
  if bmin > last then return end
  local ts, buckets = self.ts, self.buckets
  while bmin <= last do
    local arr = buckets[bmin]
    if arr then
      for i = 1, #arr do
        local id = arr[i]
        local t = ts[id]
        if t and floor(t / bms) == bmin then ts[id] = nil; self.size = self.size - 1 end
      end
      buckets[bmin] = nil
      self.nbuckets = self.nbuckets - 1
      if self.nbuckets == 0 then bmin = nil; break end
    end
    bmin = bmin + 1
  end
  self.bmin = bmin
end

-- Not part of the module: tests reach the in-memory part through the registry,
-- debug.getregistry()["klua.private"].dedupe_memory(window_ms).
do
  local reg = debug.getregistry()
  reg["klua.private"] = reg["klua.private"] or {}
  reg["klua.private"].dedupe_memory = new_mem
end

---------------------------------------------------------------------------------------------
local S = {}
S.__index = S
-- The store's internals, off its metatable (the REPL completes methods through it).
local I = {}

local function serr(topic, name, message, cause)
  local e = klua.errors.new{ name = name, message = "dedupe store " .. topic .. ": " .. message }
  e.topic = topic
  if cause ~= nil then
    e.cause = cause
    if type(cause) == "table" then e.code = cause.code or e.code; e.kafka = cause.kafka end
  end
  return e
end

local function wrap(topic, what, err)
  local name = type(err) == "table" and err.name or "KLUA_DEDUPE_STORE"
  local text = type(err) == "table" and err.message or tostring(err)
  return serr(topic, name, what .. ": " .. tostring(text), err)
end

local function check_id(fn, id)
  local t = type(id)
  if t == "string" then return id end
  if t == "number" then return tostring(id) end
  klua.errors.bad_argument(fn, 2, "the id must be a string or a number, got " .. t)
end

local OPEN_KEYS = { topic = true, window_ms = true, brokers = true, producer = true, create = true,
                    partitions = true, timeout_ms = true, quiet = true }

-- The connection settings among a client's options (dotted keys): what the store's own clients
-- (admin, reader, producer) must share with the worker's consumer to reach the same cluster.
local CONNECTION = { "^bootstrap%.servers$", "^security%.protocol$", "^sasl%.", "^ssl%.", "^ssl_", "^socket%.",
                     "^broker%.address%.", "^client%.dns%.", "^api%.version%.", "^broker%.version%.fallback$",
                     "^enable%.ssl%.", "^https?%." }
function M.connection_keys(...)
  local out = {}
  for i = 1, select("#", ...) do
    local t = select(i, ...)
    for k, v in pairs(type(t) == "table" and t or {}) do
      if type(k) == "string" then
        for _, pat in ipairs(CONNECTION) do
          if k:find(pat) then out[k] = v; break end
        end
      end
    end
  end
  return out
end

-- A client's configuration: the store's dotted keys, plus `extra`.
local function client_config(opts, extra)
  local cfg = {}
  for k, v in pairs(opts) do
    if type(k) == "string" and k:find(".", 1, true) then cfg[k] = v end
  end
  if opts.brokers then cfg.brokers = opts.brokers end
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

local SETTLE_MS = 10000
local SETTLING = { UNKNOWN_TOPIC_OR_PART = true, LEADER_NOT_AVAILABLE = true, NOT_LEADER_FOR_PARTITION = true }

local function is_embedded(admin) return tostring(admin):match("embedded%)") ~= nil end

-- The topic exists (created here when missing) with a cleanup policy of compact and delete.
function I.ensure_topic(self, admin, opts)
  local topic, window = self.topic, self.window_ms
  if opts.create ~= false then
    local segment = min(max(window, MIN_SEGMENT_MS), MAX_SEGMENT_MS)
    local res, err = admin:create_topics({ { name = topic, partitions = opts.partitions or PARTITIONS, configs = {
      ["cleanup.policy"] = "compact,delete", ["retention.ms"] = fmt("%d", window), ["segment.ms"] = fmt("%d", segment),
    } } }, { if_not_exists = true })
    if not res then return nil, wrap(topic, "creating the topic", err) end
    if res[1].error then return nil, wrap(topic, "creating the topic", res[1].error) end
    if not res[1].existed then self.created = true; return true end
  end
  local res, err = admin:describe_configs({ { type = "topic", name = topic } })
  if not res then return nil, wrap(topic, "reading the topic's configs", err) end
  if res[1].error then return nil, wrap(topic, "reading the topic's configs", res[1].error) end
  local configs = res[1].configs or {}
  local policy = configs["cleanup.policy"] and configs["cleanup.policy"].value or ""
  local has, words = {}, 0
  for word in policy:gmatch("[^,%s]+") do
    if not has[word] then has[word] = true; words = words + 1 end
  end
  if not (has.compact and has.delete and words == 2) then
    return nil, serr(topic, "INVALID_CONFIG", fmt("cleanup.policy is %q: a dedupe store needs "
      .. "cleanup.policy=compact,delete (compaction keeps one record per id, deletion drops the ids older than "
      .. "the window); alter the topic or name another one", policy))
  end
  local retention = tonumber(configs["retention.ms"] and configs["retention.ms"].value)
  if retention and retention >= 0 and retention < window then
    return nil, serr(topic, "INVALID_CONFIG", fmt("retention.ms is %d, below the window of %d ms: ids would "
      .. "be forgotten before the window ends; raise retention.ms to at least the window", retention, window))
  end
  return true
end

-- The partitions' end offsets now: { [partition] = offset }.
function I.end_offsets(self)
  local r, err = self.admin:list_offsets({ self.topic }, { spec = "latest" })
  if not r then return nil, wrap(self.topic, "reading the end offsets", err) end
  local ends = {}
  for _, it in ipairs(r) do
    if it.error then return nil, wrap(self.topic, fmt("reading the end offset of partition %s", tostring(it.partition)), it.error) end
    ends[it.partition] = it.offset
  end
  return ends
end

-- One record of the topic into memory.
function I.ingest(self, msg, cutoff)
  local p, nxt = msg.partition, msg.offset + 1
  if nxt > (self.pos[p] or -1) then self.pos[p] = nxt end
  local id, v = msg.key, msg.value
  if id == nil or v == nil then return end -- a tombstone or a foreign keyless record
  local t = tonumber(v) or msg.timestamp
  if not t or t <= cutoff then self.skipped = self.skipped + 1; return end
  self.mem:insert(id, t)
end

function I.caught_up(self, ends)
  for p, e in pairs(ends) do
    if (self.pos[p] or -1) < e then return false end
  end
  return true
end

-- Polls until every partition's position reached `ends` (the replay), or timeout.
function I.read_until(self, ends, timeout_ms)
  local c, window = self.c, self.window_ms
  local deadline = klua.now() + timeout_ms
  local n = 0
  local cutoff = klua.time() - window
  while not I.caught_up(self, ends) do
    local left = deadline - klua.now()
    if left <= 0 then
      return nil, serr(self.topic, "_TIMED_OUT", fmt("the replay did not reach the end offsets within %d ms", timeout_ms))
    end
    local msg, err = c:poll(min(left, POLL_MS))
    if msg then
      n = n + 1
      if n % 4096 == 0 then cutoff = klua.time() - window end
      I.ingest(self, msg, cutoff)
    elseif err then
      if err.fatal then return nil, wrap(self.topic, "reading", err) end
      if not self.quiet then store_say(self, tostring(err)) end
    else
      -- No record for a poll: a partition whose last records were deleted (retention) since the
      -- end offsets were read has nothing to move its position; its low watermark then tells.
      local parts = {}
      for p, e in pairs(ends) do
        if (self.pos[p] or -1) < e then parts[#parts + 1] = { topic = self.topic, partition = p } end
      end
      local lows = self.admin:list_offsets(parts, { spec = "earliest" })
      for _, it in ipairs(lows or {}) do
        if not it.error and it.offset and it.offset >= ends[it.partition] then self.pos[it.partition] = it.offset end
      end
    end
  end
  return true
end

-- The background reader: ids added by other members (and this one's own, read back) into memory.
function I.reader(self)
  local c, window = self.c, self.window_ms
  local n = 0
  local cutoff = klua.time() - window
  while not self.closed do
    local ok, msg, err = pcall(c.poll, c, POLL_MS)
    if not ok then
      self.reader_error = msg -- a cancelled reader (a signal) too: sync must not wait for it
      if is_cancel(msg) then return end
      if not self.quiet then store_say(self, "reader stopped: " .. tostring(msg)) end
      return
    end
    if msg then
      n = n + 1
      if n % 256 == 0 then cutoff = klua.time() - window end
      I.ingest(self, msg, cutoff)
    else
      cutoff = klua.time() - window
      self.mem:expire(klua.time())
      if err then
        if err.fatal then
          self.reader_error = err
          if not self.quiet then store_say(self, "reader stopped: " .. tostring(err)) end
          return
        end
        if not self.quiet then store_say(self, tostring(err)) end
      end
    end
  end
end

function I.on_delivery(self, report, err)
  if err then
    self.failed = self.failed + 1
    if not self.first_failure then
      self.first_failure = err
      if not self.quiet then
        store_say(self, "an id was not stored: " .. tostring(err))
      end
    end
  end
end

function I.cleanup(self)
  if self.reader_task then
    self.reader_task:cancel()
    pcall(self.reader_task.join, self.reader_task) -- its poll ends before the consumer closes
  end
  if self.c then pcall(self.c.close, self.c) end
  if self.own_producer and self.p then pcall(self.p.close, self.p) end
  if self.admin then pcall(self.admin.close, self.admin) end
end

-- open{topic=, window_ms=, brokers=, producer=, create=true, partitions=3, timeout_ms=300000, quiet=,
--      [dotted keys] = librdkafka properties of the store's clients (the worker passes its
--      connection settings: M.connection_keys)}
function M.open(opts)
  if type(opts) ~= "table" then klua.errors.bad_argument("dedupe_store.open", 1, "expected an options table") end
  for k in pairs(opts) do
    if not OPEN_KEYS[k] and not (type(k) == "string" and k:find(".", 1, true)) then klua.errors.bad_argument("dedupe_store.open", 1, "unknown option '" .. tostring(k) .. "'") end
  end
  local topic, window = opts.topic, opts.window_ms
  if type(topic) ~= "string" or topic == "" then
    klua.errors.bad_argument("dedupe_store.open", 1, "'topic' (a topic name) is required")
  end
  if type(window) ~= "number" or not (window >= 1) or window ~= floor(window) or window == math.huge then
    klua.errors.bad_argument("dedupe_store.open", 1, "'window_ms' (a whole number of ms >= 1) is required")
  end
  if opts.partitions ~= nil and (type(opts.partitions) ~= "number" or not (opts.partitions >= 1)
                                 or opts.partitions ~= floor(opts.partitions) or opts.partitions > 2 ^ 31 - 1) then
    klua.errors.bad_argument("dedupe_store.open", 1, "'partitions' must be a number >= 1")
  end
  if opts.timeout_ms ~= nil and (type(opts.timeout_ms) ~= "number" or not (opts.timeout_ms > 0) or opts.timeout_ms == math.huge) then
    klua.errors.bad_argument("dedupe_store.open", 1, "'timeout_ms' must be a positive number")
  end
  local p = opts.producer
  if p ~= nil and type(p) ~= "table" and type(p) ~= "userdata" then
    klua.errors.bad_argument("dedupe_store.open", 1, "'producer' must be a producer or its options table")
  end

  local self = setmetatable({ topic = topic, window_ms = window, mem = new_mem(window), pos = {}, skipped = 0,
                              failed = 0, quiet = opts.quiet, closed = false, loaded = 0, replay_ms = 0 }, S)
  local admin = klua.admin(client_config(opts))
  self.admin = admin
  if is_embedded(admin) then
    I.cleanup(self)
    return nil, serr(topic, "KLUA_EMBEDDED_UNSUPPORTED", "the embedded mock cluster has no log compaction, so a "
      .. "Kafka-backed dedupe store cannot keep its window there: use the in-memory store (dedupe = { window = N } "
      .. "without a topic), or run with -b against a real broker")
  end
  -- Members of a group start together: the topic another member has just created may be unknown
  -- to this broker's metadata for a moment (KRaft applies it after the create returns), so
  -- those two answers are asked again for up to SETTLE_MS.
  local ok, err, ends
  local settle_until = klua.now() + SETTLE_MS
  while true do
    ok, err = I.ensure_topic(self, admin, opts)
    if ok then ends, err = I.end_offsets(self) end
    if ends or opts.create == false or not (err and SETTLING[err.name]) or klua.now() > settle_until then break end
    klua.sleep(200) -- a back-off before asking again, not a wait for an event
  end
  if not ends then I.cleanup(self); return nil, err end

  -- The replay: from the first record inside the window to the end offsets read now.
  local t0 = klua.now()
  local cutoff = klua.time() - window
  local starts, serr2 = admin:list_offsets({ topic }, { spec = { timestamp = cutoff } })
  if not starts then I.cleanup(self); return nil, wrap(topic, "looking up the window's first offsets", serr2) end
  local assign = {}
  for _, it in ipairs(starts) do
    if it.error then I.cleanup(self); return nil, wrap(topic, "looking up the window's first offsets", it.error) end
    local e = ends[it.partition]
    local start = it.offset or e -- no record at or after the cutoff: nothing to replay there
    if e == nil or start > e then start = e end
    self.pos[it.partition] = start
    assign[#assign + 1] = { topic = topic, partition = it.partition, offset = start }
  end
  self.c = klua.consumer(client_config(opts, { group = "klua-dedupe-" .. klua.uuid(),
    ["enable.auto.commit"] = false, ["auto.offset.reset"] = "earliest", ["max.partition.fetch.bytes"] = 4194304 }))
  ok, err = self.c:assign(assign)
  if not ok then I.cleanup(self); return nil, wrap(topic, "assigning its partitions", err) end
  ok, err = I.read_until(self, ends, opts.timeout_ms or 300000)
  if not ok then I.cleanup(self); return nil, err end
  self.mem:expire(klua.time())
  self.replay_ms = klua.now() - t0
  self.loaded = self.mem.size

  if p ~= nil and getmetatable(p) ~= nil then
    self.p = p -- a producer object, shared: our deliveries are heard per message
    self.delivery = function(report, derr) I.on_delivery(self, report, derr) end
  else
    local cfg = client_config(opts)
    for k, v in pairs(p or {}) do cfg[k] = v end
    cfg.on_delivery = function(report, derr) I.on_delivery(self, report, derr) end
    self.p = klua.producer(cfg)
    self.own_producer = true
  end
  self.reader_task = klua.spawn(I.reader, self)
  return self
end

-- true when id was added (here, or by a member whose record this one has read) within the window.
-- Does not yield.
function S:has(id)
  local t = type(id)
  if t ~= "string" then
    if t ~= "number" then return false end
    id = tostring(id)
  end
  return self.mem:has(id, klua.time())
end

-- Records id now: in memory at once, and in the topic (not waited for; s:flush waits).
function S:add(id)
  id = check_id("store:add", id)
  if self.closed then klua.errors.misuse("store:add", "the dedupe store " .. self.topic .. " is closed") end
  local now = klua.time()
  local mem = self.mem
  mem:insert(id, now)
  mem:expire(now)
  local ok, err
  if self.delivery then
    ok, err = self.p:send{ topic = self.topic, key = id, value = fmt("%d", now), on_delivery = self.delivery }
  else
    ok, err = self.p:send{ topic = self.topic, key = id, value = fmt("%d", now) }
  end
  if not ok then
    I.on_delivery(self, nil, err)
    return nil, wrap(self.topic, "sending id " .. id, err)
  end
  return true
end

-- Yields until every id added so far is delivered. Returns true, or nil, err when some failed
-- (since the last flush) or the flush timed out.
function S:flush(opts)
  if self.closed then return true end
  local ok, err = self.p:flush(opts)
  local failed, first = self.failed, self.first_failure
  self.failed, self.first_failure = 0, nil
  if failed > 0 then
    return nil, wrap(self.topic, fmt("%d id(s) were not stored", failed), first)
  end
  if not ok and self.own_producer then return nil, wrap(self.topic, "flushing", err) end
  return true
end

-- Yields until the records in the topic now (the adds other members flushed) are read; returns
-- true, or nil, err (timeout_ms, 30 s by default).
function S:sync(timeout_ms)
  if self.closed then return true end
  if self.reader_error then return nil, wrap(self.topic, "its reader stopped", self.reader_error) end
  local ends, err = I.end_offsets(self)
  if not ends then return nil, err end
  local deadline = klua.now() + (timeout_ms or 30000)
  while not I.caught_up(self, ends) do
    if self.reader_error then return nil, wrap(self.topic, "its reader stopped", self.reader_error) end
    if klua.now() >= deadline then
      local e = serr(self.topic, "_TIMED_OUT", fmt("not caught up with the topic within %d ms", timeout_ms or 30000))
      if not self.quiet then debug.getregistry()["klua.private"].log.say("warn", "klua.dedupe_store", "klua", tostring(e)) end
      return nil, e
    end
    klua.sleep(5)
  end
  return true
end

-- The ids held in memory now.
function S:size() return self.mem.size end

-- Flushes the adds, stops the reader, releases the clients. Idempotent; returns true or nil, err
-- (the flush's).
function S:close()
  if self.closed then return true end
  local ok, err = self:flush()
  self.closed = true
  I.cleanup(self)
  if not ok then return nil, err end
  return true
end

function S:__tostring()
  return fmt("klua.dedupe_store(%s, window %d ms, %d ids%s)", self.topic, self.window_ms, self.mem.size,
             self.closed and ", closed" or "")
end

return M
