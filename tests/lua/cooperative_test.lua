-- Cooperative-sticky rebalancing on the embedded cluster (the classic protocol's default assignors are eager).
local name = klua.testkit.fresh
local function conf(t)
  local c = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000,
              ["heartbeat.interval.ms"] = 500, ["partition.assignment.strategy"] = "cooperative-sticky" }
  for k, v in pairs(t) do c[k] = v end
  return c
end
local function key(p) return p.topic .. ":" .. p.partition end

test("a second member takes partitions incrementally; every message is processed at least once", function()
  local t = name("coop")
  klua.embedded.create_topic(t, 4)
  local group = name("g")
  local p = klua.producer()
  local total = 400
  for i = 1, total do p:send{ topic = t, value = tostring(i), partition = i % 4 } end
  assert(p:flush())

  local seen = {}
  local events = { a = {}, b = {} }
  local function member(id)
    return klua.consumer(conf{ group = group, topics = { t },
      on_assign = function(parts) events[id][#events[id] + 1] = { "assign", #parts } end,
      on_revoke = function(parts) events[id][#events[id] + 1] = { "revoke", #parts } end })
  end
  local a = member("a")
  local b
  local function run(c)
    while true do
      local msg = c:poll(200)
      if msg then
        seen[msg.value] = true
        c:store(msg)
        klua.sleep(20)  -- processing time, so that the second member joins mid-stream
      end
      local n = 0
      for _ in pairs(seen) do n = n + 1 end
      -- done when everything was processed and the second member has taken its share
      -- (on a slow machine a could finish first: then it waits for the handover)
      local b_owns = 0
      for _, e in ipairs(events.b) do if e[1] == "assign" then b_owns = b_owns + e[2] end end
      if n == total and b_owns > 0 then return end
    end
  end
  local ta = klua.spawn(run, a)
  -- when a has its first assignment and some messages, bring in b
  while #events.a == 0 do klua.sleep(50) end
  b = member("b")
  local tb = klua.spawn(run, b)
  local r, err = ta:join({ timeout_ms = 60000 })
  assert_true(err == nil, tostring(err))
  tb:cancel()
  local n = 0
  for _ in pairs(seen) do n = n + 1 end
  assert_eq(n, total)
  -- a got all 4 first; then, incrementally, gave some (not all) to b and kept the rest
  assert_eq(events.a[1], { "assign", 4 })
  local a_revoked = 0
  for _, e in ipairs(events.a) do if e[1] == "revoke" then a_revoked = a_revoked + e[2] end end
  assert_true(a_revoked >= 1 and a_revoked < 4, "a gave up " .. a_revoked .. " partitions")
  local b_assigned = 0
  for _, e in ipairs(events.b) do if e[1] == "assign" then b_assigned = b_assigned + e[2] end end
  assert_eq(b_assigned, a_revoked)
  a:close()
  b:close()
end, { timeout_ms = 90000 })

test("an assignment lost to a session timeout is reported through on_lost, not on_revoke", function()
  local t = name("lost")
  klua.embedded.create_topic(t, 2, 1)
  local lost, revoked, assigned = nil, nil, nil
  local c = klua.consumer(conf{ group = name("g"), topics = { t },
    on_assign = function(parts) assigned = parts end,
    on_revoke = function(parts) revoked = parts end,
    on_lost = function(parts) lost = parts end,
    on_error = function() end, on_log = function() end })
  while not assigned do c:poll(100) end
  -- every broker down for longer than the session timeout: the group moves on without us
  for id = 1, 3 do klua.embedded.broker_down(id) end
  local deadline = klua.now() + 30000
  while not lost and klua.now() < deadline do c:poll(200) end
  for id = 1, 3 do klua.embedded.broker_up(id) end
  assert_true(lost ~= nil, "on_lost was not called")
  assert_eq(#lost, 2)
  assert_eq(revoked, nil)
  c:close()
end, { timeout_ms = 60000 })
