-- Transactions against a real Kafka broker (KLUA_BROKERS, see tests/broker.cmake): what the
-- embedded mock can't show (it writes no transaction markers and stores no transactional offset
-- commits). Every test uses fresh transactional ids, topics and groups.
local fresh = klua.testkit.fresh

local function txn_producer(extra)
  local conf = { ["transactional.id"] = fresh("txid"), ["transaction.timeout.ms"] = 10000 }
  for k, v in pairs(extra or {}) do conf[k] = v end
  return klua.producer(conf)
end

local function new_consumer(topic, isolation, group, extra)
  local conf = { group = group or fresh("g"), topics = { topic }, ["auto.offset.reset"] = "earliest",
                 ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 1000,
                 ["isolation.level"] = isolation }
  for k, v in pairs(extra or {}) do conf[k] = v end
  return klua.consumer(conf)
end

local poll_n = klua.testkit.poll_n

local function values(msgs)
  local out = {}
  for i, m in ipairs(msgs) do out[i] = m.value end
  return out
end

local assert_nothing_more = klua.testkit.assert_nothing_more

-- Creates the topic (auto-created, one partition) with a committed empty transaction's worth of
-- nothing: one plain record, so consumers' first fetch finds a partition.
local function seed(topic, values_list)
  local p = klua.producer()
  for _, v in ipairs(values_list) do assert(p:produce{ topic = topic, value = v }) end
  p:close()
end

