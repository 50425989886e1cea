-- klua.worker against a real broker (KLUA_BROKERS): the dead-letter topic keeps the original bytes and
-- carries every x- header, a duplicate is dropped, a restart after a handler error redelivers, and a
-- member joining mid-stream causes no repeats (offsets are committed at the revoke).
local fresh = klua.testkit.fresh
local admin = klua.admin()
local function create(name, partitions)
  assert_eq(assert(admin:create_topics({ { name = name, partitions = partitions, replication_factor = 1 } }))[1].error, nil)
end
local FAST = klua.testkit.group_conf()
local function worker(opts)
  for k, v in pairs(FAST) do opts[k] = v end
  opts.quiet = true
  return klua.worker(opts)
end
local function run_until(w, until_fn, limit)
  local t = klua.spawn(function() return w:run() end)
  local deadline = klua.now() + (limit or 30000)
  while klua.now() < deadline and not until_fn() do klua.sleep(20) end
  w:stop()
  return t
end

test("an always-failing handler: the message ends in the DLQ with its bytes and all x- headers", function()
  local topic, dlq, group = fresh("in"), fresh("dlq"), fresh("g")
  create(topic, 3); create(dlq, 1)
  local key, value = "\0key\255", "\255\0{\"eventId\":1}\0"
  local headers = { { "trace", "abc" }, { "bin", "\0\1\255" }, { "trace", "def" }, { "nil" } }
  local p = klua.producer()
  local rep = assert(p:produce{ topic = topic, partition = 2, key = key, value = value, headers = headers })
  local calls = 0
  local w = worker{ group = group, topics = { topic }, dead_letter = dlq,
    retry = { max = 2, base_ms = 20, max_ms = 100, jitter = 0.5 },
    handlers = { [topic] = function() calls = calls + 1; error("boom " .. calls) end } }
  local c = assert(run_until(w, function() return w:counters().dead_lettered == 1 end):join())
  assert_eq({ c.consumed, c.dead_lettered, c.retried, c.processed, c.failed }, { 1, 1, 2, 0, 0 })
  assert_eq(calls, 3)
  local r = klua.consumer{ group = fresh("r"), topics = { dlq }, ["auto.offset.reset"] = "earliest" }
  local m = assert(r:poll(15000))
  r:close()
  assert_eq({ m.key, m.value }, { key, value })
  for i, h in ipairs(headers) do assert_eq(m.headers[i], h) end
  local want = { ["x-dead-letter-reason"] = "retries-exhausted", ["x-exception-type"] = "error",
                 ["x-original-topic"] = topic, ["x-original-partition"] = "2",
                 ["x-original-offset"] = tostring(rep.offset), ["x-attempts"] = "3" }
  for k, v in pairs(want) do assert_eq(m:header(k), v, k) end
  assert_match(m:header("x-exception-message"), "boom 3$")
  assert_true(math.abs(tonumber(m:header("x-failed-at")) - klua.time()) < 60000)
  assert_eq(#m.headers, #headers + 8)
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 60000 })

