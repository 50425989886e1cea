-- Consumer group protocols on a real Kafka 4.1 broker (KLUA_BROKERS): KIP-848's consumer
-- protocol is served (group.version 1), klua refuses the classic-only settings under it and
-- reports a subscription to a missing topic, and a rebalance hands the hooks what the README
-- says: the whole assignment under the eager classic protocol, only the change under
-- cooperative-sticky and KIP-848. Registered twice by tests/CMakeLists.txt: the rebalance
-- tests run under the protocol KLUA_TEST_GROUP_PROTOCOL names (klua.testkit.group_conf).
local kit = klua.testkit
local BROKERS = os.getenv("KLUA_BROKERS") or ""
local PYTHON = dofile("tests/integration/helpers/python.lua")

-- The group's type as the broker describes it, asked with confluent-kafka (its own librdkafka):
-- ConsumerGroupDescribe for new-protocol groups, DescribeGroups for classic ones.
local DESCRIBE_PY = [==[
import sys
from confluent_kafka.admin import AdminClient
a = AdminClient({"bootstrap.servers": sys.argv[1]})
d = a.describe_consumer_groups([sys.argv[2]])[sys.argv[2]].result(30)
print(str(d.type).split(".")[-1], len(d.members))
]==]
local function broker_group_type(group)
  local out, status = kit.sh(kit.quote(PYTHON) .. " - " .. kit.quote(BROKERS) .. " " .. kit.quote(group), DESCRIBE_PY)
  assert_eq(status, 0, "confluent-kafka describe_consumer_groups: " .. tostring(out))
  local kind, members = out:match("^(%S+) (%d+)")
  return kind, tonumber(members)
end