test("consume-transform-produce: output and input offsets commit together", function()
  local input, output, group = fresh("in"), fresh("out"), fresh("ctp")
  seed(input, { "a", "b", "c", "d", "e" })
  local p = txn_producer()
  local c = new_consumer(input, "read_committed", group, { ["enable.auto.commit"] = false })
  -- first transaction: a, b, c, offsets given as the last message processed
  local batch = poll_n(c, 3)
  assert_eq(values(batch), { "a", "b", "c" })
  local ok, err = p:transaction(function()
    for _, m in ipairs(batch) do assert(p:produce{ topic = output, key = m.value, value = m.value:upper() }) end
    assert(p:send_offsets(c, batch[#batch]))
    return "ok"
  end)
  assert_eq(err, nil)
  assert_eq(ok, "ok")
  c:close()
  -- a new member of the group starts after the committed input offset
  local c2 = new_consumer(input, "read_committed", group, { ["enable.auto.commit"] = false })
  local rest = poll_n(c2, 2)
  assert_eq(values(rest), { "d", "e" })
  assert_eq(rest[1].offset, 3)
  -- second transaction: the rest, offsets from the consumer's positions
  assert_eq(p:begin(), true)
  for _, m in ipairs(rest) do assert(p:produce{ topic = output, key = m.value, value = m.value:upper() }) end
  assert_eq(p:send_offsets(c2), true)
  assert_eq(p:commit(), true)
  c2:close()
  local c3 = new_consumer(input, "read_committed", group)
  assert_nothing_more(c3, 3000)
  c3:close()
  -- the output holds exactly the transformed records, in order
  local out = new_consumer(output, "read_committed")
  assert_eq(values(poll_n(out, 5)), { "A", "B", "C", "D", "E" })
  assert_nothing_more(out, 1000)
  out:close()
  p:close()
end, { timeout_ms = 120000 })

test("send_offsets(consumer) never commits past what the script has polled", function()
  local input, group = fresh("in"), fresh("pos")
  seed(input, { "m1", "m2", "m3", "m4", "m5" })
  local p = txn_producer()
  local c = new_consumer(input, "read_committed", group, { ["enable.auto.commit"] = false })
  local got = poll_n(c, 2)
  assert_eq(values(got), { "m1", "m2" })
  klua.sleep(1000)  -- m3..m5 are fetched into the consumer's buffer by now
  assert_eq(p:begin(), true)
  assert_eq(c:position()[1].offset, 2)
  assert_eq(p:send_offsets(c), true)  -- the script's positions, not librdkafka's fetch position
  assert_eq(p:commit(), true)
  c:close()
  local c2 = new_consumer(input, "read_committed", group)
  local rest = poll_n(c2, 3)
  assert_eq(values(rest), { "m3", "m4", "m5" })
  assert_eq(rest[1].offset, 2)
  c2:close()
  p:close()
end, { timeout_ms = 120000 })

test("an aborted transaction is invisible to read_committed and visible to read_uncommitted", function()
  local t = fresh("abort")
  local p = txn_producer()
  assert_eq(p:begin(), true)
  assert(p:produce{ topic = t, value = "aborted-1" })
  assert(p:produce{ topic = t, value = "aborted-2" })
  assert_eq(p:abort(), true)
  assert_eq(p:begin(), true)
  assert(p:produce{ topic = t, value = "committed" })
  assert_eq(p:commit(), true)
  local rc = new_consumer(t, "read_committed")
  assert_eq(values(poll_n(rc, 1)), { "committed" })
  assert_nothing_more(rc, 1500)
  rc:close()
  local ru = new_consumer(t, "read_uncommitted")
  assert_eq(values(poll_n(ru, 3)), { "aborted-1", "aborted-2", "committed" })
  assert_nothing_more(ru, 1000)
  ru:close()
  p:close()
end, { timeout_ms = 120000 })

test("an open transaction's records appear to read_committed only at commit", function()
  local t = fresh("open")
  local p = txn_producer()
  assert_eq(p:begin(), true)
  assert(p:produce{ topic = t, value = "pending" })  -- delivered to the log, not committed
  local rc = new_consumer(t, "read_committed")
  assert_nothing_more(rc, 5000)  -- includes the group join
  assert_eq(p:commit(), true)
  assert_eq(values(poll_n(rc, 1, 10000)), { "pending" })
  rc:close()
  p:close()
end, { timeout_ms = 120000 })

test("transaction(fn): a raising fn aborts; a commit that requires an abort aborts and returns the error", function()
  local t = fresh("fn")
  local p = txn_producer{ ["message.max.bytes"] = 4000000 }
  local ok, err = pcall(p.transaction, p, function()
    assert(p:produce{ topic = t, value = "raised" })
    error("stop here")
  end)
  assert_eq(ok, false)
  assert_match(tostring(err), "stop here")
  -- the broker rejects a record over its max.message.bytes: the transaction can only be aborted
  local r, cerr = p:transaction(function()
    assert(p:produce{ topic = t, value = "fine" })
    p:send{ topic = t, value = string.rep("x", 2000000), on_delivery = function() end }
    return "done"
  end)
  assert_eq(r, nil)
  assert_true(cerr and cerr.txn_requires_abort == true, "commit error requires an abort: " .. tostring(cerr))
  assert_eq(cerr.fatal, false)
  assert_eq(cerr.op, "p:commit")
  -- transaction() aborted it: the producer is ready again (begin fails with _STATE otherwise)
  assert_eq(p:begin(), true)
  assert_eq(p:abort(), true)
  p:close()
  local q = txn_producer()
  assert_eq(q:transaction(function() assert(q:produce{ topic = t, value = "marker" }); return "ok" end), "ok")
  q:close()
  local rc = new_consumer(t, "read_committed")
  assert_eq(values(poll_n(rc, 1)), { "marker" })
  assert_nothing_more(rc, 1500)
  rc:close()
  local ru = new_consumer(t, "read_uncommitted")
  assert_eq(values(poll_n(ru, 3)), { "raised", "fine", "marker" })
  ru:close()
end, { timeout_ms = 120000 })

test("a producer fenced by a newer instance with the same transactional.id gets a fatal error", function()
  local t = fresh("fence")
  local id = fresh("txid")
  local old = txn_producer{ ["transactional.id"] = id, on_error = function() end }
  assert_eq(old:begin(), true)
  assert(old:produce{ topic = t, value = "zombie" })
  local new = txn_producer{ ["transactional.id"] = id }
  assert_eq(new:init_transactions(), true)  -- bumps the epoch and aborts the old transaction
  local ok, err = old:commit()
  assert_eq(ok, nil)
  assert_true(err.fatal == true, "fenced is fatal: " .. tostring(err))
  assert_eq(err.op, "p:commit")
  assert_eq(new:transaction(function() assert(new:produce{ topic = t, value = "new" }); return "ok" end), "ok")
  local rc = new_consumer(t, "read_committed")
  assert_eq(values(poll_n(rc, 1)), { "new" })
  assert_nothing_more(rc, 1500)
  rc:close()
  old:close()
  new:close()
end, { timeout_ms = 120000 })

test("closing a producer with an open transaction aborts it, so read_committed is not held up", function()
  local t = fresh("close")
  local p = txn_producer()
  assert_eq(p:begin(), true)
  assert(p:produce{ topic = t, value = "left-open" })
  assert_eq(p:close(), true)
  -- without the abort the partition's last stable offset would stay behind "left-open" until
  -- the broker times the transaction out (transaction.timeout.ms = 10 s, checked every 10 s)
  local q = txn_producer()
  assert_eq(q:transaction(function() assert(q:produce{ topic = t, value = "after" }); return "ok" end), "ok")
  local rc = new_consumer(t, "read_committed")
  local t0 = klua.now()
  assert_eq(values(poll_n(rc, 1, 6000)), { "after" })
  assert_true(klua.now() - t0 < 6000)
  rc:close()
  q:close()
end, { timeout_ms = 120000 })

test("8 concurrent transactional commits and a consumer's committed() all complete: no starvation", function()
  -- Transactional calls have no asynchronous form in librdkafka: they share the runtime's
  -- executor (host/executor.hpp, 4 threads) with c:committed() and handle destruction, and take
  -- at most 3 of its threads, so committed() is answered while the commits queue.
  local t = fresh("tx-many")
  seed(t, { "seed" })
  local c = klua.consumer{ group = fresh("g"), ["session.timeout.ms"] = 6000 }
  local producers, tasks = {}, {}
  for i = 1, 8 do
    producers[i] = txn_producer()
    assert_eq(producers[i]:init_transactions(), true)
  end
  local t0 = klua.now()
  for i = 1, 8 do
    tasks[i] = klua.spawn(function()
      local p = producers[i]
      assert_eq(p:begin(), true)
      assert(p:send{ topic = t, value = "v" .. i })
      local ok, err = p:commit()
      return ok, err, klua.now() - t0
    end)
  end
  local committed = klua.spawn(function()
    local c0 = klua.now()
    local list, err = c:committed({ { topic = t, partition = 0 } }, 10000)
    return list, err, klua.now() - c0
  end)
  local list, cerr, cms = committed:join()
  assert_eq(cerr, nil)
  assert_eq(type(list), "table")
  assert_true(cms < 10000, ("committed() took %d ms"):format(cms))
  for i = 1, 8 do
    local ok, err, ms = tasks[i]:join()
    assert_eq(err, nil)
    assert_eq(ok, true)
    assert_true(ms < 60000)
  end
  -- every transaction's record is visible to read_committed
  local rc = new_consumer(t, "read_committed")
  assert_eq(#poll_n(rc, 9, 30000), 9)
  rc:close()
  for _, p in ipairs(producers) do p:close() end
  c:close()
end, { timeout_ms = 120000 })
