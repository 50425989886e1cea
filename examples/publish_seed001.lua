-- Seed 001: CustomService publishes item created/updated/deleted integration events in envelopes
-- (eventId, timestamp, eventType, eventVersion, sourceService, correlationId, and beside them the
-- event's own fields: seed 001's flat layout) with tracing
-- headers (x-correlation-id, W3C traceparent), keyed by userId so each user's events stay in order on
-- one partition. Then it reads one event back and decodes it.
--   klua run examples/publish_seed001.lua [SERVICE]        (embedded cluster)
--   klua -b localhost:9092 run examples/publish_seed001.lua
-- Topics follow {service}.{domain}.{event-type} and are provisioned first (3 partitions each).
local envelope = require("klua.envelope")
local provision = require("klua.provision")
local service = ... or "customservice"

local topics = {}
for _, event in ipairs { "created", "updated", "deleted" } do topics[event] = service .. ".item." .. event end
assert(provision.apply({ rules = { "{service}.{domain}.{event-type}" }, cap_replication = true,
                         defaults = { partitions = 3, replication_factor = 3 },
                         topics = { topics.created, topics.updated, topics.deleted } }, { quiet = true }))

local p = klua.producer()
local users = { "550e8400-e29b-41d4-a716-446655440000", "660e8400-e29b-41d4-a716-446655440001" }
local sent = {}                         -- every report, with the envelope that made it
local partition_of = {}                 -- user id -> the partition its events went to

local function publish(event, payload, parent)
  local env = envelope.new { type = event, version = "1.0", source = service, payload = payload, layout = "flat" }
  local msg = envelope.message(env, { topic = topics[event], key_field = "userId", parent = parent })
  local report = assert(p:produce(msg))
  local uid = payload.userId
  partition_of[uid] = partition_of[uid] or report.partition
  assert(partition_of[uid] == report.partition, "user " .. uid .. "'s events changed partition")
  sent[#sent + 1] = { report = report, env = env, msg = msg }
  print(("%-8s %s [%d] @%d  user=%s  correlation=%s"):format(event, report.topic, report.partition,
    report.offset, uid:sub(1, 8), env.correlation_id:sub(-12)))
  return msg
end

for i, uid in ipairs(users) do
  local item = klua.uuid()
  local created = publish("created", { customItemId = item, name = "Sample Item " .. i, userId = uid,
                                       categoryId = klua.uuid(), status = "Active" })
  -- the follow-up events continue the first one's trace and correlation id
  publish("updated", { customItemId = item, name = "Updated Item " .. i, userId = uid, status = "Active",
                       modifiedBy = "user@example.com" }, created)
  publish("deleted", { customItemId = item, name = "Deleted Item " .. i, userId = uid,
                       deletedBy = "user@example.com" }, created)
end

-- Read back the second user's "updated" event and decode it.
local pick = sent[5]
local c = klua.consumer { group = "seed001-" .. klua.uuid(), ["auto.offset.reset"] = "earliest" }
assert(c:assign({ { topic = pick.report.topic, partition = pick.report.partition, offset = pick.report.offset } }))
local msg = assert(c:poll(10000), "the event did not come back")
local env = assert(envelope.decode(msg))
assert(env.id == pick.env.id and env.type == "updated" and env.source == service and env.layout == "flat")
assert(klua.json.decode(msg.value).customItemId == env.payload.customItemId, "the event's fields sit at the top level")
assert(env.key == users[2] and env.payload.userId == users[2])
assert(env.correlation_id == sent[4].env.correlation_id, "updated carries the created event's correlation id")
local created_trace = envelope.parse_traceparent(envelope.header(sent[4].msg, "traceparent"))
assert(env.trace.trace_id == created_trace.trace_id, "updated continues the created event's trace")
print(("decoded  %s %s v%s from %s at %s: item %s, trace %s"):format(env.type, env.id, env.version, env.source,
  envelope.iso8601(env.time), env.payload.customItemId:sub(1, 8), env.trace.trace_id))
print(("seed 001: %d events published for %d users, each user on one partition"):format(#sent, #users))
