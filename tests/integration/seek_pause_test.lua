-- Seeking by timestamp and pausing partitions against a real broker (KLUA_BROKERS): the embedded
-- cluster answers offsets_for_times with -1, so only a real broker can show these.
local fresh = klua.testkit.fresh
local admin = klua.admin()

local function create(name, partitions)
  assert_eq(assert(admin:create_topics{ { name = name, partitions = partitions } })[1].error, nil)
end

local function consumer(extra)
  local conf = klua.testkit.group_conf{ ["auto.offset.reset"] = "earliest", ["enable.auto.commit"] = false }
  for k, v in pairs(extra or {}) do conf[k] = v end
  return klua.consumer(conf)
end

local poll_n = klua.testkit.poll_n

local function values(msgs)
  local out = {}
  for i, m in ipairs(msgs) do out[i] = m.value end
  return out
end

local function assert_quiet(c, ms, what)
  local m, err = c:poll(ms)
  assert_eq(err, nil)
  assert_true(m == nil, m and (what .. ": unexpected message " .. tostring(m.value) .. " at offset " .. tostring(m.offset)))
end

test("offsets_for_times gives the first offset at or after the time; assign and seek land there", function()
  local t = fresh("ts")
  create(t, 1)
  local base = klua.time() - 3600 * 1000  -- an hour ago, well inside retention
  local p = klua.producer()
  -- offsets 0..9 with timestamps base, base+1000, ..., base+9000
  for i = 0, 9 do
    local r = assert(p:produce{ topic = t, partition = 0, value = "m" .. i, timestamp = base + i * 1000 })
    assert_eq(r.offset, i)
  end
  p:close()

  local c = consumer{ group = fresh("g") }
  local found = assert(c:offsets_for_times{
    { topic = t, partition = 0, offset = base + 2500 },     -- between m2 and m3
    })
  assert_eq(found[1].offset, 3)
  assert_eq(assert(c:offsets_for_times{ { topic = t, partition = 0, offset = base + 4000 } })[1].offset, 4)  -- exact
  assert_eq(assert(c:offsets_for_times{ { topic = t, partition = 0, offset = base - 60000 } })[1].offset, 0)  -- before all
  local after = assert(c:offsets_for_times{ { topic = t, partition = 0, offset = base + 60000 } })[1]
  -- past the last message librdkafka answers END: klua says "end", which c:assign takes as is
  assert_eq(after.offset, "end")
  assert_eq(after.error, nil)

  -- assign at the found offset: the first message is m3 with its own timestamp
  assert(c:assign{ { topic = t, partition = 0, offset = found[1].offset } })
  local got = poll_n(c, 7)
  assert_eq(values(got), { "m3", "m4", "m5", "m6", "m7", "m8", "m9" })
  assert_eq(got[1].offset, 3)
  assert_eq(got[1].timestamp, base + 3000)
  assert_eq(got[1].timestamp_type, "create")
  assert_quiet(c, 1000, "after m9")

  -- seek back by time on the live assignment: lands on m6 (first at or after base + 5001)
  local six = assert(c:offsets_for_times{ { topic = t, partition = 0, offset = base + 5001 } })[1].offset
  assert_eq(six, 6)
  assert(c:seek(t, 0, six))
  got = poll_n(c, 4)
  assert_eq(values(got), { "m6", "m7", "m8", "m9" })
  assert_quiet(c, 1000, "after the seek")
  c:close()
end, { timeout_ms = 60000 })

test("pause: messages delivered while paused arrive only after resume, exactly those", function()
  local t = fresh("pause")
  create(t, 2)
  local c = consumer{ group = fresh("g"), topics = { t } }
  local p = klua.producer()
  -- warm up: the group is joined and both partitions flow
  assert(p:produce{ topic = t, partition = 0, value = "warm-0" })
  assert(p:produce{ topic = t, partition = 1, value = "warm-1" })
  local warm = poll_n(c, 2)
  assert_eq(#warm, 2)
  assert_eq(#c:assignment(), 2)

  -- fetched but not yet polled: dropped by pause and fetched again after resume
  for i = 1, 3 do assert(p:produce{ topic = t, partition = 0, value = "pre-" .. i }) end
  klua.sleep(1500)
  local paused = assert(c:pause{ { topic = t, partition = 0 } })
  assert_eq(#paused, 1)
  assert_eq(paused[1].error, nil)

  -- delivery confirmed while paused
  for i = 1, 5 do
    local r = assert(p:produce{ topic = t, partition = 0, value = "during-" .. i })
    assert_eq(r.partition, 0)
  end
  assert(p:produce{ topic = t, partition = 1, value = "other" })
  -- the unpaused partition still flows; the paused one stays silent
  local other = poll_n(c, 1, 10000)
  assert_eq(values(other), { "other" })
  assert_eq(other[1].partition, 1)
  assert_quiet(c, 3000, "while partition 0 is paused")

  assert(c:resume{ { topic = t, partition = 0 } })
  local got = poll_n(c, 8, 15000)
  assert_eq(values(got), { "pre-1", "pre-2", "pre-3", "during-1", "during-2", "during-3", "during-4", "during-5" })
  for i, m in ipairs(got) do assert_eq(m.offset, i, "offset of " .. m.value) end
  assert_quiet(c, 2000, "after resume")

  -- pausing the whole assignment (no argument) and resuming it
  assert(c:pause())
  assert(p:produce{ topic = t, partition = 0, value = "late-0" })
  assert(p:produce{ topic = t, partition = 1, value = "late-1" })
  assert_quiet(c, 3000, "while everything is paused")
  assert(c:resume())
  local late = values(poll_n(c, 2, 10000))
  table.sort(late)
  assert_eq(late, { "late-0", "late-1" })
  assert_quiet(c, 1500, "after the second resume")
  p:close()
  c:close()
end, { timeout_ms = 60000 })
