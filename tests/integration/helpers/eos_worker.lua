-- tests/integration/helpers/eos_worker.lua INPUT OUTPUT GROUP TXID CRASH_AFTER
-- Consume-transform-produce with exactly-once semantics: reads INPUT (read_committed, group GROUP),
-- writes "out:" .. value to OUTPUT in transactions of up to 10 records whose input offsets are
-- committed with them (send_offsets). With CRASH_AFTER > 0, after that many records were produced
-- (delivered) in total, and while a transaction is open, the process SIGKILLs itself: no abort,
-- no close, no flush. Ends (exit 0) after 4 s without input once it has processed something.
-- stdout (unbuffered): "pid P", "committed N" after each commit (N processed in total), and
-- "crash K" (K records in the open transaction) just before the kill.
local input, output, group, txid, crash_after = ...
assert(input and output and group and txid, "usage: eos_worker.lua INPUT OUTPUT GROUP TXID CRASH_AFTER")
crash_after = tonumber(crash_after) or 0
local BATCH = 10
io.stdout:setvbuf("no")

local function own_pid()
  local f = assert(io.open("/proc/self/stat"))
  local s = f:read("*l")
  f:close()
  return assert(s:match("^(%d+)"), "cannot parse /proc/self/stat")
end
local pid = own_pid()
io.stdout:write("pid ", pid, "\n")

local p = klua.producer{ ["transactional.id"] = txid, ["transaction.timeout.ms"] = 10000 }
local c = klua.consumer{ group = group, topics = { input }, ["isolation.level"] = "read_committed",
                         ["enable.auto.commit"] = false, ["auto.offset.reset"] = "earliest",
                         ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 1000 }

local processed = 0
while true do
  local batch = {}
  while #batch < BATCH do
    -- the first poll also waits for the group join (up to the dead predecessor's session timeout)
    local m, err = c:poll(#batch > 0 and 1000 or (processed == 0 and 40000 or 4000))
    if err then error(err) end
    if not m then break end
    batch[#batch + 1] = m
  end
  if #batch == 0 then break end
  local res, err = p:transaction(function()
    for i, m in ipairs(batch) do
      assert(p:produce{ topic = output, key = m.key, value = "out:" .. m.value })
      processed = processed + 1
      if crash_after > 0 and processed == crash_after then
        io.stdout:write("crash ", i, "\n")
        os.execute("kill -9 " .. pid)
        klua.sleep(10000)  -- not reached
        error("still alive after kill -9")
      end
    end
    assert(p:send_offsets(c))
    return true
  end)
  if not res then error(err) end
  io.stdout:write("committed ", processed, "\n")
end
c:close()
p:close()
