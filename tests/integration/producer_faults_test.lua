-- Broker faults during 100,000 idempotent sends (issue 17): nothing lost, nothing duplicated,
-- every failure reported with librdkafka's persisted status.
--
-- The faults are real and happen to a broker of this test's own (its state next to the shared
-- one's, so the broker other tests run against is never touched), through tools/kafka-broker:
-- `pause` (SIGSTOP: connections stay open, nothing answers), `resume`, `kill` (SIGKILL, data and
-- ports kept) and `start` on the same data. kcat, not klua, reads back what arrived.
--
-- tools/kafka-broker runs through testkit.sh, which blocks the loop while it runs: librdkafka's
-- threads go on meanwhile, and the reports wait in its queue (a restart blocks the loop ~10 s).
local sh, quote = klua.testkit.sh, klua.testkit.quote
local STATE = assert(os.getenv("KLUA_BROKER_STATE"), "KLUA_BROKER_STATE is not set") .. "-faults"
local N = 100000

local function broker(args)
  local out, status = sh("KLUA_BROKER_STATE=" .. quote(STATE) .. " tools/kafka-broker " .. args .. " 2>&1")
  assert(status == 0, "tools/kafka-broker " .. args .. " failed (" .. tostring(status) .. "):\n" .. out)
  return out
end

local function with_broker(fn)
  return function()
    local addr = broker("start"):match("(127%.0%.0%.1:%d+)%s*$")
    local ok, err = pcall(function()
      assert_not_nil(addr, "no address from tools/kafka-broker start")
      fn(addr)
    end)
    broker("stop")  -- always: the test's own broker, data dir and all
    if not ok then error(err, 0) end
  end
end

local function create_topic(addr, prefix, partitions)
  local topic = klua.testkit.fresh(prefix)
  local a = klua.admin{ brokers = addr }
  assert_eq(assert(a:create_topics{ { name = topic, partitions = partitions } })[1].error, nil)
  a:close()
  return topic
end

-- What kcat reads back (read_committed is irrelevant: no transactions): key -> times seen.
local function read_back(addr, topic)
  local out, status = sh("kcat -b " .. quote(addr) .. " -C -t " .. quote(topic) .. " -e -q -f '%k\\n'")
  assert_eq(status, 0, out)
  local seen, total = {}, 0
  for k in out:gmatch("([^\n]*)\n") do
    seen[k] = (seen[k] or 0) + 1
    total = total + 1
  end
  return seen, total
end

-- A producer recording each key's outcome: ok[key] = true, or failed[key] = err.
local function recording_producer(addr, extra)
  local rec = { ok = {}, failed = {}, n_ok = 0, n_failed = 0 }
  local conf = {
    brokers = addr, ["linger.ms"] = 5, ["reconnect.backoff.max.ms"] = 500, on_log = function() end,
    on_error = function() end,
    on_delivery = function(report, err)
      local key = report.opaque  -- the key, copied by p:send (reports carry no key)
      assert(rec.ok[key] == nil and rec.failed[key] == nil, "two reports for " .. tostring(key))
      if err then
        rec.failed[key], rec.n_failed = err, rec.n_failed + 1
      else
        rec.ok[key], rec.n_ok = true, rec.n_ok + 1
      end
    end,
  }
  for k, v in pairs(extra) do conf[k] = v end
  return klua.producer(conf), rec
end

-- Sends N keyed messages, 20 a millisecond at most, calling at_count[i]() once i are sent.
local function send_all(p, topic, at_count)
  local started = klua.now()
  for i = 1, N do
    local key = "k" .. i
    assert(p:send{ topic = topic, key = key, value = "v" .. i, opaque = key })
    if at_count[i] then at_count[i]() end
    if i % 1000 == 0 then
      -- ~50 ms per 1,000: the faults land in the middle of the stream, not after it.
      klua.sleep(math.max(0, started + i / 20 - klua.now()))
    end
  end
end

