-- Shared by the worker's embedded-cluster tests (worker_test.lua, worker_batch_test.lua):
--   local kit = dofile("tests/lua/helpers/worker_kit.lua")
local M = {}
local name = klua.testkit.fresh
local FAST = { ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500 }
M.FAST = FAST

-- a quiet worker with short group timeouts (a rebalance in a test takes seconds, not minutes)
function M.worker(opts)
  for k, v in pairs(FAST) do opts[k] = opts[k] or v end
  opts.quiet = true
  return klua.worker(opts)
end

-- runs w in a task; stops it once until_fn() is true (or after limit ms); returns the task
function M.run_until(w, until_fn, limit)
  local t = klua.spawn(function() return w:run() end)
  local deadline = klua.now() + (limit or 20000)
  while klua.now() < deadline and not until_fn() do klua.sleep(20) end
  w:stop()
  return t
end

-- the topic's messages read by a consumer of its own: n of them (or all until timeout_ms passes
-- without one)
function M.read_all(topic, n, timeout_ms)
  local c = klua.consumer{ group = name("reader"), topics = { topic }, ["auto.offset.reset"] = "earliest",
                           ["session.timeout.ms"] = 6000 }
  local got = {}
  for msg in c:messages{ timeout_ms = timeout_ms } do
    got[#got + 1] = msg
    if n and #got == n then break end
  end
  c:close()
  return got
end

return M
