-- The runtime: tasks, sleep, cancellation, time, randomness, errors.

test("require('klua') is the global klua", function()
  assert_true(require("klua") == klua)
end)

test("spawn does not run before it returns, join returns the results", function()
  local ran = false
  local t = klua.spawn(function(a, b) ran = true; return a + b, "x" end, 2, 3)
  assert_eq(ran, false)
  local s, x = t:join()
  assert_eq(s, 5)
  assert_eq(x, "x")
  assert_eq(t:status(), "done")
  -- joining a finished task again gives the same results
  assert_eq(t:join(), 5)
end)

test("join returns nil, err for a failed task, with a traceback", function()
  local t = klua.spawn(function() error(klua.errors.new{ name = "MY_ERROR", message = "bad" }) end)
  local r, err = t:join()
  assert_eq(r, nil)
  assert_eq(err.name, "MY_ERROR")
  assert_match(err.traceback, "stack traceback")
  assert_eq(t:status(), "failed")
end)

test("sleeps interleave tasks in time order", function()
  local order = {}
  local a = klua.spawn(function() klua.sleep(60); order[#order + 1] = "a" end)
  local b = klua.spawn(function() klua.sleep(10); order[#order + 1] = "b" end)
  local c = klua.spawn(function() klua.sleep(30); order[#order + 1] = "c" end)
  a:join(); b:join(); c:join()
  assert_eq(order, { "b", "c", "a" })
end)

test("sleep waits at least the time asked", function()
  local t0 = klua.now()
  klua.sleep(50)
  assert_true(klua.now() - t0 >= 49, "slept " .. (klua.now() - t0))
end)

test("a wait after a long stretch without waiting still waits its whole time", function()
  klua.sleep(1)  -- a loop turn: the loop's cached time is fresh here
  local other = klua.spawn(function() klua.sleep(10) end)  -- wakes the loop 10 ms into the work below
  local t0 = klua.now()
  while klua.now() - t0 < 300 do end  -- 300 ms of work with no loop turn
  local t1 = klua.now()
  klua.sleep(200)
  -- Armed from the loop's stale time, the wait ended at the loop's next turn, when the other
  -- task's timer woke it (its deadline was already 100 ms past).
  other:join()
  assert_true(klua.now() - t1 >= 199, "slept " .. (klua.now() - t1))
end)

test("cancel wakes a waiting task with KLUA_CANCELLED, and later waits raise too", function()
  local iterations = 0
  local caught
  local t = klua.spawn(function()
    local ok, err = pcall(function() while true do iterations = iterations + 1; klua.sleep(1000) end end)
    caught = err
    -- a cancelled task cannot wait any more
    klua.sleep(1)
  end)
  while t:status() ~= "waiting" do coroutine.yield() end
  t:cancel()
  local r, err = t:join()
  assert_eq(r, nil)
  assert_error(caught, "KLUA_CANCELLED")
  assert_error(err, "KLUA_CANCELLED")
  assert_eq(iterations, 1)
end)

test("join with a timeout returns _TIMED_OUT naming the operation", function()
  local t = klua.spawn(function() klua.sleep(5000) end)
  local r, err = t:join({ timeout_ms = 20 })
  assert_eq(r, nil)
  assert_error(err, "_TIMED_OUT")
  assert_match(tostring(err), "task:join timed out after 20 ms")
  t:cancel()
end)

test("task:join(number), the old spelling, still times out and warns once", function()
  local bin = os.getenv("KLUA_BIN") or "./build/klua"
  local script = [[
    for _ = 1, 2 do
      local t = klua.spawn(function() klua.sleep(5000) end)
      local r, err = t:join(20)
      assert(r == nil and err.name == "_TIMED_OUT", tostring(err))
      t:cancel()
    end
    print("done")
  ]]
  local out, rc = klua.testkit.sh(klua.testkit.quote(bin) .. " -e " .. klua.testkit.quote(script) .. " 2>&1")
  assert_eq(rc, 0, out)
  assert_match(out, "done")
  local _, n = out:gsub("deprecated: task:join%(timeout_ms%); use task:join%({timeout_ms=%.%.%.}%)", "")
  assert_eq(n, 1, out)
end)

test("waits of one duration time out in order; a wait that completed early never fires", function()
  -- Waits sharing a timeout duration share one timer: unlinking a completed wait from the
  -- middle or the head must leave the others' timeouts intact.
  local blocker = klua.spawn(function() klua.sleep(5000) end)
  local order, joiners = {}, {}
  for k = 1, 5 do
    joiners[k] = klua.spawn(function()
      local r, err = blocker:join({ timeout_ms = 40 })
      order[#order + 1] = { k = k, r = r, err = err and err.name }
    end)
    klua.sleep(2)
  end
  local early = klua.spawn(function() return "early" end)
  local quick = klua.spawn(function() return early:join({ timeout_ms = 40 }) end)
  assert_eq(quick:join(), "early")
  local ok_task = klua.spawn(function() klua.sleep(1); return 1 end)
  assert_eq(klua.spawn(function() return ok_task:join({ timeout_ms = 40 }) end):join(), 1)
  for k = 1, 5 do joiners[k]:join() end
  assert_eq(#order, 5)
  for k = 1, 5 do
    assert_eq(order[k].k, k)
    assert_eq(order[k].r, nil)
    assert_eq(order[k].err, "_TIMED_OUT")
  end
  blocker:cancel()
end)

test("coroutine.yield in a task yields to the other tasks", function()
  local log = {}
  local a = klua.spawn(function() for i = 1, 3 do log[#log + 1] = "a" .. i; coroutine.yield() end end)
  local b = klua.spawn(function() for i = 1, 3 do log[#log + 1] = "b" .. i; coroutine.yield() end end)
  a:join(); b:join()
  assert_eq(log, { "a1", "b1", "a2", "b2", "a3", "b3" })
end)

test("waiting from a plain coroutine is refused with a clear error", function()
  local co = coroutine.create(function() klua.sleep(1) end)
  local ok, err = coroutine.resume(co)
  assert_eq(ok, false)
  assert_match(tostring(err), "must be called from a klua task")
end)

test("now is monotonic milliseconds, time is epoch milliseconds", function()
  local a = klua.now()
  local b = klua.now()
  assert_true(b >= a)
  local t = klua.time()
  assert_true(t > 1.6e12 and t < 4e12, "epoch ms: " .. t)
end)

test("uuid v4 and v7 have the right shape and version", function()
  local v4 = klua.uuid()
  assert_match(v4, "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$")
  local v7 = klua.uuid(7)
  assert_match(v7, "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-7%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$")
  -- v7 starts with the epoch milliseconds
  local ms = tonumber(v7:sub(1, 8) .. v7:sub(10, 13), 16)
  assert_true(math.abs(ms - klua.time()) < 5000, "v7 timestamp " .. ms)
  assert_true(klua.uuid() ~= klua.uuid())
  assert_raises(function() klua.uuid(5) end, "uuid version must be 4 or 7")
end)

test("random_bytes gives n bytes", function()
  assert_eq(#klua.random_bytes(0), 0)
  assert_eq(#klua.random_bytes(33), 33)
  assert_true(klua.random_bytes(16) ~= klua.random_bytes(16))
  assert_raises(function() klua.random_bytes("x") end, "bad argument #1")
end)

test("errors print readably and carry the conventions' fields", function()
  local e = klua.errors.new{ name = "X", message = "went wrong", topic = "t", op = "op" }
  assert_eq(tostring(e), "X: went wrong (topic t, in op)")
  assert_eq(e.retriable, false)
  assert_eq(e.fatal, false)
  assert_true(klua.errors.is(e))
  assert_eq(klua.errors.KLUA_CANCELLED, "KLUA_CANCELLED")
  assert_eq(klua.errors.UNKNOWN_TOPIC_OR_PART, "UNKNOWN_TOPIC_OR_PART")
  local k = klua.errors.new{ name = "UNKNOWN_TOPIC_OR_PART", code = klua.errors.codes.UNKNOWN_TOPIC_OR_PART, kafka = true, message = "no topic",
                             topic = "t", partition = 2, timeout_ms = 500 }
  assert_eq({ k.code, k.kafka, k.partition, k.timeout_ms }, { klua.errors.codes.UNKNOWN_TOPIC_OR_PART, true, 2, 500 })
  assert_eq(tostring(k), "UNKNOWN_TOPIC_OR_PART: no topic (topic t [2])")
end)

test("math.random is seeded per process", function()
  -- LuaJIT's default seed would give this exact first value in every process.
  local p = io.popen("./build/klua -e 'print(math.random(1e9))' 2>/dev/null; ./build/klua -e 'print(math.random(1e9))' 2>/dev/null")
  if not p then return end
  local out = p:read("*a")
  p:close()
  local a, b = out:match("(%d+)\n(%d+)")
  if a then assert_true(a ~= b, "two processes drew " .. a .. " and " .. b) end
end)

test("a file run with dofile can wait", function()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write("klua.sleep(1) return 'waited'")
  f:close()
  local r = dofile(path)
  os.remove(path)
  assert_eq(r, "waited")
end)

test("waits with many different durations all time out, in order (idle timer lists are recycled)", function()
  -- 200 durations: more than the scheduler keeps idle lists for, so lists are closed and made
  -- again while other waits are pending on their own lists.
  local order = {}
  local tasks = {}
  for i = 200, 1, -1 do
    tasks[#tasks + 1] = klua.spawn(function() klua.sleep(i * 2) order[#order + 1] = i return true end)
  end
  for _, t in ipairs(tasks) do assert(t:join({ timeout_ms = 5000 })) end
  assert_eq(#order, 200)
  for i = 2, #order do assert_true(order[i - 1] < order[i], "woke out of order at " .. i) end
  for i = 1, 150 do klua.sleep(i % 7) end  -- sequential short waits of changing durations
  local t0 = klua.now()
  klua.sleep(30)
  assert_true(klua.now() - t0 >= 29, "a wait after the recycling still lasts its time")
end)

-- host/lua_next.cpp: Debian's `luajit` (git 20220320) can miscompile a compiled next() into a
-- SIGSEGV. klua builds on Debian's luajit2 (OpenResty's LuaJIT, with the fix); on any other LuaJIT,
-- next and pairs are classic C functions, which the JIT never compiles (KLUA_UNCOMPILED_NEXT=1
-- forces that, so the fallback is tested here too).
local NEXT_CHECK = [[
local funcinfo = require("jit.util").funcinfo
-- the same traversal: every entry once, of a table with an array part and a hash part
local t, want_keys, want_sum = {}, 0, 0
for i = 1, 300 do t[i] = i; want_keys = want_keys + 1; want_sum = want_sum + i end
for i = 1, 700 do t["k" .. i] = i * 3; want_keys = want_keys + 1; want_sum = want_sum + i * 3 end
t[true], t[0.5] = 1, 2
want_keys, want_sum = want_keys + 2, want_sum + 3
for _ = 1, 200 do  -- enough rounds for the JIT to compile the loops
  local keys, sum, seen = 0, 0, {}
  for key, v in pairs(t) do
    assert(not seen[key], "a key came twice")
    seen[key] = true
    keys, sum = keys + 1, sum + v
  end
  assert(keys == want_keys and sum == want_sum, keys .. " keys, sum " .. sum)
  local n, key = 0, next(t)
  while key ~= nil do n, key = n + 1, next(t, key) end
  assert(n == want_keys)
end
for key in pairs(t) do t[key] = 0 end  -- assigning to existing fields while traversing is allowed
assert(next({}) == nil)
local f, s, k = pairs(t)
assert(f == next and s == t and k == nil, "pairs(t) returns next, t, nil")
local ok, err = pcall(next, {}, "not a key")
assert(not ok and tostring(err):find("invalid key to 'next'", 1, true), tostring(err))
ok, err = pcall(function() local v = next(42) return v end)  -- not a tail call: the name is known
assert(not ok and tostring(err):find("bad argument #1 to 'next' (table expected, got number)", 1, true), tostring(err))
ok, err = pcall(function() local a, b, c = pairs(nil) return a, b, c end)
assert(not ok and tostring(err):find("table expected, got nil", 1, true), tostring(err))
-- jit.util.funcinfo gives LuaJIT's fast functions an ffid, a classic C function none
print(package.preload["table.nkeys"] ~= nil, funcinfo(next).ffid ~= nil, funcinfo(pairs).ffid ~= nil,
      funcinfo(ipairs).ffid ~= nil)
]]

local function next_check(env)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(NEXT_CHECK)
  f:close()
  local out = klua.testkit.sh(env .. " " .. os.getenv("KLUA_BIN") .. " run " .. path .. " 2>&1")
  os.remove(path)
  return out
end

test("next and pairs: LuaJIT's own on OpenResty's LuaJIT, classic C functions on any other", function()
  -- The build's LuaJIT (tools/dev installs Debian's luajit2) is OpenResty's: LuaJIT's own next.
  assert_eq(next_check("KLUA_UNCOMPILED_NEXT="), "true\ttrue\ttrue\ttrue\n")
  -- Forced fallback: klua's C functions (no ffid); ipairs stays LuaJIT's own, so the check tells them apart.
  assert_eq(next_check("KLUA_UNCOMPILED_NEXT=1"), "true\tfalse\tfalse\ttrue\n")
end)