test("paused past request.timeout.ms, then killed and restarted: all 100,000 delivered exactly once", with_broker(function(addr)
  local topic = create_topic(addr, "faults-pause", 6)
  local p, rec = recording_producer(addr, {
    -- A request unanswered for 2 s is retried: the pause makes librdkafka resend batches the
    -- broker may already hold, which idempotence must deduplicate.
    ["request.timeout.ms"] = 2000, ["message.timeout.ms"] = 120000,
  })
  assert(p:produce{ topic = topic, key = "k0", value = "before" })  -- the producer id before any fault
  local events, t0 = {}, klua.now()
  local function event(what) events[#events + 1] = string.format("%s at %.1f s, %d delivered", what, (klua.now() - t0) / 1000, rec.n_ok) end
  send_all(p, topic, {
    [20000] = function()
      broker("pause"); event("paused")
      klua.sleep(5000)  -- longer than request.timeout.ms, far shorter than message.timeout.ms
      broker("resume"); event("resumed")
    end,
    [60000] = function()
      broker("kill"); event("killed")
      broker("start"); event("restarted")
    end,
  })
  event("all sent")
  assert(p:flush{ timeout_ms = 150000 })
  event("flushed")
  print("faults: " .. table.concat(events, "; "))
  assert_eq(rec.n_failed, 0, "failed deliveries: " .. tostring(next(rec.failed) and select(2, next(rec.failed))))
  assert_eq(rec.n_ok, N)
  p:close()
  local seen, total = read_back(addr, topic)
  for i = 1, N do
    local k = "k" .. i
    assert_eq(seen[k], 1, k .. " read back " .. tostring(seen[k] or 0) .. " times")
  end
  assert_eq(total, N + 1)
end), { timeout_ms = 280000 })

test("killed and not back before message.timeout.ms: every message is delivered once or reported failed " ..
     "with its persisted status, and no NOT_PERSISTED one is in the log", with_broker(function(addr)
  local topic = create_topic(addr, "faults-kill", 6)
  local p, rec = recording_producer(addr, { ["message.timeout.ms"] = 4000 })
  assert(p:produce{ topic = topic, key = "k0", value = "before" })
  local killed_at
  send_all(p, topic, {
    [50000] = function() broker("kill"); killed_at = rec.n_ok end,
  })
  local ok, err = p:flush{ timeout_ms = 30000 }
  -- The unlistened-failure count is not what flush reports here: on_delivery listened.
  assert_true(ok or err.name ~= "_TIMED_OUT", "flush timed out: a report never came")
  assert_eq(rec.n_ok + rec.n_failed, N, "reports for every message")
  assert_true(rec.n_failed > 0, "the kill failed nothing: it came too late to test anything")
  local by_status = {}
  for key, e in pairs(rec.failed) do
    assert_eq(e.name, "_MSG_TIMED_OUT", key .. ": " .. tostring(e))
    local status = assert(e.persisted, key .. ": the failure carries no persisted status")
    assert_true(status == "not_persisted" or status == "possibly_persisted", key .. ": persisted = " .. status)
    by_status[status] = (by_status[status] or 0) + 1
  end
  p:close()
  broker("start")
  local seen, total = read_back(addr, topic)
  local possibly_present = 0
  for i = 1, N do
    local k = "k" .. i
    if rec.ok[k] then
      assert_eq(seen[k], 1, k .. " was reported delivered and read back " .. tostring(seen[k] or 0) .. " times")
    else
      local status = rec.failed[k].persisted
      if status == "not_persisted" then
        assert_nil(seen[k], k .. " was reported NOT_PERSISTED but is in the log")
      else
        assert_true((seen[k] or 0) <= 1, k .. " read back " .. tostring(seen[k]) .. " times")
        possibly_present = possibly_present + (seen[k] or 0)
      end
    end
  end
  print(string.format("kill at %d delivered: %d delivered, %d failed (%d not_persisted, %d possibly_persisted, "
    .. "%d of which are in the log)", killed_at, rec.n_ok, rec.n_failed, by_status.not_persisted or 0,
    by_status.possibly_persisted or 0, possibly_present))
  assert_eq(total, 1 + rec.n_ok + possibly_present)
end), { timeout_ms = 200000 })
