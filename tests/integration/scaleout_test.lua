-- Scale-out against a real broker (KLUA_BROKERS): three klua processes (helpers/group_worker.lua)
-- in one group on a 12-partition topic; one is SIGKILLed mid-stream; the two survivors take over
-- its partitions after its session times out, and every message is processed at least once.
local proc = dofile("tests/integration/helpers/proc.lua")
local fresh = klua.testkit.fresh
local N, PARTITIONS, DELAY_MS, IDLE_MS = 1200, 12, 25, 6000

-- Parses a worker's output file: last assignment, processed messages.
local function parse(h)
  local r = { assigned = nil, ever = {}, msgs = {}, assignments = 0, ended = false }
  for _, line in ipairs(h:lines()) do
    local kind, rest = line:match("^(%u) ?(.*)$")
    -- "A"/"R" list the partitions added / taken away (all of them under the eager protocol)
    if kind == "A" then
      r.assignments = r.assignments + 1
      local set = {}
      for _, p in ipairs(r.assigned or {}) do set[p] = true end
      for p in rest:gmatch("%d+") do
        set[tonumber(p)] = true
        r.ever[tonumber(p)] = true
      end
      r.assigned = {}
      for p in pairs(set) do r.assigned[#r.assigned + 1] = p end
      table.sort(r.assigned)
    elseif kind == "R" then
      local gone = {}
      for p in rest:gmatch("%d+") do gone[tonumber(p)] = true end
      local left = {}
      for _, p in ipairs(r.assigned or {}) do if not gone[p] then left[#left + 1] = p end end
      r.assigned = left
    elseif kind == "M" then
      local part, off, value = rest:match("^(%d+) (%d+) (.*)$")
      r.msgs[#r.msgs + 1] = { partition = tonumber(part), offset = tonumber(off), value = value }
    elseif kind == "E" then
      r.ended = true
    end
  end
  return r
end

test("three workers, one SIGKILLed mid-stream: survivors take over its partitions, nothing is lost", function()
  local topic, group = fresh("t"), fresh("g")
  assert_eq(assert(klua.admin():create_topics{ { name = topic, partitions = PARTITIONS } })[1].error, nil)
  local dir = proc.tmpdir("klua-scaleout")
  local workers = {}
  for i = 1, 3 do
    workers[i] = proc.spawn(dir, "w" .. i, "tests/integration/helpers/group_worker.lua",
                            { topic, group, dir .. "/w" .. i .. ".out", DELAY_MS, IDLE_MS })
  end
  local function cleanup() for _, w in ipairs(workers) do w:ensure_dead() end end

  -- the group settles: each worker holds 4 partitions, together all 12
  local deadline = klua.now() + 40000
  local settled = false
  while not settled and klua.now() < deadline do
    klua.sleep(200)
    local union, n = {}, 0
    settled = true
    for _, w in ipairs(workers) do
      local a = parse(w).assigned
      if not a or #a ~= PARTITIONS / 3 then settled = false break end
      for _, p in ipairs(a) do if not union[p] then union[p] = true; n = n + 1 end end
    end
    settled = settled and n == PARTITIONS
  end
  if not settled then cleanup() end
  assert_true(settled, "group did not settle on 4+4+4 partitions: " .. workers[1]:describe())

  local p = klua.producer{ ["linger.ms"] = 5 }
  for i = 1, N do assert(p:send{ topic = topic, key = "key-" .. i, value = tostring(i) }) end
  assert(p:flush())
  p:close()

  -- kill worker 3 once it is well into its share (about 400 messages at 25 ms each)
  local victim = workers[3]
  deadline = klua.now() + 30000
  while #parse(victim).msgs < 60 and klua.now() < deadline do klua.sleep(50) end
  local before = parse(victim)
  victim:kill(9)
  local victim_parts = before.assigned
  assert_true(#before.msgs >= 60, "victim processed " .. #before.msgs .. " messages before the kill")
  assert_eq(victim:wait(10000), 137, "victim died of SIGKILL: " .. victim:describe())
  local victim_done = parse(victim)
  assert_true(#victim_done.msgs < N / 3, "the kill landed mid-stream (victim processed " .. #victim_done.msgs .. ")")
  assert_true(not victim_done.ended)

  local rcs = {}
  for i = 1, 2 do rcs[i] = workers[i]:wait(60000) end
  cleanup()
  for i = 1, 2 do assert_eq(rcs[i], 0, "survivor ends normally: " .. workers[i]:describe()) end

  local survivors = { parse(workers[1]), parse(workers[2]) }
  -- every message processed at least once: the union of the three files covers 1..N
  local seen, dups = {}, 0
  for _, r in ipairs{ survivors[1], survivors[2], victim_done } do
    for _, m in ipairs(r.msgs) do
      local i = tonumber(m.value)
      assert_true(i and i >= 1 and i <= N, "unexpected value " .. tostring(m.value))
      if seen[i] then dups = dups + 1 end
      seen[i] = (seen[i] or 0) + 1
    end
  end
  local missing = {}
  for i = 1, N do if not seen[i] then missing[#missing + 1] = i end end
  assert_eq(#missing, 0, "values never processed (" .. #missing .. ")")

  -- the survivors took over the victim's partitions: a later assignment of theirs holds each of
  -- them, and a survivor processed each of them past where the victim stopped
  for _, r in ipairs(survivors) do assert_true(r.ended, "survivor wrote its end line") end
  for _, part in ipairs(victim_parts) do
    assert_true(survivors[1].ever[part] or survivors[2].ever[part], "partition " .. part .. " never assigned to a survivor")
  end
  local victim_max = {}
  for _, m in ipairs(victim_done.msgs) do victim_max[m.partition] = math.max(victim_max[m.partition] or -1, m.offset) end
  local taken_over = 0
  for _, part in ipairs(victim_parts) do
    local beyond = false
    for _, r in ipairs(survivors) do
      for _, m in ipairs(r.msgs) do
        if m.partition == part and m.offset > (victim_max[part] or -1) then beyond = true end
      end
    end
    assert_true(beyond, "no survivor processed partition " .. part .. " after the victim stopped")
    taken_over = taken_over + 1
  end
  assert_eq(taken_over, #victim_parts)
  -- at-least-once, not at-least-many. A value is processed again only when its partition changed
  -- hands (or was revoked and given back, as the eager protocol does to every partition) before
  -- its offset was committed: the victim's uncommitted work, a copy in flight at a revoke (its
  -- store failed, "S"), a commit on revoke refused by the broker mid-rebalance. So each value has
  -- at most one copy per assignment the survivors received, plus the first; and the victim, which saw
  -- no rebalance after the group settled, processed each value at most once.
  local assignments = 0
  for _, r in ipairs(survivors) do assignments = assignments + r.assignments end
  for i, n in pairs(seen) do
    assert_true(n <= 1 + assignments, "value " .. i .. " processed " .. n .. " times, with only " ..
                assignments .. " assignments")
  end
  local by_victim = {}
  for _, m in ipairs(victim_done.msgs) do
    local i = tonumber(m.value)
    by_victim[i] = (by_victim[i] or 0) + 1
    assert_true(by_victim[i] <= 1, "value " .. i .. " processed twice by the victim")
  end
  print(string.format("     victim processed %d, survivors %d + %d, duplicates %d",
                      #victim_done.msgs, #survivors[1].msgs, #survivors[2].msgs, dups))
  proc.remove_dir(dir)
end, { timeout_ms = 150000 })
