-- p:send's fast path (plain topic/value/key/partition through the FFI) and the batched delivery
-- reports of a producer-level on_delivery must behave exactly like the full path.
local function topic_name(prefix) return prefix .. "-" .. klua.uuid():sub(1, 8) end

-- The first n messages of partition `partition` of t (assigned: no group join to wait for).
local function read_all(t, n, partition)
  local c = klua.consumer{ group = "g-" .. klua.uuid() }
  assert(c:assign{ { topic = t, partition = partition or 0, offset = "beginning" } })
  local got = {}
  for msg in c:messages{ timeout_ms = 10000 } do
    got[#got + 1] = msg
    if #got == n then break end
  end
  c:close()
  return got
end

test("send keeps key nil and \"\" apart, and the value, partition and order", function()
  local t = topic_name("fast")
  klua.embedded.create_topic(t, 4)
  local p = klua.producer()
  assert(p:send{ topic = t, partition = 3, value = "a" })
  assert(p:send{ topic = t, partition = 3, key = "", value = "" })
  assert(p:send{ topic = t, partition = 3, key = "k" })
  assert(p:send{ topic = t, partition = 3.0, key = "k\0bin", value = "v\0bin" })
  assert_eq(p:flush{ timeout_ms = 10000 }, true)
  local got = read_all(t, 4, 3)
  assert_eq(#got, 4)
  for i, m in ipairs(got) do
    assert_eq(m.partition, 3)
    assert_eq(m.offset, i - 1)
  end
  assert_eq(got[1].key, nil)
  assert_eq(got[1].value, "a")
  assert_eq(got[2].key, "")
  assert_eq(got[2].value, "")
  assert_eq(got[3].key, "k")
  assert_eq(got[3].value, nil)
  assert_eq(got[4].key, "k\0bin")
  assert_eq(got[4].value, "v\0bin")
end)

test("batched reports carry topic, partition, offset and timestamp like p:produce's", function()
  local t = topic_name("reports")
  klua.embedded.create_topic(t, 2)
  local reports = {}
  local p = klua.producer{ on_delivery = function(r, err)
    assert_eq(err, nil)
    reports[#reports + 1] = r
  end }
  for i = 1, 10 do assert(p:send{ topic = t, partition = i % 2, value = tostring(i) }) end
  assert_eq(p:flush{ timeout_ms = 10000 }, true)
  local direct = assert(p:produce{ topic = t, partition = 0, value = "x" })
  assert_eq(#reports, 10)
  local next_offset = { [0] = 0, [1] = 0 }
  for _, r in ipairs(reports) do
    assert_eq(r.topic, t)
    assert_eq(r.offset, next_offset[r.partition])
    next_offset[r.partition] = r.offset + 1
    assert_eq(r.timestamp_type, direct.timestamp_type)
    assert_eq(type(r.timestamp), type(direct.timestamp))
  end
  assert_eq(direct.offset, 5)
  assert_true(reports[1] ~= reports[2], "every report is its own table")
end)

test("per-message callbacks and plain sends keep their order within a partition", function()
  local t = topic_name("mixed")
  klua.embedded.create_topic(t, 1)
  local order = {}
  local p = klua.producer{ on_delivery = function(r) order[#order + 1] = "p" .. r.offset end }
  for i = 0, 9 do
    if i % 3 == 0 then
      assert(p:send{ topic = t, value = "x", on_delivery = function(r) order[#order + 1] = "m" .. r.offset end })
    else
      assert(p:send{ topic = t, value = "x" })
    end
  end
  assert_eq(p:flush{ timeout_ms = 10000 }, true)
  assert_eq(table.concat(order, ","), "m0,p1,p2,m3,p4,p5,m6,p7,p8,m9")
end)

test("what the fast path does not take still gets the full path's answers", function()
  local p = klua.producer()
  -- fields are read raw, as the full path does: an __index does not supply a value
  local t = topic_name("raw")
  klua.embedded.create_topic(t, 1)
  assert(p:send(setmetatable({ topic = t }, { __index = { value = "hidden" } })))
  assert(p:send{ topic = t, value = 42 })  -- numbers are sent as their string
  assert_eq(p:flush{ timeout_ms = 10000 }, true)
  local got = read_all(t, 2)
  assert_eq(got[1].value, nil)
  assert_eq(got[2].value, "42")
  local ok, err = p:send{ topic = "bad topic", value = "x" }
  assert_eq(ok, nil)
  assert_error(err, "KLUA_INVALID_ARGUMENT")
  assert_raises(function() p:send{ topic = t, value = true } end, "message field 'value' must be a string")
  assert_raises(function() p:send{ topic = t, partition = -1 } end, "0%-based")
  assert_raises(function() p:send{ topic = t, partition = "1" } end, "message field 'partition' must be a number")
  assert_raises(function() p:send{ topic = 5, value = "x" } end, "message field 'topic' must be a string")
  assert_raises(function() p.send({}, { topic = t }) end, "klua.producer expected")
  p:close()
  assert_raises(function() p:send{ topic = t, value = "x" } end, "closed")
end)

test("a long run of sends lets delivery reports and other tasks in before the queue is full", function()
  local t = topic_name("turns")
  klua.embedded.create_topic(t, 4)
  local delivered, delivered_during_loop = 0, nil
  local p = klua.producer{ on_delivery = function(_, err) if not err then delivered = delivered + 1 end end }
  -- The first report waits for the idempotent producer's id and the topic's leaders (~100 ms on
  -- librdkafka 2.15's mock, during which 100,000 sends fit): the claim is about a producer at work.
  assert(p:produce{ topic = t, value = "warm-up" })
  delivered = 0
  local ticks, ticking = 0, true
  local ticker = klua.spawn(function()
    while ticking do klua.sleep(0); ticks = ticks + 1 end
  end)
  local ticks_before = ticks
  local msg = { topic = t, value = "v" }
  -- 200,000 sends take far longer than a delivery report does to come back, and stay below
  -- queue.buffering.max.messages (100,000 by default) only if reports are handled meanwhile.
  local most_outstanding = 0
  for i = 1, 200000 do
    assert(p:send(msg))
    if i % 1000 == 0 then most_outstanding = math.max(most_outstanding, i - delivered) end
  end
  delivered_during_loop = delivered
  ticking = false
  assert(p:flush{ timeout_ms = 30000 })
  ticker:join()
  assert_true(delivered_during_loop > 0, "reports handled during the send loop")
  assert_true(ticks > ticks_before, "another task ran during the send loop")
  assert_true(most_outstanding < 100000, "outstanding messages stayed below the queue's bound: " .. most_outstanding)
  assert_eq(delivered, 200000)
  p:close()
end)
