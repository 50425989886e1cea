-- `klua replay` under SIGKILL on the real broker (KLUA_BROKERS): exactly-once within a cluster
-- must hold when a run is killed at any moment and run again with the same --group.
--
-- - A rerun after a run killed with its transaction open (its offsets pending in the group)
--   fences that run, resumes at the group's committed offsets and copies nothing twice. Before
--   the fix the rerun read the offsets before init_transactions: the lookup failed for 30 s and
--   the replay started again at offset 0 (duplicates).
-- - A lookup that fails ends the run with exit 3, naming the group and the cause; nothing copied.
-- - TRIALS (10; KLUA_REPLAY_TRIALS=50 tools/replay-trials for the long run) replays SIGKILLed at
--   random moments and run again to completion; then kcat with isolation.level=read_committed (a
--   reader that is not klua) must see every source record exactly once and nothing else.
local proc = dofile("tests/integration/helpers/proc.lua")
local kit = klua.testkit
local q, fresh = kit.quote, kit.fresh
local BROKERS = assert(os.getenv("KLUA_BROKERS"), "KLUA_BROKERS must name the broker")
local TRIALS = tonumber(os.getenv("KLUA_REPLAY_TRIALS")) or 10
local PARTS = 3

-- The source: n records, record i (1-based) in partition (i-1) % PARTS at offset (i-1) // PARTS,
-- key "k<i>", value "v<i>".
local function line(i) return string.format("k%d\tv%06d", i, i) end

local function make_source(prefix, n)
  local topic = assert(kit.topic(prefix, { partitions = PARTS }))
  local p = klua.producer{ ["linger.ms"] = 5 }
  for i = 1, n do
    assert(p:send{ topic = topic, partition = (i - 1) % PARTS, key = "k" .. i, value = string.format("v%06d", i) })
  end
  assert(p:flush())
  p:close()
  return topic
end

-- Every record of topic as "key\tvalue" lines, read by kcat to the end.
local function kcat_read(topic, isolation)
  local out, rc = kit.sh(string.format(
    "timeout 60 kcat -C -b %s -t %s -X isolation.level=%s -o beginning -e -q -f '%%k\\t%%s\\n'",
    q(BROKERS), q(topic), isolation or "read_committed"))
  assert(rc == 0, "kcat failed: " .. out)
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  return lines
end

