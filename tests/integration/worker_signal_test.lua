-- A worker process stopped by SIGINT/SIGTERM mid-handler (real broker): the handler in flight
-- finishes exactly once, its offset is committed (seen from outside the process), nothing new
-- starts, the group is left, and the process exits 130/143.
local proc = dofile("tests/integration/helpers/proc.lua")
local kit = klua.testkit

local function wait_for(h, text, ms)
  local deadline = klua.now() + ms
  while klua.now() < deadline do
    if h:read():find(text, 1, true) then return true end
    if h:status() then return false end
    klua.sleep(20)
  end
  return false
end

for _, sig in ipairs({ { "INT", 130 }, { "TERM", 143 } }) do
  test("SIG" .. sig[1] .. " mid-handler: the handler completes once and its offset is committed", function()
    local topic = assert(kit.topic("wsig", { partitions = 1 }))
    local group = kit.group("wsig")
    assert(kit.produce(topic, { "m1", "m2", "m3" }))
    local dir = proc.tmpdir("klua-wsig")
    local h = proc.spawn(dir, "w", "tests/integration/helpers/slow_worker.lua", { topic, group })
    local ok, err = pcall(function()
      assert_true(wait_for(h, "start m1\n", 30000), "the handler did not start: " .. h:describe())
      klua.sleep(200) -- inside the handler's 1.5 s wait
      h:kill(sig[1])
      assert_eq(h:wait(30000), sig[2], h:describe())
      local out = h:read()
      assert_eq(out, "start m1\nend m1\n", h:describe())
      assert_match(h:stderr(), "klua.worker " .. group:gsub("%-", "%%-") .. ": consumed=%d+ processed=1 ")
      local lag = assert(klua.lag(group, { topic }))
      assert_eq({ lag.partitions[1].committed, lag.lag }, { 1, 2 })
      -- a new member of the group starts after the committed m1
      local c = klua.consumer(kit.group_conf{ group = group, topics = { topic } })
      local m = kit.poll_n(c, 1, 20000)[1]
      c:close()
      assert_eq(m and m.value, "m2")
    end)
    h:ensure_dead()
    proc.remove_dir(dir)
    if not ok then error(err, 0) end
  end, { timeout_ms = 90000 })
end
