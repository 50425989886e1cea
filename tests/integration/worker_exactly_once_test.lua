-- klua.worker's exactly-once mode on the real broker (KLUA_BROKERS). A worker process
-- (helpers/eos_copy_worker.lua) copies a topic of N keyed messages to an output topic; it is
-- SIGKILLed at random moments and restarted, TRIALS times (10; KLUA_EOS_TRIALS=50 for the long
-- run); then a last run finishes the copy. kcat with isolation.level=read_committed, an
-- independent reader, must see every input exactly once (compared by key and value). Also: a
-- handler that fails once is retried and its first attempt's outputs never reach the topic, not
-- even as aborted records; a poison message is dead-lettered inside the transaction.
local proc = dofile("tests/integration/helpers/proc.lua")
local fresh = klua.testkit.fresh
local BROKERS = assert(os.getenv("KLUA_BROKERS"), "KLUA_BROKERS must name the broker")
local TRIALS = tonumber(os.getenv("KLUA_EOS_TRIALS")) or 10

-- every record of topic as "key\tvalue" lines, read by kcat to the end
local function kcat_read(topic, isolation)
  local out, rc = klua.testkit.sh(string.format(
    "timeout 60 kcat -C -b %s -t %s -X isolation.level=%s -o beginning -e -q -f '%%k\\t%%s\\n'",
    klua.testkit.quote(BROKERS), klua.testkit.quote(topic), isolation))
  assert(rc == 0, "kcat failed: " .. out)
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  return lines
end

local function with_dir(prefix, fn)
  local dir = proc.tmpdir(prefix)
  local ok, err = pcall(fn, dir)
  proc.remove_dir(dir)
  if not ok then error(err, 0) end
end

