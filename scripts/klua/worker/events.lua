-- klua.worker.events: the one hook through which every worker (per-message, per-key, retry-topic,
-- batch and exactly-once modes alike) reports what happens to its messages. The observability
-- issue's metrics subscribe here; nothing else in the worker keeps statistics for export.
--
--   local events = require("klua.worker.events")
--   local unsubscribe = events.subscribe(function(worker, kind, topic, partition, value, latency) ... end)
--
-- kinds and their value:
--   "handled"        handler latency in seconds (the successful attempt)
--   "retried"        handler latency in seconds (the failed attempt that will be retried)
--   "dead_lettered"  attempts made; latency: the last attempt's handler latency in seconds
--                    (nil when no handler ran: no handler for the topic)
--   "deduplicated"   nil
--   "failed"         attempts made (the worker stops: no dead-letter topic, or its produce failed);
--                    latency as for dead_lettered
--   "queue_depth"    messages polled but not yet finished, all partitions (topic, partition nil)
-- With batch handlers, each message of a batch reports the batch's handler latency.
-- klua.worker.metrics (worker/metrics.lua) turns these into the klua_worker_* metrics.
-- A listener must not yield or raise; one that raises is dropped with a line on stderr.
local log = debug.getregistry()["klua.private"].log -- warnings through klua's log (host/lua/log.lua)
local M = {}

local listeners, n = {}, 0

function M.subscribe(fn)
  if type(fn) ~= "function" then klua.errors.bad_argument("events.subscribe", 1, "expected a function") end
  n = n + 1
  listeners[n] = fn
  return function()
    for i = 1, n do
      if listeners[i] == fn then table.remove(listeners, i); n = n - 1; return end
    end
  end
end

-- Costs one comparison when nobody listens (the hot path of every message).
function M.emit(worker, kind, topic, partition, value, latency)
  if n == 0 then return end
  for i = n, 1, -1 do
    local fn = listeners[i]
    local ok, err = pcall(fn, worker, kind, topic, partition, value, latency)
    if not ok then
      table.remove(listeners, i); n = n - 1
      log.say("warn", "klua.worker.events", "klua.worker.events", "listener removed after an error: " .. tostring(err))
    end
  end
end

return M
