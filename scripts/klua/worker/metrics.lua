-- klua.worker.metrics (internal): the worker's Prometheus metrics in klua.metrics's default
-- registry, on once metrics are served (klua.metrics.serve and routes call enable()):
--   klua_worker_messages_total{worker,topic,outcome}  outcome = ok | retried | dead_lettered |
--                                                      deduplicated | failed (klua.worker.events)
--   klua_worker_handler_seconds{worker,topic}          every handler attempt's latency
--   klua_worker_retries_in_flight{worker}              messages waiting for their next attempt
--   klua_worker_queue_depth{worker}                    messages polled, not yet finished
-- worker = the worker's group. The counters and the histogram follow the events, through children
-- bound once per (worker, topic): a message costs a table lookup, an increment and an observation.
-- The two gauges are read from the running workers' own counts at each scrape (a collector), so
-- they are exact when scraped and cost the workers nothing.
local events = require("klua.worker.events")

local M = {}

local MAX_TOPICS = 100 -- per worker, as for the clients' metrics: a regex subscription's further topics are summed under "_other"
local OUTCOME = { handled = "ok", retried = "retried", dead_lettered = "dead_lettered",
                  deduplicated = "deduplicated", failed = "failed" }

-- Every worker made (klua.worker{}), weakly: the collector reports those running.
local workers = setmetatable({}, { __mode = "k" })
function M.track(w) workers[w] = true end

local messages, seconds -- the families, made at the first event
local bound = setmetatable({}, { __mode = "k" }) -- worker -> { topics = { [topic] = children }, n =, other = }

local function children_for(group, topic)
  if not messages then
    -- klua_ names are reserved to klua's own metrics: registered through klua.metrics's private side
    local register = debug.getregistry()["klua.private"].metrics.register
    messages = register("counter", { name = "klua_worker_messages_total", labels = { "worker", "topic", "outcome" },
      help = "Messages a klua.worker finished, by outcome (retried: one per failed attempt that is retried)" })
    seconds = register("histogram", { name = "klua_worker_handler_seconds", labels = { "worker", "topic" },
      help = "klua.worker handler latency of every attempt, in seconds", buckets = klua.metrics.DEFAULT_BUCKETS })
  end
  local b = { seconds = seconds:labels(group, topic) }
  for kind, outcome in pairs(OUTCOME) do b[kind] = messages:labels(group, topic, outcome) end
  return b
end

local function children(w, topic)
  local byw = bound[w]
  if not byw then byw = { topics = {}, n = 0 }; bound[w] = byw end
  local b = byw.topics[topic]
  if b then return b end
  if byw.n >= MAX_TOPICS then
    b = byw.other or children_for(w.group, "_other")
    byw.other = b
  else
    byw.n = byw.n + 1
    b = children_for(w.group, topic)
  end
  byw.topics[topic] = b
  return b
end

-- (worker, kind, topic, partition, value, latency): see worker/events.lua
local function on_event(w, kind, topic, _, value, latency)
  if topic == nil then return end -- queue_depth: the collector reads the worker's count instead
  local b = children(w, topic)
  b[kind]:inc()
  if kind == "handled" or kind == "retried" then
    b.seconds:observe(value)
  elseif latency then -- dead_lettered, failed: the last attempt, when a handler ran
    b.seconds:observe(latency)
  end
end

-- Messages waiting for their next attempt: in back-off (timers, or a batch's sleep), and in
-- retry-topic mode the retry records polled and not yet finished (those still in the retry topic
-- show as that topic's consumer lag).
local function retries_in_flight(w)
  local n = w.in_backoff or 0
  local bt = w.retry_topic and w.lanes and w.lanes[w.retry_topic]
  if bt then
    for _, lane in pairs(bt) do n = n + lane.nu end
  end
  return n
end

local function collect()
  local depth, retrying, any = {}, {}, false
  for w in pairs(workers) do
    if w.state == "running" then
      any = true
      local g = w.group -- two workers of one group in a process add up
      depth[g] = (depth[g] or 0) + math.max(0, w.unfinished or 0)
      retrying[g] = (retrying[g] or 0) + math.max(0, retries_in_flight(w))
    end
  end
  if not any then return {} end
  local ds, rs = {}, {}
  for g, v in pairs(depth) do ds[#ds + 1] = { labels = { worker = g }, value = v } end
  for g, v in pairs(retrying) do rs[#rs + 1] = { labels = { worker = g }, value = v } end
  return {
    { name = "klua_worker_queue_depth", type = "gauge", samples = ds,
      help = "Messages a klua.worker polled and has not finished (queued, in its handlers, or waiting for a retry)" },
    { name = "klua_worker_retries_in_flight", type = "gauge", samples = rs,
      help = "Messages a klua.worker holds for a retry (in back-off, or polled from its retry topic and not finished)" },
  }
end

local enabled = false
-- Idempotent. Workers that run already are counted from now on.
function M.enable()
  if enabled then return end
  enabled = true
  events.subscribe(on_event)
  klua.metrics.register_collector(collect)
end

return M
