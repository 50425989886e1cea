-- Spawn microbenchmark: the scheduler's cost of a short task (a new coroutine or a reused one,
-- the task's bookkeeping, its first run and its end), as a server's handler or a worker's pays it.
--
--   klua run bench/spawn.lua [--tasks 200000] [--batch 1000] [--yield 1]
--
-- Spawns --tasks tasks, --batch at a time, each returning at once (with --yield 1: after one
-- klua.sleep(0), a wait and a wake-up); the spawning task sleeps 0 ms after each batch so that it
-- runs. Prints one line of JSON: {"tasks":N,"yield":B,"seconds":T,"us_per_task":U} (CPU time,
-- os.clock, after a warm-up batch).

local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { tasks = "positive", batch = "positive", yield = "count" },
                           { tasks = 200000, batch = 1000 })
local n, batch, yield = o.tasks, o.batch, (o.yield or 0) > 0
local done = 0
local function plain(x) done = done + 1 return x end
local function yielding(x) klua.sleep(0) done = done + 1 return x end
local fn = yield and yielding or plain

local function run(count)
  local target = done + count
  local spawned = 0
  while spawned < count do
    local k = math.min(batch, count - spawned)
    for i = 1, k do klua.spawn(fn, i) end
    spawned = spawned + k
    klua.sleep(0)
  end
  while done < target do klua.sleep(0) end
end

run(batch)  -- warm-up
local t0 = os.clock()
run(n)
local secs = os.clock() - t0
print(string.format('{"tasks":%d,"yield":%s,"seconds":%.3f,"us_per_task":%.3f}', n, tostring(yield), secs,
                    secs / n * 1e6))
