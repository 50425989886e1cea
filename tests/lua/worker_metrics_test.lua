-- The klua_worker_* metrics (scripts/klua/worker/metrics.lua) on the embedded cluster: scraped
-- over HTTP from klua.metrics.serve, the exposed counts equal what the test computes from its own
-- inputs, and the gauges are the worker's state at the scrape.
local name = klua.testkit.fresh
local kit = dofile("tests/lua/helpers/worker_kit.lua")
local worker, run_until = kit.worker, kit.run_until

-- One server for the file: the worker metrics are on once metrics are served.
local srv = assert(klua.metrics.serve{ host = "127.0.0.1", port = 0 })

-- The samples of a scrape: { {name=, labels={...}, value=}, ... } (the text format 0.0.4).
local function scrape()
  local res = assert(klua.http.get(srv.url .. "/metrics"))
  assert_eq(res.status, 200)
  assert_eq(res.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
  local samples = {}
  for line in res.body:gmatch("[^\n]+") do
    if line:sub(1, 1) ~= "#" then
      local metric, rest = line:match("^([%w_:]+)(.*)$")
      local labels = {}
      local lbl, value = rest:match("^{(.-)} (%S+)$")
      if lbl then
        for k, v in lbl:gmatch('([%w_]+)="(.-)"') do labels[k] = v end
      else
        value = rest:match("^ (%S+)$")
      end
      samples[#samples + 1] = { name = metric, labels = labels, value = tonumber(value) }
    end
  end
  return samples
end

-- The value of the one sample named `metric` whose labels include `want`, or nil when none.
local function value(samples, metric, want)
  local found
  for _, s in ipairs(samples) do
    if s.name == metric then
      local match = true
      for k, v in pairs(want) do if s.labels[k] ~= v then match = false; break end end
      if match then
        assert_eq(found, nil, "two samples of " .. metric .. " match")
        found = s.value
      end
    end
  end
  return found
end

test("outcomes, retries and handler latency equal the test's own count of its inputs", function()
  local a, b, dlq, group = name("a"), name("b"), name("dlq"), name("g")
  klua.embedded.create_topic(a, 3)
  klua.embedded.create_topic(b, 1)
  klua.embedded.create_topic(dlq, 1)
  -- topic a: "ok", "flaky1" (fails its first attempt), "flaky2" (fails twice, succeeds on the
  -- third and last allowed attempt), one "poison" (always fails: dead-lettered after 3 attempts)
  local recs, kinds = {}, {}
  for i = 1, 30 do
    local kind = i == 13 and "poison" or i % 7 == 0 and "flaky2" or i % 5 == 0 and "flaky1" or "ok"
    kinds[#kinds + 1] = kind
    recs[#recs + 1] = { topic = a, partition = i % 3, key = tostring(i), value = kind }
  end
  -- topic b (one partition, so in order): 10 messages with event ids, then repeats of two ids
  for i = 1, 10 do recs[#recs + 1] = { topic = b, value = "slow", headers = { { "x-event-id", "b" .. i } } } end
  for _, i in ipairs{ 3, 4 } do recs[#recs + 1] = { topic = b, value = "slow", headers = { { "x-event-id", "b" .. i } } } end
  local p = klua.producer()
  for _, r in ipairs(p:produce_batch(recs)) do assert_eq(r.error, nil) end

  local FAILS = { ok = 0, flaky1 = 1, flaky2 = 2, poison = math.huge }
  local done = 0
  local w = worker{ group = group, topics = { a, b }, dead_letter = dlq, dedupe = {},
    retry = { max = 2, base_ms = 10, max_ms = 20, jitter = 0 },
    handlers = {
      [a] = function(msg, info)
        if info.attempt <= FAILS[msg.value] then error("transient " .. msg.value) end
        done = done + 1
      end,
      [b] = function()
        klua.sleep(30) -- every attempt on b takes at least 30 ms
        done = done + 1
      end,
    } }
  local total_done = 30 - 1 + 10
  local t = run_until(w, function()
    local c = w:counters()
    return done == total_done and c.dead_lettered == 1 and c.deduplicated == 2
  end, 30000)
  assert(t:join())

  -- expected, from the inputs alone
  local e = { ok = 0, retried = 0, dead_lettered = 0, attempts = 0 }
  for _, kind in ipairs(kinds) do
    if kind == "poison" then
      e.dead_lettered, e.retried, e.attempts = e.dead_lettered + 1, e.retried + 2, e.attempts + 3
    else
      e.ok, e.retried, e.attempts = e.ok + 1, e.retried + FAILS[kind], e.attempts + FAILS[kind] + 1
    end
  end
  assert_eq({ e.ok, e.retried, e.dead_lettered, e.attempts }, { 29, 6 + 2 * 4 + 2, 1, 30 + 6 + 2 * 4 + 2 })

  local s = scrape()
  local function count(topic, outcome)
    return value(s, "klua_worker_messages_total", { worker = group, topic = topic, outcome = outcome })
  end
  assert_eq({ count(a, "ok"), count(a, "retried"), count(a, "dead_lettered"), count(a, "deduplicated"), count(a, "failed") },
            { e.ok, e.retried, e.dead_lettered, 0, 0 })
  assert_eq({ count(b, "ok"), count(b, "retried"), count(b, "dead_lettered"), count(b, "deduplicated"), count(b, "failed") },
            { 10, 0, 0, 2, 0 })
  -- every attempt is observed, the dead-lettered message's last one included
  local hist = "klua_worker_handler_seconds"
  assert_eq(value(s, hist .. "_count", { worker = group, topic = a }), e.attempts)
  assert_eq(value(s, hist .. "_bucket", { worker = group, topic = a, le = "+Inf" }), e.attempts)
  assert_eq(value(s, hist .. "_count", { worker = group, topic = b }), 10)
  assert_eq(value(s, hist .. "_bucket", { worker = group, topic = b, le = "0.025" }), 0, "each took >= 30 ms")
  assert_eq(value(s, hist .. "_bucket", { worker = group, topic = b, le = "+Inf" }), 10)
  -- klua.sleep(30) lasts more than 29 ms, not 30: libuv's timers count whole milliseconds from a
  -- clock truncated to the millisecond, so a wait armed at 12.9 ms is due at 42 ms
  assert_true(value(s, hist .. "_sum", { worker = group, topic = b }) >= 10 * 0.029)
  -- a stopped worker has no gauges
  assert_eq(value(s, "klua_worker_queue_depth", { worker = group }), nil)
  assert_eq(value(s, "klua_worker_retries_in_flight", { worker = group }), nil)
  -- the dead-letter topic holds the poison message, and it was the only one
  local got = kit.read_all(dlq, nil, 3000)
  assert_eq(#got, 1)
  assert_eq(got[1].value, "poison")
end, { timeout_ms = 60000 })

test("queue depth and retries in flight are the worker's state at the scrape", function()
  local topic, group = name("gauges"), name("g")
  klua.embedded.create_topic(topic, 1)
  local N = 20
  local recs = {}
  for i = 1, N do recs[i] = { topic = topic, value = tostring(i) } end
  local p = klua.producer()
  for _, r in ipairs(p:produce_batch(recs)) do assert_eq(r.error, nil) end
  -- the first message's first attempt waits for the test's gate, then fails; its retry waits
  -- 1.5 s in back-off, holding the partition's other messages behind it
  local gate = klua.spawn(klua.sleep, 600000)   -- the test opens it (cancel)
  local failing = klua.spawn(klua.sleep, 600000) -- the handler opens it as it fails
  -- scrapes once the handler has failed: the worker has put the message in back-off by then
  -- (the handler's raise and the worker's bookkeeping run without a wait in between)
  local in_backoff = klua.spawn(function() failing:join(); return scrape() end)
  local entered, handled = false, 0
  local w = worker{ group = group, topics = { topic }, retry = { max = 1, base_ms = 1500, max_ms = 1500, jitter = 0 },
    handlers = function(msg, info)
      if msg.value == "1" and info.attempt == 1 then
        entered = true
        gate:join()
        failing:cancel()
        error("transient")
      end
      handled = handled + 1
    end }
  local run = klua.spawn(function() return w:run() end)
  local deadline = klua.now() + 20000
  while not (entered and w:counters().consumed == N) and klua.now() < deadline do klua.sleep(10) end
  assert_true(entered, "the first message reached its handler")
  assert_eq(w:counters().consumed, N, "the worker polled every message")

  local s = scrape() -- one message in its handler, the others queued behind it
  assert_eq(value(s, "klua_worker_queue_depth", { worker = group }), N)
  assert_eq(value(s, "klua_worker_retries_in_flight", { worker = group }), 0)

  gate:cancel()
  s = assert(in_backoff:join())
  assert_eq(value(s, "klua_worker_retries_in_flight", { worker = group }), 1)
  assert_eq(value(s, "klua_worker_queue_depth", { worker = group }), N, "a message in back-off is not finished")
  assert_eq(handled, 0)

  deadline = klua.now() + 20000
  while handled < N and klua.now() < deadline do klua.sleep(10) end
  assert_eq(handled, N)
  s = scrape()
  assert_eq(value(s, "klua_worker_queue_depth", { worker = group }), 0)
  assert_eq(value(s, "klua_worker_retries_in_flight", { worker = group }), 0)
  assert_eq(value(s, "klua_worker_messages_total", { worker = group, topic = topic, outcome = "retried" }), 1)
  assert_eq(value(s, "klua_worker_messages_total", { worker = group, topic = topic, outcome = "ok" }), N)
  w:stop()
  assert(run:join())
end, { timeout_ms = 60000 })

test("batch handlers: each message counts its batch's attempts, a batch in back-off is in flight", function()
  local topic, group = name("batch"), name("g")
  klua.embedded.create_topic(topic, 1)
  local N = 30
  local recs = {}
  for i = 1, N do recs[i] = { topic = topic, value = tostring(i) } end
  local p = klua.producer()
  for _, r in ipairs(p:produce_batch(recs)) do assert_eq(r.error, nil) end
  -- the first call fails; its batch waits 1 s in back-off, scraped meanwhile
  local failing = klua.spawn(klua.sleep, 600000)
  local in_backoff = klua.spawn(function() failing:join(); return scrape() end)
  local calls, first, handled = 0, nil, 0
  local w = worker{ group = group, topics = { topic }, batch = { max = 10, timeout_ms = 50 },
    retry = { max = 1, base_ms = 1000, max_ms = 1000, jitter = 0 },
    handlers = function(msgs)
      calls = calls + 1
      if calls == 1 then
        first = #msgs
        failing:cancel()
        error("transient")
      end
      handled = handled + #msgs
    end }
  local t = run_until(w, function() return handled == N end, 20000)
  assert(t:join())
  local s = assert(in_backoff:join())
  assert_eq(value(s, "klua_worker_retries_in_flight", { worker = group }), first)
  s = scrape()
  assert_eq(value(s, "klua_worker_messages_total", { worker = group, topic = topic, outcome = "ok" }), N)
  assert_eq(value(s, "klua_worker_messages_total", { worker = group, topic = topic, outcome = "retried" }), first)
  assert_eq(value(s, "klua_worker_handler_seconds_count", { worker = group, topic = topic }), N + first)
end, { timeout_ms = 60000 })

test("retry-topic mode: a retry record read back and waiting for its time is in flight; counts keep the original topic", function()
  local topic, group = name("rt"), name("g")
  local retry = group .. ".retry"
  klua.embedded.create_topic(topic, 1)
  klua.embedded.create_topic(retry, 1)
  local p = klua.producer()
  assert(p:produce{ topic = topic, value = "flaky" })
  for i = 1, 5 do assert(p:produce{ topic = topic, value = "ok" .. i }) end
  local second, handled = false, 0
  local w = worker{ group = group, topics = { topic }, retry = { max = 1, base_ms = 1500, jitter = 0, topic = retry },
    handlers = function(msg, info)
      if msg.value == "flaky" then
        if info.attempt == 1 then error("not yet") end
        second = true
      end
      handled = handled + 1
    end }
  local run = klua.spawn(function() return w:run() end)
  -- the retry record comes back through the retry topic at a time the test cannot hear: scrape
  -- until the gauge shows it, before its second attempt
  local deadline, seen = klua.now() + 15000, nil
  while klua.now() < deadline do
    local s = scrape()
    seen = value(s, "klua_worker_retries_in_flight", { worker = group })
    if seen == 1 then break end
    klua.sleep(20)
  end
  assert_eq(seen, 1, "the retry record in flight")
  assert_eq(second, false, "before its second attempt")
  deadline = klua.now() + 15000
  while handled < 6 and klua.now() < deadline do klua.sleep(10) end
  assert_eq(handled, 6)
  local s = scrape()
  assert_eq(value(s, "klua_worker_retries_in_flight", { worker = group }), 0)
  assert_eq(value(s, "klua_worker_messages_total", { worker = group, topic = topic, outcome = "ok" }), 6)
  assert_eq(value(s, "klua_worker_messages_total", { worker = group, topic = topic, outcome = "retried" }), 1)
  assert_eq(value(s, "klua_worker_messages_total", { worker = group, topic = retry, outcome = "ok" }), nil)
  w:stop()
  assert(run:join())
end, { timeout_ms = 60000 })

test("cleanup", function() srv:close() end)
