-- klua.admin against a real broker (KLUA_BROKERS): every call, with its failure paths.
local fresh = klua.testkit.fresh
local admin = klua.admin()

local function find(list, field, value)
  for _, item in ipairs(list) do
    if item[field] == value then return item end
  end
end

local function consumer(group, topic)
  return klua.consumer { group = group, topics = { topic }, ["session.timeout.ms"] = 6000,
                         ["heartbeat.interval.ms"] = 1000, ["auto.offset.reset"] = "earliest" }
end

local function create(name, partitions, configs)
  local r = assert(admin:create_topics({ { name = name, partitions = partitions or 1, replication_factor = 1,
                                           configs = configs } }))
  assert_eq(r[1].error, nil)
end

test("describe_cluster and ping", function()
  local c = assert(admin:describe_cluster())
  assert_eq(#c.brokers, 1)
  assert_eq(c.brokers[1].host, "127.0.0.1")
  assert_eq(c.controller_id, c.brokers[1].id)
  assert_true(#c.cluster_id > 10)
  assert_true(assert(admin:ping()) < 5000)
  assert_eq(tostring(admin):match("embedded"), nil)
end)

test("create, list, describe, delete topics, with per-item errors in input order", function()
  local a, b = fresh("a"), fresh("b")
  local res = assert(admin:create_topics({
    { name = a, partitions = 3, replication_factor = 1, configs = { ["retention.ms"] = 3600000, ["cleanup.policy"] = "compact" } },
    { name = b, assignment = { { 1 }, { 1 } } },
    { name = fresh("c"), configs = { ["cleanup.policy"] = "bogus" } },   -- an invalid config value
    { name = fresh("d"), replication_factor = 3 },                       -- more replicas than brokers
  }))
  assert_eq(res[1], { name = a })
  assert_eq(res[2], { name = b })
  assert_error(res[3].error, "INVALID_CONFIG")
  assert_match(res[3].error.message, "cleanup.policy")
  assert_error(res[4].error, "INVALID_REPLICATION_FACTOR")
  local list = assert(admin:list_topics())
  assert_eq(find(list, "name", a), { name = a, partitions = 3, replication_factor = 1, internal = false })
  assert_eq(find(list, "name", b).partitions, 2)
  assert_eq(find(list, "name", "__consumer_offsets"), nil)
  -- __consumer_offsets exists once some group has committed: make sure one has
  assert(admin:alter_group_offsets(fresh("g"), { { topic = a, partition = 0, offset = 0 } }))
  local internal
  local deadline = klua.now() + 10000
  repeat
    internal = find(assert(admin:list_topics { internal = true }), "name", "__consumer_offsets")
  until internal or klua.now() > deadline
  assert_true(internal and internal.internal, "__consumer_offsets listed as internal")
  local d = assert(admin:describe_topics({ a, fresh("missing") }))
  assert_eq(#d[1].partitions, 3)
  assert_eq(d[1].partitions[3], { partition = 2, leader = 1, replicas = { 1 }, isr = { 1 },
                                    racks = { [1] = "rack-a" } })
  assert_eq(d[1].configs["retention.ms"], "3600000")
  assert_eq(d[1].configs["cleanup.policy"], "compact")
  assert_error(d[2].error, "UNKNOWN_TOPIC_OR_PART")

  -- creating an existing topic
  local again = assert(admin:create_topics({ a }))
  assert_error(again[1].error, "TOPIC_ALREADY_EXISTS")
  assert_eq(assert(admin:create_topics({ a }, { if_not_exists = true }))[1], { name = a, existed = true })
  local v = fresh("v")
  assert_eq(assert(admin:create_topics({ v }, { validate_only = true }))[1].error, nil)
  assert_eq(find(assert(admin:list_topics()), "name", v), nil)

  local del = assert(admin:delete_topics({ a, fresh("nope"), b }))
  assert_eq(del[1], { name = a })
  assert_error(del[2].error, "UNKNOWN_TOPIC_OR_PART")
  assert_eq(del[3], { name = b })
end)

test("create_partitions increases only, with a clear error otherwise", function()
  local t = fresh()
  create(t, 2)
  local r = assert(admin:create_partitions({ { topic = t, partitions = 1 }, { topic = fresh("x"), partitions = 3 } }))
  assert_error(r[1].error, "INVALID_PARTITIONS")
  assert_match(r[1].error.message, "has 2 partitions; create_partitions only increases the count %(asked for 1%)")
  assert_error(r[2].error, "UNKNOWN_TOPIC_OR_PART")
  assert_eq(assert(admin:create_partitions({ topic = t, partitions = 5 }, { validate_only = true }))[1].error, nil)
  assert_eq(assert(admin:describe_topics({ t }))[1].partitions[3], nil)
  assert_eq(assert(admin:create_partitions({ topic = t, partitions = 5 }))[1], { topic = t, partitions = 5 })
  assert_eq(#assert(admin:describe_topics({ t }))[1].partitions, 5)
end)

test("delete_records moves the low watermark", function()
  local t = fresh()
  create(t, 1)
  local p = klua.producer()
  for i = 1, 10 do assert(p:produce { topic = t, value = tostring(i) }) end
  local r = assert(admin:delete_records({ { topic = t, partition = 0, before = 4 } }))
  assert_eq(r, { { topic = t, partition = 0, low = 4 } })
  local bad = assert(admin:delete_records({ { topic = t, partition = 0, before = 99 } }))
  assert_error(bad[1].error, "OFFSET_OUT_OF_RANGE")
  assert_eq(assert(admin:delete_records({ topic = t, partition = 0, before = "end" }))[1].low, 10)
end)

test("describe_configs for topics and brokers", function()
  local t = fresh()
  create(t, 1, { ["retention.ms"] = 120000 })
  local r = assert(admin:describe_configs({ t, { type = "broker", name = 1 }, fresh("missing") }))
  assert_eq(r[1].type, "topic")
  assert_eq(r[1].configs["retention.ms"], { name = "retention.ms", value = "120000", source = "dynamic_topic",
                                            default = false, override = true, sensitive = false, read_only = false })
  assert_eq(r[1].configs["cleanup.policy"].source, "default")
  assert_true(r[1].configs["cleanup.policy"].default)
  assert_false(r[1].configs["cleanup.policy"].override)
  -- overrides_only: what kafka-configs --describe shows, the one config set on the topic (of 30 and more)
  local own = assert(admin:describe_configs({ t, { type = "broker", name = 1 } }, { overrides_only = true }))
  local names = {}
  for k, e in pairs(own[1].configs) do names[#names + 1] = k; assert_eq(e.source, "dynamic_topic") end
  assert_eq(names, { "retention.ms" })
  for k, e in pairs(own[2].configs) do assert_eq(e.source, "dynamic_broker", k) end
  local broker_all = 0
  for _, e in pairs(r[2].configs) do if e.source == "dynamic_broker" then broker_all = broker_all + 1 end end
  local broker_own = 0
  for _ in pairs(own[2].configs) do broker_own = broker_own + 1 end
  assert_eq(broker_own, broker_all)
  assert_eq(r[2].type, "broker")
  assert_eq(r[2].name, "1")
  assert_true(r[2].configs["log.dirs"] ~= nil)
  assert_error(r[3].error, "UNKNOWN_TOPIC_OR_PART")
end)

-- alter_configs (native IncrementalAlterConfigs) is tested in admin_native_test.lua.

test("groups: list, describe with members, live-group refusals, delete; a missing group", function()
  local t, g = fresh(), fresh("g")
  create(t, 2)
  local p = klua.producer()
  for i = 1, 6 do assert(p:produce { topic = t, partition = i % 2, value = tostring(i) }) end
  local c = consumer(g, t)
  local got = 0
  local deadline = klua.now() + 20000
  while got < 6 and klua.now() < deadline do
    local m = c:poll(500)
    if m then got = got + 1; assert(c:commit(m)) end
  end
  assert_eq(got, 6)
  local listed = find(assert(admin:list_groups()), "group", g)
  assert_eq(listed, { group = g, state = "Stable", type = "classic", simple = false })
  local d = assert(admin:describe_groups({ g, fresh("nobody") }))
  assert_eq(d[1].state, "Stable")
  assert_eq(d[1].assignor, "range")
  assert_eq(#d[1].members, 1)
  assert_match(d[1].members[1].member_id, "^rdkafka%-")
  assert_eq(#d[1].members[1].assignment, 2)
  assert_eq(d[1].coordinator.id, 1)
  assert_error(d[2].error, "GROUP_ID_NOT_FOUND")   -- Kafka says "Dead" (DescribeGroups < v6); klua says missing

  -- live group: reset refuses naming the state and members; delete fails
  local r, err = admin:reset_group_offsets(g, t, "earliest")
  assert_eq(r, nil)
  assert_error(err, "NON_EMPTY_GROUP")
  assert_match(err.message, "state Stable, 1 live member: ")
  local dg = assert(admin:delete_groups({ g }))
  assert_error(dg[1].error, "NON_EMPTY_GROUP")
  local ag, aerr = admin:alter_group_offsets(g, { { topic = t, partition = 0, offset = 0 } })
  assert_eq(ag, nil)
  assert_error(aerr, "NON_EMPTY_GROUP")

  c:close()
  assert_eq(find(assert(admin:list_groups()), "group", g).state, "Empty")
  local offs = assert(admin:list_group_offsets(g))
  assert_eq(offs, { { topic = t, partition = 0, offset = 3 }, { topic = t, partition = 1, offset = 3 } })
  local del = assert(admin:delete_group_offsets(g, { { topic = t, partition = 1 } }))
  assert_eq(del, { { topic = t, partition = 1 } })
  assert_eq(assert(admin:list_group_offsets(g)), { { topic = t, partition = 0, offset = 3 } })
  assert_eq(assert(admin:delete_groups({ g, fresh("nobody") }))[1], { group = g })
  assert_eq(find(assert(admin:list_groups()), "group", g), nil)
end)

test("reset_group_offsets: earliest, latest, offset, shift, timestamp, duration, dry_run", function()
  local t, g = fresh(), fresh("g")
  create(t, 2)
  local p = klua.producer()
  for i = 1, 10 do assert(p:produce { topic = t, partition = 0, value = tostring(i) }) end
  local mid = klua.time()
  klua.sleep(20)
  for i = 1, 4 do assert(p:produce { topic = t, partition = 0, value = tostring(i) }) end
  assert(admin:alter_group_offsets(g, { { topic = t, partition = 0, offset = 5 } }))
  local plan = assert(admin:reset_group_offsets(g, t, "latest", { dry_run = true }))
  assert_eq(plan, { { topic = t, partition = 0, current = 5, new = 14 }, { topic = t, partition = 1, new = 0 } })
  assert_eq(assert(admin:list_group_offsets(g, { t }))[1].offset, 5)
  assert_eq(assert(admin:reset_group_offsets(g, { { topic = t, partition = 0 } }, { shift = -2 }))[1].new, 3)
  assert_eq(assert(admin:list_group_offsets(g, { t }))[1].offset, 3)
  assert_eq(assert(admin:reset_group_offsets(g, t, { timestamp = mid }))[1].new, 10)
  assert_eq(assert(admin:reset_group_offsets(g, t, { duration = 3600000 }))[1].new, 0)
  -- times and durations as klua.timespec reads them
  assert_eq(assert(admin:reset_group_offsets(g, t, { timestamp = "+1h" }))[1].new, 14)
  assert_eq(assert(admin:reset_group_offsets(g, t, { duration = "1h" }))[1].new, 0)
  assert_eq(assert(admin:reset_group_offsets(g, t, { duration = "-PT1H" }))[1].new, 0)
  local iso = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(mid / 1000)) .. (".%03dZ"):format(mid % 1000)
  assert_eq(assert(admin:reset_group_offsets(g, t, { timestamp = iso }))[1].new, 10)
  -- topics nil: the group's topics (t alone)
  assert_eq(assert(admin:reset_group_offsets(g, nil, "latest", { dry_run = true })),
            { { topic = t, partition = 0, current = 10, new = 14 }, { topic = t, partition = 1, current = 0, new = 0 } })
  assert_eq(assert(admin:reset_group_offsets(g, t, 100))[1].new, 14)   -- clamped to the high watermark
  assert_eq(assert(admin:reset_group_offsets(g, t, "earliest"))[1].new, 0)
  assert_eq(assert(admin:list_group_offsets(g, { t })),
            { { topic = t, partition = 0, offset = 0 }, { topic = t, partition = 1, offset = 0 } })
  local r, err = admin:reset_group_offsets(g, fresh("missing"), "earliest")
  assert_eq(r, nil)
  assert_error(err, "UNKNOWN_TOPIC_OR_PART")
end)
