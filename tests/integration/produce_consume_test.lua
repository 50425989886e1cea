-- Producer and consumer against a real Kafka broker (KLUA_BROKERS, see tests/broker.cmake).
-- Topics auto-create with one partition; every test uses fresh topic and group names.
local fresh = klua.testkit.fresh
-- A Lua pattern matching s literally.
local function literal(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

local function consumer_conf(group, topic, extra)
  local conf = klua.testkit.group_conf{ group = group, topics = { topic }, ["auto.offset.reset"] = "earliest" }
  for k, v in pairs(extra or {}) do conf[k] = v end
  return conf
end

local function new_consumer(topic, group, extra)
  return klua.consumer(consumer_conf(group or fresh("g"), topic, extra))
end

-- Polls until n messages arrived (or the deadline); errors from poll fail the test.
local poll_n = klua.testkit.poll_n

-- Asserts that nothing more arrives within ms.
local assert_nothing_more = klua.testkit.assert_nothing_more

local function all_bytes()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

test("messages round-trip exactly: keys, binary values, nil vs empty, headers, timestamps", function()
  local t = fresh("rt")
  local p = klua.producer()
  local binary = "\0\1\2\255 binary\0" .. all_bytes()
  local big = klua.random_bytes(512 * 1024)
  local before = klua.time()
  local sent = {
    { topic = t, key = "k1", value = binary, timestamp = 1700000000123,
      headers = { { "x-trace", "a" }, { "empty", nil }, { "x-trace", "b" }, { "blank", "" }, { "bin", "\0\255\0" } } },
    { topic = t, key = "", value = "" },                       -- empty key and value, not nil
    { topic = t, value = "no key" },                           -- nil key
    { topic = t, key = "tombstone" },                          -- nil value
    { topic = t },                                             -- nil key and nil value
    { topic = t, key = "\0k\255", value = big, timestamp = 1 },
    { topic = t, key = 42, value = 1.5, headers = { n = 7 } }, -- numbers become strings; map headers
  }
  local reports = {}
  for i, m in ipairs(sent) do
    reports[i] = assert(p:produce(m))
    assert_eq(reports[i].topic, t)
    assert_eq(reports[i].partition, 0)
    assert_eq(reports[i].offset, i - 1, "report offset of message " .. i)
    assert_eq(reports[i].timestamp_type, "create", "report timestamp type of message " .. i)
  end
  local after = klua.time()
  assert_eq(reports[1].timestamp, 1700000000123)
  assert_eq(reports[6].timestamp, 1)
  for _, i in ipairs({ 2, 3, 4, 5, 7 }) do
    local ts = reports[i].timestamp
    assert_true(ts >= before and ts <= after,
      string.format("report %d timestamp %s not within [%s, %s]", i, tostring(ts), before, after))
  end
  p:close()

  local c = new_consumer(t)
  local got = poll_n(c, #sent)
  assert_eq(#got, #sent)
  for i, m in ipairs(got) do
    assert_eq(m.topic, t)
    assert_eq(m.partition, 0)
    assert_eq(m.offset, i - 1, "offsets are contiguous from 0")
    assert_eq(m.timestamp, reports[i].timestamp, "message " .. i .. " timestamp equals the report's")
    assert_eq(m.timestamp_type, "create")
  end
  local m1, m2, m3, m4, m5, m6, m7 = unpack(got)
  assert_eq(m1.key, "k1")
  assert_eq(m1.value, binary)
  assert_eq(#m1.value, #binary)
  assert_eq(m1.headers, { { "x-trace", "a" }, { "empty" }, { "x-trace", "b" }, { "blank", "" }, { "bin", "\0\255\0" } })
  assert_eq(m1:header("x-trace"), "b")
  assert_eq(m1:header_all("x-trace"), { "a", "b" })
  assert_eq(m1:header("blank"), "")
  assert_eq(m1:header("empty"), nil)
  assert_eq(m1:header("nope"), nil)
  assert_eq(m2.key, "")
  assert_eq(m2.value, "")
  assert_eq(m2.headers, {})
  assert_eq(m3.key, nil)
  assert_eq(m3.value, "no key")
  assert_eq(m4.key, "tombstone")
  assert_eq(m4.value, nil)
  assert_eq(m5.key, nil)
  assert_eq(m5.value, nil)
  assert_eq(m6.key, "\0k\255")
  assert_true(m6.value == big, "512 KiB random value differs (got " .. #(m6.value or "") .. " bytes)")
  assert_eq(m7.key, "42")
  assert_eq(m7.value, "1.5")
  assert_eq(m7.headers, { { "n", "7" } })
  assert_nothing_more(c, 1000)
  assert_eq(c:assignment(), { { topic = t, partition = 0 } })
  c:close()
end, { timeout_ms = 60000 })

test("send with a producer-level on_delivery: 2000 reports, contiguous offsets in send order", function()
  local t = fresh("send")
  local reports, errors = {}, {}
  local p = klua.producer{ on_delivery = function(r, err)
    if err then errors[#errors + 1] = err else reports[#reports + 1] = r end
  end }
  for i = 1, 2000 do assert(p:send{ topic = t, key = "k" .. (i % 7), value = "v" .. i }) end
  assert_eq(p:flush{ timeout_ms = 30000 }, true)
  assert_eq(#errors, 0, errors[1] and tostring(errors[1]))
  assert_eq(#reports, 2000)
  local offsets = {}
  for _, r in ipairs(reports) do offsets[#offsets + 1] = r.offset end
  table.sort(offsets)
  for i = 1, 2000 do assert_eq(offsets[i], i - 1) end
  p:close()
  local c = new_consumer(t)
  local got = poll_n(c, 2000)
  assert_eq(#got, 2000)
  for i, m in ipairs(got) do
    assert_eq(m.offset, i - 1)
    assert_eq(m.value, "v" .. i, "order is kept (idempotent producer)")
    assert_eq(m.key, "k" .. (i % 7))
  end
  c:close()
end, { timeout_ms = 60000 })

test("produce_batch with an invalid topic in the middle: the others are delivered", function()
  local t = fresh("batch")
  local p = klua.producer()
  local res = assert(p:produce_batch{
    { topic = t, key = "a", value = "first" },
    { topic = t, value = "second", headers = { { "h", "1" }, { "h", "2" } } },
    { topic = "no such/topic", value = "bad" },
    { topic = t, value = "third", timestamp = 1600000000000 },
  })
  assert_eq(#res, 4)
  assert_eq(res[1].error, nil)
  assert_eq(res[1].topic, t)
  assert_eq(res[1].partition, 0)
  assert_eq(res[1].offset, 0)
  assert_eq(res[2].error, nil)
  assert_eq(res[2].offset, 1)
  assert_error(res[3].error, "KLUA_INVALID_ARGUMENT")
  assert_eq(res[3].error.topic, "no such/topic")
  assert_eq(res[3].topic, "no such/topic")
  assert_eq(res[3].offset, nil)
  assert_match(res[3].error.message, "invalid topic name")
  assert_eq(res[4].error, nil)
  assert_eq(res[4].offset, 2)
  assert_eq(res[4].timestamp, 1600000000000)
  p:close()
  local c = new_consumer(t)
  local got = poll_n(c, 3)
  assert_eq(#got, 3)
  assert_eq({ got[1].key, got[1].value, got[1].offset }, { "a", "first", 0 })
  assert_eq(got[2].value, "second")
  assert_eq(got[2].headers, { { "h", "1" }, { "h", "2" } })
  assert_eq(got[3].value, "third")
  assert_eq(got[3].timestamp, 1600000000000)
  assert_nothing_more(c, 1000)
  c:close()
end, { timeout_ms = 60000 })

test("commit(msg) commits offset+1; a new consumer in the group resumes after it", function()
  local t = fresh("commit")
  local p = klua.producer()
  for i = 1, 6 do assert(p:produce{ topic = t, value = "m" .. i }) end
  p:close()
  local group = fresh("g")
  local c = new_consumer(t, group)
  local got = poll_n(c, 3)
  assert_eq(#got, 3)
  assert_eq(got[3].value, "m3")
  assert_eq(got[3].offset, 2)
  assert_eq(c:commit(got[3]), true)
  c:close()
  local c2 = new_consumer(t, group)
  local rest = poll_n(c2, 3)
  assert_eq(#rest, 3)
  assert_eq(rest[1].offset, 3, "resumes at the committed offset+1")
  assert_eq(rest[1].value, "m4")
  assert_eq(rest[3].value, "m6")
  assert_nothing_more(c2, 1000)
  c2:close()
end, { timeout_ms = 90000 })

test("only stored offsets are committed on close: consume 3, store 1, the next member starts at the 2nd", function()
  local t = fresh("store")
  local p = klua.producer()
  for i = 1, 4 do assert(p:produce{ topic = t, value = "m" .. i }) end
  p:close()
  local group = fresh("g")
  local c = new_consumer(t, group)
  local got = poll_n(c, 3)
  assert_eq(#got, 3)
  assert_eq(c:store(got[1]), true)
  c:close()
  local c2 = new_consumer(t, group)
  local rest = poll_n(c2, 3)
  assert_eq(#rest, 3)
  assert_eq(rest[1].offset, 1)
  assert_eq(rest[1].value, "m2")
  assert_eq(rest[3].value, "m4")
  c2:close()
end, { timeout_ms = 90000 })

test("commit() without a message commits the stored offsets", function()
  local t = fresh("commitstored")
  local p = klua.producer()
  for i = 1, 5 do assert(p:produce{ topic = t, value = "m" .. i }) end
  p:close()
  local group = fresh("g")
  local c = new_consumer(t, group)
  local got = poll_n(c, 5)
  assert_eq(#got, 5)
  assert_eq(c:store(got[4]), true)
  assert_eq(c:commit(), true)
  c:close()
  local c2 = new_consumer(t, group)
  local rest = poll_n(c2, 1)
  assert_eq(rest[1] and rest[1].offset, 4)
  assert_eq(rest[1] and rest[1].value, "m5")
  assert_nothing_more(c2, 1000)
  c2:close()
end, { timeout_ms = 90000 })

test("producing to a non-existent partition fails, naming the topic", function()
  local p = klua.producer()
  -- a topic the producer already has metadata for: librdkafka knows it has 1 partition
  local t = fresh("nopart")
  assert(p:produce{ topic = t, value = "create it" })
  local r, err = p:produce{ topic = t, value = "x", partition = 99 }
  assert_eq(r, nil)
  assert_true(err ~= nil, "expected an error")
  assert_error(err, "_UNKNOWN_PARTITION")
  assert_eq(err.topic, t)
  assert_match(err.message, literal(t), "message names the topic")
  -- a topic unknown until the broker auto-creates it: the error comes with the delivery report
  local t2 = fresh("nopart2")
  local r2, err2 = p:produce{ topic = t2, value = "x", partition = 99 }
  assert_eq(r2, nil)
  assert_true(err2 ~= nil, "expected an error")
  assert_error(err2, "_UNKNOWN_PARTITION")
  assert_eq(err2.topic, t2)
  assert_match(err2.message, literal(t2), "message names the topic")
  -- and the producer is still usable
  local ok = assert(p:produce{ topic = t, value = "after", partition = 0 })
  assert_eq(ok.offset, 1)
  p:close()
end, { timeout_ms = 60000 })

test("poll returns nil after its timeout on an empty topic, and messages produced later arrive", function()
  local t = fresh("empty")
  local p = klua.producer()
  -- create the topic first so the consumer is assigned its partition
  assert(p:produce{ topic = t, value = "first" })
  local c = new_consumer(t, nil, { ["auto.offset.reset"] = "latest" })
  -- wait until assigned (latest: the first message is skipped)
  local deadline = klua.now() + 20000
  while #c:assignment() == 0 and klua.now() < deadline do
    local m, err = c:poll(200)
    assert_eq(err, nil)
    assert_eq(m, nil)
  end
  assert_eq(c:assignment(), { { topic = t, partition = 0 } })
  klua.sleep(1000) -- let the fetcher resolve "latest"
  local t0 = klua.now()
  local m, err = c:poll(700)
  assert_eq(m, nil)
  assert_eq(err, nil)
  assert_true(klua.now() - t0 >= 690, "poll returned after " .. (klua.now() - t0) .. " ms")
  local r = assert(p:produce{ topic = t, value = "second" })
  local got = poll_n(c, 1, 10000)
  assert_eq(got[1] and got[1].value, "second")
  assert_eq(got[1] and got[1].offset, r.offset)
  c:close()
  p:close()
end, { timeout_ms = 60000 })

test("a message the broker finds too large fails with MSG_SIZE_TOO_LARGE naming topic and partition", function()
  local t = fresh("big")
  -- klua's own limit (message.max.bytes) raised so the broker's 1 MiB limit is what rejects it
  local p = klua.producer{ ["message.max.bytes"] = 3000000 }
  local r, err = p:produce{ topic = t, value = klua.random_bytes(1500000) }
  assert_eq(r, nil)
  assert_error(err, "MSG_SIZE_TOO_LARGE")
  assert_eq(err.topic, t)
  assert_eq(err.partition, 0)
  assert_match(err.message, literal(t))
  local ok = assert(p:produce{ topic = t, value = "small" })
  assert_eq(ok.offset, 0, "the rejected message took no offset")
  p:close()
  -- with the default limit librdkafka refuses it before sending
  local p2 = klua.producer()
  local r2, err2 = p2:produce{ topic = t, value = string.rep("x", 2000000) }
  assert_eq(r2, nil)
  assert_error(err2, "MSG_SIZE_TOO_LARGE")
  assert_eq(err2.topic, t)
  p2:close()
end, { timeout_ms = 60000 })

test("commit() with nothing stored succeeds and commits nothing", function()
  local t = fresh("nostore")
  local p = klua.producer()
  for i = 1, 2 do assert(p:produce{ topic = t, value = "m" .. i }) end
  p:close()
  local group = fresh("g")
  local c = new_consumer(t, group)
  local got = poll_n(c, 2)
  assert_eq(#got, 2)
  assert_eq(c:commit(), true)
  c:close()
  local c2 = new_consumer(t, group)
  local again = poll_n(c2, 2)
  assert_eq(#again, 2)
  assert_eq(again[1].offset, 0, "nothing was committed, so the group starts over")
  c2:close()
end, { timeout_ms = 90000 })

test("20000 messages: poll delivers every one, in order, past the 1000-message buffer", function()
  local t = fresh("many")
  local p = klua.producer{ ["linger.ms"] = 20 }
  for i = 1, 20000 do assert(p:send{ topic = t, value = tostring(i) }) end
  assert_eq(p:flush{ timeout_ms = 30000 }, true)
  p:close()
  local c = new_consumer(t)
  local first = poll_n(c, 1)
  assert_eq(first[1] and first[1].value, "1")
  klua.sleep(2000) -- let librdkafka fetch far more than the buffer holds
  local expect, t0 = 2, klua.now()
  while expect <= 20000 and klua.now() - t0 < 30000 do
    local m, err = c:poll(1000)
    assert(not err, tostring(err))
    if m then
      if m.value ~= tostring(expect) then
        error(string.format("expected value %d at offset %d, got %s", expect, expect - 1, tostring(m.value)))
      end
      assert_eq(m.offset, expect - 1)
      expect = expect + 1
    end
  end
  assert_eq(expect - 1, 20000, "messages received")
  assert_nothing_more(c, 500)
  c:close()
end, { timeout_ms = 90000 })

test("rebalance: stored offsets are committed when the partition moves to a new member", function()
  -- Classic: one partition, which the range assignor gives to the member whose id sorts first
  -- (ids start with client.id), so c2 takes it over. KIP-848: the broker's assignor moves one of
  -- two partitions to the new member (and leaves c1 the other, without revoking it).
  local kip848 = klua.testkit.group_protocol() == "consumer"
  local parts = kip848 and 2 or 1
  local t = kip848 and assert(klua.testkit.topic("it-rebalance", { partitions = 2 })) or fresh("rebalance")
  local p = klua.producer()
  for part = 0, parts - 1 do
    for i = 1, 10 do assert(p:produce{ topic = t, value = "m" .. i, partition = part }) end
  end
  local group = fresh("g")
  -- No periodic auto commit during the test: only the commit at revocation can save the offsets.
  local c1 = new_consumer(t, group, { ["client.id"] = "z-it", ["auto.commit.interval.ms"] = 120000 })
  local got1 = poll_n(c1, 10 * parts)
  assert_eq(#got1, 10 * parts)
  for _, m in ipairs(got1) do assert_eq(c1:store(m), true) end
  local c2 = new_consumer(t, group, { ["client.id"] = "a-it", ["auto.commit.interval.ms"] = 120000 })
  -- both keep polling (serving the rebalance) until c2 owns a partition
  local seen = {}
  local deadline = klua.now() + 30000
  local function settled() return klua.now() > deadline or (#c2:assignment() == 1 and #c1:assignment() == parts - 1) end
  local function pump(c, who)
    while not settled() do
      local m, err = c:poll(200)
      assert(not err, tostring(err))
      if m then seen[#seen + 1] = who .. ":" .. m.offset .. ":" .. m.value end
    end
  end
  local task = klua.spawn(pump, c2, "c2")
  pump(c1, "c1")
  task:join()
  local moved = c2:assignment()
  assert_eq(#moved, 1, "c2 owns a partition")
  assert_eq(#c1:assignment(), parts - 1, "c1 gave it up")
  if not kip848 then assert_eq(moved, { { topic = t, partition = 0 } }) end
  assert_eq(seen, {}, "no message is delivered again after the rebalance")
  local r = assert(p:produce{ topic = t, value = "m11", partition = moved[1].partition })
  assert_eq(r.offset, 10)
  local next = poll_n(c2, 1, 10000)
  assert_eq(next[1] and next[1].value, "m11")
  assert_eq(next[1] and next[1].offset, 10)
  c1:close()
  c2:close()
  p:close()
end, { timeout_ms = 90000 })

test("subscribing to a missing topic: on_error gets UNKNOWN_TOPIC_OR_PART naming it, poll times out", function()
  local t = fresh("missing")
  local errs = {}
  local c = new_consumer(t, nil, { on_error = function(e) errs[#errs + 1] = e end })
  local deadline = klua.now() + 15000
  while #errs == 0 and klua.now() < deadline do
    local m, err = c:poll(300)
    assert_eq(m, nil)
    assert_eq(err, nil)
  end
  assert_true(#errs > 0, "no error reported")
  assert_error(errs[1], "UNKNOWN_TOPIC_OR_PART")
  assert_match(errs[1].message, literal(t))
  c:close()
end, { timeout_ms = 30000 })

test("header_all keeps the values after a nil-valued header (a list without holes)", function()
  local t = fresh("hdrnil")
  local p = klua.producer()
  assert(p:produce{ topic = t, value = "x", headers = { { "h", "1" }, { "h", nil }, { "h", "3" } } })
  p:close()
  local c = new_consumer(t)
  local m = poll_n(c, 1)[1]
  c:close()
  assert_true(m ~= nil, "no message")
  assert_eq(m.headers, { { "h", "1" }, { "h" }, { "h", "3" } })
  local all = m:header_all("h")
  local values = {}
  for _, v in ipairs(all) do values[#values + 1] = v end
  local count = 0
  for _ in pairs(all) do count = count + 1 end
  -- header_all leaves valueless headers out, so the result is a list without holes.
  assert_eq(#all, count, "header_all result has holes: " .. count .. " values but # is " .. #all)
  assert_eq(values, { "1", "3" })
end, { timeout_ms = 30000 })
