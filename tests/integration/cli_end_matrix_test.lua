-- `klua consume TOPIC -e` ends, with exactly kcat's messages, for every start position x topic
-- shape x with and without a group (issue 15, "Exit at end must never hang").
--
-- Fixtures are made once: an empty topic, a small one with known timestamps, one partition of
-- 210,000 messages and three partitions of 90,000 / 60,000 / 0 (both written by kcat -P), and a
-- transactional one (klua's transactional producer: committed and aborted transactions, the last
-- one aborted, so every partition ends on control records). Groups run under both protocols
-- (classic, and KIP-848's group.protocol=consumer). For each start, kcat 1.7.1
-- (`kcat -C -o ... -e`, librdkafka's default read_committed like klua's) gives the reference: the
-- count and a checksum of the sorted values (all values are distinct). klua without a group
-- reads the same partitions from the same start; with a fresh group (-g), --from beginning/end
-- apply through auto.offset.reset and an OFFSET or TIME starts every assigned partition there
-- (kcat -G -o does the same), so kcat's answer without a group is the reference for both. Each
-- klua run must exit 0 and take at most kcat's time + 5 s (both are printed). Every command runs
-- under `timeout 60`: a hang fails (exit 124) instead of stopping the suite.
local KLUA = os.getenv("KLUA_BIN") or "./build/klua"
local BROKERS = assert(os.getenv("KLUA_BROKERS"), "KLUA_BROKERS must name the test broker")
local kit = klua.testkit
local q, sh = kit.quote, kit.sh

-- Scratch files beside the binary (never /tmp); removed at the end.
local SCRATCH = (KLUA:match("^(.*)/[^/]*$") or ".") .. "/cli_end_matrix." .. kit.fresh("run")

-- Runs `cmd > scratch` under a 60 s timeout; returns exit status, milliseconds, line count and a
-- checksum of the sorted lines.
local function measure(cmd)
  local out = sh(string.format(
    "t0=$(date +%%s%%N); timeout 60 %s > %s; rc=$?; t1=$(date +%%s%%N); " ..
    "echo \"$rc $(( (t1 - t0) / 1000000 )) $(wc -l < %s) $(LC_ALL=C sort %s | cksum | cut -d' ' -f1)\"",
    cmd, q(SCRATCH), q(SCRATCH), q(SCRATCH)))
  local rc, ms, n, sum = out:match("^(%d+) (%d+) (%d+) (%d+)")
  assert(rc, "cannot measure: " .. out)
  return tonumber(rc), tonumber(ms), tonumber(n), sum
end

local function kcat_produce(topic, partition, lines)
  local _, rc = sh(string.format("kcat -P -b %s -t %s -p %d -X linger.ms=20 -X batch.num.messages=10000",
                                 q(BROKERS), q(topic), partition), lines)
  assert_eq(rc, 0, "kcat -P into " .. topic)
end

local function numbered(prefix, n)
  local t = {}
  for i = 1, n do t[i] = prefix .. i end
  return table.concat(t, "\n") .. "\n"
end

local now = klua.time()
local base = now - 60000  -- the small topic's first timestamp
local F = {}              -- fixtures: name -> { topic =, ends = {partition -> end} }

test("fixtures: empty, small, 210k, three partitions (150k), transactional", function()
  local admin = klua.admin()
  F.empty = { topic = kit.fresh("end-empty"), partitions = 2 }
  F.small = { topic = kit.fresh("end-small"), partitions = 1 }
  F.big = { topic = kit.fresh("end-big"), partitions = 1 }
  F.multi = { topic = kit.fresh("end-multi"), partitions = 3 }
  F.txn = { topic = kit.fresh("end-txn"), partitions = 3 }
  local specs = {}
  for _, f in pairs(F) do specs[#specs + 1] = { name = f.topic, partitions = f.partitions } end
  local res = assert(admin:create_topics(specs))
  for _, r in ipairs(res) do assert_nil(r.error, r.name) end

  local p = klua.producer()
  for i = 0, 9 do
    assert(p:produce{ topic = F.small.topic, partition = 0, value = "s" .. i, timestamp = base + i * 1000 })
  end
  kcat_produce(F.big.topic, 0, numbered("b", 210000))
  kcat_produce(F.multi.topic, 0, numbered("m0-", 90000))
  kcat_produce(F.multi.topic, 1, numbered("m1-", 60000))

  local tp = klua.producer{ ["transactional.id"] = kit.fresh("end-txn") }
  local function txn(tag, n, commit)
    assert(tp:begin())
    for i = 1, n do tp:send{ topic = F.txn.topic, partition = i % 3, value = tag .. i } end
    assert(tp:flush())
    if commit then assert(tp:commit()) else assert(tp:abort()) end
  end
  txn("c1-", 100, true)
  txn("a1-", 40, false)
  txn("c2-", 30, true)
  txn("a2-", 21, false)  -- the last records of every partition are aborted, then a marker
  tp:close()

  local c = klua.consumer{ group = kit.fresh("end-ends") }
  for _, f in pairs(F) do
    f.ends = {}
    for part = 0, f.partitions - 1 do
      local _, high = assert(c:watermarks(f.topic, part))
      f.ends[part] = high
    end
  end
  c:close()
  assert_eq(F.big.ends[0], 210000)
  assert_eq({ F.multi.ends[0], F.multi.ends[1], F.multi.ends[2] }, { 90000, 60000, 0 })
end)

-- The start positions: klua's --from and kcat's -o for the same start.
local function starts(f)
  local at_end = f.ends[0]
  return {
    { "beginning", "beginning", "beginning" },
    { "end", "end", "end" },
    { "offset inside", "5", "5" },
    { "offset at end", tostring(at_end), tostring(at_end) },
    { "offset past end", tostring(at_end + 1000), tostring(at_end + 1000) },
    { "time in the past", string.format("%d", base + 4500), string.format("s@%d", base + 4500) },
    { "time in the future", string.format("%d", now + 3600000), string.format("s@%d", now + 3600000) },
    -- klua computes -1h when it starts, a moment after kcat: every fixture is minutes old
    { "relative -1h", "-1h", string.format("s@%d", klua.time() - 3600000) },
  }
end

local rows = {}
for _, name in ipairs({ "empty", "small", "big", "multi", "txn" }) do
  test("consume -e on the " .. name .. " topic from every start, without and with -g (both protocols), matches kcat", function()
    local f = assert(F[name], "fixtures missing")
    for _, s in ipairs(starts(f)) do
      local label, from, o = s[1], s[2], s[3]
      local krc, kms, kn, ksum = measure(string.format("kcat -C -b %s -t %s -o %s -e -q", q(BROKERS), q(f.topic), q(o)))
      assert_eq(krc, 0, "kcat " .. label)
      for _, group in ipairs({ false, "classic", "consumer" }) do
        local cmd = string.format("%s -b %s%s consume %s --from %s -e%s", KLUA, q(BROKERS),
                                  group == "consumer" and " -X group.protocol=consumer" or "", q(f.topic), q(from),
                                  group and (" -g " .. q(kit.fresh("end-g"))) or "")
        local rc, ms, n, sum = measure(cmd)
        local what = string.format("%s, %s%s", name, label, group and (", -g " .. group) or "")
        rows[#rows + 1] = string.format("%-44s kcat %7d msgs %6d ms   klua %7d msgs %6d ms", what, kn, kms, n, ms)
        assert_eq(rc, 0, what .. ": klua's exit status (124: it did not end within 60 s)")
        assert_eq(n, kn, what .. ": message count against kcat's")
        assert_eq(sum, ksum, what .. ": the messages differ from kcat's")
        assert_true(ms <= kms + 5000, string.format("%s: klua took %d ms, kcat %d ms", what, ms, kms))
      end
    end
  end)
end

test("a topic that does not exist: exit 3 naming it within a few seconds, with and without -g", function()
  local missing = kit.fresh("ordrs")
  for _, case in ipairs({ { "", "" }, { "", " -g " .. q(kit.fresh("end-typo")) },
                          { " -X group.protocol=consumer", " -g " .. q(kit.fresh("end-typo")) } }) do
    local global, extra = case[1], case[2]
    local t0 = klua.now()
    local out, rc = sh(string.format("timeout 60 %s -b %s%s consume %s -e%s 2>&1", KLUA, q(BROKERS), global,
                                     q(missing), extra))
    local ms = klua.now() - t0
    rows[#rows + 1] = string.format("%-38s klua exit %d in %d ms", "missing topic" .. (global .. extra):gsub("'", ""),
                                    rc, ms)
    assert_eq(rc, 3, "exit status with" .. extra .. ": " .. out)
    assert_match(out, missing:gsub("%-", "%%-"))
    assert_true(ms < 5000, "took " .. ms .. " ms")
  end
end)

test("-p with -g is a usage error (exit 2): the group assigns the partitions", function()
  local out, rc = sh(string.format("timeout 60 %s -b %s consume %s -p 0 -g %s -e 2>&1", KLUA, q(BROKERS),
                                   q(F.small.topic), q(kit.fresh("end-pg"))))
  assert_eq(rc, 2, out)
  assert_match(out, "^klua: %-p and %-g")
end)

test("messages{until_end=true} on a subscription to a missing topic raises UNKNOWN_TOPIC_OR_PART (both protocols)", function()
  for _, protocol in ipairs({ "classic", "consumer" }) do
    local c = klua.consumer{ group = kit.fresh("end-missing"), topics = { kit.fresh("ordrs") },
                             ["group.protocol"] = protocol, on_error = function() end }
    local t0 = klua.now()
    local ok, err = pcall(function()
      for _ in c:messages{ until_end = true, timeout_ms = 20000 } do end
    end)
    local ms = klua.now() - t0
    c:close()
    rows[#rows + 1] = string.format("%-44s raised %s in %d ms", "messages{until_end} missing topic, " .. protocol,
                                    tostring(err and err.name), ms)
    assert_false(ok, protocol .. ": the iterator ended without an error")
    assert_eq(err.name, "UNKNOWN_TOPIC_OR_PART", protocol)
    assert_true(ms < 10000, protocol .. ": took " .. ms .. " ms")
  end
end)

test("report", function()
  os.remove(SCRATCH)
  io.stderr:write("\n" .. table.concat(rows, "\n") .. "\n")
end)
