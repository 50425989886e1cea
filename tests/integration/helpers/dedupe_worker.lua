-- A worker process for dedupe_store_test.lua: klua run dedupe_worker.lua TOPIC GROUP STORE N
-- Handles TOPIC in GROUP with the Kafka-backed dedupe store STORE (window 1 h), printing
-- "handled <x-event-id>" per handled message; stops once N messages were handled or skipped as
-- duplicates, then prints the store's replay numbers and the worker's counters.
local topic, group, store, n = ...
n = tonumber(n)
local w
w = klua.worker(klua.testkit.group_conf{ group = group, topics = { topic }, quiet = true,
  dedupe = { topic = store, window_ms = 3600000 },
  handlers = function(msg)
    io.stdout:write("handled ", msg:header("x-event-id"), "\n"); io.stdout:flush()
  end })
klua.spawn(function()
  while true do
    local c = w:counters()
    if c.processed + c.deduplicated >= n then break end
    klua.sleep(20)
  end
  w:stop()
end)
local c = assert(w:run())
io.stdout:write(string.format("loaded %d replay_ms %.1f\n", w.seen.loaded, w.seen.replay_ms))
io.stdout:write(string.format("processed %d deduplicated %d\n", c.processed, c.deduplicated))
