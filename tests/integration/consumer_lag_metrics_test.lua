-- klua_consumer_lag (docs/metrics.md, "Built-in metrics", Lag) on a real broker for partitions whose
-- position the consumer does not know yet: a group restarted caught up or behind, an empty
-- partition, a partition without a committed offset. Expected values are computed from what the
-- test produced and committed; a group restart needs a real coordinator (the embedded mock keeps
-- a closed member's partitions for a while).
local fresh = klua.testkit.fresh
local poll_n = klua.testkit.poll_n
local group_conf = klua.testkit.group_conf
local cm = debug.getregistry()["klua.private"].client_metrics
local admin = klua.admin()

cm.enable()  -- as klua.metrics.serve does: consumers look up their committed offsets when assigned

local function create(name, partitions)
  assert_eq(assert(admin:create_topics({ { name = name, partitions = partitions, replication_factor = 1 } }))[1].error, nil)
end

-- The value of the one sample of `name` whose labels include `want` (nil when there is none).
local function value(name, want)
  local found
  for _, f in ipairs(cm.collect()) do
    if f.name == name then
      for _, s in ipairs(f.samples) do
        local ok = true
        for k, v in pairs(want) do
          if s.labels[k] ~= v then ok = false end
        end
        if ok then
          assert_true(found == nil, "several samples of " .. name .. " match")
          found = s.value
        end
      end
    end
  end
  return found
end

-- Waits (bounded) until cond() is true: the lag series appears once the consumer's first fetch
-- and the committed-offset lookup have answered, which no event the script can wait on marks.
local function eventually(cond, what)
  local deadline = klua.now() + 20000
  while not cond() do
    assert_true(klua.now() < deadline, "timed out waiting for " .. what)
    klua.sleep(20)
  end
end

local function client_name(h)
  return (assert(tostring(h):match("([^%s(),]+#%a+%-%d+)")))
end

local function produce(t, partition, n)
  local p = klua.producer()
  for i = 1, n do assert(p:produce{ topic = t, partition = partition, value = "m" .. i }) end
  assert(p:flush())
  p:close()
end

-- A consumer of group g that reads `n` messages of t, stores each, commits and leaves.
local function consume_and_commit(t, g, n)
  local c = klua.consumer(group_conf{ group = g, topics = { t }, ["auto.offset.reset"] = "earliest",
                                      ["enable.auto.commit"] = false })
  local got = poll_n(c, n)
  assert_eq(#got, n)
  for _, m in ipairs(got) do assert(c:store(m)) end
  assert(c:commit())
  c:close()
end

-- The restarted member of g: subscribed, its assignment in, the script reading nothing yet.
local function restarted(t, g, partitions, reset)
  local c = klua.consumer(group_conf{ group = g, topics = { t }, ["auto.offset.reset"] = reset or "earliest" })
  local name = client_name(c)
  eventually(function() return value("klua_consumer_assigned_partitions", { client = name }) == partitions end,
    "the assignment")
  return c, name
end

local function lag_of(name, t, partition)
  return value("klua_consumer_lag", { client = name, topic = t, partition = tostring(partition) })
end

test("a group restarted caught up shows lag 0, and the lag follows new messages", function()
  local t, g = fresh("lagm-caught"), fresh("g")
  create(t, 1)
  local produced, committed = 10, 10
  produce(t, 0, produced)
  consume_and_commit(t, g, committed)
  local c, name = restarted(t, g, 1)
  eventually(function() return lag_of(name, t, 0) ~= nil end, "a lag series of the caught-up partition")
  assert_eq(lag_of(name, t, 0), produced - committed)
  -- New messages: the fetches bring the new high watermark, counted from the committed offset.
  produce(t, 0, 4)
  eventually(function() return lag_of(name, t, 0) == 4 end, "a lag of 4")
  assert_eq(#poll_n(c, 4), 4)
  assert_eq(lag_of(name, t, 0), 0)
  c:close()
end)

test("a group restarted behind shows high - committed before its first message, then falls to 0", function()
  local t, g = fresh("lagm-behind"), fresh("g")
  create(t, 1)
  local produced, committed = 10, 5
  produce(t, 0, produced)
  consume_and_commit(t, g, committed)
  local c, name = restarted(t, g, 1)
  eventually(function() return lag_of(name, t, 0) ~= nil end, "a lag series of the partition behind")
  assert_eq(lag_of(name, t, 0), produced - committed)
  local got = poll_n(c, 2)
  assert_eq(#got, 2)
  assert_eq(got[1].offset, committed)
  assert_eq(lag_of(name, t, 0), produced - committed - 2)
  assert_eq(#poll_n(c, produced - committed - 2), produced - committed - 2)
  assert_eq(lag_of(name, t, 0), 0)
  c:close()
end)

test("no committed offset: auto.offset.reset earliest counts from low, an empty partition is 0", function()
  local t = fresh("lagm-reset")
  create(t, 2)
  local produced = 7
  produce(t, 0, produced)  -- partition 1 stays empty
  local c, name = restarted(t, fresh("g"), 2, "earliest")
  eventually(function() return lag_of(name, t, 0) ~= nil and lag_of(name, t, 1) ~= nil end, "both lag series")
  assert_eq(lag_of(name, t, 0), produced)
  assert_eq(lag_of(name, t, 1), 0)
  assert_eq(#poll_n(c, produced), produced)
  assert_eq(lag_of(name, t, 0), 0)
  assert_eq(lag_of(name, t, 1), 0)
  c:close()
end)

test("no committed offset: auto.offset.reset latest is 0", function()
  local t = fresh("lagm-latest")
  create(t, 1)
  produce(t, 0, 6)
  local c, name = restarted(t, fresh("g"), 1, "latest")
  eventually(function() return lag_of(name, t, 0) ~= nil end, "a lag series")
  assert_eq(lag_of(name, t, 0), 0)
  produce(t, 0, 3)
  eventually(function() return lag_of(name, t, 0) == 3 end, "a lag of 3")
  c:close()
end)

test("an empty partition whose group committed offset 0 is 0", function()
  local t, g = fresh("lagm-empty"), fresh("g")
  create(t, 1)
  local c0 = klua.consumer(group_conf{ group = g })
  assert(c0:commit({ { topic = t, partition = 0, offset = 0 } }))
  c0:close()
  local c, name = restarted(t, g, 1)
  eventually(function() return lag_of(name, t, 0) ~= nil end, "a lag series of the empty partition")
  assert_eq(lag_of(name, t, 0), 0)
  c:close()
end)
