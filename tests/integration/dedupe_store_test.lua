-- The Kafka-backed dedupe store (klua.worker.dedupe_store, worker option dedupe = {topic=,
-- window_ms=}) against a real broker: ids survive a restart (a new `klua run` process skips a
-- duplicate at another offset), two members of one group share ids, records older than the window
-- are not loaded, and a topic with another cleanup policy or a short retention is refused.
local proc = dofile("tests/integration/helpers/proc.lua")
local kit = klua.testkit
local fresh = kit.fresh
local store_mod = require("klua.worker.dedupe_store")
local admin = klua.admin()

local function create(name, partitions, configs)
  assert_eq(assert(admin:create_topics({ { name = name, partitions = partitions, replication_factor = 1,
                                           configs = configs } }))[1].error, nil)
end

-- The store topic's keys, read by kcat (independent of klua's consumer).
local function kcat_keys(topic)
  local brokers = assert(klua.config()["bootstrap.servers"])
  local p = assert(io.popen(string.format("timeout 60 kcat -b %s -C -t %s -e -q -f '%%k\\n' 2>&1",
                                          proc.quote(brokers), proc.quote(topic))))
  local keys = {}
  for line in p:lines() do keys[line] = (keys[line] or 0) + 1 end
  p:close()
  return keys
end

test("a restarted worker (a new process) skips a message whose id it handled before, at another offset", function()
  local topic, group, store = fresh("dd-in"), fresh("dd-g"), fresh("dd-store")
  create(topic, 1)
  local p = klua.producer()
  assert(p:produce{ topic = topic, value = "first", headers = { { "x-event-id", "X" } } })
  local dir = proc.tmpdir("klua-dedupe")
  local ok, err = pcall(function()
    local a = proc.spawn(dir, "a", "tests/integration/helpers/dedupe_worker.lua", { topic, group, store, "1" })
    assert_eq(a:wait(60000), 0, a:describe())
    local out = a:read()
    assert_match(out, "^handled X\n")
    assert_match(out, "processed 1 deduplicated 0\n")
    assert_eq(kcat_keys(store), { X = 1 })            -- the id is in the topic (read by kcat)
    -- the same id at offset 1, a new one at offset 2; the group's committed offset is 1
    assert(p:produce{ topic = topic, value = "again", headers = { { "x-event-id", "X" } } })
    assert(p:produce{ topic = topic, value = "new", headers = { { "x-event-id", "Y" } } })
    local b = proc.spawn(dir, "b", "tests/integration/helpers/dedupe_worker.lua", { topic, group, store, "2" })
    assert_eq(b:wait(60000), 0, b:describe())
    out = b:read()
    assert_match(out, "^handled Y\nloaded 1 replay_ms [%d.]+\nprocessed 1 deduplicated 1\n$")
    assert_eq(kcat_keys(store), { X = 1, Y = 1 })
    assert_eq(klua.lag(group, { topic }).lag, 0)      -- the duplicate's offset was committed too
  end)
  proc.remove_dir(dir)
  if not ok then error(err, 0) end
end, { timeout_ms = 150000 })

