-- A consumer that commits only what it processed, SIGKILLed in the middle of a batch (some of
-- its messages processed, none of them committed), then started again: every message it had not
-- committed is delivered again (at-least-once: none lost), from exactly the committed offset on.
-- The committed offsets are read by Python confluent-kafka, the records' content is arithmetic.
-- Also: a read_committed group member (as the exactly-once worker's consumer) whose group has
-- offsets pending in a dead transaction waits for them and starts at the committed offset,
-- never at auto.offset.reset.
local proc = dofile("tests/integration/helpers/proc.lua")
local PYTHON = dofile("tests/integration/helpers/python.lua")
local kit = klua.testkit
local q = kit.quote
local BROKERS = assert(os.getenv("KLUA_BROKERS"), "KLUA_BROKERS must name the broker")
local PARTS, PER = 3, 1000
local N = PARTS * PER

-- The group's committed offsets per partition (0-based index), as confluent-kafka reads them.
local function py_committed(group, topic)
  local script = "import sys\nfrom confluent_kafka import Consumer, TopicPartition\n" ..
    "c = Consumer({'bootstrap.servers': sys.argv[1], 'group.id': sys.argv[2], 'enable.auto.commit': False})\n" ..
    "r = c.committed([TopicPartition(sys.argv[3], p) for p in range(int(sys.argv[4]))], timeout=30)\n" ..
    "print(' '.join(str(t.offset) if t.error is None else 'error' for t in r))\nc.close()\n"
  local out, rc = kit.sh(string.format("timeout 60 %s -c %s %s %s %s %d 2>&1", q(PYTHON), q(script), q(BROKERS),
    q(group), q(topic), PARTS))
  assert(rc == 0, "python committed: " .. out)
  local offs = {}
  for o in out:gmatch("%S+") do offs[#offs + 1] = assert(tonumber(o), "committed: " .. out) end
  assert(#offs == PARTS, "committed: " .. out)
  for i, o in ipairs(offs) do if o < 0 then offs[i] = 0 end end -- none committed: from the start
  return offs
end

-- The "P O KEY VALUE" lines of a run, checked against the source: per partition the list of offsets.
local function processed(h)
  local per = {}
  for p = 0, PARTS - 1 do per[p] = {} end
  for l in h:read():gmatch("[^\n]+") do
    local p, o, k, v = l:match("^(%d+) (%d+) (%S+) (%S+)$")
    if p then
      p, o = tonumber(p), tonumber(o)
      local i = o * PARTS + p + 1
      assert_eq({ k, v }, { "k" .. i, string.format("v%06d", i) }, "record at " .. p .. "/" .. o)
      per[p][#per[p] + 1] = o
    end
  end
  return per
end

local function range(a, b)
  local r = {}
  for o = a, b - 1 do r[#r + 1] = o end
  return r
end

test("a consumer SIGKILLed mid-batch: on restart every uncommitted message is delivered again, none lost", function()
  local topic = assert(kit.topic("ck-src", { partitions = PARTS }))
  local group = kit.fresh("ck-g")
  local p = klua.producer{ ["linger.ms"] = 5 }
  for i = 1, N do
    assert(p:send{ topic = topic, partition = (i - 1) % PARTS, key = "k" .. i, value = string.format("v%06d", i) })
  end
  assert(p:flush())
  p:close()
  local BATCH = 100
  local stall_at = math.random(math.floor(N / 5), math.floor(N / 2))
  local dir = proc.tmpdir("klua-ck")
  local ok, err = pcall(function()
    local h1 = proc.spawn(dir, "run1", "tests/integration/helpers/commit_consumer.lua",
                          { topic, group, BATCH, stall_at, 0 })
    local deadline = klua.now() + 60000
    while not h1:read():find("stalled") do
      if h1:status() ~= nil or klua.now() > deadline then h1:ensure_dead(); error("run1: " .. h1:describe(), 0) end
      klua.sleep(20)
    end
    h1:kill(9)
    assert_eq(h1:wait(10000), 137, "killed mid-batch: " .. h1:describe())
    local got1 = processed(h1)
    local committed = py_committed(group, topic)
    local uncommitted, left = 0, 0
    for part = 0, PARTS - 1 do
      local c = committed[part + 1]
      -- run 1 processed each partition from offset 0 without gaps, and committed no more than that
      assert_eq(got1[part], range(0, #got1[part]), "run 1, partition " .. part)
      assert_true(c <= #got1[part], string.format("partition %d: committed %d, processed %d", part, c, #got1[part]))
      uncommitted = uncommitted + #got1[part] - c
      left = left + PER - c
    end
    assert_true(uncommitted > 0, "the kill came mid-batch: processed, not committed")
    local h2 = proc.spawn(dir, "run2", "tests/integration/helpers/commit_consumer.lua", { topic, group, BATCH, 0, left })
    local rc = h2:wait(90000)
    if rc == nil then h2:ensure_dead() end
    assert_eq(rc, 0, "run 2 takes what was left: " .. h2:describe())
    local got2 = processed(h2)
    for part = 0, PARTS - 1 do
      -- redelivered from the committed offset: the uncommitted ones again, then the rest, once each
      assert_eq(got2[part], range(committed[part + 1], PER), "run 2, partition " .. part)
    end
    assert_eq(py_committed(group, topic), { PER, PER, PER })
    print(string.format("killed after %d of %d messages (batches of %d): %d processed but uncommitted, all " ..
      "redelivered; the restart took the remaining %d", stall_at, N, BATCH, uncommitted, left))
  end)
  proc.remove_dir(dir)
  if not ok then error(err, 0) end
end, { timeout_ms = 240000 })

test("a read_committed member waits out a dead transaction's pending offsets, then starts at the committed offset", function()
  local topic = assert(kit.topic("ck-pend", { partitions = PARTS }))
  local group = kit.fresh("ck-pend-g")
  local msgs = {}
  for i = 1, 30 do msgs[i] = { partition = (i - 1) % PARTS, key = "k" .. i, value = tostring(i) } end
  assert(kit.produce(topic, msgs))
  local c0 = klua.consumer{ group = group, ["enable.auto.commit"] = false }
  local list = {}
  for part = 0, PARTS - 1 do list[#list + 1] = { topic = topic, partition = part, offset = 4 } end
  assert(c0:commit(list))
  c0:close()
  local dir = proc.tmpdir("klua-ckp")
  local ok, err = pcall(function()
    -- another producer's transaction sends offset 7 for the group and dies; the broker aborts it
    -- after its transaction.timeout.ms (2 s) at its next check
    local h = proc.spawn(dir, "dead", "tests/integration/helpers/dead_txn.lua",
                         { topic, topic, group, kit.fresh("ck-txid"), 7, PARTS, 2000 })
    local deadline = klua.now() + 30000
    while not h:read():find("pending") do
      if h:status() ~= nil or klua.now() > deadline then h:ensure_dead(); error("dead_txn: " .. h:describe(), 0) end
      klua.sleep(20)
    end
    h:kill(9)
    assert_eq(h:wait(10000), 137)
  end)
  proc.remove_dir(dir)
  if not ok then error(err, 0) end
  local c = klua.consumer(kit.group_conf{ group = group, topics = { topic }, ["enable.auto.commit"] = false,
    ["isolation.level"] = "read_committed", ["auto.offset.reset"] = "earliest" })
  local first, n, deadline = {}, 0, klua.now() + 90000
  while n < PARTS and klua.now() < deadline do
    local m = c:poll(200)
    if m and m.topic == topic and first[m.partition] == nil then first[m.partition] = m.offset; n = n + 1 end
  end
  c:close()
  assert_eq(first, { [0] = 4, 4, 4 })
end, { timeout_ms = 120000 })
