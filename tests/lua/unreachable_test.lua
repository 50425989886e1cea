-- An unreachable cluster: every call that waits for a broker returns nil, err with
-- _ALL_BROKERS_DOWN once every broker was down for klua.unreachable.timeout.ms during the call
-- (never sooner), naming the bootstrap list and librdkafka's last connection error; the CLI's
-- one-liners exit 3 within a few seconds. No broker is needed: port 1 on loopback refuses every
-- connection, and the .invalid top-level domain never resolves (RFC 2606).

local REFUSED = { address = "127.0.0.1:1", cause = "Connection refused" }
local UNRESOLVABLE = { address = "no-such-host.invalid:9092", cause = "Failed to resolve" }
local BOUND = 1000
-- Above the bound: the timer's turn, a loaded machine (5 helpers share 2 cores).
local MARGIN = 2500

-- When the client made by the last quiet() first heard _ALL_BROKERS_DOWN (klua.now()).
local down_at

local function quiet(extra)
  down_at = nil
  local conf = { ["klua.unreachable.timeout.ms"] = BOUND, on_log = function() end,
                 on_error = function(e) if e.name == "_ALL_BROKERS_DOWN" and not down_at then down_at = klua.now() end end }
  for k, v in pairs(extra or {}) do conf[k] = v end
  return conf
end

-- Runs call() and checks its answer: nil, an _ALL_BROKERS_DOWN error naming the address and the
-- cause, the bound after the later of the call's start and the first _ALL_BROKERS_DOWN (a slow
-- DNS lookup delays that one), within the margin.
local function fails_unreachable(where, what, call)
  local t0 = klua.now()
  local res, err = call()
  local t1 = klua.now()
  assert_eq(res, nil, what .. " returned a result")
  assert_true(klua.errors.is(err), what .. ": no error object: " .. tostring(err))
  assert_eq(err.name, "_ALL_BROKERS_DOWN", what .. ": " .. tostring(err))
  assert_eq(err.code, klua.errors.codes._ALL_BROKERS_DOWN)
  assert_true(err.message:find(where.address, 1, true), what .. ": the address is missing: " .. err.message)
  assert_true(err.message:find(where.cause, 1, true), what .. ": the cause is missing: " .. err.message)
  assert_true(err.message:find("klua.unreachable.timeout.ms", 1, true), err.message)
  -- The cause without librdkafka's "(after 0ms in state CONNECT, 1 identical error(s) suppressed)".
  assert_false(err.message:find("(after ", 1, true) or err.message:find("suppressed", 1, true), err.message)
  assert_true(down_at ~= nil, what .. " failed but on_error never heard _ALL_BROKERS_DOWN")
  local took = t1 - math.max(t0, down_at)
  assert_true(took >= BOUND - 20, string.format("%s failed %.0f ms into the outage, before the %d ms bound", what, took, BOUND))
  assert_true(took < BOUND + MARGIN, string.format("%s failed %.0f ms into the outage (bound %d ms)", what, took, BOUND))
  return err
end

-- Runs the checks side by side (each call measures its own time): {name, call} pairs.
local function all_fail_unreachable(where, calls)
  local tasks = {}
  for i, c in ipairs(calls) do tasks[i] = klua.spawn(fails_unreachable, where, c[1], c[2]) end
  for _, t in ipairs(tasks) do t:join() end
end

for _, where in ipairs({ REFUSED, UNRESOLVABLE }) do
  test("admin calls on " .. where.address .. " end with _ALL_BROKERS_DOWN after the bound", function()
    local a = klua.admin(quiet{ brokers = where.address })
    all_fail_unreachable(where, {
      { "list_topics", function() return a:list_topics() end },
      { "describe_topics", function() return a:describe_topics({ "orders" }) end },
      { "describe_cluster", function() return a:describe_cluster() end },
      { "list_groups", function() return a:list_groups() end },
      { "describe_groups", function() return a:describe_groups({ "billing" }) end },
      { "list_group_offsets", function() return a:list_group_offsets("billing", { { topic = "orders", partition = 0 } }) end },
      { "list_offsets", function() return a:list_offsets({ { topic = "orders", partition = 0 } }) end },
      { "lag", function() return a:lag("billing") end },
      { "klua.lag", function() return klua.lag("billing", nil, { admin = a }) end },
    })
    a:close()
  end, { timeout_ms = 60000 })

  test("consumer calls on " .. where.address .. " end with _ALL_BROKERS_DOWN after the bound", function()
    local c = klua.consumer(quiet{ brokers = where.address, group = klua.testkit.group("unreachable") })
    local parts = { { topic = "orders", partition = 0 } }
    all_fail_unreachable(where, {
      { "c:committed", function() return c:committed(parts) end },
      { "c:watermarks", function() return c:watermarks("orders", 0) end },
      { "c:offsets_for_times", function()
        return c:offsets_for_times({ { topic = "orders", partition = 0, offset = klua.time() - 60000 } })
      end },
    })
    assert(c:assign({ { topic = "orders", partition = 0, offset = "beginning" } }))
    fails_unreachable(where, "c:messages{until_end=true}", function()
      local ok, err = pcall(function()
        for _ in c:messages{ until_end = true } do end
      end)
      assert_false(ok, "messages{until_end=true} ended without an error")
      return nil, err
    end)
    c:close()
  end, { timeout_ms = 60000 })
