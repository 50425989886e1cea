-- c:poll / c:messages() fast path (plain buffered messages copied out through the FFI) must give
-- the same messages as the full path, and must not hide cancellation or a closed handle.
-- The consumer's test-only primitives (held, queued, route, waiters) are not on its public
-- metatable: the registry is the one way to them.
local private = debug.getregistry()["klua.private"].consumer
local function topic_name(prefix) return prefix .. "-" .. klua.uuid():sub(1, 8) end

local function assigned(t, partition)
  local c = klua.consumer{ group = "g-" .. klua.uuid() }
  assert(c:assign{ { topic = t, partition = partition or 0, offset = "beginning" } })
  return c
end

test("messages keep key/value nil, \"\" and binary apart, with metadata and methods", function()
  local t = topic_name("cfast")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer()
  local ts = klua.time()
  assert(p:produce{ topic = t, value = "plain" })
  assert(p:produce{ topic = t, key = "", value = "" })
  assert(p:produce{ topic = t, key = "k\0b" })
  assert(p:produce{ topic = t, key = "h", value = "with headers", headers = { { "a", "1" }, { "a", "2" } } })
  assert(p:produce{ topic = t, value = "after" })
  local c = assigned(t)
  local got = {}
  for msg in c:messages{ timeout_ms = 10000 } do
    got[#got + 1] = msg
    if #got == 5 then break end
  end
  assert_eq(#got, 5)
  for i, m in ipairs(got) do
    assert_eq(m.topic, t)
    assert_eq(m.partition, 0)
    assert_eq(m.offset, i - 1)
    assert_true(m.timestamp_type == "create" or m.timestamp_type == "log_append", tostring(m.timestamp_type))
    assert_eq(type(m.timestamp), "number")
    if m.timestamp_type == "create" then assert_true(m.timestamp >= ts - 1) end
  end
  assert_eq(got[1].key, nil)
  assert_eq(got[1].value, "plain")
  assert_eq(got[2].key, "")
  assert_eq(got[2].value, "")
  assert_eq(got[3].key, "k\0b")
  assert_eq(got[3].value, nil)
  assert_eq(got[4]:header("a"), "2")
  assert_eq(got[4]:header_all("a"), { "1", "2" })
  assert_eq(got[5].value, "after")
  -- every message has the methods and an empty header list when it has no headers
  assert_eq(got[1].headers, {})
  assert_eq(got[1]:header("a"), nil)
  assert_eq(got[5]:header_all("a"), {})
  c:close()
end)

test("messages of several topics carry their own topic names", function()
  local t1, t2 = topic_name("ca"), topic_name("cb")
  klua.embedded.create_topic(t1, 1)
  klua.embedded.create_topic(t2, 1)
  local p = klua.producer()
  for i = 1, 20 do assert(p:send{ topic = i % 2 == 0 and t1 or t2, value = tostring(i) }) end
  assert(p:flush(10000))
  local c = klua.consumer{ group = "g-" .. klua.uuid() }
  assert(c:assign{ { topic = t1, partition = 0, offset = "beginning" }, { topic = t2, partition = 0, offset = "beginning" } })
  local per = {}
  local n = 0
  for msg in c:messages{ timeout_ms = 10000 } do
    n = n + 1
    per[msg.topic] = (per[msg.topic] or 0) + 1
    assert_eq(tonumber(msg.value) % 2 == 0, msg.topic == t1)
    if n == 20 then break end
  end
  assert_eq(per[t1], 10)
  assert_eq(per[t2], 10)
  c:close()
end)

test("a cancelled task's next poll raises KLUA_CANCELLED even with messages buffered", function()
  local t = topic_name("ccancel")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer()
  for i = 1, 500 do assert(p:send{ topic = t, value = tostring(i) }) end
  assert(p:flush(10000))
  local c = assigned(t)
  local seen = 0
  local task = klua.spawn(function()
    for _ in c:messages{ timeout_ms = 10000 } do
      seen = seen + 1
      if seen == 10 then klua.current_task():cancel() end
    end
  end)
  local ok, err = task:join({ timeout_ms = 10000 })
  assert_eq(ok, nil)
  assert_error(err, "KLUA_CANCELLED")
  assert_eq(seen, 10)
  assert_true(private.queued(c) > 0, "messages were still fetched and unread when the cancel was seen")
  c:close()
end)

test("after close, poll raises KLUA_CLOSED instead of returning buffered messages", function()
  local t = topic_name("cclose")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer()
  for i = 1, 100 do assert(p:send{ topic = t, value = tostring(i) }) end
  assert(p:flush(10000))
  local c = assigned(t)
  assert(c:poll(10000))
  -- a bad timeout raises even when a message is buffered ({} was one until c:poll took {timeout_ms=}:
  -- it is valid now and returns the next buffered message)
  assert_raises(function() c:poll("soon") end, "bad argument #2")
  assert_raises(function() c:poll({ bogus = 1 }) end, "bad argument #2")
  assert(c:poll({}))
  c:close()
  assert_raises(function() c:poll(0) end, "closed")
  assert_raises(function() c.poll({}, 0) end, "klua.consumer expected")
end)

test("fetched messages stay bounded by queued.min.messages; a pause and resume in the middle loses nothing", function()
  local t = topic_name("cflow")
  klua.embedded.create_topic(t, 4)
  -- small producer batches: the mock cluster answers a fetch with whole batches
  local p = klua.producer{ ["batch.num.messages"] = 20 }
  local per = 600
  for part = 0, 3 do
    for i = 0, per - 1 do assert(p:send{ topic = t, partition = part, value = tostring(i) }) end
  end
  assert(p:flush(10000))
  local c = klua.consumer{ group = "g-" .. klua.uuid(), ["queued.min.messages"] = 200 }
  local list = {}
  for part = 0, 3 do list[#list + 1] = { topic = t, partition = part, offset = "beginning" } end
  assert(c:assign(list))
  local next_value = { [0] = 0, 0, 0, 0 }
  local n, max_buffered, paused_once = 0, 0, false
  for msg in c:messages{ timeout_ms = 10000 } do
    assert_eq(tonumber(msg.value), next_value[msg.partition], "partition " .. msg.partition)
    next_value[msg.partition] = next_value[msg.partition] + 1
    n = n + 1
    local b = private.queued(c)  -- librdkafka's messages queue and what klua holds
    if b > max_buffered then max_buffered = b end
    if n == 700 and not paused_once then
      -- the script's own pause and resume of a partition while messages of it are queued
      paused_once = true
      assert(c:pause{ { topic = t, partition = 2 } })
      assert(c:resume{ { topic = t, partition = 2 } })
    end
    if n == 4 * per then break end
  end
  assert_eq(n, 4 * per)
  for part = 0, 3 do assert_eq(next_value[part], per) end
  -- librdkafka's bound, plus the fetches in flight when it was reached
  assert_true(max_buffered <= 2 * 200 + 4 * 20, "buffered up to " .. max_buffered)
  c:close()
end)
