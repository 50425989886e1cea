-- Fan-out against a real broker (KLUA_BROKERS): two consumer groups on one 12-partition topic each
-- receive every message. Group A has one member, group B two; both groups' assignments are settled
-- before anything is produced, so each group must see each message exactly once.
local fresh = klua.testkit.fresh
local N, PARTITIONS = 1200, 12

local function member(group, topic, state)
  state.assigned = {}
  return klua.consumer(klua.testkit.group_conf{ group = group, topics = { topic }, ["auto.offset.reset"] = "earliest",
                        -- the partitions added / taken away (all of them under the eager protocol)
                        on_assign = function(ps)
                          for _, tp in ipairs(ps) do state.assigned[tp.partition] = true end
                        end,
                        on_revoke = function(ps)
                          for _, tp in ipairs(ps) do state.assigned[tp.partition] = nil end
                          state.revokes = (state.revokes or 0) + 1
                        end })
end

local function nassigned(state)
  local n = 0
  for _ in pairs(state.assigned) do n = n + 1 end
  return n
end

test("two groups on one 12-partition topic each receive all 1,200 keyed messages", function()
  local topic = fresh("t")
  local admin = klua.admin()
  local res = assert(admin:create_topics{ { name = topic, partitions = PARTITIONS } })
  assert_eq(res[1].error, nil)
  assert_eq(#assert(admin:describe_topics{ topic })[1].partitions, PARTITIONS)

  local ga, gb = fresh("ga"), fresh("gb")
  local members = {
    { group = ga, name = "a1" }, { group = gb, name = "b1" }, { group = gb, name = "b2" },
  }
  for _, m in ipairs(members) do
    m.got, m.partitions, m.outside = {}, {}, 0
    m.c = member(m.group, topic, m)
  end
  local stop = false
  local tasks = {}
  for _, m in ipairs(members) do
    tasks[#tasks + 1] = klua.spawn(function()
      while not stop do
        local msg, err = m.c:poll(200)
        assert(not err, tostring(err))
        if msg then
          m.got[#m.got + 1] = msg.value
          m.partitions[msg.partition] = true
          if not m.assigned[msg.partition] then m.outside = m.outside + 1 end
          assert(m.c:store(msg))
        end
      end
    end)
  end

  -- wait for settled assignments: a1 has all 12, b1 and b2 split the 12 between them
  local deadline = klua.now() + 30000
  local a1, b1, b2 = members[1], members[2], members[3]
  while klua.now() < deadline do
    if nassigned(a1) == PARTITIONS and nassigned(b1) > 0 and nassigned(b2) > 0
       and nassigned(b1) + nassigned(b2) == PARTITIONS then break end
    klua.sleep(100)
  end
  assert_eq(nassigned(a1), PARTITIONS, "group A's member holds every partition")
  assert_eq(nassigned(b1) + nassigned(b2), PARTITIONS, "group B's members split the partitions")
  for p in pairs(b1.assigned) do assert_true(not b2.assigned[p], "partition " .. p .. " assigned twice in group B") end
  local revokes_before = (b1.revokes or 0) + (b2.revokes or 0)

  local prod = klua.producer{ ["linger.ms"] = 5 }
  local results = prod:produce_batch((function()
    local list = {}
    for i = 1, N do list[i] = { topic = topic, key = "key-" .. i, value = tostring(i) } end
    return list
  end)())
  local used = {}
  for i, r in ipairs(results) do
    assert_eq(r.error, nil, "delivery of message " .. i)
    used[r.partition] = true
  end
  local nused = 0
  for _ in pairs(used) do nused = nused + 1 end
  assert_eq(nused, PARTITIONS, "keys spread over every partition")
  prod:close()

  local function group_values(list)
    local all = {}
    for _, m in ipairs(list) do for _, v in ipairs(m.got) do all[#all + 1] = v end end
    return all
  end
  deadline = klua.now() + 40000
  while klua.now() < deadline and (#group_values({ a1 }) < N or #group_values({ b1, b2 }) < N) do
    klua.sleep(200)
  end
  klua.sleep(2000)  -- anything extra (a duplicate) would arrive now
  stop = true
  for _, t in ipairs(tasks) do
    local ok, err = t:join({ timeout_ms = 5000 })
    assert_true(ok ~= nil or err == nil, "consumer task: " .. tostring(err))
    assert_true(t:status() == "done", "consumer task ended: " .. t:status())
  end

  for name, list in pairs{ A = { a1 }, B = { b1, b2 } } do
    local values = group_values(list)
    local seen, distinct = {}, 0
    for _, v in ipairs(values) do
      local i = tonumber(v)
      assert_true(i and i >= 1 and i <= N and i % 1 == 0, "group " .. name .. " got an unexpected value " .. tostring(v))
      if not seen[v] then distinct = distinct + 1 end
      seen[v] = (seen[v] or 0) + 1
    end
    assert_eq(distinct, N, "distinct values in group " .. name)
    assert_eq(#values, N, "messages in group " .. name .. " (no duplicates)")
  end
  assert_true(#b1.got > 0 and #b2.got > 0, "both members of group B consumed: " .. #b1.got .. ", " .. #b2.got)
  assert_eq((b1.revokes or 0) + (b2.revokes or 0), revokes_before, "no rebalance while consuming")
  for _, m in ipairs(members) do
    assert_eq(m.outside, 0, m.name .. " got messages of partitions it was not assigned")
  end
  for p in pairs(b1.partitions) do assert_true(not b2.partitions[p], "partition " .. p .. " consumed by both members of B") end
  for _, m in ipairs(members) do m.c:close() end
end, { timeout_ms = 120000 })