test(string.format("exactly-once worker SIGKILLed at random moments and restarted (%d trials): read_committed sees every input once", TRIALS), function()
  local N, PARTS = 900 * TRIALS, 3
  local input, output, group = fresh("eos-in"), fresh("eos-out"), fresh("eos-g")
  local admin = klua.admin()
  local res = assert(admin:create_topics{ { name = input, partitions = PARTS }, { name = output, partitions = PARTS } })
  assert_eq(res[1].error, nil)
  assert_eq(res[2].error, nil)
  local p = klua.producer{ ["linger.ms"] = 5 }
  for i = 1, N do assert(p:send{ topic = input, key = "k" .. i, value = string.format("v%05d", i) }) end
  assert(p:flush())
  p:close()

  with_dir("klua-weos", function(dir)
    local killed_working = 0
    for trial = 1, TRIALS do
      -- odd trials per-message handlers, even ones batch handlers (outputs are the same)
      local mode = trial % 2 == 1 and "message" or "batch"
      local h = proc.spawn(dir, "t" .. trial, "tests/integration/helpers/eos_copy_worker.lua",
                           { input, output, group, "member-1", mode, mode == "batch" and 1 or 3 })
      local ok, err = pcall(function()
        local deadline = klua.now() + 30000
        while not h:read():find("assigned [1-9]") do
          assert(h:status() == nil, "the worker ended before its assignment: " .. h:describe())
          assert(klua.now() < deadline, "no assignment within 30 s: " .. h:describe())
          klua.sleep(20)
        end
        klua.sleep(math.random(50, 900))  -- a random moment of its work
        if h:status() == nil then
          killed_working = killed_working + 1
          h:kill(9)
          assert_eq(h:wait(10000), 137, "killed: " .. h:describe())
        end
      end)
      if not ok then h:ensure_dead(); error(err, 0) end
    end
    assert_true(killed_working >= math.floor(TRIALS / 2), "only " .. killed_working .. " of the kills came while the copy ran")
    local last = proc.spawn(dir, "last", "tests/integration/helpers/eos_copy_worker.lua",
                            { input, output, group, "member-1", "message", 0 })
    local rc = last:wait(120000)
    if rc == nil then last:ensure_dead() end
    assert_eq(rc, 0, "the last run finishes the copy: " .. last:describe())
    local left = tonumber(last:read():match("done (%d+)"))
    assert_true(left and left < N, "the last run copied " .. tostring(left))
    print(string.format("%d trials (%d killed while copying); the last run copied the remaining %d of %d",
      TRIALS, killed_working, left, N))
  end)

  local committed = kcat_read(output, "read_committed")
  local count, distinct = {}, 0
  for _, l in ipairs(committed) do
    if not count[l] then distinct = distinct + 1 end
    count[l] = (count[l] or 0) + 1
  end
  for i = 1, N do
    local l = string.format("k%d\tout:v%05d", i, i)
    assert_eq(count[l], 1, l .. " seen by read_committed")
  end
  assert_eq(distinct, N)
  assert_eq(#committed, N, "read_committed record count")
  -- read_uncommitted also sees what the killed transactions had sent (aborted): informational
  local uncommitted = kcat_read(output, "read_uncommitted")
  print(string.format("%d trials: %d records read_committed, %d read_uncommitted (%d from aborted transactions)",
    TRIALS, #committed, #uncommitted, #uncommitted - #committed))
  assert_true(#uncommitted >= N)
end, { timeout_ms = 600000 })

test("exactly-once: a handler that fails once is retried; its first attempt's outputs never appear; a poison message is dead-lettered in the transaction", function()
  local input, output, dlq, group = fresh("eos1-in"), fresh("eos1-out"), fresh("eos1-dlq"), fresh("eos1-g")
  local admin = klua.admin()
  local res = assert(admin:create_topics{ { name = input, partitions = 2 }, { name = output, partitions = 1 },
                                          { name = dlq, partitions = 1 } })
  for i = 1, 3 do assert_eq(res[i].error, nil) end
  local p = klua.producer()
  for i = 1, 40 do assert(p:send{ topic = input, key = "k" .. i, value = "v" .. i }) end
  assert(p:flush())
  p:close()
  local first_attempts = 0
  local w
  w = klua.worker{ group = group, topics = { input }, quiet = true, exactly_once = true, dead_letter = dlq,
    retry = { max = 2, base_ms = 10, max_ms = 50 },
    ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500,
    handlers = function(msg, info)
      info.send{ topic = output, key = msg.key, value = msg.value .. "@" .. info.attempt }
      if msg.value == "v13" then error({ name = "Poison", message = "v13 never works" }) end
      if info.attempt == 1 and tonumber(msg.value:sub(2)) % 5 == 0 then
        first_attempts = first_attempts + 1
        error("fails once")
      end
    end }
  local t = klua.spawn(function() return w:run() end)
  local deadline = klua.now() + 40000
  while klua.now() < deadline do
    local c = w:counters()
    if c.processed + c.dead_lettered >= 40 and w:lag() == 0 then break end
    klua.sleep(100)
  end
  w:stop()
  local counters = assert(t:join())
  assert_eq(counters.processed, 39)
  assert_eq(counters.dead_lettered, 1)
  assert_eq(first_attempts, 8)
  -- read_uncommitted: not even an aborted copy of a first attempt's output
  local lines = kcat_read(output, "read_uncommitted")
  local seen = {}
  for _, l in ipairs(lines) do
    local k, v, a = l:match("^(k%d+)\tv(%d+)@(%d)$")
    assert_true(k ~= nil, "unexpected record " .. l)
    assert_eq(seen[k], nil, k .. " twice")
    seen[k] = true
    assert_eq(tonumber(a), tonumber(v) % 5 == 0 and 2 or 1, l)
    assert_true(v ~= "13", "the poison message's output was committed")
  end
  assert_eq(#lines, 39)
  local dead = kcat_read(dlq, "read_committed")
  assert_eq(#dead, 1)
  assert_eq(dead[1], "k13\tv13")
end, { timeout_ms = 60000 })

test("exactly-once: a transaction whose commit fails is aborted, its partitions rewound, and the batch runs again", function()
  local input, output, tiny, group = fresh("eos2-in"), fresh("eos2-out"), fresh("eos2-tiny"), fresh("eos2-g")
  local admin = klua.admin()
  -- the broker refuses records over 200 bytes on `tiny`: a delivery failure inside the transaction
  local res = assert(admin:create_topics{ { name = input, partitions = 2 }, { name = output, partitions = 1 },
                                          { name = tiny, partitions = 1, configs = { ["max.message.bytes"] = "200" } } })
  for i = 1, 3 do assert_eq(res[i].error, nil) end
  local p = klua.producer()
  for i = 1, 30 do assert(p:send{ topic = input, key = "k" .. i, value = "v" .. i }) end
  assert(p:flush())
  p:close()
  local runs, big_sent = {}, false
  local w = klua.worker{ group = group, topics = { input }, quiet = true, exactly_once = true,
    retry = { max = 3, base_ms = 10, max_ms = 50 },
    ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500,
    handlers = function(msg, info)
      runs[msg.value] = (runs[msg.value] or 0) + 1
      info.send{ topic = output, key = msg.key, value = msg.value .. "#" .. runs[msg.value] }
      if not big_sent then -- once: this transaction cannot commit
        big_sent = true
        info.send{ topic = tiny, value = string.rep("x", 1000) }
      end
    end }
  local t = klua.spawn(function() return w:run() end)
  local deadline = klua.now() + 40000
  while klua.now() < deadline and not (w:counters().processed >= 30 and w:lag() == 0) do klua.sleep(100) end
  w:stop()
  local counters = assert(t:join())
  local again = 0
  for _, n in pairs(runs) do if n > 1 then again = again + 1 end end
  assert_true(again >= 1, "no message was handled again after the abort")
  assert_true(counters.consumed > 30, "consumed " .. counters.consumed .. ": the rewound batch came again")
  local lines = kcat_read(output, "read_committed")
  assert_eq(#lines, 30)
  local seen = {}
  for _, l in ipairs(lines) do
    local k, v, n = l:match("^(k%d+)\t(v%d+)#(%d+)$")
    assert_true(k ~= nil, "unexpected record " .. l)
    assert_eq(seen[v], nil, v .. " twice")
    seen[v] = true
    assert_eq(tonumber(n), runs[v], v .. ": the committed copy is its last run's")
  end
  assert_eq(#kcat_read(tiny, "read_uncommitted"), 0)
end, { timeout_ms = 60000 })

test("exactly-once: a revoke while a batch's handlers run leaves its partitions out of the transaction; a second member finishes them", function()
  local input, output, group = fresh("eos3-in"), fresh("eos3-out"), fresh("eos3-g")
  local admin = klua.admin()
  local res = assert(admin:create_topics{ { name = input, partitions = 4 }, { name = output, partitions = 1 } })
  for i = 1, 2 do assert_eq(res[i].error, nil) end
  local p = klua.producer()
  for i = 1, 200 do assert(p:send{ topic = input, partition = i % 4, key = "k" .. i, value = "v" .. i }) end
  assert(p:flush())
  p:close()
  local runs, in_handlers, revoked_mid_batch = {}, 0, 0
  local function worker(name)
    local w
    w = klua.worker{ group = group, topics = { input }, quiet = true, concurrency = 4,
      -- two members in one process: each its own transactional.id
      exactly_once = { ["transactional.id"] = group .. "-" .. name },
      ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500,
      on_revoke = function(parts) if in_handlers > 0 then revoked_mid_batch = revoked_mid_batch + 1 end end,
      handlers = function(msg, info)
        in_handlers = in_handlers + 1
        runs[msg.value] = (runs[msg.value] or 0) + 1
        klua.sleep(20)
        info.send{ topic = output, key = msg.key, value = msg.value }
        in_handlers = in_handlers - 1
      end }
    return w
  end
  local a, b = worker("a"), worker("b")
  local ta = klua.spawn(function() return a:run() end)
  local deadline = klua.now() + 30000
  while next(runs) == nil do
    assert_true(klua.now() < deadline, "worker a handled nothing")
    klua.sleep(10)
  end
  local tb = klua.spawn(function() return b:run() end) -- joins while a's first batch runs (50 x 20 ms a partition)
  deadline = klua.now() + 40000
  while klua.now() < deadline do
    if a:counters().processed + b:counters().processed >= 200 and a:lag() == 0 then break end
    klua.sleep(100)
  end
  a:stop(); b:stop()
  local ca, cb = assert(ta:join()), assert(tb:join())
  assert_true(revoked_mid_batch >= 1, "no revoke came while handlers ran")
  local again = 0
  for _, n in pairs(runs) do if n > 1 then again = again + 1 end end
  assert_true(again >= 1, "nothing was handled twice: the revoked batch was not left out")
  assert_eq(ca.processed + cb.processed, 200)
  local lines = kcat_read(output, "read_committed")
  local seen = {}
  for _, l in ipairs(lines) do
    assert_eq(seen[l], nil, l .. " twice")
    seen[l] = true
  end
  assert_eq(#lines, 200)
  for i = 1, 200 do assert_true(seen["k" .. i .. "\tv" .. i], "k" .. i .. " missing") end
end, { timeout_ms = 90000 })

test("exactly-once: SIGTERM stops the worker (exit 143) with outputs and offsets consistent: a restart copies exactly the rest", function()
  local N = 3000
  local input, output, group = fresh("eos4-in"), fresh("eos4-out"), fresh("eos4-g")
  local admin = klua.admin()
  local res = assert(admin:create_topics{ { name = input, partitions = 3 }, { name = output, partitions = 3 } })
  for i = 1, 2 do assert_eq(res[i].error, nil) end
  local p = klua.producer{ ["linger.ms"] = 5 }
  for i = 1, N do assert(p:send{ topic = input, key = "k" .. i, value = string.format("v%05d", i) }) end
  assert(p:flush())
  p:close()
  with_dir("klua-weos-term", function(dir)
    local h = proc.spawn(dir, "term", "tests/integration/helpers/eos_copy_worker.lua",
                         { input, output, group, "member-1", "message", 3 })
    local ok, err = pcall(function()
      local deadline = klua.now() + 30000
      while not h:read():find("assigned [1-9]") do
        assert(h:status() == nil and klua.now() < deadline, "no assignment: " .. h:describe())
        klua.sleep(20)
      end
      klua.sleep(700)
      h:kill("TERM")
      assert_eq(h:wait(20000), 143, "SIGTERM: " .. h:describe())
    end)
    if not ok then h:ensure_dead(); error(err, 0) end
    -- what the stopped run committed is final: its outputs are readable now, one per input
    local first = kcat_read(output, "read_committed")
    assert_true(#first > 0 and #first < N, #first .. " records committed before the stop")
    local last = proc.spawn(dir, "last", "tests/integration/helpers/eos_copy_worker.lua",
                            { input, output, group, "member-1", "message", 0 })
    local rc = last:wait(60000)
    if rc == nil then last:ensure_dead() end
    assert_eq(rc, 0, last:describe())
    assert_eq(tonumber(last:read():match("done (%d+)")), N - #first, "the restart copied the rest only")
  end)
  local lines = kcat_read(output, "read_committed")
  local seen = {}
  for _, l in ipairs(lines) do
    assert_eq(seen[l], nil, l .. " twice")
    seen[l] = true
  end
  assert_eq(#lines, N)
end, { timeout_ms = 120000 })
