-- tests/integration/helpers/commit_consumer.lua TOPIC GROUP BATCH STALL_AT STOP_AFTER
-- A consumer that commits only what it processed: it takes batches of up to BATCH messages
-- (c:poll_batch), "processes" each by printing "P O KEY VALUE" (unbuffered), and commits the
-- batch's offsets (synchronously) once the whole batch is done. STALL_AT > 0: after the
-- STALL_AT-th message, when more of its batch are left, it prints "stalled" and waits to be
-- killed there (processed, not committed). STOP_AFTER > 0: exits 0 after committing the batch
-- that reaches STOP_AFTER messages. Static membership (group.instance.id), so that a restarted
-- process takes the killed one's partitions at once. Gives up (exit 1) after 60 s.
local topic, group, batch, stall_at, stop_after = ...
batch, stall_at, stop_after = tonumber(batch), tonumber(stall_at), tonumber(stop_after)
assert(topic and group and batch and stall_at and stop_after,
       "usage: commit_consumer.lua TOPIC GROUP BATCH STALL_AT STOP_AFTER")
io.stdout:setvbuf("no")
local c = klua.consumer(klua.testkit.group_conf{
  group = group, topics = { topic }, ["enable.auto.commit"] = false, ["auto.offset.reset"] = "earliest",
  ["group.instance.id"] = "member-1" })
local count, deadline = 0, klua.now() + 60000
while klua.now() < deadline do
  local msgs = assert(c:poll_batch(batch, { timeout_ms = 200 }))
  local last = {}
  for i, msg in ipairs(msgs) do
    io.stdout:write(string.format("%d %d %s %s\n", msg.partition, msg.offset, msg.key, msg.value))
    count = count + 1
    last[msg.partition] = msg.offset + 1
    if stall_at > 0 and count >= stall_at and i < #msgs then
      io.stdout:write("stalled\n")
      klua.sleep(300000)
    end
  end
  if next(last) then
    local list = {}
    for p, off in pairs(last) do list[#list + 1] = { topic = topic, partition = p, offset = off } end
    assert(c:commit(list))
  end
  if stop_after > 0 and count >= stop_after then
    c:close()
    return
  end
end
io.stdout:write("gave up after ", count, " messages\n")
klua.exit(1)
