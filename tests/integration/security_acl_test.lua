-- ACLs on the secure test broker (StandardAuthorizer, allow.everyone.if.no.acl.found=false):
-- a principal without grants (klua-alice over SASL_SSL) is refused a produce, a consume (group
-- or topic), a describe and a create, each with an error naming the resource and the call,
-- at once (well under 5 s), not after the call's timeout. Python confluent-kafka, as the same
-- principal, hears the same error codes; with grants the same calls go through.
local S = dofile("tests/integration/helpers/secure.lua")
local PYTHON = dofile("tests/integration/helpers/python.lua")
local q = klua.testkit.quote
local fresh = klua.testkit.fresh

local FAST_MS = 5000

local function assert_fast(ms, what)
  assert_true(ms < FAST_MS, string.format("%s answered after %.0f ms", what, ms))
end

test("a denied produce names the topic, at once (and an idempotent one is refused too)", function()
  local t = S.topic("acl-p")
  local p = klua.producer(S.sasl("alice", { ["enable.idempotence"] = false }))
  local ms, r, err = S.timed(p.produce, p, { topic = t, value = "x" })
  p:close()
  assert_nil(r)
  assert_error(err, "TOPIC_AUTHORIZATION_FAILED")
  assert_match(err.message, 'delivery to topic "' .. t:gsub("%-", "%%-") .. '" failed')
  assert_eq(err.topic, t)
  assert_fast(ms, "produce")
  -- librdkafka's default-config producer asks for a producer id first: refused for want of any
  -- Write grant (CLUSTER_AUTHORIZATION_FAILED, fatal) or at the topic, whichever comes first.
  p = klua.producer(S.sasl("alice"))
  ms, r, err = S.timed(p.produce, p, { topic = t, value = "x" })
  p:close()
  assert_nil(r)
  assert_true(err.name == "TOPIC_AUTHORIZATION_FAILED" or err.name == "CLUSTER_AUTHORIZATION_FAILED", tostring(err))
  assert_fast(ms, "idempotent produce")
end)

test("a denied consume: c:poll returns the refusal (group, then topic) instead of waiting its timeout", function()
  local t = S.topic("acl-c")
  local g = fresh("acl-g")
  local c = klua.consumer(S.sasl("alice", { group = g, topics = { t }, ["auto.offset.reset"] = "earliest" }))
  local ms, m, err = S.timed(c.poll, c, 20000)
  c:close()
  assert_nil(m)
  assert_error(err, "GROUP_AUTHORIZATION_FAILED")
  assert_eq(err.group, g)
  assert_match(tostring(err), "group " .. g:gsub("%-", "%%-"))
  assert_fast(ms, "poll (group denied)")
  -- With the group allowed, the topic is what is refused.
  S.grant("User:klua-alice", { resource_type = "group", name = g, operation = "read" })
  c = klua.consumer(S.sasl("alice", { group = g, topics = { t }, ["auto.offset.reset"] = "earliest" }))
  ms, m, err = S.timed(c.poll, c, 20000)
  c:close()
  assert_nil(m)
  assert_error(err, "TOPIC_AUTHORIZATION_FAILED")
  assert_match(err.message, t:gsub("%-", "%%-"))
  assert_fast(ms, "poll (topic denied)")
end)

test("a denied consume under the consumer group protocol (KIP-848) names the group, then the topic", function()
  local t = S.topic("acl-c848")
  local g = fresh("acl-g848")
  local conf = { group = g, topics = { t }, ["group.protocol"] = "consumer", ["auto.offset.reset"] = "earliest" }
  local c = klua.consumer(S.sasl("alice", conf))
  local ms, m, err = S.timed(c.poll, c, 20000)
  c:close()
  assert_nil(m)
  assert_error(err, "GROUP_AUTHORIZATION_FAILED")
  assert_eq(err.group, g)
  assert_fast(ms, "poll (group denied, KIP-848)")
  S.grant("User:klua-alice", { resource_type = "group", name = g, operation = "read" })
  c = klua.consumer(S.sasl("alice", conf))
  ms, m, err = S.timed(c.poll, c, 20000)
  c:close()
  assert_nil(m)
  assert_error(err, "TOPIC_AUTHORIZATION_FAILED")
  assert_match(err.message, t:gsub("%-", "%%-"))
  assert_fast(ms, "poll (topic denied, KIP-848)")
end)

test("a denied describe and a denied create name the topic and the call, at once", function()
  local t = S.topic("acl-d")
  local a = klua.admin(S.sasl("alice"))
  local ms, r, err = S.timed(a.describe_topics, a, { t })
  assert(r, tostring(err))
  assert_error(r[1].error, "TOPIC_AUTHORIZATION_FAILED")
  assert_eq(r[1].error.topic, t)
  assert_eq(r[1].error.op, "admin:describe_topics")
  assert_fast(ms, "describe_topics")
  ms, r, err = S.timed(a.describe_configs, a, { { type = "topic", name = t } })
  assert(r, tostring(err))
  assert_error(r[1].error, "TOPIC_AUTHORIZATION_FAILED")
  assert_eq(r[1].error.topic, t)
  assert_fast(ms, "describe_configs")
  local new = fresh("acl-new")
  ms, r, err = S.timed(a.create_topics, a, { { name = new } })
  assert(r, tostring(err))
  assert_error(r[1].error, "TOPIC_AUTHORIZATION_FAILED")
  assert_eq(r[1].error.topic, new)
  assert_eq(r[1].error.op, "admin:create_topics")
  assert_fast(ms, "create_topics")
  a:close()
  -- and nothing was created (asked as the super user)
  local sa = S.admin()
  r = assert(sa:describe_topics({ new }))
  sa:close()
  assert_error(r[1].error, "UNKNOWN_TOPIC_OR_PART")
end)

