-- c:poll_batch(max, opts) on the embedded cluster: sizes and order, the wait for the first message
-- only, store and commit of a batch's messages, pause, and a revoke during batches.
local name = klua.testkit.fresh
local BASE = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 }
local function conf(t)
  local c = {}
  for k, v in pairs(BASE) do c[k] = v end
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function produce_n(topic, n, partition, prefix)
  local p = klua.producer()
  for i = 1, n do assert(p:produce{ topic = topic, value = (prefix or "m") .. i, partition = partition }) end
  p:close()
end

-- batches until `want` messages came (each batch checked by `check`), at most `ms`
local function collect(c, want, ms, check)
  local got, deadline = {}, klua.now() + (ms or 20000)
  while #got < want and klua.now() < deadline do
    local batch = assert(c:poll_batch(want - #got, { timeout_ms = 500 }))
    if check then check(batch) end
    for _, m in ipairs(batch) do got[#got + 1] = m end
  end
  return got
end

test("poll_batch returns up to max messages in offset order, then an empty list at the timeout", function()
  local t = name("pb")
  klua.embedded.create_topic(t, 1)
  produce_n(t, 10, 0)
  local c = klua.consumer(conf{ group = name("g"), topics = { t } })
  local got = {}
  while #got < 10 do
    local batch = assert(c:poll_batch(4, { timeout_ms = 10000 }))
    assert_true(#batch >= 1 and #batch <= 4, "batch size " .. #batch)
    for _, m in ipairs(batch) do got[#got + 1] = m end
  end
  assert_eq(#got, 10)
  for i, m in ipairs(got) do
    assert_eq(m.value, "m" .. i)
    assert_eq(m.offset, i - 1)
    assert_eq(m.topic, t)
  end
  local t0 = klua.now()
  local empty, err = c:poll_batch(100, { timeout_ms = 300 })
  local took = klua.now() - t0
  assert_eq(err, nil)
  assert_eq(empty, {})
  assert_true(took >= 290 and took < 3000, "waited " .. took .. " ms for nothing")
  -- the bare-number timeout, as c:poll(500)
  assert_eq(c:poll_batch(5, 50), {})
  c:close()
end, { timeout_ms = 30000 })

test("poll_batch waits only for the first message: a large max returns with what is buffered", function()
  local t = name("pb-first")
  klua.embedded.create_topic(t, 1)
  local c = klua.consumer(conf{ group = name("g"), topics = { t } })
  assert_eq(c:poll_batch(10, { timeout_ms = 300 }), {}) -- joins the group; nothing there yet
  klua.spawn(function() klua.sleep(200); produce_n(t, 3, 0) end)
  local t0 = klua.now()
  local got = collect(c, 3, 20000)
  assert_eq(#got, 3)
  -- nowhere near 3 x the 500 ms timeout of collect's batches, nor a wait for max=3 to fill up
  assert_true(klua.now() - t0 < 5000, "took " .. (klua.now() - t0) .. " ms")
  c:close()
end, { timeout_ms = 30000 })

test("poll_batch arguments: max must be a whole number >= 1, opts as c:poll's", function()
  local c = klua.consumer(conf{ group = name("g"), topics = { name("pb-args") } })
  for _, bad in ipairs({ 0, -1, 1.5, "10", {} }) do
    local ok, e = pcall(c.poll_batch, c, bad)
    assert_false(ok)
    assert_eq(e.name, "KLUA_INVALID_ARGUMENT")
    assert_match(tostring(e), "c:poll_batch")
  end
  local ok, e = pcall(c.poll_batch, c, 10, { bogus = 1 })
  assert_false(ok)
  assert_eq(e.name, "KLUA_INVALID_ARGUMENT")
  ok, e = pcall(c.poll_batch, c, 10, "soon")
  assert_false(ok)
  c:close()
end)

test("a batch's last message stored and committed: the group resumes right after it", function()
  local t, g = name("pb-store"), name("g")
  klua.embedded.create_topic(t, 1)
  produce_n(t, 20, 0)
  local c = klua.consumer(conf{ group = g, topics = { t }, ["enable.auto.commit"] = false })
  local got = collect(c, 7, 20000)
  assert_eq(#got, 7)
  assert(c:store(got[7]))
  assert(c:commit())
  c:close()
  local c2 = klua.consumer(conf{ group = g, topics = { t } })
  local rest = collect(c2, 13, 20000)
  assert_eq(#rest, 13)
  assert_eq(rest[1].value, "m8")
  assert_eq(rest[13].value, "m20")
  c2:close()
end, { timeout_ms = 30000 })

test("pause: no batch carries a paused partition's messages; after resume they all come, in order", function()
  local t = name("pb-pause")
  klua.embedded.create_topic(t, 2)
  produce_n(t, 30, 0, "a")
  produce_n(t, 30, 1, "b")
  local c = klua.consumer(conf{ group = name("g"), topics = { t } })
  local first = collect(c, 1, 20000)
  assert_eq(#first, 1)
  local paused = first[1].partition
  local by = { [0] = {}, [1] = {} }
  by[paused][1] = first[1]
  assert(c:pause({ { topic = t, partition = paused } }))
  local other = 1 - paused
  local got = collect(c, 30, 20000, function(batch)
    for _, m in ipairs(batch) do assert_eq(m.partition, other, "a paused partition's message") end
  end)
  for _, m in ipairs(got) do by[other][#by[other] + 1] = m end
  assert_eq(#by[other], 30)
  assert_eq(c:poll_batch(10, { timeout_ms = 300 }), {})
  assert(c:resume({ { topic = t, partition = paused } }))
  for _, m in ipairs(collect(c, 29, 20000)) do by[paused][#by[paused] + 1] = m end
  local prefix = paused == 0 and "a" or "b"
  assert_eq(#by[paused], 30)
  for i, m in ipairs(by[paused]) do assert_eq(m.value, prefix .. i) end
  c:close()
end, { timeout_ms = 30000 })

test("a revoke during batches: no batch after on_revoke carries the revoked partitions' messages", function()
  local t, g = name("pb-revoke"), name("g")
  klua.embedded.create_topic(t, 4)
  local stop = false
  local producer = klua.spawn(function()
    local p = klua.producer()
    local i = 0
    while not stop do
      for part = 0, 3 do i = i + 1; assert(p:send{ topic = t, partition = part, value = "v" .. i }) end
      klua.sleep(2)
    end
    p:close()
  end)
  local revoked, revokes, assigns = {}, 0, 0
  local c1 = klua.consumer(conf{ group = g, topics = { t },
    on_assign = function(parts)
      assigns = assigns + 1
      for _, tp in ipairs(parts) do revoked[tp.partition] = nil end
    end,
    on_revoke = function(parts)
      revokes = revokes + 1
      for _, tp in ipairs(parts) do revoked[tp.partition] = true end
    end })
  local function check(batch)
    for _, m in ipairs(batch) do
      assert_false(revoked[m.partition], "partition " .. m.partition .. " handed out after its on_revoke")
    end
  end
  local n, deadline = 0, klua.now() + 20000
  while assigns == 0 or n < 200 do
    assert_true(klua.now() < deadline, "nothing consumed")
    local b = assert(c1:poll_batch(50, { timeout_ms = 200 }))
    check(b)
    n = n + #b
  end
  -- a second member: c1 gives partitions up while it keeps taking batches
  local c2 = klua.consumer(conf{ group = g, topics = { t } })
  local c2_task = klua.spawn(function()
    while not stop do assert(c2:poll_batch(50, { timeout_ms = 100 })) end
  end)
  deadline = klua.now() + 25000
  local settled_at
  while klua.now() < deadline do
    local b = assert(c1:poll_batch(50, { timeout_ms = 100 }))
    check(b)
    if revokes > 0 and #c1:assignment() < 4 then settled_at = settled_at or klua.now() end
    if settled_at and klua.now() - settled_at > 1000 then break end
  end
  assert_true(revokes > 0, "c1 gave nothing up")
  assert_true(#c1:assignment() < 4, "c1 still has every partition")
  stop = true
  c2_task:join()
  producer:join()
  c1:close()
  c2:close()
end, { timeout_ms = 60000 })
