-- Exactly-once consume-transform-produce against a real broker (KLUA_BROKERS), with a worker
-- process (helpers/eos_worker.lua, started as `$KLUA_BIN run ...`) SIGKILLed inside an open
-- transaction and restarted with the same transactional.id: read_committed readers of the
-- output see every input exactly once; read_uncommitted readers also see the aborted records.
local proc = dofile("tests/integration/helpers/proc.lua")
local fresh = klua.testkit.fresh

local function read_all(topic, isolation, want, quiet_ms)
  local c = klua.consumer{ group = fresh("reader"), topics = { topic }, ["isolation.level"] = isolation,
                           ["auto.offset.reset"] = "earliest", ["enable.auto.commit"] = false,
                           ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 1000 }
  local got = {}
  local deadline = klua.now() + 30000
  while #got < want and klua.now() < deadline do
    local m, err = c:poll(500)
    assert(not err, tostring(err))
    if m then got[#got + 1] = m.value end
  end
  -- then nothing more (duplicates would show up here)
  local quiet_until = klua.now() + (quiet_ms or 2000)
  while klua.now() < quiet_until do
    local m, err = c:poll(200)
    assert(not err, tostring(err))
    if m then got[#got + 1] = m.value end
  end
  c:close()
  return got
end

local function count(values)
  local n, distinct = {}, 0
  for _, v in ipairs(values) do
    if not n[v] then distinct = distinct + 1 end
    n[v] = (n[v] or 0) + 1
  end
  return n, distinct
end

test("SIGKILL inside a transaction, restart with the same transactional.id: every input exactly once", function()
  local N, CRASH_AFTER = 100, 25
  local input, output, group, txid = fresh("in"), fresh("out"), fresh("g"), fresh("txid")
  local admin = klua.admin()
  local res = assert(admin:create_topics{ { name = input, partitions = 3 }, { name = output, partitions = 3 } })
  assert_eq(res[1].error, nil)
  assert_eq(res[2].error, nil)
  local p = klua.producer()
  for i = 1, N do p:send{ topic = input, key = "k" .. i, value = string.format("v%03d", i) } end
  assert(p:flush())
  p:close()

  local dir = proc.tmpdir("klua-eos")
  local w1 = proc.spawn(dir, "run1", "tests/integration/helpers/eos_worker.lua",
                        { input, output, group, txid, CRASH_AFTER })
  local rc1 = w1:wait(60000)
  if rc1 == nil then w1:ensure_dead() end
  assert_eq(rc1, 137, "the first run dies of SIGKILL: " .. w1:describe())
  local out1 = w1:read()
  local committed1 = 0
  for n in out1:gmatch("committed (%d+)") do committed1 = tonumber(n) end
  local open = tonumber(out1:match("crash (%d+)"))
  assert_true(open and open > 0, "the kill came inside an open transaction: " .. out1)
  assert_true(committed1 > 0, "some transactions committed before the kill: " .. out1)
  assert_eq(committed1 + open, CRASH_AFTER)
  assert_eq(out1:match("committed %d+%s*$"), nil, "nothing committed after the crash line")

  local w2 = proc.spawn(dir, "run2", "tests/integration/helpers/eos_worker.lua", { input, output, group, txid, 0 })
  local rc2 = w2:wait(60000)
  if rc2 == nil then w2:ensure_dead() end
  assert_eq(rc2, 0, "the second run ends normally: " .. w2:describe())
  local committed2 = 0
  for n in w2:read():gmatch("committed (%d+)") do committed2 = tonumber(n) end
  -- the restart resumed after the last committed transaction's input offsets, not from the start
  assert_eq(committed2, N - committed1, "records processed by the restarted worker")

  local rc = read_all(output, "read_committed", N)
  local n, distinct = count(rc)
  assert_eq(#rc, N, "read_committed record count")
  assert_eq(distinct, N)
  for i = 1, N do
    local v = string.format("out:v%03d", i)
    assert_eq(n[v], 1, v .. " seen by read_committed")
  end

  local ru = read_all(output, "read_uncommitted", N + open)
  local un, udistinct = count(ru)
  assert_eq(#ru, N + open, "read_uncommitted sees the " .. open .. " aborted records too")
  assert_eq(udistinct, N)
  local twice = 0
  for _, c in pairs(un) do if c == 2 then twice = twice + 1 end end
  assert_eq(twice, open, "values written twice (once aborted, once committed)")
  proc.remove_dir(dir)
end, { timeout_ms = 150000 })
