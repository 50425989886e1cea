-- klua.admin's native calls (librdkafka >= 2.3) against a real broker, each compared with an answer
-- computed independently: Python confluent-kafka's AdminClient (tests/integration/pyadmin.py), kcat, or
-- arithmetic on what the test produced.
local BROKERS = os.getenv("KLUA_BROKERS") or ""
local HERE = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
local admin = klua.admin()
local null = klua.json.null

local fresh = klua.testkit.fresh
local q = klua.testkit.quote

local PYTHON = dofile("tests/integration/helpers/python.lua")

local function py(...)
  local args = { q(PYTHON), q(HERE .. "/pyadmin.py"), q(BROKERS) }
  for _, a in ipairs { ... } do args[#args + 1] = q(a) end
  local errf = os.tmpname()
  local out, rc = klua.testkit.sh("timeout 60 " .. table.concat(args, " ") .. " 2>" .. q(errf))
  local f = io.open(errf, "rb")
  local err = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(errf)
  assert(rc == 0, "pyadmin.py failed: " .. out .. err)
  local v, derr = klua.json.decode(out)
  return assert(v, tostring(derr) .. " in: " .. out:sub(1, 200) .. " (stderr: " .. err .. ")")
end

local function create(name, partitions, configs)
  local r = assert(admin:create_topics({ { name = name, partitions = partitions or 1, replication_factor = 1,
                                           configs = configs } }))
  assert_eq(r[1].error, nil)
end

test("describe_cluster matches confluent-kafka's DescribeCluster; authorised operations when asked", function()
  local c = assert(admin:describe_cluster())
  local want = py("cluster")
  assert_eq(c.cluster_id, want.cluster_id)
  assert_eq(c.controller_id, want.controller)
  local ids = {}
  for i, b in ipairs(c.brokers) do ids[i] = b.id end
  assert_eq(ids, want.brokers)
  assert_eq(c.brokers[1].host .. ":" .. c.brokers[1].port, BROKERS)
  assert_eq(c.brokers[1].rack, want.racks[tostring(c.brokers[1].id)])
  assert_eq(c.brokers[1].rack, "rack-a")   -- tools/kafka-broker.d/server.properties.in
  assert_eq(c.authorized_operations, nil)  -- only when asked
  local ops = assert(admin:describe_cluster { include_authorized_operations = true }).authorized_operations
  assert_not_nil(ops)  -- ANONYMOUS is a super user: every cluster operation
  local has = {}
  for _, o in ipairs(ops) do has[o] = true end
  assert_true(has.alter and has.describe and has.cluster_action and has.idempotent_write, table.concat(ops, ","))
end)

test("describe_topics matches confluent-kafka and kcat: partitions, leaders, replicas, isr, topic id", function()
  local t = fresh("dt")
  create(t, 3)
  local d = assert(admin:describe_topics({ t, fresh("missing"), "__consumer_offsets" },
                                         { include_authorized_operations = true, configs = false }))
  local want = py("topic", t)
  assert_eq(d[1].topic_id, want.topic_id)
  assert_eq(d[1].internal, false)
  assert_eq(#d[1].partitions, #want.partitions)
  for i, p in ipairs(want.partitions) do
    local mine = d[1].partitions[i]
    assert_eq({ mine.partition, mine.leader, mine.replicas, mine.isr }, { p.partition, p.leader, p.replicas, p.isr })
  end
  assert_eq(d[1].partitions[1].racks, { [1] = "rack-a" })
  local ops = {}
  for _, o in ipairs(d[1].authorized_operations) do ops[o] = true end
  assert_true(ops.read and ops.write and ops.describe_configs)
  assert_error(d[2].error, "UNKNOWN_TOPIC_OR_PART")
  -- __consumer_offsets exists once a group committed (the admin test does; make sure here)
  if d[3].error then
    assert(admin:alter_group_offsets(fresh("g"), { { topic = t, partition = 0, offset = 0 } }))
    d[3] = assert(admin:describe_topics({ "__consumer_offsets" }))[1]
  end
  assert_eq(d[3].internal, true)
  local kc = klua.json.decode((klua.testkit.sh("kcat -b " .. BROKERS .. " -L -J -t " .. t)))
  assert_eq(#kc.topics[1].partitions, 3)
  for _, kp in ipairs(kc.topics[1].partitions) do assert_eq(kp.leader, d[1].partitions[kp.partition + 1].leader) end
end)

test("list_offsets: earliest, latest, by timestamp, max timestamp; read_committed stops at an open transaction", function()
  local t = fresh("lo")
  create(t, 2)
  local p = klua.producer()
  local base = klua.time() - 60000
  -- partition 0: 6 records with timestamps base+0, +1000, ..., +5000 (the largest in the middle: +9000)
  local stamps = { 0, 1000, 2000, 9000, 4000, 5000 }
  for i, s in ipairs(stamps) do
    assert(p:produce { topic = t, partition = 0, value = tostring(i), timestamp = base + s })
  end
  local r = assert(admin:list_offsets({ { topic = t, partition = 0, spec = "earliest" },
                                        { topic = t, partition = 1, spec = "latest" } }))
  assert_eq(r[1].offset, 0)
  assert_eq(r[2].offset, 0)
  r = assert(admin:list_offsets({ { topic = t, partition = 0, spec = { timestamp = base + 1500 } },
                                  { topic = t, partition = 1, spec = { timestamp = base } } }))
  assert_eq(r[1].offset, 2)            -- the first record at or after base+1500 is the third (offset 2)
  assert_eq(r[1].timestamp, base + 2000)
  assert_eq(r[2].offset, nil)          -- nothing in partition 1
  assert_eq(r[2].error, nil)
  r = assert(admin:list_offsets({ { topic = t, partition = 0, spec = "max_timestamp" } }))
  assert_eq(r[1].offset, 3)
  assert_eq(r[1].timestamp, base + 9000)
  assert_true(r[1].leader_epoch >= 0)
  -- the same questions to confluent-kafka
  assert_eq(py("offsets", tostring(base + 1500), "read_uncommitted", t .. ":0")[1].offset, 2)
  local mx = py("offsets", "max", "read_uncommitted", t .. ":0")[1]
  assert_eq({ mx.offset, mx.timestamp }, { 3, base + 9000 })

  -- an open transaction: latest under read_uncommitted is the high watermark, under read_committed the
  -- last stable offset (where the transaction began)
  local tx = klua.producer { ["transactional.id"] = fresh("tx") }
  assert(tx:begin())
  for i = 1, 3 do tx:send { topic = t, partition = 0, value = "tx" .. i } end
  assert(tx:flush())
  local high = assert(admin:list_offsets({ t }))
  local stable = assert(admin:list_offsets({ t }, { isolation_level = "read_committed" }))
  assert_eq(high[1].offset, 9)
  assert_eq(stable[1].offset, 6)
  assert_eq(py("offsets", "latest", "read_uncommitted", t .. ":0")[1].offset, 9)
  assert_eq(py("offsets", "latest", "read_committed", t .. ":0")[1].offset, 6)
  -- klua.lag says the same: high from read_uncommitted, end from read_committed
  local g = fresh("g")
  assert(admin:alter_group_offsets(g, { { topic = t, partition = 0, offset = 1 } }))
  local lag = assert(klua.lag(g, { t }))
  assert_eq(lag.partitions[1], { topic = t, partition = 0, committed = 1, low = 0, high = 9, ["end"] = 6, lag = 8 })
  assert(tx:commit())
  -- The coordinator writes the commit marker after answering the commit: the last stable offset moves
  -- to 10 (the marker takes an offset) a moment later. Ask until it has (a condition, not a delay).
  local deadline = klua.now() + 10000
  repeat
    stable = assert(admin:list_offsets({ { topic = t, partition = 0 } }, { isolation_level = "read_committed" }))
  until stable[1].offset == 10 or klua.now() > deadline
  assert_eq(stable[1].offset, 10)
  tx:close()
end)

test("elect_leaders: a single broker is every partition's preferred leader already", function()
  local t = fresh("el")
  create(t, 2)
  local r = assert(admin:elect_leaders({ { topic = t, partition = 1 }, { topic = t, partition = 0 } }))
  assert_eq(#r, 2)
  assert_eq({ r[1].topic, r[1].partition, r[2].partition }, { t, 1, 0 })
  assert_error(r[1].error, "ELECTION_NOT_NEEDED")
  assert_error(r[2].error, "ELECTION_NOT_NEEDED")
  local u = assert(admin:elect_leaders({ { topic = t, partition = 0 } }, { election = "unclean" }))
  assert_error(u[1].error, "ELECTION_NOT_NEEDED")
  local missing = assert(admin:elect_leaders({ { topic = fresh("missing"), partition = 0 } }))
  assert_error(missing[1].error, "UNKNOWN_TOPIC_OR_PART")
end)

test("SCRAM credentials: upsert, describe (as confluent-kafka sees them), delete", function()
  local user = fresh("u")
  local res = assert(admin:alter_user_scram_credentials({
    { user = user, mechanism = "SCRAM-SHA-256", password = "pw-256-secret", iterations = 8192 },
    { user = user, mechanism = "SCRAM-SHA-512", password = "pw-512-secret" } }))
  assert_eq(res, { { user = user, mechanism = "SCRAM-SHA-256" }, { user = user, mechanism = "SCRAM-SHA-512" } })
  -- Kafka applies the change through its controller and describes from each broker's metadata
  -- image, which follows a moment later: ask until the second round's credential shows (10 s).
  local d
  local deadline = klua.now() + 10000
  repeat
    d = assert(admin:describe_user_scram_credentials({ user, fresh("nobody") }))
    local creds = d[1].credentials
    if creds and #creds == 2 then break end
    klua.sleep(100)
  until klua.now() > deadline
  assert_eq(d[1], { user = user, credentials = { { mechanism = "SCRAM-SHA-256", iterations = 8192 },
                                                 { mechanism = "SCRAM-SHA-512", iterations = 4096 } } })
  assert_error(d[2].error, "RESOURCE_NOT_FOUND")
  assert_eq(py("scram", user)[user], { { "SCRAM_SHA_256", 8192 }, { "SCRAM_SHA_512", 4096 } })
  local all = assert(admin:describe_user_scram_credentials())
  local found
  for _, u in ipairs(all) do if u.user == user then found = u end end
  assert_not_nil(found)
  assert(admin:alter_user_scram_credentials({ { user = user, mechanism = "SCRAM-SHA-256", delete = true } }))
  local seen
  deadline = klua.now() + 10000
  repeat
    seen = py("scram", user)[user]
    if seen and #seen == 1 then break end
    klua.sleep(100)
  until klua.now() > deadline
  assert_eq(seen, { { "SCRAM_SHA_512", 4096 } })
  local bad = assert(admin:alter_user_scram_credentials({ { user = user, mechanism = "SCRAM-SHA-256", delete = true } }))
  assert_error(bad[1].error, "RESOURCE_NOT_FOUND")
  assert_eq(tostring(bad[1].error):find("secret", 1, true), nil)
end)

test("ACLs: create, describe (as confluent-kafka sees them), delete", function()
  local principal = "User:" .. fresh("acl")
  local t = fresh("acl-t")
  local res = assert(admin:create_acls({
    { resource_type = "topic", name = t, principal = principal, operation = "read" },
    { resource_type = "group", name = "g-", pattern_type = "prefixed", principal = principal, operation = "read",
      permission = "deny", host = "10.0.0.1" },
    { resource_type = "cluster", principal = principal, operation = "idempotent_write" } }))
  assert_eq(res, { {}, {}, {} })
  local mine = assert(admin:describe_acls { principal = principal })
  assert_eq(mine, {
    { resource_type = "cluster", name = "kafka-cluster", pattern_type = "literal", principal = principal, host = "*",
      operation = "idempotent_write", permission = "allow" },
    { resource_type = "group", name = "g-", pattern_type = "prefixed", principal = principal, host = "10.0.0.1",
      operation = "read", permission = "deny" },
    { resource_type = "topic", name = t, pattern_type = "literal", principal = principal, host = "*",
      operation = "read", permission = "allow" } })
  assert_eq(py("acls", principal), {
    { "broker", "kafka-cluster", "literal", principal, "*", "idempotent_write", "allow" },
    { "group", "g-", "prefixed", principal, "10.0.0.1", "read", "deny" },
    { "topic", t, "literal", principal, "*", "read", "allow" } })
  -- "match" finds the prefixed ACL that covers a concrete group name
  local m = assert(admin:describe_acls { resource_type = "group", name = "g-orders", pattern_type = "match" })
  local hit
  for _, b in ipairs(m) do if b.principal == principal then hit = b end end
  assert_eq(hit and hit.name, "g-")
  local del = assert(admin:delete_acls({ { principal = principal, resource_type = "topic" }, { principal = fresh("none") } }))
  assert_eq(#del[1].deleted, 1)
  assert_eq(del[1].deleted[1].name, t)
  assert_eq(del[2], { deleted = {} })
  assert_eq(#py("acls", principal), 2)
  assert(admin:delete_acls({ { principal = principal } }))
  assert_eq(py("acls", principal), {})
end)

test("alter_configs is native IncrementalAlterConfigs: set, delete, append, subtract; topics and brokers", function()
  local t = fresh("cfg")
  create(t, 1, { ["retention.ms"] = 3600000 })
  local r = assert(admin:alter_configs({ { name = t, set = { ["segment.ms"] = 600000 },
                                           append = { ["cleanup.policy"] = "compact" } } }))
  assert_eq(r, { { type = "topic", name = t } })
  local c = py("configs", "topic", t)
  assert_eq(c["retention.ms"], "3600000")          -- the unrelated override survived
  assert_eq(c["segment.ms"], "600000")
  assert_eq(c["cleanup.policy"], "delete,compact")  -- appended to the default
  r = assert(admin:alter_configs({ name = t, delete = { "retention.ms" }, subtract = { ["cleanup.policy"] = "delete" } }))
  assert_eq(r[1].error, nil)
  c = py("configs", "topic", t)
  assert_eq(c["retention.ms"], "604800000")         -- back to the default
  assert_eq(c["cleanup.policy"], "compact")
  -- one bad op fails the whole resource (atomic): segment.ms stays
  r = assert(admin:alter_configs({ { name = t, set = { ["segment.ms"] = 700000, ["retention.ms"] = "abc" } },
                                   { name = fresh("missing"), set = { ["segment.ms"] = 1 } } }))
  assert_error(r[1].error, "INVALID_CONFIG")
  assert_error(r[2].error, "UNKNOWN_TOPIC_OR_PART")
  assert_eq(py("configs", "topic", t)["segment.ms"], "600000")
  r = assert(admin:alter_configs({ name = t, append = { ["retention.ms"] = "1" } }))
  assert_error(r[1].error, "INVALID_CONFIG")        -- the broker says it is not a list
  r = assert(admin:alter_configs({ { name = t, set = { ["segment.ms"] = 700000 } } }, { validate_only = true }))
  assert_eq(r[1].error, nil)
  assert_eq(py("configs", "topic", t)["segment.ms"], "600000")
  -- broker configs (impossible in the 2.0.2 emulation)
  r = assert(admin:alter_configs({ type = "broker", name = 1, set = { ["log.cleaner.backoff.ms"] = 16000 } }))
  assert_eq(r[1].error, nil)
  assert_eq(py("configs", "broker", "1")["log.cleaner.backoff.ms"], "16000")
  assert(admin:alter_configs({ type = "broker", name = 1, delete = { "log.cleaner.backoff.ms" } }))
  assert_eq(py("configs", "broker", "1")["log.cleaner.backoff.ms"], "15000")
end)

test("a group's own config (KIP-848) is described with source \"group\" and marked as an override", function()
  local g = fresh("cfg-group")
  local name = "consumer.heartbeat.interval.ms"
  local before = assert(admin:describe_configs({ { type = "group", name = g } }))[1]
  assert_eq(before.error, nil)
  local current = assert(before.configs[name], name .. " not described").value
  assert_false(before.configs[name].override)
  -- Set to its current value: a group override within the broker's bounds, whatever they are.
  local r = assert(admin:alter_configs({ { type = "group", name = g, set = { [name] = current } } }))
  assert_eq(r[1].error, nil)
  -- The broker answers the alter once the controller has the record; its own metadata image (which
  -- describe reads) applies it a moment later, so a describe straight after may still say "default".
  local after, deadline = nil, klua.now() + 10000
  repeat
    after = assert(admin:describe_configs({ { type = "group", name = g } }))[1].configs[name]
    if after.source == "group" then break end
    klua.sleep(50)
  until klua.now() > deadline
  assert_eq({ after.value, after.source, after.override, after.default }, { current, "group", true, false })
end)

test("groups: listed by state and type, described with their type (classic and consumer protocol)", function()
  local t, gc, gk = fresh("grp"), fresh("classic"), fresh("kip848")
  create(t, 2)
  local p = klua.producer()
  for i = 1, 4 do assert(p:produce { topic = t, partition = i % 2, value = tostring(i) }) end
  local classic = klua.consumer { group = gc, topics = { t }, ["auto.offset.reset"] = "earliest",
                                  ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 1000 }
  local modern = klua.consumer { group = gk, topics = { t }, ["auto.offset.reset"] = "earliest",
                                 ["group.protocol"] = "consumer" }
  local function drain(c)
    local n, deadline = 0, klua.now() + 30000
    while n < 4 and klua.now() < deadline do
      local m = c:poll(500)
      if m then n = n + 1; assert(c:commit(m)) end
    end
    return n
  end
  assert_eq(drain(classic), 4)
  assert_eq(drain(modern), 4)
  local want = py("groups")
  local function find(list, g) for _, x in ipairs(list) do if x.group == g then return x end end end
  local all = assert(admin:list_groups())
  assert_eq(find(all, gc).type, "classic")
  assert_eq(find(all, gk).type, "consumer")
  assert_eq(find(all, gc).type, want[gc].type)
  assert_eq(find(all, gk).type, want[gk].type)
  assert_eq(find(all, gc).state:upper(), want[gc].state)
  local only_consumer = assert(admin:list_groups { types = { "consumer" } })
  assert_not_nil(find(only_consumer, gk))
  assert_eq(find(only_consumer, gc), nil)
  local stable = assert(admin:list_groups { states = { "stable" }, types = { "classic" } })
  assert_not_nil(find(stable, gc))
  assert_eq(find(stable, gk), nil)
  local empty = assert(admin:list_groups { states = { "Empty" } })
  assert_eq(find(empty, gc), nil)
  local d = assert(admin:describe_groups({ gk, gc }, { include_authorized_operations = true }))
  assert_eq(d[1].type, "consumer")
  assert_eq(d[1].state, "Stable")
  assert_eq(#d[1].members, 1)              -- the new protocol's members are described too (2.0.2: "unknown")
  assert_eq(#d[1].members[1].assignment, 2)
  assert_eq(d[2].type, "classic")
  assert_eq(#d[2].members, 1)
  assert_not_nil(d[2].authorized_operations)
  classic:close()
  modern:close()
  local gone = assert(admin:describe_groups({ fresh("nobody") }))
  assert_error(gone[1].error, "GROUP_ID_NOT_FOUND")
end)
