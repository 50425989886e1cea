-- The Kafka-backed dedupe store's replay time (klua.worker.dedupe_store, issue 16).
--
--   klua -b BROKERS run bench/dedupe_replay.lua [--ids N] [--partitions P] [--topic NAME]
--
-- Creates a fresh store topic (through dedupe_store.open: compact,delete, retention 1 day), fills
-- it with N distinct ids of 36 bytes (klua.uuid(), as x-event-id headers usually are; value the
-- epoch-ms time, as store:add writes), untimed, then opens the store again and prints one line of
-- JSON: {"ids":N,"loaded":L,"replay_ms":T,"ids_per_s":R,"lua_mb":M}, where replay_ms is the
-- store's own measure (offset look-ups and reading up to the end offsets read at open) and lua_mb
-- the Lua heap after the replay (the ids in memory). Needs a real broker (-b or KLUA_BROKERS).
local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { ids = "positive", partitions = "positive", topic = "string" },
                           { ids = 100000, partitions = 3 })
local ds = require("klua.worker.dedupe_store")
local topic = o.topic or ("bench-dedupe-" .. klua.uuid():sub(1, 8))
local WINDOW = 86400000

local s = assert(ds.open{ topic = topic, window_ms = WINDOW, partitions = o.partitions })
assert(s:close())
local p = klua.producer{ ["linger.ms"] = 20 }
for i = 1, o.ids do
  assert(p:send{ topic = topic, key = klua.uuid(), value = string.format("%d", klua.time()) })
end
assert(p:flush())
p:close()

collectgarbage("collect")
local base = collectgarbage("count")
s = assert(ds.open{ topic = topic, window_ms = WINDOW })
collectgarbage("collect")
local mb = (collectgarbage("count") - base) / 1024
print(klua.json.encode{ ids = o.ids, loaded = s.loaded, replay_ms = math.floor(s.replay_ms + 0.5),
                        ids_per_s = math.floor(s.loaded / (s.replay_ms / 1000)), lua_mb = math.floor(mb * 10 + 0.5) / 10 })
assert(s:close())
if s.loaded ~= o.ids then io.stderr:write("loaded ", s.loaded, " of ", o.ids, " ids\n"); os.exit(1) end