-- librdkafka's ListOffsets looks the leaders up first and, finding none for a topic it may not
-- describe, failed the call with "_NOENT: No leaders found"; by name, the topic was missing from
-- the metadata and read as "does not exist".
test("a denied list_offsets names the topic with TOPIC_AUTHORIZATION_FAILED (by partition and by name)", function()
  local t = S.topic("acl-lo")
  local a = klua.admin(S.sasl("alice"))
  local ms, r, err = S.timed(a.list_offsets, a, { { topic = t, partition = 0 } })
  assert(r, tostring(err))
  assert_error(r[1].error, "TOPIC_AUTHORIZATION_FAILED")
  assert_eq({ r[1].error.topic, r[1].error.partition, r[1].error.op }, { t, 0, "admin:list_offsets" })
  assert_true(r[1].error.message:find(t, 1, true), r[1].error.message)
  assert_fast(ms, "list_offsets (a partition)")
  ms, r, err = S.timed(a.list_offsets, a, { t })
  assert(r, tostring(err))
  assert_error(r[1].error, "TOPIC_AUTHORIZATION_FAILED")
  assert_eq(r[1].error.topic, t)
  assert_fast(ms, "list_offsets (a topic name)")
  a:close()
end)

test("Python confluent-kafka, as the same principal, hears the same codes", function()
  local t = S.topic("acl-py")
  local script = [[
import json, sys
from confluent_kafka import Producer, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
conf = {"bootstrap.servers": sys.argv[1], "security.protocol": "SASL_SSL", "ssl.ca.location": sys.argv[2],
        "sasl.mechanisms": "PLAIN", "sasl.username": "klua-alice", "sasl.password": "klua-alice-secret"}
out = {}
res = []
p = Producer(dict(conf, **{"enable.idempotence": False}))
p.produce(sys.argv[3], b"x", on_delivery=lambda err, msg: res.append(err))
p.flush(10)
out["produce"] = res[0].name() if res and res[0] else None
a = AdminClient(conf)
f = a.create_topics([NewTopic(sys.argv[3] + "-new", 1)])[sys.argv[3] + "-new"]
try:
    f.result(10)
    out["create"] = None
except KafkaException as e:
    out["create"] = e.args[0].name()
print(json.dumps(out))
]]
  local dir = os.tmpname()
  local f = assert(io.open(dir, "w"))
  f:write(script)
  f:close()
  local outp, status = klua.testkit.sh("timeout 60 " .. q(PYTHON) .. " " .. q(dir) .. " " .. q(S.sasl_addr) .. " "
                                       .. q(S.certs .. "/ca.pem") .. " " .. q(t) .. " 2>/dev/null")
  os.remove(dir)
  assert_eq(status, 0, outp)
  local py = assert(klua.json.decode(outp))
  local p = klua.producer(S.sasl("alice", { ["enable.idempotence"] = false }))
  local _, perr = p:produce{ topic = t, value = "x" }
  p:close()
  local a = klua.admin(S.sasl("alice"))
  local r = assert(a:create_topics({ { name = t .. "-new" } }))
  a:close()
  assert_eq(py.produce, "TOPIC_AUTHORIZATION_FAILED")
  assert_eq(perr.name, py.produce)
  assert_eq(r[1].error.name, py.create)
end)

test("with grants, the same principal produces and consumes (the refusals above were the ACLs)", function()
  local t = S.topic("acl-ok")
  local g = fresh("acl-okg")
  S.grant("User:klua-bob", { resource_type = "topic", name = t, operation = "write" },
    { resource_type = "topic", name = t, operation = "read" },
    { resource_type = "group", name = g, operation = "read" })
  local p = klua.producer(S.sasl("bob"))
  local r, err
  local deadline = klua.now() + 15000
  repeat  -- the grant reaches the authorizer through the metadata log: moments later
    r, err = p:produce{ topic = t, key = "k", value = "granted" }
    if not r then klua.sleep(200) end
  until r or klua.now() > deadline
  assert(r, tostring(err))
  p:close()
  local c = klua.consumer(S.sasl("bob", { group = g, topics = { t }, ["auto.offset.reset"] = "earliest" }))
  local m = klua.testkit.poll_n(c, 1, 20000)[1]
  c:close()
  assert_eq(m.value, "granted")
  assert_eq(S.kcat("-C -t " .. q(t) .. " -e -q"), "granted")
end)
