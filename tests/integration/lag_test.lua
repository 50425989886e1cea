-- klua.lag against a real broker: lag equals what was produced minus what was committed, per partition,
-- including a partition with no committed offset and a transactional topic (markers take offsets).
local fresh = klua.testkit.fresh
local admin = klua.admin()

local function create(name, partitions)
  assert_eq(assert(admin:create_topics({ { name = name, partitions = partitions, replication_factor = 1 } }))[1].error, nil)
end

test("lag per partition, per topic and for the group; a partition without a commit counts from low", function()
  local t, g = fresh(), fresh("g")
  create(t, 3)
  local p = klua.producer()
  local produced = { [0] = 7, [1] = 4, [2] = 2 }
  for part, n in pairs(produced) do
    for i = 1, n do assert(p:produce { topic = t, partition = part, value = tostring(i) }) end
  end
  -- commit 5 of partition 0 and 1 of partition 1 through a real consumer; nothing for partition 2
  local c = klua.consumer { group = g, ["session.timeout.ms"] = 6000, ["auto.offset.reset"] = "earliest" }
  assert(c:commit({ { topic = t, partition = 0, offset = 5 }, { topic = t, partition = 1, offset = 1 } }))
  c:close()
  local snap = assert(klua.lag(g))
  assert_eq(snap.group, g)
  assert_eq(snap.partitions, {
    { topic = t, partition = 0, committed = 5, low = 0, high = 7, ["end"] = 7, lag = 2 },
    { topic = t, partition = 1, committed = 1, low = 0, high = 4, ["end"] = 4, lag = 3 },
    { topic = t, partition = 2, low = 0, high = 2, ["end"] = 2, lag = 2 },
  })
  assert_eq(snap.topics, { { topic = t, partitions = 3, lag = 7 } })
  assert_eq(snap.lag, 7)
  -- after delete_records, an uncommitted partition counts from the new low watermark
  assert(admin:delete_records({ { topic = t, partition = 2, before = 1 } }))
  local again = assert(klua.lag(g, { t }))
  assert_eq(again.partitions[3].low, 1)
  assert_eq(again.partitions[3].lag, 1)
end)

test("transactional topic: markers take offsets; end (LSO) stays behind high while a transaction is open", function()
  local t, g = fresh("tx"), fresh("g")
  create(t, 1)
  local p = klua.producer { ["transactional.id"] = fresh("txid"), ["transaction.timeout.ms"] = 10000 }
  assert(p:init_transactions())
  assert(p:begin())
  for i = 1, 5 do assert(p:produce { topic = t, partition = 0, value = tostring(i) }) end
  assert(p:commit())
  -- 5 messages at 0..4, the commit marker at 5 (written by the broker after commit returns)
  assert(admin:alter_group_offsets(g, { { topic = t, partition = 0, offset = 3 } }))
  local snap
  local deadline = klua.now() + 10000
  repeat
    snap = assert(klua.lag(g))
  until snap.partitions[1].high == 6 or klua.now() > deadline
  assert_eq(snap.partitions[1], { topic = t, partition = 0, committed = 3, low = 0, high = 6, ["end"] = 6, lag = 3 })
  -- an open transaction: high moves, the last stable offset does not
  assert(p:begin())
  for i = 1, 3 do assert(p:produce { topic = t, partition = 0, value = "open" .. i }) end
  local open = assert(klua.lag(g))
  assert_eq(open.partitions[1].high, 9)
  assert_eq(open.partitions[1]["end"], 6)
  assert_eq(open.partitions[1].lag, 6)
  assert(p:abort())
  local after
  deadline = klua.now() + 10000
  repeat
    after = assert(klua.lag(g))
  until after.partitions[1].high == 10 or klua.now() > deadline
  assert_eq(after.partitions[1].high, 10)
  assert_eq(after.partitions[1]["end"], 10)
end)

test("lag of 1,000 partitions comes in a few requests", function()
  local t, g = fresh("big"), fresh("g")
  create(t, 1000)
  local offsets = {}
  for i = 0, 999 do offsets[#offsets + 1] = { topic = t, partition = i, offset = 0 } end
  assert(admin:alter_group_offsets(g, offsets))
  assert(klua.lag(g))  -- warm: leaders known, connections up
  local t0 = klua.now()
  local snap = assert(klua.lag(g))
  local ms = klua.now() - t0
  assert_eq(#snap.partitions, 1000)
  assert_eq(snap.lag, 0)
  print(("klua.lag over 1,000 partitions: %.0f ms"):format(ms))
  assert_true(ms < 5000, ms)
end, { timeout_ms = 120000 })

-- Without topics, "nothing committed" used to read as lag 0 with no partitions: a typo'd group looked
-- caught up. A group the broker does not know is GROUP_ID_NOT_FOUND; a live group that has not
-- committed yet is measured over its members' assignment, from low; an empty one is an error too.
test("lag of a missing group is GROUP_ID_NOT_FOUND; a live group without commits counts its assignment from low", function()
  local t, g = fresh(), fresh("g")
  create(t, 2)
  local p = klua.producer()
  local produced = { [0] = 3, [1] = 5 }
  for part, n in pairs(produced) do
    for i = 1, n do assert(p:produce { topic = t, partition = part, value = tostring(i) }) end
  end
  for _, get in ipairs { function() return klua.lag(g) end, function() return admin:lag(g) end } do
    local snap, err = get()
    assert_eq(snap, nil, "a group the broker does not know must not read as caught up")
    assert_error(err, "GROUP_ID_NOT_FOUND")
    assert_true(err.message:find('"' .. g .. '" does not exist', 1, true), err.message)
  end
  -- a member holding both partitions, nothing committed
  local assigned = false
  local c = klua.consumer { group = g, topics = { t }, ["session.timeout.ms"] = 6000, ["enable.auto.commit"] = false,
                            on_assign = function(parts) assigned = #parts > 0 end }
  local deadline = klua.now() + 30000
  while not assigned and klua.now() < deadline do c:poll { timeout_ms = 200 } end
  assert_true(assigned, "the consumer was assigned its partitions")
  local snap = assert(klua.lag(g))
  assert_eq(snap.partitions, {
    { topic = t, partition = 0, low = 0, high = produced[0], ["end"] = produced[0], lag = produced[0] },
    { topic = t, partition = 1, low = 0, high = produced[1], ["end"] = produced[1], lag = produced[1] },
  })
  assert_eq(snap.lag, produced[0] + produced[1])
  c:close()
  -- left empty with nothing committed: nothing to measure, and it says so
  local gone, gerr = klua.lag(g)
  assert_eq(gone, nil)
  assert_error(gerr, "GROUP_ID_NOT_FOUND")
  assert_true(gerr.message:find("name the topics", 1, true), gerr.message)
end, { timeout_ms = 60000 })
