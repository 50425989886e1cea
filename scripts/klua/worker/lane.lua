-- klua.worker.lane (internal): a worker's state for one assigned partition.
--
-- The offset tracker: the offsets polled but not finished, in poll order (a partition's offsets
-- arrive in increasing order). finish(offset) marks one finished; the partition's store point
-- (`last`) is the last offset of the contiguous finished prefix, so a commit never skips an
-- unfinished message even when messages finish out of order (per-key order, retry topics,
-- deliveries confirmed later). `unfinished` counts what is tracked (the per-partition
-- max_queued bound).
--
-- The queues: `q` the polled messages not taken yet (poll order); `ready` messages that run
-- before q, with their attempt number: a retry whose back-off ended, or a message of a parked
-- key whose turn came. In order="partition" mode `hold` stops q while a message waits in
-- back-off; in order="key" mode `parked[key]` lists the messages of a key waiting behind one
-- in back-off (nil keys share one entry).
local M = {}
local Lane = {}
Lane.__index = Lane

function M.new(topic, partition)
  return setmetatable({
    topic = topic, partition = partition,
    tp = { { topic = topic, partition = partition } },          -- for pause/resume
    store_rec = { topic = topic, partition = partition, offset = 0 },
    offs = {}, oh = 1, ot = 0, done = {}, last = nil,          -- tracker
    q = {}, qh = 1, qt = 0,                                     -- polled, not taken
    rm = {}, ra = {}, rh = 1, rt = 0,                           -- ready: messages, attempts
    hold = false, parked = {}, nparked = 0,
    running = false, scheduled = false, revoked = false, paused = false, full = false,
    waiting = false, pending = 0, nu = 0, gone = false, in_backoff = 0,
  }, Lane)
end

function Lane:unfinished() return self.ot - self.oh + 1 end

-- Tracks a polled offset.
function Lane:track(offset)
  local t = self.ot + 1
  self.ot = t
  self.offs[t] = offset
end

-- Marks offset finished; returns true when the contiguous finished prefix grew (self.last is
-- then the offset to store, as c:store{offset = last} commits last + 1).
function Lane:finish(offset)
  local offs, h = self.offs, self.oh
  if offs[h] ~= offset then
    self.done[offset] = true
    return false
  end
  offs[h] = nil
  local last, t, done = offset, self.ot, self.done
  h = h + 1
  while h <= t do
    local o = offs[h]
    if not done[o] then break end
    done[o] = nil
    offs[h] = nil
    last = o
    h = h + 1
  end
  self.oh = h
  self.last = last
  return true
end

function Lane:push(msg)
  local t = self.qt + 1
  self.qt = t
  self.q[t] = msg
end

function Lane:peek() if self.qh <= self.qt then return self.q[self.qh] end end

function Lane:pop()
  local h = self.qh
  if h > self.qt then return nil end
  local m = self.q[h]
  self.q[h] = nil
  self.qh = h + 1
  return m
end

function Lane:push_ready(msg, attempt)
  local t = self.rt + 1
  self.rt = t
  self.rm[t], self.ra[t] = msg, attempt
end

function Lane:pop_ready()
  local h = self.rh
  if h > self.rt then return nil end
  local m, a = self.rm[h], self.ra[h]
  self.rm[h], self.ra[h] = nil, nil
  self.rh = h + 1
  return m, a
end

local NIL_KEY = {}
M.NIL_KEY = NIL_KEY

-- order="key": parks msg's key (msg waits in back-off): later messages of that key queue behind.
function Lane:park(msg)
  local k = msg.key
  if k == nil then k = NIL_KEY end
  if not self.parked[k] then
    self.parked[k] = { h = 1, t = 0 }
    self.nparked = self.nparked + 1
  end
end

-- order="key": msg goes behind its parked key; false when its key is not parked.
function Lane:behind(msg)
  local k = msg.key
  if k == nil then k = NIL_KEY end
  local e = self.parked[k]
  if not e then return false end
  e.t = e.t + 1
  e[e.t] = msg
  return true
end

-- order="key": msg (the head of its key) is done: the key's next message becomes ready, or the
-- key is free again.
function Lane:release_key(msg)
  local k = msg.key
  if k == nil then k = NIL_KEY end
  local e = self.parked[k]
  if not e then return end
  if e.h <= e.t then
    local nxt = e[e.h]
    e[e.h] = nil
    e.h = e.h + 1
    self:push_ready(nxt, 1)
  else
    self.parked[k] = nil
    self.nparked = self.nparked - 1
  end
end

-- Whether a runner has something to take.
function Lane:runnable()
  if self.revoked then return false end
  if self.rh <= self.rt then return true end
  return not self.hold and not self.waiting and self.qh <= self.qt
end

-- The next message to handle and its attempt number, or nil. In key mode, messages of parked
-- keys are moved behind their key on the way.
function Lane:next(key_mode)
  if self.rh <= self.rt then return self:pop_ready() end
  if self.hold or self.waiting then return nil end
  while true do
    local m = self:pop()
    if m == nil then return nil end
    if not (key_mode and self.nparked > 0 and self:behind(m)) then return m, 1 end
  end
end

-- Drops what waits (queued, ready, parked): a revoke or a stop. Messages in back-off are dropped
-- by their timers, which find the lane revoked or the worker stopping.
function Lane:drop()
  self.q, self.qh, self.qt = {}, 1, 0
  self.rm, self.ra, self.rh, self.rt = {}, {}, 1, 0
  self.parked, self.nparked, self.hold = {}, 0, false
end

return M