test("two members of one group share ids: member A adds, member B later skips", function()
  local topic, group, store = fresh("dd-share"), fresh("dd-g"), fresh("dd-store")
  create(topic, 2)
  local owner, handled, workers = {}, {}, {}
  for _, name in ipairs{ "A", "B" } do
    handled[name] = {}
    workers[name] = klua.worker(kit.group_conf{ group = group, topics = { topic }, quiet = true,
      dedupe = { topic = store, window_ms = 3600000 },
      on_assign = function(parts) for _, tp in ipairs(parts) do owner[tp.partition] = name end end,
      handlers = function(msg) table.insert(handled[name], msg.value) end })
  end
  local tasks = {}
  for name, w in pairs(workers) do tasks[name] = klua.spawn(function() return w:run() end) end
  local ok, err = pcall(function()
    -- wait for a split: each member owns one partition
    local deadline = klua.now() + 60000
    while not (owner[0] and owner[1] and owner[0] ~= owner[1]) do
      if klua.now() >= deadline then
        local st = {}
        for name, t in pairs(tasks) do
          st[name] = t:status() .. (t:status() == "done" and (": " .. kit.show({ t:join() })) or "")
        end
        error("no split assignment: " .. kit.show(owner) .. "; workers: " .. kit.show(st), 0)
      end
      klua.sleep(50)
    end
    local a, b = owner[0], owner[1]
    local p = klua.producer()
    assert(p:produce{ topic = topic, partition = 0, value = "x-on-0", headers = { { "x-event-id", "X" } } })
    deadline = klua.now() + 30000
    while workers[a]:counters().processed < 1 do
      assert_true(klua.now() < deadline, "member " .. a .. " did not handle X")
      klua.sleep(20)
    end
    -- A's add is delivered, B's reader has read it: then the same id reaches B's partition
    assert(workers[a].seen:flush())
    assert(workers[b].seen:sync())
    assert_true(workers[b].seen:has("X"))
    assert(p:produce{ topic = topic, partition = 1, value = "x-on-1", headers = { { "x-event-id", "X" } } })
    assert(p:produce{ topic = topic, partition = 1, value = "z-on-1", headers = { { "x-event-id", "Z" } } })
    deadline = klua.now() + 30000
    while workers[b]:counters().processed + workers[b]:counters().deduplicated < 2 do
      assert_true(klua.now() < deadline, "member " .. b .. " did not finish: " .. kit.show(workers[b]:counters()))
      klua.sleep(20)
    end
    assert_eq(handled[a], { "x-on-0" })
    assert_eq(handled[b], { "z-on-1" })
    assert_eq(workers[b]:counters().deduplicated, 1)
  end)
  for _, w in pairs(workers) do w:stop() end
  for name, t in pairs(tasks) do
    local c, e = t:join()
    if ok then assert(c, name .. ": " .. tostring(e)) end
  end
  if not ok then error(err, 0) end
end, { timeout_ms = 150000 })

test("a partition handed over in a rebalance: the new owner skips the ids its previous owner handled", function()
  -- A's store sends with linger.ms = 10 s, so its adds are still queued when B joins: only the
  -- flush at A's revoke (and B's sync at its assign) can make them visible to B in time.
  local topic, group, store = fresh("dd-move"), fresh("dd-g"), fresh("dd-store")
  create(topic, 2)
  local owner, handled, workers, tasks = {}, { A = {}, B = {} }, {}, {}
  local function start(name, extra)
    local opts = kit.group_conf{ group = group, topics = { topic }, quiet = true,
      dedupe = { topic = store, window_ms = 3600000 },
      on_assign = function(parts) for _, tp in ipairs(parts) do owner[tp.partition] = name end end,
      handlers = function(msg) table.insert(handled[name], msg.value) end }
    for k, v in pairs(extra or {}) do opts[k] = v end
    workers[name] = klua.worker(opts)
    tasks[name] = klua.spawn(function() return workers[name]:run() end)
  end
  local function wait(what, cond)
    local deadline = klua.now() + 60000
    while not cond() do
      assert_true(klua.now() < deadline, what)
      klua.sleep(20)
    end
  end
  local ok, err = pcall(function()
    start("A", { producer = { ["linger.ms"] = 10000 } })
    local p = klua.producer()
    assert(p:produce{ topic = topic, partition = 0, value = "x-on-0", headers = { { "x-event-id", "X" } } })
    assert(p:produce{ topic = topic, partition = 1, value = "y-on-1", headers = { { "x-event-id", "Y" } } })
    wait("A did not handle X and Y", function() return workers.A:counters().processed == 2 end)
    assert_eq(workers.A.seen.p:outq_len(), 2)            -- both adds are still lingering in A's producer
    start("B")
    wait("no split assignment", function() return owner[0] and owner[1] and owner[0] ~= owner[1] end)
    local bp = owner[0] == "B" and 0 or 1
    assert(p:produce{ topic = topic, partition = bp, value = "dup-on-" .. bp,
                      headers = { { "x-event-id", bp == 0 and "X" or "Y" } } })
    wait("B did not take the duplicate", function()
      local c = workers.B:counters()
      return c.processed + c.deduplicated >= 1
    end)
    assert_eq(handled.B, {})                             -- not handled again: skipped as a duplicate
    assert_eq(workers.B:counters().deduplicated, 1)
    assert_eq(#handled.A, 2)
  end)
  for _, w in pairs(workers) do w:stop() end
  for name, t in pairs(tasks) do
    local c, e = t:join()
    if ok then assert(c, name .. ": " .. tostring(e)) end
  end
  if not ok then error(err, 0) end
end, { timeout_ms = 150000 })

