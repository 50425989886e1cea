-- klua.worker.flow (internal): a worker's lanes and their scheduling. Polled messages go to
-- their partition's lane (worker/lane.lua); lanes with something to run wait in the worker's run
-- queue for one of `concurrency` runner tasks, which handle up to BATCH messages of a lane before
-- letting the next run. A lane waiting for a retry is not in the run queue: a timer puts it back.
-- The per-partition bound (max_queued) pauses and resumes the partition.
local lane_mod = require("klua.worker.lane")
local log = debug.getregistry()["klua.private"].log -- warnings through klua's log (host/lua/log.lua)
local retry_topic = require("klua.worker.retry_topic")
local is_cancel = require("klua.worker.internal").is_cancel
local now = klua.now

local BATCH = 64 -- messages a lane handles before letting a waiting lane run

return function(I)

  function I.lane(self, topic, partition)
    local bt = self.lanes[topic]
    if not bt then bt = {}; self.lanes[topic] = bt end
    local lane = bt[partition]
    if not lane then
      lane = lane_mod.new(topic, partition)
      lane.retry = topic == self.retry_topic
      bt[partition] = lane
    end
    return lane
  end

  -- The lane is given up: nothing of it is stored or counted any more.
  function I.retire(self, lane)
    lane.revoked, lane.gone = true, true
    lane:drop()
    self.unfinished = self.unfinished - lane.nu
    lane.nu = 0
    self.in_backoff = self.in_backoff - lane.in_backoff -- its timers fire into a gone lane
    lane.in_backoff = 0
    local bt = self.lanes[lane.topic]
    if bt and bt[lane.partition] == lane then bt[lane.partition] = nil end
  end

  -- Pauses the lane's partition while it is full or waits for a retry record's time; resumes it
  -- otherwise.
  function I.update_pause(self, lane)
    local want = lane.full or lane.waiting
    if want == lane.paused or lane.gone then return end
    local ok, err
    if want then ok, err = self.c:pause(lane.tp) else ok, err = self.c:resume(lane.tp) end
    if ok then
      lane.paused = want
    elseif not self.quiet then
      log.say("warn", "klua.worker", "klua.worker " .. self.group, (want and "pause" or "resume") .. ": " .. tostring(err),
        { worker = self.group })
    end
  end

  function I.schedule(self, lane)
    if lane.scheduled or lane.running or self.stopping or not lane:runnable() then return end
    lane.scheduled = true
    local rq = self.runq
    rq.t = rq.t + 1
    rq[rq.t] = lane
    if self.active < self.concurrency then
      self.active = self.active + 1
      -- shielded: a signal must not interrupt a handler in flight; the runner sees `stopping`
      -- after the current message and ends
      klua.spawn_shielded(I.runner, self)
    end
  end

  function I.dispatch(self, msg)
    self.n.consumed = self.n.consumed + 1
    local bt = self.lanes[msg.topic]
    local lane = bt and bt[msg.partition] or I.lane(self, msg.topic, msg.partition)
    if lane.revoked then return end
    lane:track(msg.offset)
    lane:push(msg)
    lane.nu = lane.nu + 1
    self.unfinished = self.unfinished + 1
    if lane.nu >= self.max_queued and not lane.full then
      lane.full = true
      I.update_pause(self, lane)
    end
    if not (lane.scheduled or lane.running) then I.schedule(self, lane) end
  end

  -- A message is finished (handled, duplicate, handed over to the retry or dead-letter topic):
  -- the lane's store point moves when the contiguous finished prefix grew.
  function I.finish(self, lane, msg)
    if lane.gone then return end
    lane.nu = lane.nu - 1
    self.unfinished = self.unfinished - 1
    if lane:finish(msg.offset) then
      lane.store_rec.offset = lane.last + 1 -- a plain {topic, partition, offset} stores offset as it is
      local ok, err = self.c:store(lane.store_rec)
      if not ok and not self.quiet then
        log.say("warn", "klua.worker", "klua.worker " .. self.group, "store: " .. tostring(err), { worker = self.group })
      end
    end
    if lane.full and lane.nu <= self.resume_at then
      lane.full = false
      I.update_pause(self, lane)
    end
  end

  -- The lane is done with msg (its outcome is decided): what waited behind it may run.
  function I.release(self, lane, msg)
    if lane.retry then return end
    if self.key_mode then
      if lane.nparked > 0 then lane:release_key(msg) end
    else
      lane.hold = false
    end
  end

  -- A retry's back-off ended.
  function I.retry_due(self, lane, msg, attempt)
    if not lane.gone then lane.in_backoff, self.in_backoff = lane.in_backoff - 1, self.in_backoff - 1 end
    if lane.revoked or self.stopping then return end -- dropped: never handled, never stored
    lane:push_ready(msg, attempt)
    I.schedule(self, lane)
  end

  -- A retry-topic partition's waiting record is due.
  function I.retry_resume(self, lane)
    if lane.revoked or self.stopping then return end
    lane.waiting = false
    I.update_pause(self, lane)
    I.schedule(self, lane)
  end

  -- The lane's next message and attempt; a retry-topic lane whose next record's time has not come
  -- waits (paused) until then.
  function I.next(self, lane)
    if lane.retry then
      local head = lane:peek()
      local nb = head and retry_topic.not_before(head)
      if nb then
        local left = nb - klua.time()
        if left > 0 then
          lane.waiting = true
          I.update_pause(self, lane)
          self.timers:at_time(now() + left, I.retry_resume, self, lane)
          return nil
        end
      end
      return lane:next(false)
    end
    return lane:next(self.key_mode)
  end

  function I.runner(self)
    local rq = self.runq
    while not self.stopping and rq.h <= rq.t do
      local lane = rq[rq.h]
      rq[rq.h] = nil
      rq.h = rq.h + 1
      lane.scheduled = false
      if not lane.revoked then
        lane.running = true
        local count = 0
        while not self.stopping and not lane.revoked do
          local msg, attempt = I.next(self, lane)
          if msg == nil then break end
          local ok, e = pcall(I.process, self, lane, msg, attempt)
          if not ok then
            if is_cancel(e) then self.stopping = true else I.fail(self, e) end
            break
          end
          count = count + 1
          if count >= BATCH and rq.h <= rq.t then break end
        end
        lane.running = false
        I.schedule(self, lane) -- to the back of the queue when it has more
      end
    end
    self.active = self.active - 1
  end
end