local function partitions_of(list)
  local t = {}
  for _, tp in ipairs(list) do t[#t + 1] = tp.partition end
  table.sort(t)
  return t
end

-- Polls c until cond() holds or timeout_ms passed (the hooks run meanwhile); returns cond().
local function poll_until(c, cond, timeout_ms)
  local deadline = klua.now() + timeout_ms
  while not cond() and klua.now() < deadline do c:poll(100) end
  return cond()
end

test("Kafka 4.1 serves the consumer protocol: a KIP-848 member joins, is assigned, the broker calls the group 'consumer'", function()
  local topic = assert(kit.topic("kip848", { partitions = 3 }))
  local group = kit.group("kip848")
  local assigned = {}
  local c = klua.consumer{ group = group, topics = { topic }, ["group.protocol"] = "consumer",
    on_assign = function(ps) for _, p in ipairs(partitions_of(ps)) do assigned[#assigned + 1] = p end end }
  assert_true(poll_until(c, function() return #assigned == 3 end, 30000), "assigned " .. #assigned .. " of 3")
  table.sort(assigned)
  assert_eq(assigned, { 0, 1, 2 })
  assert_eq(partitions_of(c:assignment()), { 0, 1, 2 })
  local kind, members = broker_group_type(group)
  assert_eq({ kind, members }, { "CONSUMER", 1 })
  c:close()
end, { timeout_ms = 60000 })

test("a classic member's group is 'classic' to the broker", function()
  local topic = assert(kit.topic("classic", { partitions = 1 }))
  local group = kit.group("classic")
  local n = 0
  local c = klua.consumer{ group = group, topics = { topic }, ["session.timeout.ms"] = 6000,
                           on_assign = function(ps) n = n + #ps end }
  assert_true(poll_until(c, function() return n == 1 end, 30000), "assigned")
  assert_eq({ broker_group_type(group) }, { "CLASSIC", 1 })
  c:close()
end, { timeout_ms = 60000 })

test("under group.protocol=consumer the classic-only settings raise KLUA_INVALID_ARGUMENT naming the replacement", function()
  local cases = {
    { "session.timeout.ms", 6000, "group%.consumer%.session%.timeout%.ms" },
    { "heartbeat.interval.ms", 1000, "group%.consumer%.heartbeat%.interval%.ms" },
    { "partition.assignment.strategy", "cooperative-sticky", "group%.remote%.assignor" },
    { "group.protocol.type", "consumer", "classic protocol only" },
  }
  for _, case in ipairs(cases) do
    local key, value, replacement = case[1], case[2], case[3]
    local ok, err = pcall(klua.consumer, { group = kit.group("bad"), ["group.protocol"] = "consumer", [key] = value })
    assert_false(ok, key .. " was accepted")
    assert_error(err, "KLUA_INVALID_ARGUMENT")
    assert_match(err.message, '"' .. key:gsub("%.", "%%.") .. '"')
    assert_match(err.message, replacement)
  end
  -- the classic protocol takes them
  local c = klua.consumer{ group = kit.group("ok"), ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 1000 }
  c:close()
end)

test("a KIP-848 subscription to a missing topic is reported through on_error, naming the topic", function()
  local missing = kit.fresh("missing")
  local heard
  local c = klua.consumer{ group = kit.group("missing"), topics = { missing }, ["group.protocol"] = "consumer",
                           on_error = function(e) heard = e end }
  assert_true(poll_until(c, function() return heard ~= nil end, 20000), "no error heard")
  assert_error(heard, "UNKNOWN_TOPIC_OR_PART")
  assert_eq(heard.topic, missing)
  assert_match(heard.message, missing:gsub("%-", "%%-"))
  c:close()
  -- and the topic was not created by klua's check
  local md = assert(klua.admin():list_topics())
  for _, t in ipairs(md) do assert_ne(t.name, missing) end
end, { timeout_ms = 40000 })

local function copy_with(t, extra)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

-- Two members of one group on a 4-partition topic: the first holds all four, the second joins.
-- Returns what each hook heard and the final assignments.
local function second_member_joins(extra)
  local topic = assert(kit.topic("rebal", { partitions = 4 }))
  local group = kit.group("rebal")
  local function member()
    local m = { assigns = {}, revokes = {}, held = {} }
    m.c = klua.consumer(kit.group_conf(copy_with({ group = group, topics = { topic },
      on_assign = function(ps)
        m.assigns[#m.assigns + 1] = partitions_of(ps)
        for _, p in ipairs(partitions_of(ps)) do m.held[p] = true end
      end,
      on_revoke = function(ps)
        m.revokes[#m.revokes + 1] = partitions_of(ps)
        for _, p in ipairs(partitions_of(ps)) do m.held[p] = nil end
      end }, extra)))
    return m
  end
  local function count(m) local n = 0 for _ in pairs(m.held) do n = n + 1 end return n end
  local a = member()
  assert_true(poll_until(a.c, function() return count(a) == 4 end, 30000), "first member holds 4")
  local b = member()
  local settled = function()
    if count(a) + count(b) ~= 4 or count(a) == 0 or count(b) == 0 then return false end
    for p in pairs(a.held) do if b.held[p] then return false end end
    -- librdkafka's own view agrees with what the hooks heard
    return #a.c:assignment() == count(a) and #b.c:assignment() == count(b)
  end
  local t = klua.spawn(function() poll_until(b.c, settled, 60000) end)
  poll_until(a.c, settled, 60000)
  t:join()
  assert_true(settled(), "the two members did not settle on 4 partitions between them")
  return a, b
end

-- An incremental rebalance: the first member gave up exactly what the second took (1 to 3 of the
-- 4 partitions) and kept the rest without a revoke.
local function assert_only_moved_partitions(a, b)
  local function flat(lists)
    local out = {}
    for _, r in ipairs(lists) do for _, p in ipairs(r) do out[#out + 1] = p end end
    table.sort(out)
    return out
  end
  local given, taken = flat(a.revokes), flat(b.assigns)
  assert_eq(given, taken)
  assert_true(#given >= 1 and #given <= 3, "moved " .. #given)
end

if kit.group_protocol() == "consumer" then
  test("KIP-848 rebalance: on_assign and on_revoke hear only the partitions that move", function()
    local a, b = second_member_joins()
    assert_eq(a.assigns[1], { 0, 1, 2, 3 })
    assert_only_moved_partitions(a, b)
    a.c:close(); b.c:close()
  end, { timeout_ms = 90000 })
else
  test("classic eager rebalance: the first member's on_revoke hears its whole assignment", function()
    local a, b = second_member_joins()
    assert_eq(a.assigns[1], { 0, 1, 2, 3 })
    assert_eq(a.revokes[1], { 0, 1, 2, 3 })
    a.c:close(); b.c:close()
  end, { timeout_ms = 90000 })

  test("classic cooperative-sticky rebalance: on_assign and on_revoke hear only the partitions that move", function()
    local a, b = second_member_joins{ ["partition.assignment.strategy"] = "cooperative-sticky" }
    assert_eq(a.assigns[1], { 0, 1, 2, 3 })
    assert_only_moved_partitions(a, b)
    a.c:close(); b.c:close()
  end, { timeout_ms = 90000 })
end
