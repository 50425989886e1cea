-- klua.worker on the embedded cluster: ordering and concurrency, retries and the dead-letter topic,
-- de-duplication, at-least-once on a handler failure, rebalances, and a graceful SIGINT stop.
local name = klua.testkit.fresh
local FAST = { ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500 }

local function worker(opts)
  for k, v in pairs(FAST) do opts[k] = opts[k] or v end
  opts.quiet = true
  return klua.worker(opts)
end

-- runs w in a task; stops it once until() is true (or after limit ms); returns the task
local function run_until(w, until_fn, limit)
  local t = klua.spawn(function() return w:run() end)
  local deadline = klua.now() + (limit or 20000)
  while klua.now() < deadline and not until_fn() do klua.sleep(20) end
  w:stop()
  return t
end

local function read_all(topic, n, timeout_ms)
  local c = klua.consumer{ group = name("reader"), topics = { topic }, ["auto.offset.reset"] = "earliest",
                           ["session.timeout.ms"] = 6000 }
  local got = {}
  for msg in c:messages{ timeout_ms = timeout_ms or 8000 } do
    got[#got + 1] = msg
    if #got == n then break end
  end
  c:close()
  return got
end

test("options are checked; the LRU keeps the most recently used ids", function()
  assert_raises(function() klua.worker{ group = "g", topics = { "t" }, handlers = {}, bogus = 1 } end, "unknown option 'bogus'")
  assert_raises(function() klua.worker{ topics = { "t" }, handlers = {} } end, "'group'")
  assert_raises(function() klua.worker{ group = "g", topics = { "t" }, handlers = { t = 1 } } end, "must be a function")
  assert_raises(function() klua.worker{ group = "g", topics = { "t" }, handlers = {}, retry = { tries = 1 } } end, "unknown retry option")
  assert_eq(require("klua.worker"), klua.worker)
  -- the LRU is private (not on the module): the registry is the tests' way to it
  local lru = debug.getregistry()["klua.private"].worker.lru(2)
  assert_eq(require("klua.worker")._lru, nil)
  lru:add("a"); lru:add("b")
  assert_true(lru:has("a"))           -- refreshes a
  lru:add("c")                        -- evicts b, the least recently used
  assert_eq({ lru:has("a"), lru:has("b"), lru:has("c") }, { true, false, true })
end)

test("order within a partition, partitions concurrently up to `concurrency`, everything committed", function()
  local topic, group = name("order"), name("g")
  klua.embedded.create_topic(topic, 4)
  local p = klua.producer{ ["linger.ms"] = 5 }
  local msgs = {}
  for i = 1, 200 do msgs[i] = { topic = topic, partition = i % 4, value = tostring(i) } end
  for _, r in ipairs(p:produce_batch(msgs)) do assert_eq(r.error, nil) end
  local seen, running, max_running, total = {}, 0, 0, 0
  local w = worker{ group = group, topics = { topic }, concurrency = 3, handlers = {
    [topic] = function(msg)
      running = running + 1
      max_running = math.max(max_running, running)
      -- 50 x 5 ms per partition: long enough that a partition whose first fetch comes 100 ms
      -- after the others' (seen under load) still overlaps them.
      klua.sleep(5)
      running = running - 1
      seen[msg.partition] = seen[msg.partition] or {}
      table.insert(seen[msg.partition], tonumber(msg.value))
      total = total + 1
    end } }
  local t = run_until(w, function() return total >= 200 end)
  local counters = assert(t:join())
  assert_eq(total, 200)
  assert_eq(max_running, 3, "three partitions at once, never more")
  for part = 0, 3 do
    local prev = -1
    assert_eq(#seen[part], 50)
    for _, v in ipairs(seen[part]) do
      assert_true(v > prev, "partition " .. part .. " out of order")
      prev = v
    end
  end
  assert_eq({ counters.consumed, counters.processed, counters.failed, counters.in_flight },
            { 200, 200, 0, 0 })
  assert_eq(klua.lag(group).lag, 0, "every offset committed")
end, { timeout_ms = 40000 })

test("retries with backoff, then the dead-letter topic with the original bytes and x- headers", function()
  local topic, dlq, group = name("dl"), name("dlq"), name("g")
  klua.embedded.create_topic(topic, 2)
  klua.embedded.create_topic(dlq, 1)
  local key, value = "k\0\255\1", "\0binary\255value\0"
  local headers = { { "a", "1" }, { "bin", "\0\255" }, { "a", "2" }, { "empty", "" }, { "novalue" } }
  local p = klua.producer()
  assert(p:produce{ topic = topic, partition = 0, key = key, value = value, headers = headers })
  assert(p:produce{ topic = topic, partition = 0, value = "flaky" })
  assert(p:produce{ topic = topic, partition = 1, value = "ok" })
  local attempts, times, flaky = 0, {}, 0
  local w = worker{ group = group, topics = { topic }, dead_letter = dlq,
    retry = { max = 2, base_ms = 100, max_ms = 1000, jitter = 0 },
    handlers = { [topic] = function(msg, info)
      if msg.value == value then
        attempts = attempts + 1
        times[info.attempt] = klua.now()
        error({ type = "PaymentDeclined", message = "card declined", code = "E402" })
      elseif msg.value == "flaky" then
        flaky = flaky + 1
        if flaky == 1 then return nil, "try again" end
      end
    end } }
  local t = run_until(w, function() local c = w:counters() return c.dead_lettered + c.processed >= 3 end)
  local c = assert(t:join())
  assert_eq({ c.consumed, c.processed, c.dead_lettered, c.retried, c.failed }, { 3, 2, 1, 3, 0 })
  assert_eq(attempts, 3)
  assert_true(times[2] - times[1] >= 95 and times[3] - times[2] >= 195, "exponential backoff 100 then 200 ms")
  local got = read_all(dlq, 1)
  assert_eq(#got, 1)
  local m = got[1]
  assert_eq({ m.key, m.value }, { key, value })
  for i, h in ipairs(headers) do assert_eq(m.headers[i], h, "original header " .. i) end
  assert_eq(m:header("x-dead-letter-reason"), "retries-exhausted")
  assert_eq(m:header("x-exception-type"), "PaymentDeclined")
  assert_eq(m:header("x-original-topic"), topic)
  assert_eq(m:header("x-original-partition"), "0")
  assert_eq(m:header("x-original-offset"), "0")
  assert_eq(m:header("x-attempts"), "3")
  assert_eq(m:header("x-exception-message"), "card declined")  -- the table's message, not "table: 0x..."
  assert_eq(m:header("x-exception-code"), "E402")
  assert_true(math.abs(tonumber(m:header("x-failed-at")) - klua.time()) < 30000)
  assert_eq(klua.lag(group).lag, 0, "the dead-lettered message is committed too")
end, { timeout_ms = 40000 })

test("duplicates by x-event-id are dropped within the window and committed", function()
  local topic, group = name("dup"), name("g")
  klua.embedded.create_topic(topic, 1)
  local p = klua.producer()
  local ids = { "a", "b", "a", "c", "d", "a", "e" } -- window 2: the second a is a duplicate, the third is not
  for i, id in ipairs(ids) do assert(p:produce{ topic = topic, value = tostring(i), headers = { ["x-event-id"] = id } }) end
  assert(p:produce{ topic = topic, value = "no id" })
  assert(p:produce{ topic = topic, value = "no id" })
  local handled = {}
  local w = worker{ group = group, topics = { topic }, dedupe = { window = 2 },
    handlers = function(msg) handled[#handled + 1] = msg.value end }
  local t = run_until(w, function() local c = w:counters() return c.processed + c.deduplicated >= 9 end)
  local c = assert(t:join())
  assert_eq(handled, { "1", "2", "4", "5", "6", "7", "no id", "no id" })
  assert_eq({ c.processed, c.deduplicated }, { 8, 1 })
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 40000 })

test("a handler failure without a dead-letter topic stops the worker; a restart redelivers", function()
  local topic, group = name("alo"), name("g")
  klua.embedded.create_topic(topic, 1)
  local p = klua.producer()
  for i = 1, 3 do assert(p:produce{ topic = topic, value = "m" .. i }) end
  local broken = true
  local handled = {}
  local function handler(msg)
    if broken and msg.value == "m2" then error("downstream unavailable") end
    handled[#handled + 1] = msg.value
  end
  local w1 = worker{ group = group, topics = { topic }, retry = { max = 1, base_ms = 10 }, handlers = handler }
  local c1, err = w1:run()
  assert_eq(c1, nil)
  assert_error(err, "KLUA_WORKER")
  assert_match(tostring(err), "downstream unavailable")
  assert_eq({ w1:counters().processed, w1:counters().failed, w1:counters().retried }, { 1, 1, 1 })
  assert_eq(klua.lag(group).lag, 2, "only m1 was committed")
  broken = false
  local w2 = worker{ group = group, topics = { topic }, handlers = handler }
  local t = run_until(w2, function() return #handled >= 3 end)
  assert(t:join())
  assert_eq(handled, { "m1", "m2", "m3" })
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 40000 })

test("a second member joining: partitions move, every message is handled (at-least-once)", function()
  -- The embedded (mock) coordinator refuses commits while a rebalance is in progress, so some
  -- messages may be handled twice here; tests/integration/worker_test.lua checks "no repeats".
  local topic, group = name("reb"), name("g")
  klua.embedded.create_topic(topic, 4)
  local p = klua.producer{ ["linger.ms"] = 5 }
  local N = 400
  local msgs = {}
  for i = 1, N do msgs[i] = { topic = topic, partition = i % 4, value = tostring(i) } end
  for _, r in ipairs(p:produce_batch(msgs)) do assert_eq(r.error, nil) end
  local count, seen, distinct, last = 0, {}, 0, {}
  local order_ok = true
  local function handler(msg)
    klua.sleep(10)
    if not seen[msg.value] then distinct = distinct + 1 end
    seen[msg.value] = true
    count = count + 1
  end
  local w1 = worker{ group = group, topics = { topic }, concurrency = 4, handlers = handler }
  local w2 = worker{ group = group, topics = { topic }, concurrency = 4, handlers = handler }
  local t1 = klua.spawn(function() return w1:run() end)
  while count < 40 do klua.sleep(10) end
  local t2 = klua.spawn(function() return w2:run() end)
  local deadline = klua.now() + 40000
  while distinct < N and klua.now() < deadline do klua.sleep(20) end
  w1:stop(); w2:stop()
  local a, b = assert(t1:join()), assert(t2:join())
  assert_eq(distinct, N, "every message handled")
  assert_true(b.processed > 0, "the second member took partitions over")
  assert_eq(a.processed + b.processed, count)
  assert_eq(a.in_flight + b.in_flight, 0)
end, { timeout_ms = 60000 })

test("stop during a long retry backoff ends at once and leaves the message uncommitted", function()
  local t = name("backoff")
  klua.embedded.create_topic(t, 1)
  assert(klua.producer():produce{ topic = t, value = "fails" })
  local calls, g = 0, name("g")
  local w = worker{ group = g, topics = { t }, retry = { max = 5, base_ms = 30000, jitter = 0 },
    handlers = function() calls = calls + 1; error("always") end }
  local task = run_until(w, function() return calls == 1 end)
  local stopped = klua.now()
  local counters = assert(task:join({ timeout_ms = 10000 }))
  assert_true(klua.now() - stopped < 2000, "stop took " .. (klua.now() - stopped) .. " ms")
  assert_eq({ calls, counters.processed, counters.dead_lettered, counters.failed }, { 1, 0, 0, 0 })
  assert_eq(assert(klua.lag(g, { t })).lag, 1) -- redelivered at the next start
end, { timeout_ms = 40000 })

test("SIGINT: the in-flight handler finishes once, its offset is committed, counters printed, exit 130", function()
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. dir)
  local script = dir .. "/w.lua"
  local f = assert(io.open(script, "w"))
  f:write([[
local topic = "sig"
klua.embedded.create_topic(topic, 1)
local p = klua.producer()
for i = 1, 3 do assert(p:produce{ topic = topic, value = "m" .. i }) end
local w = klua.worker{ group = "sig-g", topics = { topic }, ["session.timeout.ms"] = 6000,
  handlers = function(msg)
    print("start " .. msg.value); io.stdout:flush()
    klua.sleep(1500)
    print("end " .. msg.value); io.stdout:flush()
  end,
  on_revoke = function() print("lag " .. klua.lag("sig-g").lag); io.stdout:flush() end }
w:run()
print("not reached")
]])
  f:close()
  local out = dir .. "/out"
  local rl = io.popen("readlink /proc/$PPID/exe")   -- popen's shell is klua's child
  local exe = rl:read("*l"); rl:close()
  local cmd = string.format([[exe=%s; cd %s; "$exe" run w.lua >out 2>err & pid=$!;
    for i in $(seq 1 300); do grep -q "start m1" out && break; sleep 0.05; done; sleep 0.3; kill -INT $pid;
    wait $pid; echo "rc=$?" >>out]], exe, dir)
  local h = io.popen("sh -c '" .. cmd:gsub("'", "'\\''") .. "'")
  h:read("*a"); h:close()
  local text = assert(io.open(out)):read("*a")
  local errtext = assert(io.open(dir .. "/err")):read("*a")
  os.execute("rm -rf " .. dir)
  -- the handler waiting at the signal is not cancelled and re-run: it started and ended once
  assert_eq({ select(2, text:gsub("start m1\n", "")), select(2, text:gsub("end m1\n", "")) }, { 1, 1 }, text)
  assert_true(text:find("start m1\n", 1, true) < text:find("end m1\n", 1, true))
  assert_true(not text:find("start m2", 1, true), "nothing new starts after the signal")
  assert_true(not text:find("not reached", 1, true))
  assert_match(text, "lag 2\n")          -- m1 committed at the revoke; m2 and m3 left for later
  assert_match(text, "rc=130")
  assert_match(errtext, "klua.worker sig%-g: consumed=%d+ processed=1 ")
end, { timeout_ms = 40000 })
