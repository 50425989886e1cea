-- c:messages{timeout_ms=, until_end=} (bindings/consumer.cpp loads it with klua.now, error,
-- pairs, ipairs, the fast path, klua.errors.bad_argument and the consumer's private primitives,
-- which are not on its metatable): an iterator over messages; raises on errors so that a for
-- loop never ends silently. It ends after timeout_ms without a message (when given), or, with
-- until_end, once every assigned partition is at its end:
--
-- - a partition's end is its end offset (the last stable offset under read_committed) taken
--   when the partition is first seen in the assignment: messages produced later are not
--   waited for;
-- - a partition is at its end when nothing was below its end (empty, or all deleted); when the
--   next offset the script gets (after the last message handed out, or the offset it was
--   assigned or sought to) reached it; or when librdkafka reported the end of the partition
--   (enable.partition.eof) at or past it, with no message below it still held by klua. The last
--   rule covers what no message shows: a partition assigned at "end", at a time with no offset
--   after it, past its end (reset to the end), or whose last offsets are a transaction's control
--   records (the broker sends an empty fetch, at most fetch.wait.max.ms later, and librdkafka
--   reports the end).
--
-- No assignment yet (a subscription before its first rebalance) is not the end; with nothing
-- assigned, a subscribed topic reported missing is raised (it would never be assigned). Messages of a
-- partition at its end may still come while others catch up. An end of partition, a new
-- assignment or a seek wakes the iterator's wait (bindings/consumer_poll.cpp, poll_until_end);
-- it also looks again every RECHECK_MS without news.
local now, error, pairs, ipairs, fast, bad_argument, private = ...
local type, tostring, min, max = type, tostring, math.min, math.max
local end_offsets, progress, poll_until_end = private.end_offsets, private.progress, private.poll_until_end

local RECHECK_MS = 1000

local function until_end(c, timeout)
  local ends, lows = {}, {}  -- [topic][partition]: taken when the partition is first seen
  local pending = {}         -- [topic][partition] = true: not at its end yet
  local remaining            -- partitions not at their end; nil: look again before going on

  -- Reads where each assigned partition stands (asking the end offsets of partitions seen for
  -- the first time) and sets pending and remaining.
  local function look()
    while true do
      local prog, missing = progress(c)
      if missing then error(missing, 0) end  -- nothing assigned, a subscribed topic missing
      local new = {}
      for _, p in ipairs(prog) do
        local e = ends[p.topic]
        if not e or not e[p.partition] then new[#new + 1] = { topic = p.topic, partition = p.partition } end
      end
      if #new == 0 then
        pending, remaining = {}, nil
        if #prog == 0 then return end  -- nothing assigned (yet): not the end
        remaining = 0
        for _, p in ipairs(prog) do
          local t, part = p.topic, p.partition
          local e = ends[t][part]
          local done = e <= lows[t][part] or (p.next and p.next >= e) or
                       (p.eof and p.eof >= e and (p.held == nil or p.held >= e))
          if not done then
            pending[t] = pending[t] or {}
            pending[t][part] = true
            remaining = remaining + 1
          end
        end
        return
      end
      local got, err = end_offsets(c, new)  -- yields: the progress is read again after it
      if not got then error(err, 0) end
      for _, x in ipairs(got) do
        ends[x.topic] = ends[x.topic] or {}
        lows[x.topic] = lows[x.topic] or {}
        ends[x.topic][x.partition], lows[x.topic][x.partition] = x["end"], x.low
      end
    end
  end

  return function()
    local deadline = timeout and (now() + timeout)
    while true do
      if remaining == nil then look() end
      if remaining == 0 then return nil end
      local msg, err = fast(c)  -- a buffered message: no clock, no wait
      if err then error(err, 0) end  -- a deserializer failed
      if not msg then
        msg, err = poll_until_end(c, deadline and min(RECHECK_MS, max(0, deadline - now())) or RECHECK_MS)
        if err then error(err, 0) end
      end
      if msg then
        local e = ends[msg.topic]
        e = e and e[msg.partition]
        if e == nil then
          remaining = nil  -- a partition not seen yet (a rebalance during the call)
        elseif msg.offset + 1 >= e then
          local p = pending[msg.topic]
          if p and p[msg.partition] then
            p[msg.partition] = nil
            remaining = remaining - 1
            -- the last one: confirm with klua's record (the script may have sought back since)
            if remaining == 0 then remaining = nil end
          end
        end
        return msg
      end
      remaining = nil  -- nothing came: an end of partition, a new assignment, a seek, or time
      if deadline and now() >= deadline then return nil end
    end
  end
end

return function(c, opts)
  if opts ~= nil and type(opts) ~= "table" then
    bad_argument("c:messages", 2, "options table {timeout_ms=, until_end=} expected, got " .. type(opts))
  end
  opts = opts or {}
  for k, v in pairs(opts) do
    if k ~= "timeout_ms" and k ~= "until_end" then
      bad_argument("c:messages", 2, "unknown option '" .. tostring(k) .. "' (allowed: timeout_ms, until_end)")
    end
    if k == "timeout_ms" and type(v) ~= "number" then
      bad_argument("c:messages", 2, "timeout_ms must be a number, got " .. type(v))
    end
  end
  local timeout = opts.timeout_ms
  if opts.until_end then return until_end(c, timeout) end
  return function()
    local msg, ferr = fast(c)  -- a buffered message: no clock, no wait
    if msg then return msg end
    if ferr then error(ferr, 0) end  -- a deserializer failed
    local deadline = timeout and (now() + timeout)
    while true do
      local wait = (timeout and max(0, deadline - now())) or 1000
      local err
      msg, err = c:poll(wait)
      if msg then return msg end
      if err then error(err, 0) end
      if deadline and now() >= deadline then return nil end
    end
  end
end
