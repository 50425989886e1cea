-- Seed 004 (the Todo app's event backbone) end to end with its Avro schemas and a schema registry:
--   klua -b BROKERS --schema-registry URL run examples/seed004_avro.lua [N] [PREFIX]
-- 1. provisions the seed's topic table (examples/seed004_topics.lua), every name behind PREFIX (default a
--    fresh "s004-xxxxxx.", so that runs don't collide);
-- 2. registers the seed's two event schemas, TaskCreatedEvent and TaskCompletedEvent, under the subjects
--    PREFIXtask.created-value and PREFIXtask.completed-value (the topic name strategy, as the seed's
--    Confluent serializers use), and checks that registering again gives the same ids;
-- 3. publishes N task.created events (default 200) keyed by userId, as the seed's KafkaProducerService
--    does, and a task.completed event keyed by taskId for every third task;
-- 4. consumes both topics in one group with one Avro deserializer (each record names its schema id), and
--    hands each event to the handler registered for its topic, as the seed's KafkaConsumerService does;
-- 5. checks what the handlers saw: every event once, the defaults of the optional fields, the enum, and
--    the completion times; prints
--      seed004 avro ok: created=200 completed=67 users=10 schema ids 1,2
--    or "seed004 avro FAIL: ..." and exits 4.
local N = tonumber(arg and arg[1] or "") or 200
local prefix = (arg and arg[2]) or ("s004-" .. klua.uuid():sub(1, 6) .. ".")

-- The seed's schemas, as written there.
local TASK_CREATED = [[
{
  "type": "record",
  "name": "TaskCreatedEvent",
  "namespace": "com.todoapp.events",
  "fields": [
    { "name": "eventId", "type": "string", "doc": "Unique event identifier (UUID)" },
    { "name": "eventTimestamp", "type": "long", "doc": "Event creation timestamp (milliseconds)" },
    { "name": "userId", "type": "string", "doc": "User ID who created the task" },
    { "name": "taskId", "type": "string", "doc": "New task ID" },
    { "name": "title", "type": "string", "doc": "Task title" },
    { "name": "description", "type": ["null", "string"], "default": null, "doc": "Task description" },
    { "name": "priority", "type": { "type": "enum", "name": "Priority", "symbols": ["CRITICAL", "HIGH", "MEDIUM", "LOW"] },
      "default": "MEDIUM" },
    { "name": "dueDate", "type": ["null", "long"], "default": null, "doc": "Due date timestamp (milliseconds)" },
    { "name": "categoryId", "type": ["null", "string"], "default": null },
    { "name": "tags", "type": { "type": "array", "items": "string" }, "default": [] }
  ]
}]]
local TASK_COMPLETED = [[
{
  "type": "record",
  "name": "TaskCompletedEvent",
  "namespace": "com.todoapp.events",
  "fields": [
    { "name": "eventId", "type": "string" },
    { "name": "eventTimestamp", "type": "long" },
    { "name": "userId", "type": "string" },
    { "name": "taskId", "type": "string" },
    { "name": "completedAt", "type": "long", "doc": "Completion timestamp" },
    { "name": "timeToComplete", "type": ["null", "long"], "default": null, "doc": "Time from creation to completion (ms)" }
  ]
}]]

---------------------------------------------------------------------------------------------------------
-- 1. The topic table.
local provision = require("klua.provision")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "examples"
local state = assert(provision.load(dir .. "/seed004_topics.lua"))
for _, t in ipairs(state.topics) do t.name = prefix .. t.name end
if prefix ~= "" then state.rules = { prefix:gsub("[{}]", "") .. "{domain}.{event}" } end
local applied = assert(provision.apply(state))
assert(applied.failed == 0 and applied.converged, "provisioning the topic table failed")
local CREATED, COMPLETED = prefix .. "task.created", prefix .. "task.completed"
print(("provisioned %d topics (%s*)"):format(#state.topics, prefix))

---------------------------------------------------------------------------------------------------------
-- 2. The schemas, registered under the topic name strategy's subjects.
local reg = assert(klua.registry())
local ids = {}
for topic, schema in pairs{ [CREATED] = TASK_CREATED, [COMPLETED] = TASK_COMPLETED } do
  local id = assert(reg:register(topic .. "-value", schema))
  assert(reg:register(topic .. "-value", schema) == id, "registering the same schema again gave another id")
  ids[topic] = id
end
print(("schemas: %s-value id %d, %s-value id %d"):format(CREATED, ids[CREATED], COMPLETED, ids[COMPLETED]))

---------------------------------------------------------------------------------------------------------
-- 3. The producer service: one serializer per event type.
local enc_created = klua.serde.avro{ schema = TASK_CREATED, topic = CREATED, registry = reg }
local enc_completed = klua.serde.avro{ schema = TASK_COMPLETED, topic = COMPLETED, registry = reg }
local USERS = 10
local PRIORITIES = { "CRITICAL", "HIGH", "MEDIUM", "LOW" }
local created_at = {}  -- taskId -> eventTimestamp
local completed_n = 0
do
  local p = klua.producer{ ["linger.ms"] = 5 }
  local now = klua.time()
  for i = 1, N do
    local user, task = ("user-%02d"):format(i % USERS), ("task-%05d"):format(i)
    local ev = { eventId = klua.uuid(), eventTimestamp = now + i, userId = user, taskId = task,
                 title = "Task " .. i, tags = { "seed004", i % 2 == 0 and "even" or "odd" } }
    -- the optional fields are left out (nil: the schema's defaults) on most events
    if i % 4 == 0 then ev.description = "described " .. i end
    if i % 5 ~= 0 then ev.priority = PRIORITIES[i % 4 + 1] end  -- else the default, MEDIUM
    if i % 3 == 0 then ev.dueDate = now + 86400000 end
    created_at[task] = ev.eventTimestamp
    assert(p:send{ topic = CREATED, key = user, value = assert(enc_created(ev, { topic = CREATED, field = "value" })) })
    if i % 3 == 1 then
      completed_n = completed_n + 1
      local done = { eventId = klua.uuid(), eventTimestamp = now + N + i, userId = user, taskId = task,
                     completedAt = now + N + i, timeToComplete = N + i - i }
      assert(p:send{ topic = COMPLETED, key = task, value = assert(enc_completed(done, { topic = COMPLETED, field = "value" })) })
    end
  end
  assert(p:flush())
  p:close()
end
print(("published %d task.created and %d task.completed events"):format(N, completed_n))

---------------------------------------------------------------------------------------------------------
-- 4. The consumer service: handlers registered per topic, one deserializer for both (a record's schema
-- comes from the id in its frame).
local handlers = {}
local function register_handler(topic, fn) handlers[topic] = fn end
local seen_created, seen_completed, users, problems = {}, {}, {}, {}
local function expect(cond, what) if not cond then problems[#problems + 1] = what end end
register_handler(CREATED, function(ev, msg)
  expect(msg.key == ev.userId, "task.created keyed by userId")
  expect(not seen_created[ev.taskId], "task.created twice: " .. ev.taskId)
  seen_created[ev.taskId] = true
  users[ev.userId] = true
  local i = tonumber(ev.taskId:match("%d+"))
  expect(ev.priority == (i % 5 ~= 0 and PRIORITIES[i % 4 + 1] or "MEDIUM"), "priority of " .. ev.taskId)
  expect((ev.description ~= nil) == (i % 4 == 0), "description of " .. ev.taskId)
  expect((ev.dueDate ~= nil) == (i % 3 == 0), "dueDate of " .. ev.taskId)
  expect(ev.categoryId == nil, "categoryId defaults to null")
  expect(#ev.tags == 2 and ev.tags[1] == "seed004", "tags of " .. ev.taskId)
  expect(ev.eventTimestamp == created_at[ev.taskId], "eventTimestamp of " .. ev.taskId)
end)
register_handler(COMPLETED, function(ev, msg)
  expect(msg.key == ev.taskId, "task.completed keyed by taskId")
  expect(not seen_completed[ev.taskId], "task.completed twice: " .. ev.taskId)
  seen_completed[ev.taskId] = true
  expect(ev.completedAt - created_at[ev.taskId] == N, "completedAt of " .. ev.taskId)
  expect(ev.timeToComplete == N, "timeToComplete of " .. ev.taskId)
end)

local _, decode = klua.serde.avro{ registry = reg }
local c = klua.consumer{ group = prefix .. "todo-app-consumers", topics = { CREATED, COMPLETED },
                         ["auto.offset.reset"] = "earliest", value_deserializer = decode }
local total, want = 0, N + completed_n
local deadline = klua.now() + 60000
while total < want and klua.now() < deadline do
  local msg, err = c:poll{ timeout_ms = 1000 }
  if msg then
    handlers[msg.topic](msg.value, msg)
    c:store(msg)
    total = total + 1
  elseif err then
    problems[#problems + 1] = tostring(err)
    break
  end
end
c:close()

---------------------------------------------------------------------------------------------------------
-- 5. The outcome.
local nusers = 0
for _ in pairs(users) do nusers = nusers + 1 end
local ncreated, ncompleted = 0, 0
for _ in pairs(seen_created) do ncreated = ncreated + 1 end
for _ in pairs(seen_completed) do ncompleted = ncompleted + 1 end
expect(ncreated == N, ("%d task.created events handled, expected %d"):format(ncreated, N))
expect(ncompleted == completed_n, ("%d task.completed events handled, expected %d"):format(ncompleted, completed_n))
expect(nusers == math.min(USERS, N), ("%d users, expected %d"):format(nusers, math.min(USERS, N)))
if #problems > 0 then
  print("seed004 avro FAIL: " .. table.concat(problems, "; ", 1, math.min(#problems, 10)))
  klua.exit(4)
end
print(("seed004 avro ok: created=%d completed=%d users=%d schema ids %d,%d"):format(ncreated, ncompleted, nusers,
  ids[CREATED], ids[COMPLETED]))
