-- klua.worker.handle (internal): one attempt of one message and its outcome: handled (its
-- info.send records sent, the offset finished at their delivery), a duplicate, a retry (a timer,
-- or a record to the retry topic), or given up (the dead-letter topic, else the worker stops).
local internal = require("klua.worker.internal")
local retry_topic = require("klua.worker.retry_topic")
local emit = require("klua.worker.events").emit
local is_cancel, call, werr, where, self_cancelled =
  internal.is_cancel, internal.call, internal.werr, internal.where, internal.self_cancelled
local now = klua.now

local SEND_KEYS = { topic = true, key = true, value = true, headers = true, partition = true, timestamp = true }

local function copy(t)
  local r = {}
  for k, v in pairs(t or {}) do r[k] = v end
  return r
end

return function(I, M)

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

  function I.backoff(self, n) return internal.backoff(self.retry, n) end

  function I.fail(self, e)
    if not self.error then self.error = e end
    self.stopping = true
  end

  -- info.send(record): buffered, sent when the handler succeeds.
  local INFO_MT = { __index = function(info, k)
    if k ~= "send" then return nil end
    local function send(rec)
      if type(rec) ~= "table" then klua.errors.bad_argument("info.send", 1, "expected a record table") end
      for key in pairs(rec) do
        if not SEND_KEYS[key] then klua.errors.bad_argument("info.send", 1, "unknown record field '" .. tostring(key) .. "'") end
      end
      if type(rec.topic) ~= "string" then klua.errors.bad_argument("info.send", 1, "'topic' (a string) is required") end
      local out = rawget(info, "out")
      if not out then out = {}; rawset(info, "out", out) end
      out[#out + 1] = copy(rec)
    end
    rawset(info, "send", send)
    return send
  end }

  -- Sends rec (p:send); on_delivery(report, err) gets report.opaque = ctx (ctx.w, ctx.lane set).
  -- The lane's pending count holds the revoke and the drain until the report.
  function I.send(self, lane, rec, on_delivery, ctx)
    ctx.w, ctx.lane = self, lane
    rec.on_delivery, rec.opaque = on_delivery, ctx
    lane.pending = lane.pending + 1
    self.pending = self.pending + 1
    local ok, err = I.producer(self):send(rec)
    if not ok then
      lane.pending = lane.pending - 1
      self.pending = self.pending - 1
      return nil, err
    end
    return true
  end

  local function delivered(ctx)
    local self, lane = ctx.w, ctx.lane
    lane.pending = lane.pending - 1
    self.pending = self.pending - 1
    return self, lane
  end

  local function on_dead_letter(report, err)
    local ctx = report.opaque
    local self, lane = delivered(ctx)
    local view = ctx.view
    if err then
      self.n.failed = self.n.failed + 1
      emit(self, "failed", view.topic, view.partition, ctx.attempts, ctx.dt)
      I.fail(self, werr(string.format("dead-letter produce to %s failed for %s: %s", self.dead_letter.topic,
                                      where(view), tostring(err)),
        { topic = view.topic, partition = view.partition, cause = err }))
      return
    end
    self.n.dead_lettered = self.n.dead_lettered + 1
    emit(self, "dead_lettered", view.topic, view.partition, ctx.attempts, ctx.dt)
    I.finish(self, lane, ctx.msg)
  end

  local function on_retry_sent(report, err)
    local ctx = report.opaque
    local self, lane = delivered(ctx)
    if err then
      I.fail(self, werr(string.format("retry-topic produce to %s failed for %s: %s", self.retry_topic,
                                      where(ctx.view), tostring(err)),
        { topic = ctx.view.topic, partition = ctx.view.partition, cause = err }))
      return
    end
    I.finish(self, lane, ctx.msg)
  end

  local function on_output(report, err)
    local ctx = report.opaque
    local self, lane = delivered(ctx)
    if err then
      I.fail(self, werr(string.format("a record sent by the handler of %s failed: %s", where(ctx.view), tostring(err)),
        { topic = ctx.view.topic, partition = ctx.view.partition, cause = err }))
      return
    end
    ctx.left = ctx.left - 1
    if ctx.left == 0 then I.finish(self, lane, ctx.msg) end
  end

  -- Retries exhausted, or no handler: the dead-letter topic, or the worker stops (raises). dt: the
  -- last attempt's handler latency (nil when no handler ran), for the events.
  function I.give_up(self, lane, msg, view, err, attempts, reason, stack, dt)
    if not self.dead_letter then
      self.n.failed = self.n.failed + 1
      emit(self, "failed", view.topic, view.partition, attempts, dt)
      error(werr(string.format("handler failed for %s after %d attempt(s): %s", where(view), attempts,
                               M.exception_message(err)),
        { topic = view.topic, partition = view.partition, cause = err }), 0)
    end
    local rec = internal.dead_letter_record(self.dead_letter, view, err,
      { reason = reason, attempts = attempts, stack = stack, group = self.group, client_id = I.client_id(self) })
    local ok, perr = I.send(self, lane, rec, on_dead_letter, { msg = msg, view = view, attempts = attempts, dt = dt })
    if not ok then
      self.n.failed = self.n.failed + 1
      emit(self, "failed", view.topic, view.partition, attempts, dt)
      error(werr(string.format("dead-letter produce to %s failed for %s: %s", self.dead_letter.topic, where(view),
                               tostring(perr)), { topic = view.topic, partition = view.partition, cause = perr }), 0)
    end
    I.release(self, lane, msg)
  end

  -- A copy of msg with its key and value deserialized, or nil, err (never retried: the bytes will
  -- not change). The deserializers get the message as ctx (topic, partition, offset) and the field.
  function I.deserialize(self, msg)
    local out = {}
    for k, v in pairs(msg) do out[k] = v end
    for _, field in ipairs{ "key", "value" } do
      local f, x = self.deser[field], msg[field]
      if f and x ~= nil then
        local v, err = f(x, msg, field)
        if err ~= nil then
          if not klua.errors.is(err) then
            err = klua.errors.new{ name = "KLUA_DESERIALIZATION", topic = msg.topic, partition = msg.partition,
              message = string.format("%s, %s: the %s_deserializer failed: %s", where(msg), field, field, tostring(err)) }
            err.offset, err.field = msg.offset, field
          end
          return nil, err
        end
        out[field] = v
      end
    end
    return setmetatable(out, getmetatable(msg))
  end

  function I.client_id(self)
    return self.opts["client.id"] or (self.opts.consumer or {})["client.id"] or "rdkafka"
  end

  -- One attempt in a task of its own, cancelled at its next wait after handler_timeout_ms.
  local function attempt_task(handler, msg, info) return call(handler, msg, info) end
  function I.call_timeout(self, handler, msg, info)
    local t = klua.spawn_shielded(attempt_task, handler, msg, info)
    local ok, err, stack = t:join{ timeout_ms = self.handler_timeout_ms }
    if ok ~= nil then return ok, err, stack end
    t:cancel()
    t:join()
    return false, klua.errors.new{ name = "KLUA_TIMEOUT", timeout_ms = self.handler_timeout_ms,
      topic = msg.topic, partition = msg.partition,
      message = string.format("handler timed out after %d ms on %s", self.handler_timeout_ms, where(msg)) }, nil
  end

  -- Handles one attempt of msg: finished (handled, duplicate), in back-off (a timer), handed over
  -- (retry topic, dead-letter topic), or abandoned because the lane or the worker stops (not
  -- stored). Raises KLUA_CANCELLED when its own task was cancelled, and a KLUA_WORKER error when
  -- the message can be neither handled nor dead-lettered.
  function I.process(self, lane, msg, attempt)
    local n = self.n
    local view = msg -- what the handler sees: a retry record's original message
    if lane.retry then
      local v, a = retry_topic.view(msg)
      if v then view, attempt = v, a end
    end
    local id
    if self.dedupe then
      id = self.dedupe.key(view)
      if id ~= nil and self.seen:has(id) then
        n.deduplicated = n.deduplicated + 1
        emit(self, "deduplicated", view.topic, view.partition)
        I.release(self, lane, msg)
        I.finish(self, lane, msg)
        return
      end
    end
    local handler = self.handlers[view.topic] or self.handlers["*"]
    if not handler then
      return I.give_up(self, lane, msg, view, werr("no handler for topic " .. view.topic), attempt - 1, "no-handler")
    end
    -- What the handler gets: view deserialized (view keeps the bytes for retries and dead letters).
    -- Bytes that cannot be decoded are dead-lettered at once (a retry would decode them no better);
    -- a schema the registry could not give (KLUA_REGISTRY: down, a timeout) is retried like a failed
    -- handler.
    local hview, derr = view, nil
    if self.deser then
      hview, derr = I.deserialize(self, view)
      if not hview and derr.name == "KLUA_DESERIALIZATION" then
        return I.give_up(self, lane, msg, view, derr, 0, "deserialization-failed")
      end
    end
    local info = setmetatable({ attempt = attempt, worker = self }, INFO_MT)
    self.inflight = self.inflight + 1
    local t0 = now()
    local ok, err, stack
    if not hview then
      ok, err = false, derr
    elseif self.handler_timeout_ms then
      ok, err, stack = I.call_timeout(self, handler, hview, info)
    else
      ok, err, stack = call(handler, hview, info)
    end
    local dt = (now() - t0) / 1000
    self.inflight = self.inflight - 1
    if ok then
      n.processed = n.processed + 1
      emit(self, "handled", view.topic, view.partition, dt)
      if id ~= nil then self.seen:add(id) end
      I.release(self, lane, msg)
      local out = rawget(info, "out")
      if out then
        local ctx = { msg = msg, view = view, left = #out }
        for _, rec in ipairs(out) do
          local sent, serr = I.send(self, lane, rec, on_output, ctx)
          if not sent then
            error(werr(string.format("a record sent by the handler of %s failed: %s", where(view), tostring(serr)),
              { topic = view.topic, partition = view.partition, cause = serr }), 0)
          end
        end
      else
        I.finish(self, lane, msg)
      end
      return
    end
    if is_cancel(err) and self_cancelled() then error(err, 0) end
    if attempt > self.retry.max then
      return I.give_up(self, lane, msg, view, err, attempt, "retries-exhausted", stack, dt)
    end
    if lane.revoked or self.stopping then return end -- abandoned: redelivered later
    n.retried = n.retried + 1
    emit(self, "retried", view.topic, view.partition, dt)
    local delay = I.backoff(self, attempt)
    if self.retry_topic then
      local rec = retry_topic.record(self.retry_topic, view, attempt + 1, klua.time() + delay)
      local sent, serr = I.send(self, lane, rec, on_retry_sent, { msg = msg, view = view })
      if not sent then
        error(werr(string.format("retry-topic produce to %s failed for %s: %s", self.retry_topic, where(view),
                                 tostring(serr)), { topic = view.topic, partition = view.partition, cause = serr }), 0)
      end
      I.release(self, lane, msg)
      return
    end
    if self.key_mode then lane:park(msg) else lane.hold = true end
    lane.in_backoff, self.in_backoff = lane.in_backoff + 1, self.in_backoff + 1 -- retries in flight (worker/metrics.lua)
    self.timers:at_time(now() + delay, I.retry_due, self, lane, msg, attempt + 1)
  end
end
