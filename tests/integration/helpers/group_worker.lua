-- tests/integration/helpers/group_worker.lua TOPIC GROUP OUTFILE DELAY_MS IDLE_MS
-- One member of consumer group GROUP on TOPIC. For each message: sleeps DELAY_MS (slow work),
-- appends "M partition offset value" to OUTFILE (unbuffered, so it survives SIGKILL), then
-- stores the offset (committed by auto-commit, on revoke and at close). Also writes "P pid",
-- "A p1,p2,..." on each assignment, "R p1,..." on each revoke, "S partition offset" when the
-- store failed because the partition was revoked meanwhile, and "E" at the end. Waits up to
-- 60 s for the first message, then ends after IDLE_MS without one.
local topic, group, outfile, delay, idle = ...
assert(topic and group and outfile, "usage: group_worker.lua TOPIC GROUP OUTFILE DELAY_MS IDLE_MS")
delay, idle = tonumber(delay) or 0, tonumber(idle) or 5000
local f = assert(io.open(outfile, "a"))
f:setvbuf("no")
local stat = assert(io.open("/proc/self/stat"))
f:write("P ", stat:read("*l"):match("^(%d+)"), "\n")
stat:close()

local function parts(list)
  local t = {}
  for _, tp in ipairs(list) do t[#t + 1] = tostring(tp.partition) end
  return table.concat(t, ",")
end

-- on_assign and on_revoke hear changes: the whole assignment under the eager classic
-- protocol, only the partitions added or taken away under cooperative ones (KIP-848).
local c = klua.consumer(klua.testkit.group_conf{ group = group, topics = { topic }, ["auto.offset.reset"] = "earliest",
                         on_assign = function(ps) f:write("A ", parts(ps), "\n") end,
                         on_revoke = function(ps) f:write("R ", parts(ps), "\n") end })

local function handle(m)
  if delay > 0 then klua.sleep(delay) end
  f:write(string.format("M %d %d %s\n", m.partition, m.offset, m.value))
  local ok, err = c:store(m)
  -- A rebalance can revoke the partition while this message is being processed (the revoke hook
  -- runs as its own task during klua.sleep): the store then fails with _STATE and the message's
  -- new owner processes it again (at least once). Anything else is a failure.
  if not ok then
    if err.name ~= "_STATE" then error(err, 0) end
    f:write(string.format("S %d %d\n", m.partition, m.offset))
  end
end

local first = c:messages{ timeout_ms = 60000 }()
if first then
  handle(first)
  for m in c:messages{ timeout_ms = idle } do handle(m) end
end
f:write("E\n")
c:close()
f:close()
