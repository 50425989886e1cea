-- The control operations of a Kafka control API (seed 000) as one script:
-- health, topics with partition counts, create/delete, groups with member counts and lag,
-- per-partition detail, reset a group to earliest (only when it is empty), delete a group,
-- and produce a keyed message getting back partition, offset and timestamp.
--   klua run examples/control.lua                 (embedded cluster: admin calls it cannot serve say so)
--   klua -b localhost:9092 run examples/control.lua
local admin = klua.admin()
local function show(label, value, err)
  if value == nil and err then
    print(string.format("%-22s %s", label, err.name == klua.errors.KLUA_EMBEDDED_UNSUPPORTED and
      "(not on the embedded cluster)" or tostring(err)))
    return nil
  end
  return value
end

-- health
local rtt, err = admin:ping()
print(string.format("%-22s %s", "health", rtt and string.format("ok (%.1f ms)", rtt) or tostring(err)))

-- create a topic, produce keyed messages, consume part of them with a group
local topic, group = "control-demo-" .. klua.uuid():sub(1, 6), "control-demo-" .. klua.uuid():sub(1, 6)
local created = assert(admin:create_topics({ { name = topic, partitions = 3 } }, { if_not_exists = true }))
assert(not created[1].error, created[1].error)
local p = klua.producer()
for i = 1, 9 do
  local r = assert(p:produce{ topic = topic, key = "user-" .. (i % 3), value = "event " .. i })
  if i == 1 then
    print(string.format("%-22s partition %d, offset %d, timestamp %s", "produced", r.partition, r.offset,
      tostring(r.timestamp)))
  end
end
local c = klua.consumer{ group = group, topics = { topic }, ["auto.offset.reset"] = "earliest" }
local seen = 0
for msg in c:messages{ timeout_ms = 10000 } do
  seen = seen + 1
  c:store(msg)
  if seen == 5 then break end
end
assert(c:commit())
c:close()

-- topics with partition counts
print("\ntopics:")
for _, t in ipairs(assert(admin:list_topics())) do
  if t.name:find("^control%-demo") then print(string.format("  %-28s %d partitions", t.name, t.partitions)) end
end

-- groups with member counts and lag
print("\ngroups:")
local desc = show("describe_groups", admin:describe_groups({ group }))
local members = desc and desc[1] and desc[1].members and #desc[1].members or "?"
local lag = assert(klua.lag(group))
print(string.format("  %-28s members %s, lag %d", group, tostring(members), lag.lag))
print("\nper partition:")
for _, part in ipairs(lag.partitions) do
  print(string.format("  %s [%d]  committed %-4s high %-4d lag %d", part.topic, part.partition,
    tostring(part.committed or "-"), part.high, part.lag))
end

-- reset to earliest: refused while the group has members; it is empty now
local plan = assert(admin:reset_group_offsets(group, { topic }, "earliest", { dry_run = true }))
print("\nreset plan (dry run):")
for _, r in ipairs(plan) do print(string.format("  %s [%d]  %s -> %s", r.topic, r.partition, tostring(r.current), tostring(r.new))) end
-- a group that was just left can take a moment to be seen as empty (the embedded cluster waits
-- for the session timeout): retry for a while, as an operator would
local deadline = klua.now() + 20000
while true do
  local ok, rerr = admin:reset_group_offsets(group, { topic }, "earliest")
  if ok then
    print(string.format("%-22s total lag now %d", "\nreset to earliest:", assert(klua.lag(group)).lag))
    break
  end
  if rerr.name == klua.errors.KLUA_EMBEDDED_UNSUPPORTED then show("reset_group_offsets", nil, rerr) break end
  if rerr.name ~= "NON_EMPTY_GROUP" or klua.now() > deadline then error(rerr) end
  print("  (waiting for the group to be empty)")
  klua.sleep(2000)
end

-- delete the group and the topic
show("delete_groups", admin:delete_groups({ group }))
show("delete_topics", admin:delete_topics({ topic }))
print("\ndone")
