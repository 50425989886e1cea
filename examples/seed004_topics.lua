-- Seed 004's topic table (the Todo app's event topics) as a klua.provision desired state.
--   klua provision examples/seed004_topics.lua            show the plan
--   klua provision examples/seed004_topics.lua --apply    create / fix the topics
--   klua provision examples/seed004_topics.lua --check    exit 4 on drift (CI)
-- Replication is 3 as in the seed, capped to the cluster's broker count (1 on a dev broker).
local DAY = 86400000
return {
  rules = { "{domain}.{event}" },
  cap_replication = true,
  defaults = { partitions = 3, replication_factor = 3,
               configs = { ["retention.ms"] = 7 * DAY, ["compression.type"] = "snappy" } },
  topics = {
    { name = "task.created" },                -- key: userId
    { name = "task.updated" },                -- key: taskId
    { name = "task.completed" },              -- key: taskId
    { name = "task.deleted" },                -- key: taskId
    { name = "user.registered", configs = { ["retention.ms"] = 30 * DAY } },
    { name = "user.authenticated", partitions = 1, configs = { ["retention.ms"] = 1 * DAY } },
    { name = "notification.sent" },           -- key: notificationId
    { name = "reminder.triggered" },          -- key: reminderId
  },
}