end

test("calls started together fail together, and a later call waits the bound again", function()
  local a = klua.admin(quiet{ brokers = REFUSED.address })
  local tasks = {}
  for i = 1, 3 do tasks[i] = klua.spawn(function() return select(2, a:list_topics()) end) end
  for i = 1, 3 do assert_eq(tasks[i]:join().name, "_ALL_BROKERS_DOWN") end
  -- The cluster has been down for over the bound: a new call still gives librdkafka's
  -- reconnects the bound before it gives up (never sooner).
  fails_unreachable(REFUSED, "list_topics again", function() return a:list_topics() end)
  a:close()
end, { timeout_ms = 60000 })

test("the bound is settable per client, and the call's own timeout still applies", function()
  local a = klua.admin(quiet{ brokers = REFUSED.address, ["klua.unreachable.timeout.ms"] = 2500 })
  local t0 = klua.now()
  local _, err = a:list_topics()
  local took = klua.now() - t0
  assert_eq(err.name, "_ALL_BROKERS_DOWN")
  assert_true(took >= 2480 and took < 2500 + MARGIN, string.format("%.0f ms", took))
  assert_true(err.message:find("2500 ms", 1, true), err.message)
  -- By now librdkafka has retried: its repeated error reads "(after ..., 1 identical error(s)
  -- suppressed)", and the cause is still the plain one.
  assert_true(err.message:find("Connection refused (in ", 1, true) or err.message:match("Connection refused$"), err.message)
  -- A call timeout below the bound ends the call first, as it always did.
  t0 = klua.now()
  local _, terr = a:list_groups{ timeout_ms = 500 }
  took = klua.now() - t0
  assert_true(terr.name == "_TIMED_OUT" or terr.name == "_TRANSPORT", terr.name .. ": " .. terr.message)
  assert_true(took < 2000, string.format("%.0f ms", took))
  a:close()
end, { timeout_ms = 60000 })

