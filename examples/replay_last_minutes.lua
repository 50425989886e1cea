-- Replay the last N minutes of a topic into another (klua.replay; `klua replay SRC DST --since 10m`
-- is the one-liner).
--   klua -b BROKERS run examples/replay_last_minutes.lua [SOURCE TARGET MINUTES]
-- Without arguments it makes a demo: a "payments" topic holding an hour of events (one a minute,
-- stamped with their event time), replays the last 10 minutes into "payments.replay", and checks
-- that exactly the events of those minutes arrived, with their keys, headers and timestamps.
-- Prints "replayed K of M records (last 10 minutes)" and "replay ok", or "replay FAIL: ..." and
-- exits 4.
local src, dst, minutes = arg and arg[1], arg and arg[2], tonumber(arg and arg[3] or "") or 10
local demo = src == nil
local now = klua.time()
local produced = 0
if demo then
  local kit = klua.testkit
  src = assert(kit.topic("payments", { partitions = 3 }))
  dst = assert(kit.topic("payments.replay", { partitions = 3 }))
  local events = {}
  for i = 60, 1, -1 do -- i minutes ago (plus a second, so no event sits on the boundary)
    events[#events + 1] = { key = "account-" .. (i % 9), value = klua.json.encode{ minutesAgo = i, amount = i * 3 },
                            timestamp = now - i * 60000 - 1000, headers = { { "x-minutes-ago", tostring(i) } } }
  end
  assert(kit.produce(src, events))
  produced = #events
end

local r, err = klua.replay{ source = src, target = dst, from = { timestamp = now - minutes * 60000 } }
if not r then
  io.stderr:write("replay failed: ", tostring(err), "\n")
  klua.exit(3)
end
print(string.format("replayed %d of %s records (last %d minutes) from %s to %s", r.copied,
  demo and tostring(produced) or "?", minutes, src, dst))
print(klua.replay.describe_mode(r))

if demo then
  local got = assert(klua.testkit.read(dst, { isolation = "read_committed" }))
  local problems = {}
  local ago = {}
  for _, m in ipairs(got) do
    local e = klua.json.decode(m.value)
    ago[#ago + 1] = e.minutesAgo
    if m:header("x-minutes-ago") ~= tostring(e.minutesAgo) or m.key ~= "account-" .. (e.minutesAgo % 9)
       or m.timestamp ~= now - e.minutesAgo * 60000 - 1000 then
      problems[#problems + 1] = "event " .. e.minutesAgo .. " lost its key, header or timestamp"
    end
  end
  table.sort(ago)
  local want = {}
  for i = 1, minutes - 1 do want[i] = i end -- i minutes and a second ago: inside the last `minutes`
  if table.concat(ago, ",") ~= table.concat(want, ",") then
    problems[#problems + 1] = "got minutes-ago {" .. table.concat(ago, ",") .. "}, expected {" .. table.concat(want, ",") .. "}"
  end
  if #problems > 0 then
    print("replay FAIL: " .. table.concat(problems, "; "))
    klua.exit(4)
  end
  print("replay ok")
end