-- Compares the target, as read_committed kcat sees it, with records first..n of the source.
local function compare(topic, n, first)
  local lines = kcat_read(topic)
  local count = {}
  for _, l in ipairs(lines) do count[l] = (count[l] or 0) + 1 end
  local r = { missing = 0, duplicates = 0, unexpected = 0, total = #lines }
  for i = first or 1, n do
    local c = count[line(i)] or 0
    if c == 0 then r.missing = r.missing + 1 elseif c > 1 then r.duplicates = r.duplicates + c - 1 end
    count[line(i)] = nil
  end
  for _, c in pairs(count) do r.unexpected = r.unexpected + c end
  return r
end

local function exact(n) return { missing = 0, duplicates = 0, unexpected = 0, total = n } end

-- `klua replay ARGS` to its end: output (stdout and stderr), exit status, elapsed ms.
local function replay(args)
  local t0 = klua.now()
  local out, rc = kit.sh("timeout 120 " .. q(proc.bin) .. " replay " .. args .. " 2>&1")
  return out, rc, klua.now() - t0
end

local function summary(out)
  local json = out:match('({"copied"[^\n]*})')
  assert_true(json, "a --json summary in: " .. out)
  return assert(klua.json.decode(json))
end

local function with_dir(prefix, fn)
  local dir = proc.tmpdir(prefix)
  local ok, err = pcall(fn, dir)
  proc.remove_dir(dir)
  if not ok then error(err, 0) end
end

-- Starts `dead_txn.lua` (an open transaction holding `offset` for group) and SIGKILLs it.
local function kill_in_transaction(dir, src, dst, group, txid, offset)
  local h = proc.spawn(dir, "dead-" .. txid, "tests/integration/helpers/dead_txn.lua",
                       { src, dst, group, txid, offset, PARTS })
  local deadline = klua.now() + 30000
  while not h:read():find("pending") do
    if h:status() ~= nil or klua.now() > deadline then h:ensure_dead(); error("dead_txn: " .. h:describe(), 0) end
    klua.sleep(20)
  end
  h:kill(9)
  assert_eq(h:wait(10000), 137, "killed with its transaction open: " .. h:describe())
end

test("a rerun after a replay killed with its transaction open resumes at the committed offsets: no duplicates", function()
  local N = 3000
  local src = make_source("rk-src", N)
  local dst = assert(kit.topic("rk-dst", { partitions = PARTS }))
  local group = fresh("rk-g")
  -- a first run commits offset 500 of each partition (records 1..1500)
  local out, rc = replay(string.format("%s %s --group %s --to 500 --quiet", q(src), q(dst), q(group)))
  assert_eq(rc, 0, out)
  with_dir("klua-rk", function(dir)
    -- the next run of this group (transactional.id = the group) died after sending offset 800
    kill_in_transaction(dir, src, dst, group, group, 800)
  end)
  local elapsed
  out, rc, elapsed = replay(string.format("%s %s --group %s --json", q(src), q(dst), q(group)))
  assert_eq(rc, 0, out)
  local s = summary(out)
  assert_eq(s.copied, N - 1500, out)
  for _, p in ipairs(s.partitions) do assert_eq(p.resumed_at, 500, out) end
  -- the committed-offset lookup did not wait for the dead transaction to time out (30 s before)
  assert_true(elapsed < 25000, string.format("the rerun took %.0f ms: %s", elapsed, out))
  assert_eq(compare(dst, N), exact(N))
end, { timeout_ms = 180000 })

test("a committed-offset lookup that fails ends the replay: exit 3 naming the group and the cause, nothing copied", function()
  local N = 600
  local src = make_source("rk-fail-src", N)
  local dst = assert(kit.topic("rk-fail-dst", { partitions = PARTS }))
  local group = fresh("rk-fail-g")
  local out, rc = replay(string.format("%s %s --group %s --to 100 --quiet", q(src), q(dst), q(group)))
  assert_eq(rc, 0, out)
  with_dir("klua-rkf", function(dir)
    -- another transactional.id holds offsets of the group: this replay cannot fence it, so its
    -- lookup keeps failing until that transaction times out
    kill_in_transaction(dir, src, dst, group, fresh("rk-other-txid"), 150)
  end)
  out, rc = replay(string.format("%s %s --group %s --timeout 2000", q(src), q(dst), q(group)))
  assert_eq(rc, 3, out)
  assert_match(out, "klua: _TIMED_OUT: could not read the group's committed offsets")
  assert_match(out, "stopped without copying")
  assert_match(out, "group " .. group:gsub("%p", "%%%0"))
  assert_false(out:find("replayed"), out)
  -- the library call says the same with nil, err
  local r, err = klua.replay{ source = src, target = dst, group = group, timeout_ms = 1500, quiet = true }
  assert_nil(r)
  assert_error(err, "_TIMED_OUT")
  assert_eq({ err.group, err.kafka, err.op }, { group, true, "klua.replay" })
  assert_raises(function() klua.replay{ source = src, target = dst, timeout_ms = 0 } end, "'timeout_ms' must be a positive")
  out, rc = replay(string.format("%s %s --group %s --timeout -1", q(src), q(dst), q(group)))
  assert_eq(rc, 2, out)
  -- only the first run's records (1..300) reached the target
  assert_eq(compare(dst, 300), exact(300))
end, { timeout_ms = 180000 })

test(string.format("replay SIGKILLed at random moments and run again (%d trials): read_committed sees every record once", TRIALS), function()
  local N, BATCH = 20000, 1000
  local src = make_source("rk-trials", N)
  local function run_args(dst, group, extra)
    return string.format("%s %s --group %s --batch %d %s", q(src), q(dst), q(group), BATCH, extra)
  end
  -- two whole runs measure how long one takes here (the shorter: the first after a broker's start
  -- is slow); a run that ends before its kill shortens the estimate further
  local whole = math.huge
  for i = 1, 2 do
    local dst0 = assert(kit.topic("rk-t0", { partitions = PARTS }))
    local out, rc, ms = replay(run_args(dst0, fresh("rk-t0"), "--quiet"))
    assert_eq(rc, 0, out)
    assert_eq(compare(dst0, N), exact(N), "whole run " .. i)
    whole = math.min(whole, ms)
  end
  local first_whole = whole
  local out, rc
  local st = { killed = 0, resumed = 0, finished = 0, max_rerun = 0, in_txn = 0 }
  with_dir("klua-rkt", function(dir)
    for trial = 1, TRIALS do
      local dst, group = assert(kit.topic("rk-t" .. trial, { partitions = PARTS })), fresh("rk-t" .. trial)
      -- a random moment, mostly of the copy (the first ~40 % of a run is the start: init, lookups, assign)
      local at = math.random(math.floor(whole * 0.3), math.max(1, math.floor(whole * 0.9)))
      local h = proc.spawn_klua(dir, "t" .. trial, { "replay", src, dst, "--group", group, "--batch", tostring(BATCH), "--quiet" })
      local ok, err = pcall(function()
        h:pid()
        klua.sleep(at)
        if h:status() == nil then h:kill(9) end
        -- 137: killed; 0: it finished first (also just between the status check and the kill)
        local rc = h:wait(10000)
        assert_true(rc == 137 or rc == 0, "killed or finished: " .. h:describe())
        if rc == 137 then st.killed = st.killed + 1 else st.finished = st.finished + 1; whole = math.min(whole, at) end
      end)
      if not ok then h:ensure_dead(); error(err, 0) end
      local rerun_ms
      out, rc, rerun_ms = replay(run_args(dst, group, "--json"))
      assert_eq(rc, 0, "trial " .. trial .. " (killed at " .. at .. " ms): " .. out)
      local s = summary(out)
      -- resumed mid-range: the killed run had committed some batches, not all
      local resumed = false
      for _, p in ipairs(s.partitions) do resumed = resumed or p.resumed_at ~= nil end
      resumed = resumed and s.copied > 0 and s.copied < N
      if resumed then st.resumed = st.resumed + 1 end
      if rerun_ms > st.max_rerun then st.max_rerun = rerun_ms end
      -- records of a killed run's open transaction, aborted by the rerun's fencing (informational)
      if #kcat_read(dst, "read_uncommitted") > N then st.in_txn = st.in_txn + 1 end
      assert_eq(compare(dst, N), exact(N), string.format("trial %d, killed at %d ms (rerun copied %d, resumed: %s)",
        trial, at, s.copied, tostring(resumed)))
    end
  end)
  print(string.format("%d trials of %d records (a whole run %.0f ms): %d killed, %d finished before the kill, " ..
    "%d killed inside a transaction (aborted records), %d reruns resumed mid-range, longest rerun %.0f ms; " ..
    "every target exact under read_committed", TRIALS, N, first_whole, st.killed, st.finished, st.in_txn, st.resumed, st.max_rerun))
  -- the kills have to land in the copy for the trials to mean something
  assert_true(st.resumed >= math.max(1, math.floor(TRIALS / 5)),
    string.format("only %d of %d reruns resumed mid-range", st.resumed, TRIALS))
  assert_true(st.max_rerun < 25000, string.format("a rerun took %.0f ms (a committed-offset lookup waited)", st.max_rerun))
end, { timeout_ms = 1800000 })