test("a bound of 0 gives up at the first _ALL_BROKERS_DOWN, and the loop goes on", function()
  local a = klua.admin(quiet{ brokers = REFUSED.address, ["klua.unreachable.timeout.ms"] = 0 })
  local t0 = klua.now()
  local _, err = a:list_topics()
  assert_eq(err.name, "_ALL_BROKERS_DOWN")
  assert_true(klua.now() - t0 < MARGIN, string.format("%.0f ms", klua.now() - t0))
  -- The outage goes on (the handle's timer keeps checking for a broker): other tasks still run.
  local t = klua.spawn(function() klua.sleep(1500); return "ran" end)
  assert_eq(t:join(), "ran")
  a:close()
end, { timeout_ms = 20000 })

test("klua.unreachable.timeout.ms must be a number of milliseconds", function()
  local ok, err = pcall(klua.admin, quiet{ brokers = REFUSED.address, ["klua.unreachable.timeout.ms"] = "soon" })
  assert_false(ok)
  assert_true(tostring(err):find("klua.unreachable.timeout.ms", 1, true), tostring(err))
  ok, err = pcall(klua.admin, quiet{ brokers = REFUSED.address, ["klua.unreachable.timeot.ms"] = 5 })
  assert_false(ok)
  assert_true(tostring(err):find("unknown klua property", 1, true), tostring(err))
end)

test("user information in the bootstrap list never reaches a message", function()
  local seen = {}
  local a = klua.admin{ brokers = "PLAINTEXT://user:hunter2@127.0.0.1:1", ["klua.unreachable.timeout.ms"] = BOUND,
                        on_error = function(e) seen[#seen + 1] = e.message end, on_log = function() end }
  local _, err = a:list_topics()
  a:close()
  assert_eq(err.name, "_ALL_BROKERS_DOWN")
  assert_true(err.message:find("PLAINTEXT://***@127.0.0.1:1", 1, true), err.message)
  assert_true(#seen > 0, "on_error heard nothing")
  for _, m in ipairs(seen) do assert_false(m:find("hunter2", 1, true), m) end
  assert_false(err.message:find("hunter2", 1, true), err.message)
end, { timeout_ms = 30000 })

-- The embedded cluster's brokers can be taken down and brought back: a broker back within the
-- bound lets a pending call go on and succeed.
test("a cluster back within the bound answers the pending call", function()
  klua.embedded.bootstrap()
  local down_heard = false
  local a = klua.admin{ ["klua.unreachable.timeout.ms"] = 4000, on_log = function() end,
                        on_error = function(e) if e.name == "_ALL_BROKERS_DOWN" then down_heard = true end end }
  assert(a:list_topics())
  for id = 1, 3 do klua.embedded.broker_down(id) end
  -- The brokers' connections close; wait for librdkafka to say they are all down.
  local waited = 0
  while not down_heard and waited < 10000 do klua.sleep(50); waited = waited + 50 end
  assert_true(down_heard, "no _ALL_BROKERS_DOWN after the embedded brokers went down")
  local back = klua.spawn(function()
    klua.sleep(1000)
    for id = 1, 3 do klua.embedded.broker_up(id) end
  end)
  local t0 = klua.now()
  local md, err = a:list_topics()
  back:join()
  assert_true(md ~= nil, "the call failed although the cluster came back: " .. tostring(err))
  assert_true(klua.now() - t0 < 4000 + MARGIN)
  a:close()
end, { timeout_ms = 60000 })

-- The CLI: each one-liner exits 3 within a few seconds, its last line naming the address. The
-- cases run side by side (each is a klua process waiting on a timer).
test("klua topics|groups|lag|consume (also -g)|topic|group|offsets|metadata exit 3 naming the address", function()
  local bin = assert(os.getenv("KLUA_BIN"), "KLUA_BIN is not set")
  local q = klua.testkit.quote
  local cases = {}
  for _, where in ipairs({ REFUSED, UNRESOLVABLE }) do
    for _, cmd in ipairs({ "topics", "groups", "lag billing", "consume orders -e", "consume orders -g billing -e" }) do
      cases[#cases + 1] = { where = where, cmd = cmd, bound = BOUND,
                            line = q(bin) .. " -b " .. q(where.address) .. " -X klua.unreachable.timeout.ms=" .. BOUND
                                   .. " " .. cmd }
    end
  end
  -- The admin one-liners, on one address.
  for _, cmd in ipairs({ "topic describe orders", "group describe billing", "offsets orders", "metadata" }) do
    cases[#cases + 1] = { where = REFUSED, cmd = cmd, bound = BOUND,
                          line = q(bin) .. " -b " .. q(REFUSED.address) .. " -X klua.unreachable.timeout.ms=" .. BOUND
                                 .. " " .. cmd }
  end
  -- And once with the default bound (5 s), set by nothing.
  cases[#cases + 1] = { where = REFUSED, cmd = "topics", bound = 5000,
                        line = q(bin) .. " -b " .. q(REFUSED.address) .. " topics" }
  local script = {}
  for i, c in ipairs(cases) do
    script[#script + 1] = string.format(
      "( s=$(date +%%s%%N); err=$(%s 2>&1 >/dev/null); rc=$?; e=$(date +%%s%%N); " ..
      "printf 'case %d %%d %%d %%s\\n' \"$rc\" $(( (e - s) / 1000000 )) \"$(printf '%%s' \"$err\" | tail -n 1)\" ) &",
      c.line, i)
  end
  script[#script + 1] = "wait"
  local out = klua.testkit.sh(table.concat(script, "\n"))
  local seen = 0
  for i, rc, ms, last in out:gmatch("case (%d+) (%d+) (%d+) ([^\n]*)") do
    local c = cases[tonumber(i)]
    local what = string.format("klua -b %s %s", c.where.address, c.cmd)
    seen = seen + 1
    assert_eq(tonumber(rc), 3, what .. ": " .. last)
    assert_true(last:match("^klua: "), what .. ": " .. last)
    assert_true(last:find(c.where.address, 1, true), what .. " does not name the address: " .. last)
    assert_true(last:find(c.where.cause, 1, true), what .. " does not name the cause: " .. last)
    assert_false(last:find("traceback", 1, true), last)
    ms = tonumber(ms)
    assert_true(ms >= c.bound - 20 and ms < c.bound + 4000, string.format("%s took %d ms (bound %d ms)", what, ms, c.bound))
  end
  assert_eq(seen, #cases, out)
end, { timeout_ms = 120000 })

test("-X klua.unreachable.timeout.ms: checked before anything runs, one line, exit 2", function()
  local bin = assert(os.getenv("KLUA_BIN"), "KLUA_BIN is not set")
  local q = klua.testkit.quote
  for value, says in pairs({ ["soon"] = "expected a number of milliseconds", ["-5"] = "expected a number of milliseconds" }) do
    local out, status = klua.testkit.sh(q(bin) .. " -b 127.0.0.1:1 -X klua.unreachable.timeout.ms=" .. q(value)
                                        .. " topics 2>&1")
    assert_eq(status, 2, out)
    assert_true(out:find(says, 1, true) and out:find("klua.unreachable.timeout.ms", 1, true), out)
    assert_eq(select(2, out:gsub("\n", "")), 1, "one line: " .. out)
  end
  local out, status = klua.testkit.sh(q(bin) .. " -b 127.0.0.1:1 -X klua.unreachable.timeot.ms=5 topics 2>&1")
  assert_eq(status, 2, out)
  assert_true(out:find("unknown klua property 'klua.unreachable.timeot.ms'", 1, true), out)
end)
