-- tests/integration/helpers/eos_copy_worker.lua INPUT OUTPUT GROUP INSTANCE MODE DELAY_MS
-- A klua.worker in exactly-once mode copying INPUT to OUTPUT ("out:" .. value, same key), one
-- output per input. MODE "message": per-message handlers, one transaction per polled batch (up
-- to 500); "batch": batch handlers of up to 50 messages, so that most of the time is spent in
-- transactions (a kill often lands in an open one). Each handler call sleeps DELAY_MS (so that
-- a run takes long enough to be killed in the middle). Static group membership (group.instance.id INSTANCE): a restarted
-- process takes its dead predecessor's place without waiting for its session to expire. Stops
-- (exit 0, "done") once the group's lag is 0: everything committed.
-- stdout (unbuffered): "pid P", "assigned N" at each assignment, "done C" (C processed here).
local input, output, group, instance, mode, delay = ...
assert(input and output and group and instance and (mode == "message" or mode == "batch"),
       "usage: eos_copy_worker.lua INPUT OUTPUT GROUP INSTANCE message|batch DELAY_MS")
delay = tonumber(delay) or 0
io.stdout:setvbuf("no")
local f = assert(io.open("/proc/self/stat"))
io.stdout:write("pid ", f:read("*l"):match("^(%d+)"), "\n")
f:close()

local w
w = klua.worker{
  group = group, topics = { input }, quiet = true,
  exactly_once = { ["transaction.timeout.ms"] = 10000 },
  ["group.instance.id"] = instance, ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500,
  on_assign = function(parts) io.stdout:write("assigned ", #parts, "\n") end,
  batch = mode == "batch" and { max = 50, timeout_ms = 0 } or nil,
  handlers = mode == "batch" and function(msgs, info)
    if delay > 0 then klua.sleep(delay) end
    for _, msg in ipairs(msgs) do info.send{ topic = output, key = msg.key, value = "out:" .. msg.value } end
  end or function(msg, info)
    if delay > 0 then klua.sleep(delay) end
    info.send{ topic = output, key = msg.key, value = "out:" .. msg.value }
  end,
}
local finished, t0 = false, klua.now()
klua.spawn(function()
  while not finished do
    klua.sleep(250)
    local lag = w:lag()
    if lag == 0 and (w:counters().consumed > 0 or klua.now() - t0 > 5000) then
      w:stop()
      return
    end
  end
end)
local counters = assert(w:run())
finished = true
io.stdout:write("done ", counters.processed, "\n")
