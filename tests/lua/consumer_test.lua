-- The basic consumer on the embedded cluster (the mock's first group join takes ~3 s).
local topic_name = klua.testkit.fresh

local function consumer_for(t, extra)
  local conf = { group = "g-" .. klua.uuid():sub(1, 8), topics = { t },
                 ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 }
  for k, v in pairs(extra or {}) do conf[k] = v end
  return klua.consumer(conf)
end

local poll_n = klua.testkit.poll_n

test("messages round-trip with keys, binary values, ordered repeated headers", function()
  local t = topic_name("rt")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer()
  local binary = "\0\1\2\255 binary\0"
  assert(p:produce{ topic = t, key = "k1", value = binary,
                    headers = { { "x-trace", "a" }, { "x-trace", "b" }, { "empty", nil }, { "bin", "\0\255" } } })
  assert(p:produce{ topic = t, key = "", value = "" })
  assert(p:produce{ topic = t, value = "no key", timestamp = 1700000000123 })
  assert(p:produce{ topic = t, key = "tombstone" })
  local c = consumer_for(t)
  local got = poll_n(c, 4)
  assert_eq(#got, 4)
  local m1, m2, m3, m4 = got[1], got[2], got[3], got[4]
  assert_eq(m1.topic, t)
  assert_eq(m1.partition, 0)
  assert_eq(m1.offset, 0)
  assert_eq(m1.key, "k1")
  assert_eq(m1.value, binary)
  assert_eq(m1.headers, { { "x-trace", "a" }, { "x-trace", "b" }, { "empty" }, { "bin", "\0\255" } })
  assert_eq(m1:header("x-trace"), "b")
  assert_eq(m1:header_all("x-trace"), { "a", "b" })
  assert_eq(m1:header("missing"), nil)
  -- "" and nil stay distinct
  assert_eq(m2.key, "")
  assert_eq(m2.value, "")
  assert_eq(m3.key, nil)
  assert_eq(m3.timestamp, 1700000000123)
  assert_eq(m3.timestamp_type, "create")
  assert_eq(m3.headers, {})
  assert_eq(m4.value, nil)
  assert_eq(m4.offset, 3)
  c:close()
end)

test("poll returns nil after its timeout when nothing arrives", function()
  local t = topic_name("empty")
  klua.embedded.create_topic(t, 1)
  local c = consumer_for(t)
  local t0 = klua.now()
  local m, err = c:poll(300)
  assert_eq(m, nil)
  assert_eq(err, nil)
  assert_true(klua.now() - t0 >= 290)
  c:close()
end)

test("commit(msg) commits offset+1, and a new member of the group resumes after it", function()
  local t = topic_name("commit")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer()
  for i = 1, 5 do assert(p:produce{ topic = t, value = "m" .. i }) end
  local group = "g-" .. klua.uuid():sub(1, 8)
  local c = klua.consumer{ group = group, topics = { t }, ["auto.offset.reset"] = "earliest",
                           ["session.timeout.ms"] = 6000 }
  local got = poll_n(c, 2)
  assert_eq(got[2].value, "m2")
  assert_eq(c:commit(got[2]), true)
  c:close()
  local c2 = klua.consumer{ group = group, topics = { t }, ["auto.offset.reset"] = "earliest",
                            ["session.timeout.ms"] = 6000 }
  local rest = poll_n(c2, 1)
  assert_eq(rest[1].value, "m3")
  assert_eq(rest[1].offset, 2)
  c2:close()
end, { timeout_ms = 60000 })

test("only stored (processed) offsets are committed at close", function()
  local t = topic_name("store")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer()
  for i = 1, 4 do assert(p:produce{ topic = t, value = "m" .. i }) end
  local group = "g-" .. klua.uuid():sub(1, 8)
  local c = klua.consumer{ group = group, topics = { t }, ["auto.offset.reset"] = "earliest",
                           ["session.timeout.ms"] = 6000 }
  local got = poll_n(c, 3)
  assert_eq(#got, 3)
  assert(c:store(got[1]))  -- only the first was processed
  c:close()
  local c2 = klua.consumer{ group = group, topics = { t }, ["auto.offset.reset"] = "earliest",
                            ["session.timeout.ms"] = 6000 }
  local rest = poll_n(c2, 1)
  assert_eq(rest[1].value, "m2")
  c2:close()
end, { timeout_ms = 60000 })

test("a cancelled task's poll loop ends with KLUA_CANCELLED", function()
  local t = topic_name("cancel")
  klua.embedded.create_topic(t, 1)
  local c = consumer_for(t)
  local polls = 0
  local task = klua.spawn(function() while true do polls = polls + 1; c:poll(10000) end end)
  while task:status() ~= "waiting" do coroutine.yield() end
  task:cancel()
  local r, err = task:join()
  assert_error(err, "KLUA_CANCELLED")
  assert_eq(polls, 1)
  c:close()
end)

test("consumer options are checked", function()
  assert_raises(function() klua.consumer{ topics = { "t" } } end, "a 'group' is required")
  assert_raises(function() klua.consumer{ group = "g", ["group.id"] = "g" } end, "either 'group' or 'group.id'")
  assert_raises(function() klua.consumer{ group = "g", topics = { "bad topic" } } end, 'invalid topic name "bad topic"')
  assert_raises(function() klua.consumer{ group = "g", topic = "t" } end, "unknown option 'topic'")
end)
