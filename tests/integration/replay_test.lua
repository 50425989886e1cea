-- klua.replay and `klua replay` against the real broker: exact ranges fixed at start, time windows,
-- filter/transform, exactly-once within a cluster, at-least-once with a checkpoint across
-- "clusters" (the same broker under two bootstrap names), resume, and the TTY progress line.
local kit = klua.testkit
local KLUA = os.getenv("KLUA_BIN") or "./build/klua"
local BROKERS = os.getenv("KLUA_BROKERS") or ""
local q = kit.quote

local function replay_cli(args)
  return kit.sh(q(KLUA) .. " replay " .. args .. " 2>&1")
end

local function committed_view(topic)
  return kit.read(topic, { isolation = "read_committed" })
end

test("copies the range fixed at start, exactly once, keeping key, value, headers and timestamps", function()
  local src = assert(kit.topic("rp-src", { partitions = 3 }))
  local dst = assert(kit.topic("rp-dst", { partitions = 3 }))
  local msgs = {}
  for i = 1, 200 do
    msgs[i] = { key = "user-" .. (i % 7), value = "\0bin\255" .. i, timestamp = 1700000000000 + i,
                headers = { { "x-n", tostring(i) }, { "x-n", "again" }, { "empty", nil } } }
  end
  assert(kit.produce(src, msgs))
  -- records produced while the replay runs are outside its range: the writer starts once the
  -- replay reads its first record (the range is fixed before that)
  local reading, stop_writer = false, false
  local writer = klua.spawn(function()
    while not reading do klua.sleep(1) end
    local n = 0
    while not stop_writer do
      n = n + 1
      assert(kit.produce(src, { { key = "late", value = "late-" .. n } }))
    end
    return n
  end)
  local r = assert(klua.replay{ source = src, target = dst, rate = 1000, batch = 50, quiet = true,
                                filter = function() reading = true; return true end })
  stop_writer = true
  assert_true(writer:join({ timeout_ms = 10000 }) > 0, "the writer produced during the replay")
  assert_eq(r.mode, "exactly_once")
  assert_eq({ r.read, r.copied }, { 200, 200 })
  local got = committed_view(dst)
  assert_eq(#got, 200)
  local by_value = {}
  for _, m in ipairs(got) do by_value[m.value] = m end
  for i = 1, 200 do
    local m = by_value["\0bin\255" .. i]
    assert_true(m, "record " .. i .. " copied")
    assert_eq({ m.key, m.timestamp, m.headers }, { "user-" .. (i % 7), 1700000000000 + i,
      { { "x-n", tostring(i) }, { "x-n", "again" }, { "empty", nil } } })
  end
  -- the source offsets were committed in the transactions
  local lag = assert(klua.lag(r.group, { src }))
  local committed = 0
  for _, p in ipairs(lag.partitions) do committed = committed + p.committed end
  assert_true(committed >= 200, "committed source offsets cover the range: " .. committed)
end)

test("a time window from the CLI (--from/--to epoch ms) copies exactly the records inside it", function()
  local src = assert(kit.topic("rp-tw", { partitions = 2 }))
  local dst = assert(kit.topic("rp-tw-dst", { partitions = 2 }))
  local t0 = klua.time() - 3600000
  local msgs = {}
  for i = 1, 20 do msgs[i] = { key = "k" .. i, value = tostring(i), timestamp = t0 + i * 1000 } end
  assert(kit.produce(src, msgs))
  local out, rc = replay_cli(string.format("%s %s --from %d --to %d --json", q(src), q(dst),
    t0 + 5000, t0 + 15000))
  assert_eq(rc, 0, out)
  local summary = assert(klua.json.decode((assert(out:match("\n?({[^\n]*})\n?$"), out))))
  assert_eq(summary.copied, 10, out)
  assert_eq(summary.mode, "exactly_once")
  local values = {}
  for _, m in ipairs(committed_view(dst)) do values[#values + 1] = tonumber(m.value) end
  table.sort(values)
  assert_eq(values, { 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 })
  -- --since 2h covers all of them; --since 10m none (timestamps are an hour old)
  local dst2 = assert(kit.topic("rp-since", { partitions = 1 }))
  out, rc = replay_cli(string.format("%s %s --since 2h --quiet", q(src), q(dst2)))
  assert_eq(rc, 0, out)
  assert_eq(#committed_view(dst2), 20)
  out, rc = replay_cli(string.format("%s %s --since 10m", q(src), q(dst2)))
  assert_eq(rc, 0, out)
  assert_match(out, "replayed 0 record%(s%)")
end)

test("filter, transform and one partition", function()
  local src = assert(kit.topic("rp-ft", { partitions = 2 }))
  local dst = assert(kit.topic("rp-ft-dst", { partitions = 1 }))
  local msgs = {}
  for i = 1, 40 do msgs[i] = { partition = i % 2, key = tostring(i), value = "v" .. i } end
  assert(kit.produce(src, msgs))
  local r = assert(klua.replay{ source = src, target = dst, partitions = { 1 }, quiet = true,
    filter = function(m) return tonumber(m.key) % 4 == 1 end,
    transform = function(m)
      if m.key == "5" then return nil end
      return { key = m.key, value = m.value:upper(), headers = { { "x-from", tostring(m.partition) } } }
    end })
  assert_eq({ r.read, r.copied, r.filtered }, { 20, 9, 11 })
  local got = committed_view(dst)
  local keys = {}
  for _, m in ipairs(got) do
    keys[#keys + 1] = tonumber(m.key)
    assert_eq({ m.value, m:header("x-from") }, { "V" .. m.key, "1" })
  end
  table.sort(keys)
  assert_eq(keys, { 1, 9, 13, 17, 21, 25, 29, 33, 37 })
end)

test("across clusters: at-least-once with a checkpoint, and a rerun with the group resumes", function()
  local host, port = BROKERS:match("^([^:,]+):(%d+)")
  assert_true(port, "KLUA_BROKERS is host:port")
  local other = "localhost:" .. port -- another bootstrap name: klua treats it as another cluster
  local src = assert(kit.topic("rp-x", { partitions = 2 }))
  local dst = assert(kit.topic("rp-x-dst", { partitions = 2 }))
  local msgs = {}
  for i = 1, 30 do msgs[i] = { partition = i % 2, key = tostring(i), value = tostring(i) } end
  assert(kit.produce(src, msgs))
  local group = kit.group("rp-ckpt")
  local out, rc = replay_cli(string.format("%s %s --source-brokers %s --target-brokers %s --group %s --to 5",
    q(src), q(dst), q(BROKERS), q(other), q(group)))
  assert_eq(rc, 0, out)
  assert_match(out, "replayed 10 record%(s%)")
  assert_match(out, "at%-least%-once: idempotent producer")
  assert_match(out, "checkpoint")
  -- the rest, resumed from the checkpoint
  out, rc = replay_cli(string.format("%s %s --source-brokers %s --target-brokers %s --group %s",
    q(src), q(dst), q(BROKERS), q(other), q(group)))
  assert_eq(rc, 0, out)
  assert_match(out, "replayed 20 record%(s%)")
  assert_match(out, "resumed at 5")
  local values = {}
  for _, m in ipairs(kit.read(dst)) do values[#values + 1] = tonumber(m.value) end
  table.sort(values)
  local want = {}
  for i = 1, 30 do want[i] = i end
  assert_eq(values, want)
  local lag = assert(klua.lag(group, { src }))
  assert_eq(lag.lag, 0)
  -- exactly-once across clusters is refused with the reason
  out, rc = replay_cli(string.format("%s %s --source-brokers %s --target-brokers %s --group %s",
    q(src), q(dst), q(BROKERS), q(other), q(group)) .. " --bogus")
  assert_eq(rc, 2, out)
  assert_raises(function()
    klua.replay{ source = src, target = dst, source_brokers = BROKERS, target_brokers = other, mode = "exactly_once" }
  end, "a transaction cannot cover offsets of another cluster")
end)

test("argument errors name the option; a missing source topic is a runtime error", function()
  assert_raises(function() klua.replay{ source = "a", target = "b", speed = 1 } end, "unknown option 'speed'")
  assert_raises(function() klua.replay{ source = "a", target = "b", from = "middle" } end, "from must be")
  assert_raises(function() klua.replay{ source = "a", target = "a" } end, "same topic")
  local r, err = klua.replay{ source = kit.fresh("rp-missing"), target = kit.fresh("rp-x"), quiet = true }
  assert_nil(r)
  assert_error(err, "UNKNOWN_TOPIC_OR_PART")
  local out, rc = replay_cli("a b --since yesterday")
  assert_eq(rc, 2, out)
  assert_match(out, "%-%-since yesterday: expected a duration")
  out, rc = replay_cli("onlyone")
  assert_eq(rc, 2, out)
end)

test("on a terminal the progress line shows records, rate and ETA", function()
  local src = assert(kit.topic("rp-tty", { partitions = 1 }))
  local dst = assert(kit.topic("rp-tty-dst", { partitions = 1 }))
  local msgs = {}
  for i = 1, 60 do msgs[i] = tostring(i) end
  assert(kit.produce(src, msgs))
  -- `script` runs the command on a pseudo-terminal; --rate makes it last more than one update
  local out, rc = kit.sh(string.format("script -qec %s /dev/null", q(q(KLUA) .. " replay " .. q(src) .. " " .. q(dst) .. " --rate 60")))
  assert_eq(rc, 0, out)
  assert_match(out, "\r" .. src:gsub("%-", "%%-") .. " %-> " .. dst:gsub("%-", "%%-") .. ": %d+/60 records %(%d+%%%), %d+ rec/s, ETA ")
  assert_match(out, "60/60 records %(100%%%)")
  assert_match(out, "replayed 60 record%(s%)")
end)

test("a transactional source: aborted records skipped, markers do not hold the end, one partition cut short", function()
  local src = assert(kit.topic("rp-txn", { partitions = 2 }))
  local dst = assert(kit.topic("rp-txn-dst", { partitions = 2 }))
  local p = klua.producer{ ["transactional.id"] = kit.fresh("rp-txn") }
  assert(p:transaction(function()
    for i = 1, 2 do assert(p:send{ topic = src, partition = 0, value = "p0-" .. i }) end
    for i = 1, 10 do assert(p:send{ topic = src, partition = 1, value = "p1-" .. i }) end
    return true
  end))
  assert(p:begin())
  for i = 1, 2 do assert(p:send{ topic = src, partition = 0, value = "aborted-" .. i }) end
  assert(p:flush())
  assert(p:abort())
  p:close()
  -- partition 0: p0-1 p0-2, commit marker (2), aborted-1 aborted-2, abort marker (5)
  -- partition 1: p1-1 .. p1-10 (0-9), commit marker (10)
  -- [0, 5): partition 1 ends at a record with more behind it; partition 0 only by its position
  -- passing the aborted records and markers
  local r = assert(klua.replay{ source = src, target = dst, to = 5, quiet = true })
  assert_eq(r.copied, 7)
  local values = {}
  for _, m in ipairs(committed_view(dst)) do values[#values + 1] = m.value end
  table.sort(values)
  assert_eq(values, { "p0-1", "p0-2", "p1-1", "p1-2", "p1-3", "p1-4", "p1-5" })
end, { timeout_ms = 60000 })
