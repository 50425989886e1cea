-- Admin benchmark (real broker: the embedded cluster serves no admin requests).
--
--   klua -b BROKERS run bench/admin.lua [--topics 100] [--lag-partitions 1000] [--lag-runs 5]
--
-- 1. Topics created per second: one create_topics call for --topics new topics
--    (1 partition, replication factor 1), timed until the broker answered for
--    all of them; they are deleted afterwards (untimed).
-- 2. klua.lag of a group with committed offsets on every partition of a
--    --lag-partitions topic: one warm-up call (leaders known, connections up),
--    then --lag-runs timed calls.
-- Prints one line of JSON:
--   {"topics":N,"create_s":T,"topics_per_s":R,"lag_partitions":P,"lag_ms":[...]}

local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { topics = "positive", ["lag-partitions"] = "positive", ["lag-runs"] = "positive" },
                           { topics = 100, ["lag-partitions"] = 1000, ["lag-runs"] = 5 })
local ntopics, lag_partitions, lag_runs = o.topics, o.lag_partitions, o.lag_runs

local admin = klua.admin()
local run = klua.uuid():sub(1, 8)

local function ok_all(results, what)
  for _, r in ipairs(results) do
    if r.error then error(what .. ": " .. tostring(r.error), 0) end
  end
end

local specs, names = {}, {}
for k = 1, ntopics do
  names[k] = ("bench-admin-%s-%d"):format(run, k)
  specs[k] = { name = names[k], partitions = 1, replication_factor = 1 }
end
local t0 = klua.now()
ok_all(assert(admin:create_topics(specs)), "create_topics")
local create_s = (klua.now() - t0) / 1000
ok_all(assert(admin:delete_topics(names)), "delete_topics")

local big, group = "bench-lag-" .. run, "bench-lag-g-" .. run
ok_all(assert(admin:create_topics({ { name = big, partitions = lag_partitions, replication_factor = 1 } })),
  "create_topics")
local offsets = {}
for p = 0, lag_partitions - 1 do offsets[#offsets + 1] = { topic = big, partition = p, offset = 0 } end
assert(admin:alter_group_offsets(group, offsets))
assert(klua.lag(group)) -- warm-up
local lag_ms = {}
for k = 1, lag_runs do
  local t = klua.now()
  local snap = assert(klua.lag(group))
  lag_ms[k] = ("%.1f"):format(klua.now() - t)
  if #snap.partitions ~= lag_partitions then
    error(("klua.lag saw %d partitions, expected %d"):format(#snap.partitions, lag_partitions), 0)
  end
end
admin:delete_topics({ big })
print(('{"topics":%d,"create_s":%.4f,"topics_per_s":%.1f,"lag_partitions":%d,"lag_ms":[%s]}'):format(
  ntopics, create_s, ntopics / create_s, lag_partitions, table.concat(lag_ms, ",")))
io.stdout:flush()
admin:close()
