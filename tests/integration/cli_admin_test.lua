-- The admin one-liners (klua topic, group, offsets, metadata; lag's missing group) against the real
-- broker. Each answer is compared with an independent one: kcat -L -J and -Q, Python confluent-kafka's
-- AdminClient (pyadmin.py), admin calls the command under test does not make, or arithmetic on what the
-- test produced.
local KLUA = os.getenv("KLUA_BIN") or "./build/klua"
local BROKERS = os.getenv("KLUA_BROKERS") or ""
local HERE = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
local PYTHON = dofile("tests/integration/helpers/python.lua")
local fresh, q = klua.testkit.fresh, klua.testkit.quote
local admin = klua.admin()

-- Runs klua with args (a string); returns stdout, exit status, stderr.
local function klua_run(args, stdin)
  local errf = os.tmpname()
  local out, rc = klua.testkit.sh("timeout 120 " .. KLUA .. " " .. args .. " 2>" .. q(errf), stdin)
  local f = io.open(errf, "rb")
  local err = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(errf)
  return out, rc, err
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function json_lines(s)
  local t = {}
  for i, l in ipairs(lines(s)) do t[i] = assert(klua.json.decode(l)) end
  return t
end

local function kcat(args)
  local out, rc = klua.testkit.sh("timeout 60 kcat -b " .. q(BROKERS) .. " " .. args)
  assert(rc == 0, "kcat " .. args .. " failed: " .. out)
  return out
end

local function py(...)
  local args = { q(PYTHON), q(HERE .. "/pyadmin.py"), q(BROKERS) }
  for _, a in ipairs { ... } do args[#args + 1] = q(a) end
  local out, rc = klua.testkit.sh("timeout 60 " .. table.concat(args, " ") .. " 2>/dev/null")
  assert(rc == 0, "pyadmin.py failed: " .. out)
  return assert(klua.json.decode(out))
end

local function pat(s) return (s:gsub("%p", "%%%0")) end

-- kcat -L -J's view of a topic: {partition -> {leader, replicas, isr}}.
local function kcat_topic(t)
  local md = assert(klua.json.decode(kcat("-L -J -t " .. q(t))))
  local parts = {}
  for _, p in ipairs(md.topics[1].partitions or {}) do
    local r, i = {}, {}
    for k, x in ipairs(p.replicas) do r[k] = x.id end
    for k, x in ipairs(p.isrs) do i[k] = x.id end
    parts[p.partition] = { leader = p.leader, replicas = r, isr = i }
  end
  return parts, md
end

test("topic create, describe, alter, delete: partitions from kcat -L, configs from confluent-kafka", function()
  local t = fresh("cli-topic")
  local out, rc, err = klua_run("topic create " .. t .. " --partitions 3 --config retention.ms=3600000 --config cleanup.policy=compact")
  assert_eq(rc, 0, err)
  assert_eq(out, "created topic " .. t .. "\n")
  local parts = kcat_topic(t)
  assert_eq(#parts + 1, 3)
  local cfg = py("configs", "topic", t)
  assert_eq({ cfg["retention.ms"], cfg["cleanup.policy"] }, { "3600000", "compact" })

  -- describe: the partitions as kcat sees them; the two overrides by default, every config with --all
  local d = json_lines((klua_run("topic describe " .. t .. " --json")))
  assert_eq(#d, 1)
  assert_eq(d[1].name, t)
  for _, p in ipairs(d[1].partitions) do
    assert_eq({ leader = p.leader, replicas = p.replicas, isr = p.isr }, parts[p.partition])
  end
  local names = {}
  for _, c in ipairs(d[1].configs) do
    names[#names + 1] = c.name
    assert_true(c.override and c.source == "dynamic_topic", c.name)
    assert_eq(c.value, cfg[c.name])
  end
  assert_eq(names, { "cleanup.policy", "retention.ms" })
  local text = klua_run("topic describe " .. t)
  assert_match(text, "configs %(2 overrides; %-%-all shows every config%):\n  cleanup%.policy=compact\n  retention%.ms=3600000\n$")
  local all = json_lines((klua_run("topic describe " .. t .. " --all --json")))[1].configs
  local n_py = 0
  for _ in pairs(cfg) do n_py = n_py + 1 end
  assert_eq(#all, n_py, "--all lists every config confluent-kafka sees")
  for _, c in ipairs(all) do
    assert_eq(c.value == klua.json.null and nil or c.value, cfg[c.name], c.name)
    assert_eq(c.override, c.name == "cleanup.policy" or c.name == "retention.ms", c.name)
  end

  -- alter: more partitions, one config set, one removed
  local _, rc2, err2 = klua_run("topic alter " .. t .. " --partitions 5 --config retention.ms=7200000 --delete-config cleanup.policy")
  assert_eq(rc2, 0, err2)
  local after = kcat_topic(t)
  assert_eq(#after + 1, 5)
  local cfg2 = py("configs", "topic", t)
  assert_eq({ cfg2["retention.ms"], cfg2["cleanup.policy"] }, { "7200000", "delete" })
  -- fewer partitions than today: a Kafka error naming the topic; the count is unchanged
  local _, rc3, err3 = klua_run("topic alter " .. t .. " --partitions 2")
  assert_eq(rc3, 3)
  assert_match(err3, "klua: topic \"" .. pat(t) .. "\": INVALID_PARTITIONS")
  -- create again: an error unless --if-not-exists
  local _, rc4, err4 = klua_run("topic create " .. t)
  assert_eq(rc4, 3)
  assert_match(err4, "TOPIC_ALREADY_EXISTS")
  local j = json_lines((klua_run("topic create " .. t .. " --if-not-exists --json")))
  assert_eq(j, { { name = t, existed = true } })

  -- delete: kcat no longer finds it (deletion completes asynchronously on the broker)
  local out5, rc5 = klua_run("topic delete " .. t)
  assert_eq({ out5, rc5 }, { "deleted topic " .. t .. "\n", 0 })
  local gone = false
  for _ = 1, 50 do
    local md = assert(klua.json.decode(kcat("-L -J")))
    gone = true
    for _, tm in ipairs(md.topics) do if tm.topic == t then gone = false end end
    if gone then break end
    klua.sleep(200)  -- polling the broker's metadata: no event announces a deletion
  end
  assert_true(gone, "kcat still lists the deleted topic")
  local _, rc6, err6 = klua_run("topic describe " .. t .. " " .. t .. "-nope")
  assert_eq(rc6, 3)
  assert_match(err6, "UNKNOWN_TOPIC_OR_PART")
end)

test("metadata matches kcat -L -J: brokers, controller, topics with leaders, replicas, ISR", function()
  local t = fresh("cli-md")
  assert(admin:create_topics({ { name = t, partitions = 2 } }))
  -- A committed offset makes the broker create __consumer_offsets, the internal topic checked below,
  -- whatever ran before this test.
  assert(admin:alter_group_offsets(fresh("cli-md-g"), { { topic = t, partition = 0, offset = 0 } }))
  local mine = assert(klua.json.decode((klua_run("metadata --json"))))
  local md = assert(klua.json.decode(kcat("-L -J")))
  assert_eq(mine.controller_id, md.controllerid)
  local brokers = {}
  for i, b in ipairs(mine.brokers) do brokers[i] = { id = b.id, name = b.host .. ":" .. b.port } end
  assert_eq(brokers, md.brokers)
  local by = {}
  for _, tm in ipairs(mine.topics) do by[tm.name] = tm end
  local seen = 0
  for _, tm in ipairs(md.topics) do
    local m = by[tm.topic]
    if m then  -- topics made by concurrent tests between the two calls may be missing from one
      seen = seen + 1
      assert_eq(#m.partitions, #tm.partitions, tm.topic)
      for _, p in ipairs(tm.partitions) do
        local r, i = {}, {}
        for k, x in ipairs(p.replicas) do r[k] = x.id end
        for k, x in ipairs(p.isrs) do i[k] = x.id end
        local mp = m.partitions[p.partition + 1]
        assert_eq({ mp.partition, mp.leader, mp.replicas, mp.isr }, { p.partition, p.leader, r, i })
      end
    end
  end
  assert_true(by[t] and by["__consumer_offsets"] and by["__consumer_offsets"].internal, "all topics, internal ones too")
  assert_true(seen >= 2)
  local text = klua_run("metadata " .. t)
  assert_match(text, "broker " .. md.brokers[1].id .. " at " .. pat(md.brokers[1].name) .. ".* %(controller%)")
  assert_match(text, "topic \"" .. pat(t) .. "\" with 2 partitions:\n    partition 0, leader %d+, replicas: %d+, isrs: %d+\n")
  local _, rc, err = klua_run("metadata " .. t .. " " .. t .. "-nope")
  assert_eq(rc, 3)
  assert_match(err, "topic \"" .. pat(t) .. "%-nope\"")
end)

test("offsets: watermarks and offsets for a time agree with kcat -Q", function()
  local t = fresh("cli-offsets")
  assert(admin:create_topics({ { name = t, partitions = 3 } }))
  local p = klua.producer()
  local base = klua.time() - 60000
  for i = 0, 9 do assert(p:produce{ topic = t, partition = 0, value = "a" .. i, timestamp = base + i * 1000 }) end
  for i = 0, 3 do assert(p:produce{ topic = t, partition = 1, value = "b" .. i, timestamp = base + i * 1000 }) end
  assert(admin:delete_records({ { topic = t, partition = 0, before = 2 } }))
  local rows = json_lines((klua_run("offsets " .. t .. " --json")))
  assert_eq(#rows, 3)
  for _, r in ipairs(rows) do
    local low = tonumber(kcat("-Q -t " .. q(t .. ":" .. r.partition .. ":-2")):match("offset (%-?%d+)"))
    local high = tonumber(kcat("-Q -t " .. q(t .. ":" .. r.partition .. ":-1")):match("offset (%-?%d+)"))
    assert_eq({ r.low, r.high }, { low, high }, "partition " .. r.partition)
  end
  assert_eq({ rows[1].low, rows[1].high, rows[2].high, rows[3].high }, { 2, 10, 4, 0 })
  -- a time: the first offset at or after it (kcat -1 where there is none); ISO-8601 and epoch ms alike
  local at = base + 5500
  local iso = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(at / 1000)) .. (".%03dZ"):format(at % 1000)
  for _, spec in ipairs { ("%d"):format(at), iso } do
    local tr = json_lines((klua_run("offsets " .. t .. " --time " .. spec .. " --json")))
    for _, r in ipairs(tr) do
      local want = tonumber(kcat("-Q -t " .. q(t .. ":" .. r.partition .. ":" .. ("%d"):format(at))):match("offset (%-?%d+)"))
      assert_eq(r.offset == klua.json.null and -1 or r.offset, want, spec .. " partition " .. r.partition)
    end
    assert_eq({ tr[1].offset, tr[1].timestamp }, { 6, base + 6000 })
    assert_eq(tr[2].offset, klua.json.null)
  end
  -- the library takes the same strings (klua.timespec)
  local lib = assert(admin:list_offsets({ { topic = t, partition = 0, spec = { timestamp = iso } } }))
  assert_eq(lib[1].offset, 6)
  local one = json_lines((klua_run("offsets " .. t .. " -p 1 --time -1h --json")))
  assert_eq(#one, 1)
  assert_eq({ one[1].partition, one[1].offset }, { 1, 0 })
  local _, rc, err = klua_run("offsets " .. t .. " -p 7")
  assert_eq(rc, 3)
  assert_match(err, "has no partition 7")
  local _, rc2, err2 = klua_run("offsets " .. t .. "-nope")
  assert_eq(rc2, 3)
  assert_match(err2, pat(t) .. "%-nope")
end)

test("group reset: a plan without --execute; each target moves offsets as list_group_offsets shows", function()
  local t, g = fresh("cli-reset"), fresh("g")
  assert(admin:create_topics({ { name = t, partitions = 2 } }))
  local p = klua.producer()
  for i = 1, 10 do assert(p:produce{ topic = t, partition = 0, value = tostring(i) }) end
  local mid = klua.time()
  klua.sleep(20)  -- the records after mid get later timestamps
  for i = 1, 4 do assert(p:produce{ topic = t, partition = 0, value = tostring(i) }) end
  for i = 1, 3 do assert(p:produce{ topic = t, partition = 1, value = tostring(i) }) end
  local function committed()
    local out = {}
    for _, o in ipairs(assert(admin:list_group_offsets(g, { t }))) do out[o.partition] = o.offset or false end
    return out
  end

  -- a group that does not exist: exit 3 naming it, unless --create
  local _, rc, err = klua_run("group reset " .. g .. " --topic " .. t .. " --to-earliest --execute")
  assert_eq(rc, 3)
  assert_match(err, "group \"" .. pat(g) .. "\" does not exist")
  assert_eq(committed(), { [0] = false, [1] = false })
  local _, rc1, err1 = klua_run("group reset " .. g .. " --topic " .. t .. ":0 --to-offset 5 --create --execute")
  assert_eq(rc1, 0, err1)
  assert_eq(committed(), { [0] = 5, [1] = false })

  -- the plan changes nothing
  local plan = assert(klua.json.decode((klua_run("group reset " .. g .. " --all-topics --to-latest --json"))))
  assert_eq(plan, { group = g, executed = false, partitions = {
    { topic = t, partition = 0, current = 5, new = 14 }, { topic = t, partition = 1, new = 3 } } })
  assert_eq(committed(), { [0] = 5, [1] = false })
  local text = klua_run("group reset " .. g .. " --all-topics --to-latest")
  assert_match(text, "^TOPIC +PARTITION +CURRENT +NEW\n")
  assert_match(text, "nothing changed")

  local function reset(target)
    local out, rc2, err2 = klua_run("group reset " .. g .. " --topic " .. t .. " " .. target .. " --execute --json")
    assert_eq(rc2, 0, err2)
    return assert(klua.json.decode(out))
  end
  assert_true(reset("--to-latest").executed)
  assert_eq(committed(), { [0] = 14, [1] = 3 })
  reset("--shift-by -3")
  assert_eq(committed(), { [0] = 11, [1] = 0 })   -- clamped at the low watermark
  reset("--to-datetime " .. ("%d"):format(mid))
  assert_eq(committed()[0], 10)
  reset("--to-earliest")
  assert_eq(committed(), { [0] = 0, [1] = 0 })
  reset("--by-duration 1h")   -- every record is younger than an hour: the first one
  assert_eq(committed(), { [0] = 0, [1] = 0 })
  reset("--to-datetime +1h")  -- no record that late: the end
  assert_eq(committed(), { [0] = 14, [1] = 3 })
  reset("--by-duration PT0.001S")
  assert_eq(committed(), { [0] = 14, [1] = 3 })
  reset("--to-offset 100")    -- clamped at the high watermark
  assert_eq(committed(), { [0] = 14, [1] = 3 })
end)

-- Both group protocols: classic (DescribeGroups) and consumer (KIP-848, ConsumerGroupDescribe).
local PROTOCOL_CONF = {
  classic = { ["group.protocol"] = "classic", ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 1000 },
  consumer = { ["group.protocol"] = "consumer" },
}
for _, protocol in ipairs { "classic", "consumer" } do
test("group describe and reset with a live " .. protocol .. " member: assignment as the consumer sees it; reset refused", function()
  local t, g = fresh("cli-live"), fresh("g")
  assert(admin:create_topics({ { name = t, partitions = 2 } }))
  local p = klua.producer()
  for i = 1, 6 do assert(p:produce{ topic = t, partition = i % 2, value = tostring(i) }) end
  local conf = { group = g, topics = { t }, ["auto.offset.reset"] = "earliest" }
  for k, v in pairs(PROTOCOL_CONF[protocol]) do conf[k] = v end
  local c = klua.consumer(conf)
  local got = klua.testkit.poll_n(c, 6, 30000)
  assert_eq(#got, 6)
  for _, m in ipairs(got) do c:store(m) end
  assert(c:commit())
  local mine = {}
  for _, a in ipairs(assert(c:assignment())) do mine[#mine + 1] = a.partition end
  table.sort(mine)
  assert_eq(mine, { 0, 1 })

  local d = assert(klua.json.decode((klua_run("group describe " .. g .. " --json"))))
  assert_eq(d.group, g)
  assert_eq(d.state, "Stable")
  assert_eq(d.type, protocol)
  assert_eq(#d.members, 1)
  local assigned = {}
  for _, a in ipairs(d.members[1].assignment) do assert_eq(a.topic, t); assigned[#assigned + 1] = a.partition end
  table.sort(assigned)
  assert_eq(assigned, mine)
  assert_eq(d.lag, 0)
  for _, part in ipairs(d.partitions) do
    assert_eq({ part.committed, part.high, part.lag, part.member_id }, { 3, 3, 0, d.members[1].member_id })
  end
  local text = klua_run("group describe " .. g)
  assert_match(text, "^group " .. pat(g) .. "  state Stable  type ")
  assert_match(text, "total lag 0\n")

  local _, rc, err = klua_run("group reset " .. g .. " --all-topics --to-earliest")
  assert_eq(rc, 3)
  assert_match(err, "group \"" .. pat(g) .. "\" is not empty %(state Stable, 1 live member")
  assert_eq(#lines(err), 1)
  local _, rc2, err2 = klua_run("group delete " .. g)
  assert_eq(rc2, 3)
  assert_match(err2, "NON_EMPTY_GROUP")
  c:close()

  -- empty now: it resets, and delete removes it (confluent-kafka no longer lists it)
  local _, rc3, err3 = klua_run("group reset " .. g .. " --all-topics --to-earliest --execute")
  assert_eq(rc3, 0, err3)
  local offs = assert(admin:list_group_offsets(g))
  assert_eq({ offs[1].offset, offs[2].offset }, { 0, 0 })
  assert_true(py("groups")[g] ~= nil)
  local listed = json_lines((klua_run("groups --json")))
  local found
  for _, row in ipairs(listed) do if row.group == g then found = row end end
  assert_eq(found, { group = g, state = "Empty", type = protocol, simple = false })
  assert_eq(json_lines((klua_run("group delete " .. g .. " --json"))), { { group = g } })
  assert_eq(py("groups")[g], nil)
  local _, rc4, err4 = klua_run("group describe " .. g)
  assert_eq(rc4, 3)
  assert_match(err4, "GROUP_ID_NOT_FOUND")
end)
end

test("lag of a typo'd group exits 3 naming it, under --max-lag too; an existing group without lag exits 0", function()
  local t, g = fresh("cli-lag"), fresh("g")
  assert(admin:create_topics({ { name = t, partitions = 1 } }))
  assert(klua.producer():produce{ topic = t, value = "v" })
  assert(admin:alter_group_offsets(g, { { topic = t, partition = 0, offset = 1 } }))
  local out, rc = klua_run("lag " .. g .. " --max-lag 0")
  assert_eq(rc, 0)
  assert_match(out, "total lag 0")
  for _, args in ipairs { "", " --max-lag 0", " --json", " " .. t } do
    local out2, rc2, err2 = klua_run("lag " .. g .. "x" .. args)
    assert_eq(rc2, 3, args)
    assert_eq(out2, "", args)
    assert_match(err2, "^klua: GROUP_ID_NOT_FOUND: group \"" .. pat(g) .. "x\" does not exist")
  end
end)

test("groups and group list exit 3 on an unreachable cluster instead of an empty table", function()
  for _, cmd in ipairs { "groups" } do
    local out, rc, err = klua_run("-b 127.0.0.1:1 " .. cmd)
    assert_eq(rc, 3, cmd)
    assert_eq(out, "", cmd)
    assert_match(err, "^klua: ")
  end
end)
