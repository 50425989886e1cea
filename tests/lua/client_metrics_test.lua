-- The built-in client metrics (docs/metrics.md, "Built-in metrics") on the embedded cluster: every
-- count compared with arithmetic on what the test sent and read, through the collector families
-- that klua.metrics exposes (bindings/lua/client_metrics.lua).
local fresh = klua.testkit.fresh
local poll_n = klua.testkit.poll_n
local cm = debug.getregistry()["klua.private"].client_metrics

-- The samples of family `name` whose labels include every pair of `want`.
local function samples(name, want)
  local out = {}
  for _, f in ipairs(cm.collect()) do
    if f.name == name then
      for _, s in ipairs(f.samples) do
        local ok = true
        for k, v in pairs(want or {}) do
          if s.labels[k] ~= v then ok = false end
        end
        if ok then out[#out + 1] = s end
      end
    end
  end
  return out
end

-- The value of the one sample of `name` matching `want` (nil when there is none; fails on several).
local function value(name, want)
  local s = samples(name, want)
  assert_true(#s <= 1, ("%d samples of %s match"):format(#s, name))
  return s[1] and (s[1].value or s[1])
end

local function sum(list)
  local n = 0
  for _, v in ipairs(list) do n = n + v end
  return n
end

-- Waits (bounded) for cond(): for what arrives with no event the script can wait on (an async
-- commit's result, a broker coming back).
local function eventually(cond, what, ms)
  local deadline = klua.now() + (ms or 10000)
  while not cond() do
    assert_true(klua.now() < deadline, "timed out waiting for " .. what)
    klua.sleep(20)
  end
end

-- The client label of a handle: librdkafka's name, which tostring shows.
local function client_name(h)
  return (assert(tostring(h):match("([^%s(),]+#%a+%-%d+)")))
end

test("delivery latency is timed only once the metrics are served; the counts always", function()
  local t = fresh("cm-unserved")
  local p = klua.producer{}
  for i = 1, 5 do assert(p:produce{ topic = t, value = "v" .. i }) end
  assert_eq(value("klua_producer_messages_total", { client = client_name(p), topic = t }), 5)
  local h = samples("klua_producer_delivery_latency_seconds", { client = client_name(p), topic = t })[1]
  assert_eq(sum(h.counts), 0)
  p:close()
end)

test("produced and consumed messages and bytes, per topic, equal what was sent", function()
  cm.serving()  -- as enable() does (which registers with the default registry: last test)
  local a, b = fresh("cm-a"), fresh("cm-b")
  klua.embedded.create_topic(a, 2)
  klua.embedded.create_topic(b, 1)
  local delivered = 0
  local p = klua.producer{ ["client.id"] = "cm-producer", on_delivery = function(_, err) if not err then delivered = delivered + 1 end end }
  local pname = client_name(p)
  -- topic a through p:send (the FFI fast path and the batched reports), b through p:produce.
  local bytes_a, bytes_b = 0, 0
  for i = 1, 300 do
    local k, v = "k" .. i, string.rep("v", i % 17)
    assert(p:send{ topic = a, key = k, value = v })
    bytes_a = bytes_a + #k + #v
  end
  for i = 1, 40 do
    local v = "value-" .. i
    assert(p:produce{ topic = b, value = v })
    bytes_b = bytes_b + #v
  end
  assert(p:flush())
  assert_eq(delivered, 300)
  local L = { client = pname }
  assert_eq(value("klua_producer_messages_total", { client = pname, topic = a }), 300)
  assert_eq(value("klua_producer_messages_total", { client = pname, topic = b }), 40)
  assert_eq(value("klua_producer_bytes_total", { client = pname, topic = a }), bytes_a)
  assert_eq(value("klua_producer_bytes_total", { client = pname, topic = b }), bytes_b)
  local s = samples("klua_producer_messages_total", L)[1]
  assert_eq(s.labels.client_id, "cm-producer")
  -- The latency histogram counts each delivered message once, within the send-to-flush time.
  for topic, n in pairs({ [a] = 300, [b] = 40 }) do
    local h = samples("klua_producer_delivery_latency_seconds", { client = pname, topic = topic })[1]
    assert_eq(sum(h.counts), n)
    assert_eq(#h.counts, #h.buckets + 1)
    assert_true(h.sum > 0 and h.sum < n * 10, "latency sum " .. h.sum)
  end
  assert_eq(#samples("klua_producer_delivery_errors_total", L), 0)

  local c = klua.consumer{ group = fresh("cm-g"), topics = { a, b }, ["auto.offset.reset"] = "earliest",
                           ["client.id"] = "cm-consumer" }
  local cname = client_name(c)
  local got = poll_n(c, 340)
  assert_eq(#got, 340)
  local count, bytes = {}, {}
  for _, m in ipairs(got) do
    count[m.topic] = (count[m.topic] or 0) + 1
    bytes[m.topic] = (bytes[m.topic] or 0) + #(m.key or "") + #(m.value or "")
  end
  assert_eq(count[a], 300)
  assert_eq(value("klua_consumer_messages_total", { client = cname, topic = a }), 300)
  assert_eq(value("klua_consumer_messages_total", { client = cname, topic = b }), 40)
  assert_eq(value("klua_consumer_bytes_total", { client = cname, topic = a }), bytes[a])
  assert_eq(value("klua_consumer_bytes_total", { client = cname, topic = b }), bytes[b])
  assert_eq(bytes[a], bytes_a)
  assert_eq(value("klua_consumer_assigned_partitions", { client = cname }), 3)
  assert_eq(value("klua_consumer_rebalances_total", { client = cname, kind = "assign" }), 1)
  c:close()
  p:close()
  -- Closed clients leave the list: their series are gone.
  assert_eq(#samples("klua_producer_messages_total", L), 0)
  assert_eq(#samples("klua_consumer_messages_total", { client = cname }), 0)
end, { timeout_ms = 60000 })

test("lag is the high watermark minus the consumed offset, and falls to 0", function()
  local t = fresh("cm-lag")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer()
  for i = 1, 50 do assert(p:send{ topic = t, value = "m" .. i }) end
  assert(p:flush())
  local c = klua.consumer{ group = fresh("cm-g"), topics = { t }, ["auto.offset.reset"] = "earliest" }
  local cname = client_name(c)
  local got = poll_n(c, 20)
  assert_eq(#got, 20)
  local _, high = assert(c:watermarks(t, 0))
  assert_eq(high, 50)
  -- 20 consumed of 50: librdkafka has fetched more than 20, klua holds them: the script's view.
  assert_eq(value("klua_consumer_lag", { client = cname, topic = t, partition = "0" }), high - 20)
  assert_eq(#poll_n(c, 30), 30)
  assert_eq(value("klua_consumer_lag", { client = cname, topic = t, partition = "0" }), 0)
  -- New messages: the lag grows once the consumer's fetch has seen the new high watermark.
  for i = 1, 5 do assert(p:send{ topic = t, value = "n" .. i }) end
  assert(p:flush())
  eventually(function() return value("klua_consumer_lag", { client = cname, topic = t, partition = "0" }) == 5 end,
    "a lag of 5")
  assert_eq(#poll_n(c, 5), 5)
  assert_eq(value("klua_consumer_lag", { client = cname, topic = t, partition = "0" }), 0)
  c:close()
  p:close()
end, { timeout_ms = 60000 })

test("a failed delivery is counted under its error name, not as delivered", function()
  local p = klua.producer{ brokers = "127.0.0.1:1", ["message.timeout.ms"] = 300, on_error = function() end,
                           on_log = function() end }
  local pname = client_name(p)
  local failed = 0
  for i = 1, 3 do
    p:send{ topic = "nowhere", value = "x" .. i, on_delivery = function(_, err) if err then failed = failed + 1 end end }
  end
  local ok = p:flush{ timeout_ms = 10000 }
  assert_eq(failed, 3)
  assert_eq(value("klua_producer_delivery_errors_total", { client = pname, topic = "nowhere", code = "_MSG_TIMED_OUT" }), 3)
  assert_eq(#samples("klua_producer_messages_total", { client = pname }), 0)
  assert_eq(value("klua_client_all_brokers_down", { client = pname }), 1)
  p:close()
end, { timeout_ms = 30000 })

test("rebalances, commits (sync and async), commit failures and commit latency", function()
  local t = fresh("cm-commit")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer()
  for i = 1, 10 do assert(p:send{ topic = t, value = "m" .. i }) end
  assert(p:flush())
  p:close()
  local c = klua.consumer{ group = fresh("cm-g"), topics = { t }, ["auto.offset.reset"] = "earliest",
                           ["enable.auto.commit"] = false }
  local cname = client_name(c)
  local L = { client = cname }
  local msgs = poll_n(c, 10)
  assert_eq(value("klua_consumer_rebalances_total", { client = cname, kind = "assign" }), 1)
  assert_eq(value("klua_consumer_rebalances_total", { client = cname, kind = "revoke" }), 0)
  assert_eq(value("klua_consumer_commits_total", L), 0)
  assert(c:commit(msgs[5]))
  assert_eq(value("klua_consumer_commits_total", L), 1)
  local h = samples("klua_consumer_commit_latency_seconds", L)[1]
  assert_eq(sum(h.counts), 1)
  assert_true(h.sum > 0 and h.sum < 10, "commit latency " .. h.sum)
  assert(c:commit(msgs[10], { async = true }))
  eventually(function() return value("klua_consumer_commits_total", L) == 2 end, "the async commit's result")
  assert_eq(sum(samples("klua_consumer_commit_latency_seconds", L)[1].counts), 2)
  -- A partition the group does not have: the commit fails, counted by its code.
  local ok, err = c:commit({ { topic = t, partition = 7, offset = 1 } })
  assert_nil(ok)
  assert_eq(value("klua_consumer_commit_failures_total", { client = cname, code = err.name }), 1)
  assert_eq(value("klua_consumer_commits_total", L), 2)
  assert(c:unsubscribe())
  eventually(function() return value("klua_consumer_rebalances_total", { client = cname, kind = "revoke" }) == 1 end,
    "the revoke")
  assert_eq(value("klua_consumer_rebalances_total", { client = cname, kind = "lost" }), 0)
  c:close()
end, { timeout_ms = 60000 })

test("a lost assignment (the script stopped polling past max.poll.interval.ms) counts as kind=lost", function()
  local t = fresh("cm-lost")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer()
  assert(p:produce{ topic = t, value = "x" })
  p:close()
  local pause = klua.spawn(function() klua.sleep(20000) end)  -- the script's long pause; on_lost ends it
  local c = klua.consumer{ group = fresh("cm-g"), topics = { t }, ["auto.offset.reset"] = "earliest",
                           ["session.timeout.ms"] = 3000, ["heartbeat.interval.ms"] = 500,
                           ["max.poll.interval.ms"] = 3000, on_error = function() end,
                           on_lost = function() pause:cancel() end }
  local cname = client_name(c)
  assert(c:poll(10000))
  pcall(pause.join, pause)
  eventually(function() return value("klua_consumer_rebalances_total", { client = cname, kind = "lost" }) == 1 end,
    "the lost rebalance")
  assert_eq(value("klua_consumer_rebalances_total", { client = cname, kind = "revoke" }), 0)
  c:close()
end, { timeout_ms = 40000 })

test("transactions committed and aborted", function()
  local t = fresh("cm-txn")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer{ ["transactional.id"] = fresh("txid"), ["transaction.timeout.ms"] = 10000,
                           on_delivery = function() end }  -- the aborted message is purged
  local pname = client_name(p)
  assert_eq(value("klua_transactions_total", { client = pname, outcome = "committed" }), 0)
  assert(p:begin())
  assert(p:send{ topic = t, value = "a" })
  assert(p:commit())
  assert(p:begin())
  assert(p:send{ topic = t, value = "b" })
  assert(p:abort())
  assert(p:begin())
  assert(p:commit())
  assert_eq(value("klua_transactions_total", { client = pname, outcome = "committed" }), 2)
  assert_eq(value("klua_transactions_total", { client = pname, outcome = "aborted" }), 1)
  -- A plain producer has no transactions series.
  local plain = klua.producer()
  assert_eq(#samples("klua_transactions_total", { client = client_name(plain) }), 0)
  plain:close()
  p:close()
end, { timeout_ms = 60000 })

test("a client counts 100 topics by name and the rest under _other", function()
  local p = klua.producer()
  local pname = client_name(p)
  local prefix = fresh("cm-cap")
  for i = 1, 105 do
    klua.embedded.create_topic(prefix .. "-" .. i, 1)
    assert(p:send{ topic = prefix .. "-" .. i, value = "x" })
  end
  assert(p:send{ topic = prefix .. "-104", value = "again" })
  assert(p:flush())
  local s = samples("klua_producer_messages_total", { client = pname })
  assert_eq(#s, 101)
  -- Which 100 topics get a name depends on the order the reports came in.
  local named, named_sum, other = 0, 0, nil
  for _, x in ipairs(s) do
    if x.labels.topic == "_other" then
      other = x.value
    else
      named, named_sum = named + 1, named_sum + x.value
    end
  end
  assert_eq(named, 100)
  assert_eq(named_sum + other, 106)
  assert_true(other == 5 or other == 6, "_other has " .. tostring(other))
  assert_eq(#samples("klua_producer_delivery_latency_seconds", { client = pname }), 101)
  p:close()
end, { timeout_ms = 60000 })

test("two clients with the same client.id give distinct series", function()
  local t = fresh("cm-same")
  klua.embedded.create_topic(t, 1)
  local p1 = klua.producer{ ["client.id"] = "same" }
  local p2 = klua.producer{ ["client.id"] = "same" }
  assert(p1:produce{ topic = t, value = "1" })
  assert(p2:produce{ topic = t, value = "2" })
  assert(p2:produce{ topic = t, value = "3" })
  local s = samples("klua_producer_messages_total", { client_id = "same", topic = t })
  assert_eq(#s, 2)
  assert_ne(s[1].labels.client, s[2].labels.client)
  assert_eq(value("klua_producer_messages_total", { client = client_name(p1), topic = t }), 1)
  assert_eq(value("klua_producer_messages_total", { client = client_name(p2), topic = t }), 2)
  -- No family has two samples with the same labels.
  for _, f in ipairs(cm.collect()) do
    local seen = {}
    for _, x in ipairs(f.samples) do
      local keys = {}
      for k, v in pairs(x.labels) do keys[#keys + 1] = k .. "=" .. v end
      table.sort(keys)
      local id = table.concat(keys, ",")
      assert_nil(seen[id], f.name .. "{" .. id .. "} twice")
      seen[id] = true
    end
  end
  p1:close()
  p2:close()
end)

test("statistics give each broker's state and round-trip time; on_stats still works", function()
  local t = fresh("cm-stats")
  klua.embedded.create_topic(t, 1)
  local heard = 0
  local waiter = klua.spawn(function() klua.sleep(10000) end)
  local p = klua.producer{ ["statistics.interval.ms"] = 100, on_stats = function(stats)
    assert_eq(type(stats.brokers), "table")
    heard = heard + 1
    if heard == 3 then waiter:cancel() end
  end }
  assert(p:produce{ topic = t, value = "x" })
  pcall(waiter.join, waiter)
  assert_true(heard >= 3, "on_stats heard " .. heard)
  local pname = client_name(p)
  -- The brokers the producer connected to (librdkafka connects to a broker when it needs one:
  -- a broker it never needed has no series).
  local up = samples("klua_broker_up", { client = pname })
  assert_true(#up >= 1 and #up <= 3, #up .. " brokers")
  for _, s in ipairs(up) do
    assert_match(s.labels.broker, "^[%d.]+:%d+/%d+$")
    assert_eq(s.value, 1)
  end
  local rtt = samples("klua_broker_rtt_seconds", { client = pname })
  assert_true(#rtt >= 1, "no rtt")
  for _, s in ipairs(rtt) do assert_true(s.value > 0 and s.value < 5, "rtt " .. s.value) end
  p:close()
end, { timeout_ms = 30000 })

test("the statistics decoder reads brokers and stops before topics", function()
  local json = [[{"name":"x","type":"producer","brokers":{
    "h:1/bootstrap":{"name":"h:1/bootstrap","nodeid":-1,"source":"configured","state":"UP","rtt":{"avg":5,"cnt":1}},
    "h:1/1":{"name":"h:1/1","nodeid":1,"source":"learned","state":"UP","rtt":{"min":1,"avg":2500,"cnt":4},
             "req":{"Produce":3},"toppars":{"t-0":{"topic":"t","partition":0}}},
    "h:2/2":{"name":"h:2/2","nodeid":2,"source":"learned","state":"DOWN","rtt":{"avg":0,"cnt":0}},
    "h:3/3":{"name":"h:3/3","nodeid":3,"source":"learned","state":"INIT","rtt":{"avg":0,"cnt":0}},
    "GroupCoordinator":{"name":"GroupCoordinator","nodeid":1,"source":"logical","state":"UP"}},
    "topics": this is not JSON, and the decoder never reads it ]]
  local n, brokers = cm.decode_stats(json)
  assert_eq(n, 2)
  assert_eq(brokers, { { name = "h:1/1", up = true, rtt = 0.0025 }, { name = "h:2/2", up = false } })
  assert_nil(cm.decode_stats('{"brokers": [}'))
  -- Shapes librdkafka never writes: read without harm (an array is no broker, its items no fields).
  assert_eq(select(2, cm.decode_stats('{"brokers":{"x":["UP",1,{"rtt":{"avg":1,"cnt":1}}]}}')), {})
  local _, odd = cm.decode_stats('{"brokers":{"a":{"name":"a:1/1","nodeid":1,"state":"UP","rtt":{"avg":7,"cnt":1}},' ..
                                 '"b":["evil",{"name":"evil"}],"c":5}}')
  assert_eq(odd, { { name = "a:1/1", up = true, rtt = 7e-6 } })
end)

test("readiness: consumers wait for their assignment; brokers down and back", function()
  local t = fresh("cm-ready")
  klua.embedded.create_topic(t, 1)
  local quiet = function() end  -- the outage's errors are expected
  local p = klua.producer{ on_error = quiet }
  assert(p:produce{ topic = t, value = "x" })
  local group = fresh("cm-g")
  local assigned = klua.spawn(function() klua.sleep(20000) end)
  local c = klua.consumer{ group = group, topics = { t }, on_assign = function() assigned:cancel() end, on_error = quiet }
  local ok, why = cm.consumers_ready()
  assert_false(ok)
  assert_true(why:find(group, 1, true) and why:find(client_name(c), 1, true), why)
  pcall(assigned.join, assigned)
  klua.sleep(0)  -- the hook's task ends; the assignment is applied after it
  eventually(function() return (cm.consumers_ready()) end, "the consumers check")
  assert_true((cm.brokers_ready()))
  -- Every broker down: both clients say so; the readiness check names one.
  for id = 1, 3 do klua.embedded.broker_down(id) end
  eventually(function()
    return value("klua_client_all_brokers_down", { client = client_name(p) }) == 1
       and value("klua_client_all_brokers_down", { client = client_name(c) }) == 1
  end, "all brokers down", 15000)
  local ready, reason = cm.brokers_ready()
  assert_false(ready)
  assert_match(reason, "all brokers are down")
  for id = 1, 3 do klua.embedded.broker_up(id) end
  eventually(function()
    return value("klua_client_all_brokers_down", { client = client_name(p) }) == 0
       and value("klua_client_all_brokers_down", { client = client_name(c) }) == 0
  end, "the brokers back", 15000)
  assert_true((cm.brokers_ready()))
  c:close()
  p:close()
end, { timeout_ms = 60000 })

-- An empty assignment is an assignment: a group with more members than partitions is ready.
for _, protocol in ipairs({ "classic", "consumer" }) do
  test("readiness: a member given no partition is ready too (group.protocol=" .. protocol .. ")", function()
    local t = fresh("cm-empty")
    klua.embedded.create_topic(t, 1)
    local group = fresh("cm-g")
    local conf = { group = group, topics = { t }, ["group.protocol"] = protocol }
    if protocol == "classic" then conf["session.timeout.ms"] = 6000 end
    local a = klua.consumer(conf)
    local b = klua.consumer(conf)
    assert_false((cm.consumers_ready()))
    eventually(function() return (cm.consumers_ready()) end, "both members' assignments", 20000)
    local counts = {}
    for _, c in ipairs({ a, b }) do
      counts[#counts + 1] = value("klua_consumer_assigned_partitions", { client = client_name(c) })
    end
    table.sort(counts)
    assert_eq(counts, { 0, 1 })
    a:close()
    b:close()
  end, { timeout_ms = 40000 })
end

-- Last: enable() registers with the default registry for the rest of the process.
test("enable(): collector and checks in klua.metrics, statistics for new clients, clients without named", function()
  local t = fresh("cm-enable")
  klua.embedded.create_topic(t, 1)
  local before = klua.producer()
  local without = cm.enable()
  assert_true(#without >= 1)
  local named = false
  for _, n in ipairs(without) do named = named or n == client_name(before) end
  assert_true(named, "enable() did not name " .. client_name(before))
  local after = klua.producer()
  for _, s in ipairs(cm.states()) do
    if s.client == client_name(after) then assert_eq(s.statistics_interval_ms, cm.STATISTICS_INTERVAL_MS) end
    if s.client == client_name(before) then assert_eq(s.statistics_interval_ms, 0) end
  end
  cm.enable()  -- a second call registers nothing twice
  assert(before:produce{ topic = t, value = "abc" })
  assert(after:produce{ topic = t, value = "de" })
  local text = klua.metrics.expose()
  local _, types = text:gsub("# TYPE klua_producer_messages_total counter\n", "")
  assert_eq(types, 1)
  for client, bytes in pairs({ [client_name(before)] = 3, [client_name(after)] = 2 }) do
    local found
    for line in text:gmatch("klua_producer_bytes_total{[^\n]*") do
      if line:find('client="' .. client .. '"', 1, true) and line:find('topic="' .. t .. '"', 1, true) then
        found = tonumber(line:match("} (%S+)$"))
      end
    end
    assert_eq(found, bytes)
  end
  -- promtool accepts the whole exposition, built-in histograms included.
  local out, status = klua.testkit.sh("promtool check metrics 2>&1", text)
  assert_eq(status, 0, out)
  -- The readiness checks answer /readyz.
  local readyz = klua.metrics.routes()["GET /readyz"]
  assert_eq(readyz().status, 200)
  local c = klua.consumer{ group = fresh("cm-g"), topics = { t } }
  local r = readyz()  -- the group has not answered yet
  assert_eq(r.status, 503)
  assert_match(r.body, "consumers: consumer group")
  eventually(function() return readyz().status == 200 end, "/readyz after the assignment")
  c:close()
  before:close()
  after:close()
end, { timeout_ms = 30000 })

test("a statistics.interval.ms the user set wins over enable()'s default", function()
  local out, status = klua.testkit.sh(klua.testkit.quote(os.getenv("KLUA_BIN") or "build/klua") ..
    [[ -X statistics.interval.ms=0 -e '
      local cm = debug.getregistry()["klua.private"].client_metrics
      cm.enable()
      local p = klua.producer()
      for _, s in ipairs(cm.states()) do print(s.client, s.statistics_interval_ms) end
      p:close()' 2>&1]])
  assert_eq(status, 0, out)
  assert_match(out, "#producer%-%d+\t0\n")
end)

test("before its first message a partition's lag counts from its assigned offset, else the committed one", function()
  local t, g = fresh("cm-lag-start"), fresh("cm-g")
  klua.embedded.create_topic(t, 2)
  local p = klua.producer()
  local produced = { [0] = 10, [1] = 4 }
  for part, n in pairs(produced) do
    for i = 1, n do assert(p:send{ topic = t, partition = part, value = "m" .. i }) end
  end
  assert(p:flush())
  p:close()
  local committed, start = 1, 3
  local c0 = klua.consumer{ group = g }
  assert(c0:commit({ { topic = t, partition = 1, offset = committed } }))
  c0:close()
  -- Run alone, the metrics are not served: the first scrape starts the committed-offset look-up
  -- and a later one has the series (after enable(), the assignment starts it).
  local c = klua.consumer{ group = g }
  local cname = client_name(c)
  assert(c:assign({ { topic = t, partition = 0, offset = start }, { topic = t, partition = 1, offset = "stored" } }))
  local function lag(part) return value("klua_consumer_lag", { client = cname, topic = t, partition = tostring(part) }) end
  eventually(function() return lag(0) ~= nil and lag(1) ~= nil end, "both lag series")
  assert_eq(lag(0), produced[0] - start)
  assert_eq(lag(1), produced[1] - committed)
  local want = produced[0] - start + produced[1] - committed
  assert_eq(#poll_n(c, want), want)
  assert_eq(lag(0), 0)
  assert_eq(lag(1), 0)
  c:close()
end, { timeout_ms = 60000 })