test("a duplicate event id is dropped (key function on a JSON field)", function()
  local topic, group = fresh("dup"), fresh("g")
  create(topic, 1)
  local p = klua.producer()
  for _, id in ipairs{ "e1", "e2", "e1", "e3" } do
    assert(p:produce{ topic = topic, value = klua.json.encode{ eventId = id } })
  end
  local handled = {}
  local w = worker{ group = group, topics = { topic },
    dedupe = { window = 100, key = function(m) local t = klua.json.decode(m.value or "") return t and t.eventId end },
    handlers = function(m) handled[#handled + 1] = klua.json.decode(m.value).eventId end }
  local c = assert(run_until(w, function() local n = w:counters() return n.processed + n.deduplicated == 4 end):join())
  assert_eq(handled, { "e1", "e2", "e3" })
  assert_eq({ c.processed, c.deduplicated }, { 3, 1 })
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 60000 })

test("a restart after a handler error redelivers the failed message (at-least-once)", function()
  local topic, group = fresh("alo"), fresh("g")
  create(topic, 1)
  local p = klua.producer()
  for i = 1, 3 do assert(p:produce{ topic = topic, value = "m" .. i }) end
  local fail_m2, handled = true, {}
  local function handler(m)
    if fail_m2 and m.value == "m2" then return nil, "database down" end
    handled[#handled + 1] = m.value
  end
  local counters, err = worker{ group = group, topics = { topic }, retry = { max = 0 }, handlers = handler }:run()
  assert_eq(counters, nil)
  assert_error(err, "KLUA_WORKER")
  assert_match(tostring(err), "database down")
  assert_eq(klua.lag(group).lag, 2)
  fail_m2 = false
  local w = worker{ group = group, topics = { topic }, handlers = handler }
  assert(run_until(w, function() return #handled == 3 end):join())
  assert_eq(handled, { "m1", "m2", "m3" })
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 60000 })

test("a second member joins mid-stream: no message lost or repeated", function()
  local topic, group = fresh("reb"), fresh("g")
  create(topic, 6)
  local p = klua.producer{ ["linger.ms"] = 5 }
  local N, msgs = 600, {}
  for i = 1, N do msgs[i] = { topic = topic, key = "k" .. (i % 50), value = tostring(i) } end
  for _, r in ipairs(p:produce_batch(msgs)) do assert_eq(r.error, nil) end
  local seen, distinct, dups = {}, 0, 0
  local function handler(m)
    -- slow enough (about 3 s of work per partition) that the stream outlasts the rebalance,
    -- which takes a heartbeat or two (1 s each) of both members under either protocol
    klua.sleep(30)
    if seen[m.value] then dups = dups + 1 else distinct = distinct + 1 end
    seen[m.value] = true
  end
  local w1 = worker{ group = group, topics = { topic }, concurrency = 6, handlers = handler }
  local w2 = worker{ group = group, topics = { topic }, concurrency = 6, handlers = handler }
  local t1 = klua.spawn(function() return w1:run() end)
  while distinct < 60 do klua.sleep(10) end
  local t2 = klua.spawn(function() return w2:run() end)
  local deadline = klua.now() + 45000
  while distinct < N and klua.now() < deadline do klua.sleep(20) end
  w2:stop()
  local b = assert(t2:join())
  w1:stop()
  local a = assert(t1:join())
  assert_eq(distinct, N)
  assert_eq(dups, 0, "no repeats")
  assert_true(b.processed > 0, "the second member took partitions over")
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 90000 })

test("a revoke while messages wait in back-off: they are never handled after on_revoke, never committed", function()
  -- Each partition's first message fails once with an 8 s back-off (order="key": its key's next
  -- message waits parked behind it, the other keys pass). A second member joining revokes
  -- partitions from the first (all of them under eager rebalancing, some under KIP-848): for a
  -- revoked partition the waiting message is dropped, its offset not committed, and the first
  -- member never runs its retry (attempt 2); the message is redelivered instead (attempt 1).
  local topic, group = fresh("rvk"), fresh("g")
  local P = 4
  create(topic, P)
  local p = klua.producer()
  local first = {}
  for part = 0, P - 1 do
    first[part] = assert(p:produce{ topic = topic, partition = part, key = "x" .. part, value = "x" .. part }).offset
    for i = 1, 5 do assert(p:produce{ topic = topic, partition = part, key = "o" .. part .. i, value = "o" .. part .. "-" .. i }) end
    assert(p:produce{ topic = topic, partition = part, key = "x" .. part, value = "x" .. part .. "-next" })
  end
  local calls, distinct, failed = {}, {}, 0
  local function handler(name)
    return function(msg, info)
      calls[#calls + 1] = { who = name, value = msg.value, attempt = info.attempt, at = klua.now(), partition = msg.partition }
      if msg.value:match("^x%d$") and not distinct["failed " .. msg.value] then
        distinct["failed " .. msg.value] = true
        failed = failed + 1
        error("first call fails")
      end
      distinct[msg.value] = true
    end
  end
  local revoked = {} -- {at, parts, committed = {partition -> offset}}
  local w1 = worker{ group = group, topics = { topic }, order = "key", retry = { max = 2, base_ms = 8000, jitter = 0 },
    handlers = handler("w1"),
    on_revoke = function(parts)
      local lag = assert(klua.lag(group, { topic }))
      local committed = {}
      for _, lp in ipairs(lag.partitions) do committed[lp.partition] = lp.committed end
      revoked[#revoked + 1] = { at = klua.now(), parts = parts, committed = committed }
    end }
  local w2 = worker{ group = group, topics = { topic }, order = "key", retry = { max = 2, base_ms = 8000, jitter = 0 },
    handlers = handler("w2") }
  local t1 = klua.spawn(function() return w1:run() end)
  local deadline = klua.now() + 30000
  local function count()
    local n = 0
    for k in pairs(distinct) do if not k:match("^failed") then n = n + 1 end end
    return n
  end
  -- every partition's x waits in back-off; the others (5 per partition) are handled
  while (failed < P or count() < 5 * P) and klua.now() < deadline do klua.sleep(10) end
  assert_eq({ failed, count() }, { P, 5 * P })
  local joined = klua.now()
  local t2 = klua.spawn(function() return w2:run() end)
  while count() < 7 * P and klua.now() < deadline + 20000 do klua.sleep(20) end
  -- past the dropped retries' time: they would run now if the revoke had not dropped them
  while klua.now() < joined + 9000 do klua.sleep(50) end
  w2:stop()
  assert(t2:join())
  w1:stop()
  assert(t1:join())
  assert_eq(count(), 7 * P, "every message handled")
  local r = revoked[1]
  assert_true(r and r.at - joined < 7500, "a revoke came while the messages waited in back-off")
  local gone = 0
  for _, tp in ipairs(r.parts) do
    gone = gone + 1
    -- nothing committed past the waiting message (later messages of other keys were handled)
    assert_true((r.committed[tp.partition] or -1) <= first[tp.partition],
      "partition " .. tp.partition .. " committed " .. tostring(r.committed[tp.partition]) .. " past " .. first[tp.partition])
    for _, c in ipairs(calls) do
      if c.who == "w1" and c.partition == tp.partition and c.at >= r.at then
        assert_eq(c.attempt, 1, "w1 ran the dropped retry of " .. c.value)
      end
    end
  end
  assert_true(gone >= 1)
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 90000 })

test("retry-topic mode: a failed attempt goes to <group>.retry and back at its time; poison ends in the DLQ", function()
  local topic, dlq, group = fresh("rtin"), fresh("dlq"), fresh("g")
  local retry = group .. ".retry"
  create(topic, 3); create(dlq, 1); create(retry, 2)
  local p = klua.producer()
  local flaky = assert(p:produce{ topic = topic, partition = 1, key = "f", value = "flaky", headers = { { "h", "\0\1" } } })
  local poison = assert(p:produce{ topic = topic, partition = 2, key = "p", value = "poison" })
  for i = 1, 30 do assert(p:produce{ topic = topic, partition = i % 3, value = "ok" .. i }) end
  local flaky_calls, others = {}, 0
  local w = worker{ group = group, topics = { topic }, dead_letter = dlq, order = "key",
    retry = { max = 2, base_ms = 500, jitter = 0, topic = retry },
    handlers = { [topic] = function(msg, info)
      if msg.value == "poison" then error("cannot parse") end
      if msg.value == "flaky" then
        flaky_calls[#flaky_calls + 1] = { info.attempt, klua.now(), msg.topic, msg.partition, msg.offset, msg:header("h") }
        if info.attempt == 1 then return nil, "endpoint busy" end
        return
      end
      others = others + 1
    end } }
  local c = assert(run_until(w, function() local n = w:counters() return n.processed == 31 and n.dead_lettered == 1 end):join())
  assert_eq({ c.processed, c.dead_lettered, c.retried, others }, { 31, 1, 3, 30 })
  assert_eq(#flaky_calls, 2)
  assert_eq({ flaky_calls[2][1], flaky_calls[2][3], flaky_calls[2][4], flaky_calls[2][5], flaky_calls[2][6] },
            { 2, topic, 1, flaky.offset, "\0\1" })
  assert_true(flaky_calls[2][2] - flaky_calls[1][2] >= 490, "the retry waited for its time")
  local r = klua.consumer{ group = fresh("r"), topics = { dlq }, ["auto.offset.reset"] = "earliest" }
  local m = assert(r:poll(15000))
  r:close()
  assert_eq({ m.value, m:header("x-original-topic"), m:header("x-original-partition"), m:header("x-original-offset"),
              m:header("x-attempts"), m:header("x-retry-not-before") },
            { "poison", topic, "2", tostring(poison.offset), "3", nil })
  assert_eq(klua.lag(group, { topic, retry }).lag, 0)
end, { timeout_ms = 60000 })