test("records older than the window are not loaded", function()
  local store = fresh("dd-old")
  local window = 60000
  local s = assert(store_mod.open{ topic = store, window_ms = window })   -- creates the topic
  assert_eq({ s.loaded, s:size() }, { 0, 0 })
  assert(s:close())
  local now = klua.time()
  local p = klua.producer()
  -- old by both its value and its timestamp; old by its value only (read, then skipped); recent
  assert(p:produce{ topic = store, partition = 0, key = "old", value = string.format("%d", now - 2 * window),
                    timestamp = now - 2 * window })
  assert(p:produce{ topic = store, partition = 1, key = "old-value", value = string.format("%d", now - 2 * window) })
  assert(p:produce{ topic = store, partition = 2, key = "recent", value = string.format("%d", now - window / 2) })
  s = assert(store_mod.open{ topic = store, window_ms = window })
  assert_eq({ s.loaded, s:size(), s.skipped }, { 1, 1, 1 })
  assert_eq({ s:has("recent"), s:has("old"), s:has("old-value") }, { true, false, false })
  assert_true(s.replay_ms > 0 and s.replay_ms < 30000, tostring(s.replay_ms))
  -- a new id of this store is visible to another store on the same topic (its background reader)
  local s2 = assert(store_mod.open{ topic = store, window_ms = window })
  assert(s:add("fresh"))
  assert(s:flush())
  assert(s2:sync())
  assert_true(s2:has("fresh"))
  assert(s:close()); assert(s2:close())
  assert_raises(function() s:add("late") end, "closed")
  -- the created topic's configs
  local cfg = assert(admin:describe_configs({ { type = "topic", name = store } }))[1].configs
  assert_eq({ cfg["cleanup.policy"].value, cfg["retention.ms"].value }, { "compact,delete", tostring(window) })
end, { timeout_ms = 90000 })

test("a topic with another cleanup policy, or a retention shorter than the window, is refused", function()
  local plain = fresh("dd-plain")
  create(plain, 1)
  local s, err = store_mod.open{ topic = plain, window_ms = 60000 }
  assert_nil(s)
  assert_error(err, "INVALID_CONFIG")
  assert_match(err.message, plain:gsub("%-", "%%-"))
  assert_match(err.message, "cleanup%.policy is \"delete\"")
  assert_eq(err.topic, plain)
  local short = fresh("dd-short")
  create(short, 1, { ["cleanup.policy"] = "compact,delete", ["retention.ms"] = "1000" })
  s, err = store_mod.open{ topic = short, window_ms = 60000 }
  assert_nil(s)
  assert_error(err, "INVALID_CONFIG")
  assert_match(err.message, "retention%.ms is 1000")
  -- the worker returns the store's error from run, before it joins the group
  local w = klua.worker(kit.group_conf{ group = fresh("dd-g"), topics = { plain }, quiet = true,
                                         dedupe = { topic = plain, window_ms = 60000 }, handlers = function() end })
  local c, werr = w:run()
  assert_nil(c)
  assert_error(werr, "INVALID_CONFIG")
end, { timeout_ms = 60000 })

test("the store's clients get the worker's connection settings (SASL listener)", function()
  local sasl = os.getenv("KLUA_SASL_BROKERS") or ""
  assert_match(sasl, "^127%.0%.0%.1:%d+$", "KLUA_SASL_BROKERS (ctest sets it)")
  local topic, store = fresh("dd-sasl"), fresh("dd-store")
  create(topic, 1)
  assert(klua.producer():produce{ topic = topic, value = "v", headers = { { "x-event-id", "S" } } })
  local w
  w = klua.worker(kit.group_conf{ group = fresh("dd-g"), topics = { topic }, quiet = true, brokers = sasl,
    ["security.protocol"] = "SASL_PLAINTEXT", ["sasl.mechanism"] = "PLAIN",
    ["sasl.username"] = "klua-plain", ["sasl.password"] = "klua-plain-secret",
    dedupe = { topic = store, window_ms = 3600000 }, handlers = function() w:stop() end })
  local c = assert(w:run())
  assert_eq(c.processed, 1)
  assert_eq(kcat_keys(store), { S = 1 })
  assert_eq(require("klua.worker.dedupe_store").connection_keys(
    { ["sasl.username"] = "u", ["session.timeout.ms"] = 1, group = "g" }, { ["ssl.ca.location"] = "f" }),
    { ["sasl.username"] = "u", ["ssl.ca.location"] = "f" })
end, { timeout_ms = 60000 })
