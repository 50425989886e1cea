-- Concurrency benchmark: many tasks each awaiting p:produce at once, against the
-- same volume sent by one task in sequential batches.
--
--   klua -b BROKERS run bench/concurrency.lua --topic T --mode tasks|batched
--        [--tasks 10000] [--per-task 20] [--size 100]
--
-- tasks:   --tasks tasks are spawned; each awaits p:produce (its delivery report)
--          --per-task times, so about --tasks produce calls are in flight at once.
-- batched: one task sends the same volume with p:produce_batch, --tasks messages
--          per batch (the same number in flight), batch after batch.
-- Both use klua's default producer configuration, warm up with one batch of
-- 1,000 messages (not timed) and count only successful reports. Prints one line
-- of JSON: {"mode":M,"msgs":N,"seconds":T,"msgs_per_s":R,"delivered":D,"errors":E,"rss_kb":K}
-- where K is VmRSS at the end of the timed phase (the driver also records the peak).

local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { topic = "string", mode = { "tasks", "batched" }, tasks = "positive",
                                  ["per-task"] = "positive", size = "count" },
                           { tasks = 10000, ["per-task"] = 20, size = 100 })
local topic, mode, tasks, per_task, size = o.topic, o.mode, o.tasks, o.per_task, o.size
if not topic or not mode then error("--topic and --mode tasks|batched are required", 0) end

local rss_kb = bench.rss_kb

local p = klua.producer()
local value = string.rep("x", size)
local total = tasks * per_task

local warm = {}
for k = 1, 1000 do warm[k] = { topic = topic, value = value } end
for _, r in ipairs(assert(p:produce_batch(warm))) do assert(r.error == nil, tostring(r.error)) end

local delivered, errors = 0, 0
local t0 = klua.now()
if mode == "tasks" then
  local handles = {}
  for k = 1, tasks do
    handles[k] = klua.spawn(function()
      local msg = { topic = topic, value = value }
      for _ = 1, per_task do
        local report = p:produce(msg)
        if report then delivered = delivered + 1 else errors = errors + 1 end
      end
    end)
  end
  for k = 1, tasks do
    local _, err = handles[k]:join()
    if err ~= nil then error(err, 0) end
  end
else
  local batch = {}
  for k = 1, tasks do batch[k] = { topic = topic, value = value } end
  for _ = 1, per_task do
    local results = assert(p:produce_batch(batch))
    for k = 1, #results do
      if results[k].error == nil then delivered = delivered + 1 else errors = errors + 1 end
    end
  end
end
local secs = (klua.now() - t0) / 1000
print(('{"mode":"%s","msgs":%d,"seconds":%.6f,"msgs_per_s":%.1f,"delivered":%d,"errors":%d,"rss_kb":%d}'):format(
  mode, total, secs, total / secs, delivered, errors, rss_kb()))
io.stdout:flush()
p:close()
