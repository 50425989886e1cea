-- klua.worker on the embedded cluster: ordering and concurrency, retries and the dead-letter topic,
-- de-duplication, at-least-once on a handler failure, rebalances, and a graceful SIGINT stop.
local name = klua.testkit.fresh
local kit = dofile("tests/lua/helpers/worker_kit.lua")
local worker, run_until = kit.worker, kit.run_until
local function read_all(topic, n, timeout_ms) return kit.read_all(topic, n, timeout_ms or 8000) end

test("options are checked; the LRU keeps the most recently used ids", function()
  assert_raises(function() klua.worker{ group = "g", topics = { "t" }, handlers = {}, bogus = 1 } end, "unknown option 'bogus'")
  assert_raises(function() klua.worker{ topics = { "t" }, handlers = {} } end, "'group'")
  assert_raises(function() klua.worker{ group = "g", topics = { "t" }, handlers = { t = 1 } } end, "must be a function")
  assert_raises(function() klua.worker{ group = "g", topics = { "t" }, handlers = {}, retry = { tries = 1 } } end, "unknown retry option")
  assert_raises(function() klua.worker{ group = "g", topics = { "t" }, handlers = {}, order = "time" } end, "'order'")
  assert_raises(function() klua.worker{ group = "g", topics = { "t" }, handlers = {}, dead_letter = { topic = "d", format = "xml" } } end, "dead_letter.format")
  assert_raises(function() klua.worker{ group = "g", topics = { "t" }, handlers = {}, handler_timeout_ms = 0 } end, "handler_timeout_ms")
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
      -- Until three handlers have overlapped once, each waits (up to 2 s) for the others: the
      -- partitions' first fetches may come apart by more than the 50 x 5 ms a partition takes
      -- (under load and under ASan, max_running was 2). A worker that never runs three at once
      -- still shows 2 here after the wait.
      local deadline = klua.now() + 2000
      while max_running < 3 and klua.now() < deadline do klua.sleep(5) end
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

test("the offset tracker stores the end of the contiguous finished prefix (out-of-order finishes)", function()
  local new_lane = debug.getregistry()["klua.private"].worker.lane
  local lane = new_lane("t", 0)
  for _, o in ipairs{ 3, 4, 5, 7, 8, 10 } do lane:track(o) end -- gaps: compaction, control records
  assert_eq(lane:finish(5), false)
  assert_eq(lane.last, nil, "nothing before 3 is finished")
  assert_eq({ lane:finish(3), lane.last }, { true, 3 })
  assert_eq({ lane:finish(4), lane.last }, { true, 5 }) -- 4, then the 5 finished earlier
  assert_eq(lane:finish(10), false)
  assert_eq(lane:finish(8), false)
  assert_eq({ lane:finish(7), lane.last, lane:unfinished() }, { true, 10, 0 })
  -- 2000 offsets finished in a random order: after each finish, last is the largest k such that
  -- every offset up to k is finished
  local big = new_lane("t", 1)
  local N, order, finished = 2000, {}, {}
  for i = 0, N - 1 do big:track(100 + i); order[i + 1] = 100 + i end
  for i = N, 2, -1 do local j = math.random(i); order[i], order[j] = order[j], order[i] end
  local prefix = 99
  for _, o in ipairs(order) do
    big:finish(o)
    finished[o] = true
    while finished[prefix + 1] do prefix = prefix + 1 end
    assert_eq(big.last or 99, prefix)
    assert_eq(big:unfinished(), 100 + N - 1 - prefix)
  end
  assert_eq(big.last, 100 + N - 1)
end)

test("order=\"key\": a key in back-off holds back only its own later messages, which then run in offset order", function()
  local topic, group = name("key"), name("g")
  klua.embedded.create_topic(topic, 1)
  local p = klua.producer()
  local sends = { { "A", "A1" }, { "B", "B1" }, { "A", "A2" }, { "B", "B2" }, { nil, "N1" }, { "B", "B3" },
                  { "A", "A3" }, { nil, "N2" } }
  for _, s in ipairs(sends) do assert(p:produce{ topic = topic, key = s[1], value = s[2] }) end
  local done, calls, failed_at = {}, {}, nil
  local committed_during_backoff
  local w = worker{ group = group, topics = { topic }, order = "key", ["auto.commit.interval.ms"] = 100,
    retry = { max = 3, base_ms = 1500, jitter = 0 },
    handlers = function(msg, info)
      calls[#calls + 1] = msg.value .. "#" .. info.attempt
      if msg.value == "A1" and info.attempt == 1 then failed_at = klua.now(); error("flaky") end
      done[#done + 1] = msg.value
    end }
  local t = klua.spawn(function() return w:run() end)
  local deadline = klua.now() + 20000
  while #done < 5 and klua.now() < deadline do klua.sleep(10) end
  -- A1 waits in back-off; the other keys passed it. Auto-commit runs every 100 ms: it must not
  -- commit past A1 (offset 0), though five later messages are finished.
  assert_eq(done, { "B1", "B2", "N1", "B3", "N2" })
  klua.sleep(400)
  local lag = assert(klua.lag(group, { topic }))
  committed_during_backoff = lag.partitions[1].committed
  while #done < 8 and klua.now() < deadline do klua.sleep(10) end
  w:stop()
  local c = assert(t:join())
  assert_true((committed_during_backoff or -1) <= 0, "committed " .. tostring(committed_during_backoff) .. " past A1")
  assert_eq(done, { "B1", "B2", "N1", "B3", "N2", "A1", "A2", "A3" })
  assert_eq(calls[1], "A1#1")
  assert_eq({ c.processed, c.retried, c.consumed }, { 8, 1, 8 })
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 40000 })

test("order=\"partition\": a message in back-off holds back its partition only, and no concurrency slot", function()
  local topic, group = name("hol"), name("g")
  klua.embedded.create_topic(topic, 2)
  local p = klua.producer{ ["linger.ms"] = 5 }
  local msgs = {}
  for i = 1, 40 do msgs[i] = { topic = topic, partition = i % 2, value = tostring(i) } end
  for _, r in ipairs(p:produce_batch(msgs)) do assert_eq(r.error, nil) end
  local seen, retried_at, p1_done_at = { [0] = {}, [1] = {} }, nil, nil
  local w = worker{ group = group, topics = { topic }, concurrency = 1,
    retry = { max = 1, base_ms = 1000, jitter = 0 },
    handlers = function(msg, info)
      if msg.value == "2" and info.attempt == 1 then error("once") end -- partition 0's first message
      if msg.value == "2" then retried_at = klua.now() end
      table.insert(seen[msg.partition], tonumber(msg.value))
      if #seen[1] == 20 then p1_done_at = p1_done_at or klua.now() end
    end }
  local t = run_until(w, function() return #seen[0] + #seen[1] >= 40 end)
  local c = assert(t:join())
  assert_eq({ #seen[0], #seen[1], c.retried }, { 20, 20, 1 })
  assert_true(p1_done_at < retried_at, "partition 1 ran while partition 0 waited, with concurrency 1")
  for part = 0, 1 do
    for i = 2, 20 do assert_true(seen[part][i] > seen[part][i - 1], "partition " .. part .. " in order") end
  end
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 40000 })

test("max_queued is per partition: a stuck partition is paused at the bound, the others flow", function()
  local topic, group = name("mq"), name("g")
  klua.embedded.create_topic(topic, 2)
  local p = klua.producer{ ["linger.ms"] = 5 }
  local msgs = {}
  for i = 1, 200 do msgs[i] = { topic = topic, partition = i <= 100 and 0 or 1, value = tostring(i) } end
  for _, r in ipairs(p:produce_batch(msgs)) do assert_eq(r.error, nil) end
  local stuck, handled = true, { [0] = 0, [1] = 0 }
  local w = worker{ group = group, topics = { topic }, max_queued = 10,
    handlers = function(msg)
      while stuck and msg.partition == 0 do klua.sleep(5) end
      handled[msg.partition] = handled[msg.partition] + 1
    end }
  local t = klua.spawn(function() return w:run() end)
  local deadline = klua.now() + 20000
  while handled[1] < 100 and klua.now() < deadline do klua.sleep(10) end
  assert_eq(handled, { [0] = 0, [1] = 100 })
  klua.sleep(300) -- time for more of partition 0 to arrive, if the pause let it
  assert_eq(w:counters().consumed, 110, "partition 0 paused at 10 unfinished")
  stuck = false
  while handled[0] < 100 and klua.now() < deadline do klua.sleep(10) end
  w:stop()
  local c = assert(t:join())
  assert_eq({ handled[0], c.consumed, c.processed }, { 100, 200, 200 })
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 40000 })

test("a literal topic without a handler is refused; \"*\" serves a regex subscription", function()
  assert_raises(function() klua.worker{ group = "g", topics = { "a", "b" }, handlers = { a = function() end } } end,
                "no handler for topic 'b'")
  klua.worker{ group = "g", topics = { "a", "b" }, handlers = { a = function() end, ["*"] = function() end } }
  klua.worker{ group = "g", topics = { "^x%..*" }, handlers = { ["*"] = function() end } }
  local prefix = name("rx")
  local t1, t2, group = prefix .. ".one", prefix .. ".two", name("g")
  klua.embedded.create_topic(t1, 1)
  klua.embedded.create_topic(t2, 1)
  assert(klua.producer():produce{ topic = t1, value = "1" })
  assert(klua.producer():produce{ topic = t2, value = "2" })
  local got = {}
  local w = worker{ group = group, topics = { "^" .. prefix:gsub("%-", "\\-") .. "\\..*" },
                    ["topic.metadata.refresh.interval.ms"] = 500,
                    handlers = { ["*"] = function(msg) got[msg.topic] = msg.value end } }
  assert(run_until(w, function() return got[t1] and got[t2] end):join())
  assert_eq(got, { [t1] = "1", [t2] = "2" })
end, { timeout_ms = 40000 })

test("handler_timeout_ms: the attempt is cancelled at its next wait, retried, then dead-lettered saying so", function()
  local topic, dlq, group = name("to"), name("dlq"), name("g")
  klua.embedded.create_topic(topic, 1)
  klua.embedded.create_topic(dlq, 1)
  assert(klua.producer():produce{ topic = topic, value = "slow" })
  local starts, ends, attempts = 0, 0, {}
  local w = worker{ group = group, topics = { topic }, dead_letter = dlq, handler_timeout_ms = 200,
    retry = { max = 1, base_ms = 10, jitter = 0 },
    handlers = function(msg, info)
      starts = starts + 1
      attempts[#attempts + 1] = info.attempt
      klua.sleep(5000)
      ends = ends + 1
    end }
  local t0 = klua.now()
  local c = assert(run_until(w, function() return w:counters().dead_lettered == 1 end):join())
  assert_true(klua.now() - t0 < 4000, "two 200 ms attempts, not two 5 s sleeps")
  assert_eq({ starts, ends, attempts, c.retried, c.dead_lettered }, { 2, 0, { 1, 2 }, 1, 1 })
  local m = read_all(dlq, 1)[1]
  assert_eq(m:header("x-exception-type"), "KLUA_TIMEOUT")
  assert_match(m:header("x-exception-message"), "timed out after 200 ms on " .. topic:gsub("%-", "%%-") .. " %[0%] at offset 0")
  assert_eq(m:header("x-attempts"), "2")
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 40000 })

test("events: handled and retried with latencies, dead_lettered, deduplicated, queue_depth", function()
  local events = require("klua.worker.events")
  local topic, dlq, group = name("ev"), name("dlq"), name("g")
  klua.embedded.create_topic(topic, 1)
  klua.embedded.create_topic(dlq, 1)
  local p = klua.producer()
  assert(p:produce{ topic = topic, value = "ok", headers = { ["x-event-id"] = "1" } })
  assert(p:produce{ topic = topic, value = "ok", headers = { ["x-event-id"] = "1" } }) -- duplicate
  assert(p:produce{ topic = topic, value = "flaky" })
  assert(p:produce{ topic = topic, value = "poison" })
  local seen, flaky = {}, 0
  local w
  local unsubscribe = events.subscribe(function(worker, kind, t, part, value)
    if worker ~= w then return end
    seen[kind] = seen[kind] or {}
    table.insert(seen[kind], { t, part, value })
  end)
  w = worker{ group = group, topics = { topic }, dead_letter = dlq, dedupe = {},
    retry = { max = 1, base_ms = 10, jitter = 0 },
    handlers = function(msg)
      klua.sleep(20)
      if msg.value == "poison" then error("bad") end
      if msg.value == "flaky" then flaky = flaky + 1; if flaky == 1 then error("once") end end
    end }
  local c = assert(run_until(w, function() local n = w:counters() return n.processed + n.dead_lettered + n.deduplicated >= 4 end):join())
  unsubscribe()
  assert_eq({ c.processed, c.deduplicated, c.dead_lettered, c.retried }, { 2, 1, 1, 2 })
  assert_eq(#seen.handled, 2)
  assert_eq(#seen.retried, 2)
  for _, e in ipairs(seen.handled) do
    assert_eq({ e[1], e[2] }, { topic, 0 })
    assert_true(e[3] >= 0.015 and e[3] < 5, "latency in seconds: " .. e[3])
  end
  assert_eq(seen.dead_lettered, { { topic, 0, 2 } })
  assert_eq(seen.deduplicated, { { topic, 0, nil } })
  assert_true(#seen.queue_depth >= 1)
  assert_eq(seen.queue_depth[1][1], nil)
end, { timeout_ms = 40000 })

test("info.send: the records of a successful attempt only, the offset stored after their delivery", function()
  local topic, out, group = name("in"), name("out"), name("g")
  klua.embedded.create_topic(topic, 1)
  klua.embedded.create_topic(out, 1)
  assert(klua.producer():produce{ topic = topic, key = "k", value = "job" })
  local w = worker{ group = group, topics = { topic }, retry = { max = 2, base_ms = 10 },
    handlers = function(msg, info)
      info.send{ topic = out, key = msg.key, value = "attempt " .. info.attempt, headers = { { "h", "1" } } }
      assert_raises(function() info.send{ topic = out, bogus = 1 } end, "unknown record field 'bogus'")
      if info.attempt == 1 then error("discard my output") end
    end }
  -- (klua.lag is nil, GROUP_ID_NOT_FOUND until the group's first commit)
  local c = assert(run_until(w, function()
    local l = w:counters().processed == 1 and klua.lag(group)
    return l and l.lag == 0
  end):join())
  assert_eq(c.processed, 1)
  local got = read_all(out, 2, 3000)
  assert_eq(#got, 1)
  assert_eq({ got[1].key, got[1].value, got[1]:header("h") }, { "k", "attempt 2", "1" })
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 40000 })

test("retry-topic mode: failed attempts go through the retry topic and come back at their time", function()
  local topic, dlq, group = name("rt"), name("dlq"), name("g")
  local retry = group .. ".retry"
  klua.embedded.create_topic(topic, 2)
  klua.embedded.create_topic(dlq, 1)
  klua.embedded.create_topic(retry, 1)
  local p = klua.producer()
  local reps = {}
  reps.flaky = assert(p:produce{ topic = topic, partition = 0, key = "f", value = "flaky", headers = { { "a", "1" } } })
  reps.poison = assert(p:produce{ topic = topic, partition = 1, key = "p", value = "poison" })
  for i = 1, 10 do assert(p:produce{ topic = topic, partition = i % 2, value = "ok" .. i }) end
  local calls, ok_done = {}, 0
  local w = worker{ group = group, topics = { topic }, dead_letter = dlq,
    retry = { max = 2, base_ms = 300, jitter = 0, topic = retry },
    handlers = { [topic] = function(msg, info)
      if msg.value == "flaky" or msg.value == "poison" then
        table.insert(calls, { msg.value, info.attempt, klua.now(), msg.topic, msg.partition, msg.offset, msg:header("a") })
        if msg.value == "poison" or info.attempt < 3 then error("not yet") end
      else
        ok_done = ok_done + 1
      end
    end } }
  local t0 = klua.now()
  local c = assert(run_until(w, function() local n = w:counters() return n.processed >= 11 and n.dead_lettered == 1 end):join())
  assert_eq({ c.processed, c.dead_lettered, c.retried }, { 11, 1, 4 })
  local flaky = {}
  for _, k in ipairs(calls) do if k[1] == "flaky" then flaky[#flaky + 1] = k end end
  assert_eq(#flaky, 3)
  for i, k in ipairs(flaky) do
    -- the handler sees the original message: its topic, partition, offset and headers
    assert_eq({ k[2], k[4], k[5], k[6], k[7] }, { i, topic, 0, reps.flaky.offset, "1" })
  end
  assert_true(flaky[2][3] - flaky[1][3] >= 290 and flaky[3][3] - flaky[2][3] >= 590, "back-offs of 300 and 600 ms")
  assert_eq(ok_done, 10)
  local m = read_all(dlq, 1)[1]
  assert_eq({ m.key, m.value, m:header("x-original-topic"), m:header("x-original-partition"),
              m:header("x-original-offset"), m:header("x-attempts"), m:header("x-retry-attempt") },
            { "p", "poison", topic, "1", tostring(reps.poison.offset), "3", nil })
  local retried = read_all(retry, 4)
  assert_eq(#retried, 4)
  assert_eq(retried[1]:header("x-retry-attempt"), "2")
  assert_eq(klua.lag(group, { topic, retry }).lag, 0)
  -- the retry topic must exist: the worker says so at start
  local missing = name("missing")
  local c2, err = worker{ group = name("g"), topics = { topic }, retry = { topic = missing },
                          handlers = function() end }:run()
  assert_eq(c2, nil)
  assert_error(err, "UNKNOWN_TOPIC_OR_PART")
  assert_match(tostring(err), "retry topic " .. missing:gsub("%-", "%%-") .. ".*create it")
end, { timeout_ms = 40000 })

test("dead_letter format=\"envelope\": the value is klua.envelope's dead-letter JSON, with the traceback", function()
  local topic, dlq, group = name("env"), name("dlq"), name("g")
  klua.embedded.create_topic(topic, 1)
  klua.embedded.create_topic(dlq, 1)
  local key, value = "k\255", "text value"
  assert(klua.producer():produce{ topic = topic, key = key, value = value, headers = { { "trace", "t1" } } })
  local function charge() error({ type = "PaymentDeclined", message = "card declined", code = "E402" }) end
  local w = worker{ group = group, topics = { topic }, retry = { max = 1, base_ms = 10 }, ["client.id"] = "billing-1",
    dead_letter = { topic = dlq, format = "envelope" },
    handlers = function() charge() end }
  local c = assert(run_until(w, function() return w:counters().dead_lettered == 1 end):join())
  assert_eq(c.dead_lettered, 1)
  local m = read_all(dlq, 1)[1]
  assert_eq(m.key, key)
  assert_eq(m:header("x-dead-letter-reason"), "retries-exhausted")
  local d = assert(klua.envelope.decode_dead_letter(m))
  assert_eq({ d.topic, d.partition, d.offset, d.key, d.value, d.attempts, d.reason, d.group, d.client_id },
            { topic, 0, 0, key, value, 2, "retries-exhausted", group, "billing-1" })
  assert_eq(d.headers, { { "trace", "t1" } })
  assert_eq({ d.error.type, d.error.message, d.error.code }, { "PaymentDeclined", "card declined", "E402" })
  assert_match(d.stack, "^card declined\nstack traceback:")
  assert_match(d.stack, "worker_test.lua:%d+: in function 'charge'") -- where the handler raised
  assert_eq(klua.lag(group).lag, 0)
end, { timeout_ms = 40000 })
