-- Transactions on the embedded cluster (librdkafka 2.15's mock). The mock runs the whole
-- transactional protocol (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
-- EndTxn) and, since 2.15.0, writes a commit/abort marker after each transaction (offsets skip
-- one); but its Fetch serves every record to read_committed consumers (its last stable offset and
-- aborted-transaction list serve only share groups), and it does not store transactional offset
-- commits. So here: the API, the state machine, serialization, timeouts, closing and the markers;
-- invisibility of aborted records and send_offsets' effect on the group are tested against a
-- real broker in tests/integration/transactions_test.lua.
local fresh = klua.testkit.fresh

local function txn_producer(extra)
  local conf = { ["transactional.id"] = fresh("txid"), ["transaction.timeout.ms"] = 10000 }
  for k, v in pairs(extra or {}) do conf[k] = v end
  return klua.producer(conf)
end

-- A producer whose broker never answers: transactional calls can only time out.
local function unreachable_producer()
  return txn_producer{ ["bootstrap.servers"] = "127.0.0.1:1", on_error = function() end,
                       on_log = function() end }
end

local function consumer_for(t, isolation, group)
  return klua.consumer{ group = group or fresh("g"), topics = { t }, ["auto.offset.reset"] = "earliest",
                        ["isolation.level"] = isolation }
end

local poll_n = klua.testkit.poll_n

local function values(msgs)
  local out = {}
  for i, m in ipairs(msgs) do out[i] = m.value end
  return out
end

local assert_nothing_more = klua.testkit.assert_nothing_more

test("commit makes the transaction's messages visible to a read_committed consumer", function()
  local t = fresh("tx-commit")
  klua.embedded.create_topic(t, 1)
  local p = txn_producer()
  assert_eq(p:begin(), true)
  for i = 1, 3 do assert(p:produce{ topic = t, value = "c" .. i }) end
  p:send{ topic = t, value = "c4" }  -- not yet delivered: commit flushes it
  assert_eq(p:commit(), true)
  local c = consumer_for(t, "read_committed")
  assert_eq(values(poll_n(c, 4)), { "c1", "c2", "c3", "c4" })
  assert_nothing_more(c, 500)
  c:close()
  p:close()
end, { timeout_ms = 60000 })

test("abort ends the transaction (its delivered records stay readable with read_uncommitted)", function()
  local t = fresh("tx-abort")
  klua.embedded.create_topic(t, 1)
  local p = txn_producer()
  assert_eq(p:begin(), true)
  assert(p:produce{ topic = t, value = "a1" })
  assert(p:produce{ topic = t, value = "a2" })
  assert_eq(p:abort(), true)
  -- a second abort has no transaction to end
  local ok, err = p:abort()
  assert_eq(ok, nil)
  assert_error(err, "_STATE")
  -- the producer is ready for the next transaction
  assert_eq(p:begin(), true)
  assert(p:produce{ topic = t, value = "c1" })
  assert_eq(p:commit(), true)
  local c = consumer_for(t, "read_uncommitted")
  assert_eq(values(poll_n(c, 3)), { "a1", "a2", "c1" })
  c:close()
  p:close()
end, { timeout_ms = 60000 })

test("transaction(fn) commits and returns fn's results", function()
  local t = fresh("tx-fn")
  klua.embedded.create_topic(t, 1)
  local p = txn_producer()
  local a, b, c3 = p:transaction(function(x)
    assert(p:produce{ topic = t, value = "v" .. x })
    klua.sleep(10)
    return x, nil, "three"
  end, 7)
  assert_eq({ a, b, c3 }, { 7, nil, "three" })
  -- committed: a new transaction can begin at once
  assert_eq(p:begin(), true)
  assert_eq(p:commit(), true)
  local c = consumer_for(t, "read_committed")
  assert_eq(values(poll_n(c, 1)), { "v7" })
  c:close()
  p:close()
end, { timeout_ms = 60000 })

test("transaction(fn) aborts when fn raises, then re-raises the same error", function()
  local t = fresh("tx-raise")
  klua.embedded.create_topic(t, 1)
  local p = txn_producer()
  local boom = { reason = "boom" }
  local ok, err = pcall(p.transaction, p, function()
    assert(p:produce{ topic = t, value = "x" })
    error(boom)
  end)
  assert_eq(ok, false)
  assert_true(err == boom, "the very error object is re-raised")
  assert_raises(function()
    p:transaction(function() error("plain string") end)
  end, "plain string")
  -- aborted: the producer is back to ready (begin would fail with _STATE inside a transaction)
  assert_eq(p:begin(), true)
  assert_eq(p:abort(), true)
  -- a failed begin returns nil, err without running fn
  local q = klua.producer()
  local ran = false
  local r, berr = q:transaction(function() ran = true end)
  assert_eq(r, nil)
  assert_error(berr, "_NOT_CONFIGURED")
  assert_eq(ran, false)
  p:close()
  q:close()
end, { timeout_ms = 60000 })

test("a task cancelled inside transaction(fn) still gets its transaction aborted", function()
  local p = txn_producer()
  assert_eq(p:init_transactions(), true)
  local task = klua.spawn(function()
    return p:transaction(function() klua.sleep(30000) end)
  end)
  while task:status() ~= "waiting" do coroutine.yield() end
  task:cancel()
  local r, err = task:join()
  assert_eq(r, nil)
  assert_error(err, "KLUA_CANCELLED")
  -- the abort was queued without waiting; begin runs after it
  assert_eq(p:begin(), true)
  assert_eq(p:abort(), true)
  p:close()
end, { timeout_ms = 60000 })

test("transactional methods on a non-transactional producer return _NOT_CONFIGURED", function()
  local p = klua.producer()
  local c = klua.consumer{ group = fresh("g"), ["session.timeout.ms"] = 6000 }
  for _, call in ipairs({
    function() return p:init_transactions() end, function() return p:begin() end,
    function() return p:commit() end, function() return p:abort() end,
    function() return p:send_offsets(c) end,
  }) do
    local ok, err = call()
    assert_eq(ok, nil)
    assert_error(err, "_NOT_CONFIGURED")
    assert_match(tostring(err), "not transactional")
    assert_match(tostring(err), "transactional%.id")
  end
  -- and a plain producer still works
  assert(p:produce{ topic = fresh("plain"), value = "ok" })
  c:close()
  p:close()
end, { timeout_ms = 60000 })

test("send_offsets takes a message, a partition list or the consumer's positions", function()
  local t = fresh("tx-offs")
  klua.embedded.create_topic(t, 1)
  local src = klua.producer()
  for i = 1, 3 do assert(src:produce{ topic = t, value = "m" .. i }) end
  local c = consumer_for(t, "read_committed")
  local got = poll_n(c, 2)
  assert_eq(#got, 2)
  local p = txn_producer()
  -- outside a transaction librdkafka refuses (returned, not raised)
  local ok, err = p:send_offsets(c, got[2])
  assert_eq(ok, nil)
  assert_error(err, "_STATE")
  assert_eq(p:begin(), true)
  assert_eq(p:send_offsets(c, got[2]), true)
  assert_eq(p:send_offsets(c, { { topic = t, partition = 0, offset = 2 } }, { timeout_ms = 5000 }), true)
  -- m3 may be fetched into klua's buffer but is not polled: the script's position is still 2
  klua.sleep(500)
  assert_eq(c:position()[1].offset, 2)
  assert_eq(p:send_offsets(c), true)
  assert_eq(values(poll_n(c, 1)), { "m3" })
  assert_eq(c:position()[1].offset, 3)
  assert_eq(p:send_offsets(c), true)
  assert_eq(p:send_offsets(c, nil, { timeout_ms = 5000 }), true)
  assert_eq(p:send_offsets(c, { timeout_ms = 5000 }), true)
  -- the old positional timeouts still work (deprecated: they warn once)
  assert_eq(p:send_offsets(c, nil, 5000), true)
  assert_eq(p:send_offsets(c, 5000), true)
  assert_eq(p:commit{ timeout_ms = 10000 }, true)
  -- programmer errors raise
  assert_raises(function() p:send_offsets(p) end, "klua.consumer")
  assert_raises(function() p:send_offsets(c, "x") end, "offsets must be a partition list")
  assert_raises(function() p:send_offsets(c, { { topic = t, partition = 0 } }) end, "needs a numeric offset")
  assert_raises(function() p:send_offsets(c, { { topic = t, partition = 0, offset = "end" } }) end,
                "needs a numeric offset")
  assert_raises(function() p:commit(0) end, "timeout_ms must be > 0")
  assert_raises(function() p:commit{ timeout_ms = 0 } end, "timeout_ms must be > 0")
  assert_raises(function() p:abort{ timeout = 5 } end, "unknown option 'timeout'")
  assert_raises(function() p:begin{ timeout_ms = "soon" } end, "timeout_ms must be a number")
  assert_raises(function() p:begin("soon") end, "timeout_ms must be a number")
  c:close()
  p:close()
  src:close()
end, { timeout_ms = 60000 })

test("calls on one producer run one at a time, in call order", function()
  local t = fresh("tx-serial")
  klua.embedded.create_topic(t, 1)
  local p = txn_producer()
  assert_eq(p:begin(), true)
  for i = 1, 50 do p:send{ topic = t, value = "s" .. i } end
  local committed
  local task = klua.spawn(function() committed = p:commit(); return committed end)
  while task:status() ~= "waiting" do coroutine.yield() end
  -- commit is running on its thread; begin waits for it instead of failing with a conflict
  assert_eq(committed, nil)
  assert_eq(p:begin(), true)
  assert_eq(committed, true)
  assert_eq(task:join(), true)
  -- two concurrent init calls and a commit queue up behind each other
  local results = {}
  local tasks = {}
  for i = 1, 3 do
    tasks[i] = klua.spawn(function() results[i] = p:init_transactions(); return results[i] end)
  end
  assert_eq(p:commit(), true)
  for i = 1, 3 do tasks[i]:join() end
  assert_eq(results, { true, true, true })
  p:close()
end, { timeout_ms = 60000 })

test("a timed-out init_transactions returns a retriable _TIMED_OUT without blocking the loop, and resumes", function()
  local p = unreachable_producer()
  local ticks, stop = 0, false
  local ticker = klua.spawn(function() while not stop do klua.sleep(50); ticks = ticks + 1 end end)
  local t0 = klua.now()
  local ok, err = p:init_transactions{ timeout_ms = 800 }
  local elapsed = klua.now() - t0
  stop = true
  ticker:join()
  assert_eq(ok, nil)
  assert_error(err, "_TIMED_OUT")
  assert_eq(err.retriable, true)
  assert_eq(err.fatal, false)
  assert_eq(err.op, "p:init_transactions")
  assert_true(elapsed >= 700 and elapsed < 4000, "elapsed " .. elapsed)
  assert_true(ticks >= 8, "the loop kept running: " .. ticks .. " ticks")
  -- calling again resumes the same initialization (no conflict, no state error)
  local ok2, err2 = p:begin{ timeout_ms = 500 }
  assert_eq(ok2, nil)
  assert_error(err2, "_TIMED_OUT")
  assert_eq(err2.retriable, true)
  p:close()
end, { timeout_ms = 60000 })

test("closing a producer while a transactional call runs waits for it, then closes", function()
  local p = unreachable_producer()
  local r1, e1
  local task = klua.spawn(function() r1, e1 = p:init_transactions{ timeout_ms = 1500 } end)
  while task:status() ~= "waiting" do coroutine.yield() end
  local queued = klua.spawn(function() return p:commit() end)
  while queued:status() ~= "waiting" do coroutine.yield() end
  local t0 = klua.now()
  assert_eq(p:close(), true)
  local waited = klua.now() - t0
  task:join()
  assert_eq(r1, nil)
  assert_error(e1, "_TIMED_OUT")
  -- the call waiting its turn was refused when the close began
  local r2, e2 = queued:join()
  assert_eq(r2, nil)
  assert_error(e2, "KLUA_CLOSED")
  assert_true(waited >= 1000, "close waited for the running call: " .. waited)
  assert_raises(function() p:begin() end, "KLUA_CLOSED")
  assert_eq(p:close(), true)
end, { timeout_ms = 60000 })

test("a producer dropped while its call runs is kept until the call ends", function()
  local task = klua.spawn(function()
    local p = unreachable_producer()
    return p:init_transactions{ timeout_ms = 1000 }
  end)
  while task:status() ~= "waiting" do coroutine.yield() end
  task:cancel()
  local r, err = task:join()
  assert_error(err, "KLUA_CANCELLED")
  for _ = 1, 3 do collectgarbage() end
  klua.sleep(1500)
  for _ = 1, 3 do collectgarbage() end
  klua.sleep(200)
  assert_eq(r, nil)
end, { timeout_ms = 60000 })

test("waiting transactional calls need a task", function()
  local p = txn_producer()
  local co = coroutine.create(function() return p:commit() end)
  local ok, err = coroutine.resume(co)
  assert_eq(ok, false)
  assert_match(tostring(err), "must be called from a klua task")
  p:close()
end)

test("the mock writes a marker after each transaction: offsets skip one per transaction", function()
  local t = fresh("tx-markers")
  klua.embedded.create_topic(t, 1)
  local p = txn_producer()
  local plan = { { "c", 3, "commit" }, { "a", 2, "abort" }, { "d", 1, "commit" } }
  local expected, offset = {}, 0
  for _, step in ipairs(plan) do
    assert_eq(p:begin(), true)
    for i = 1, step[2] do
      local r = assert(p:produce{ topic = t, value = step[1] .. i })
      assert_eq(r.offset, offset, "delivery report of " .. step[1] .. i)
      expected[#expected + 1] = { value = step[1] .. i, offset = offset }
      offset = offset + 1
    end
    assert_eq(p[step[3]](p), true)
    offset = offset + 1  -- the transaction's marker
  end
  local c = klua.consumer{ group = fresh("g"), ["isolation.level"] = "read_uncommitted" }
  assert(c:assign{ { topic = t, partition = 0, offset = "beginning" } })
  local got = {}
  for _, m in ipairs(poll_n(c, #expected)) do got[#got + 1] = { value = m.value, offset = m.offset } end
  assert_eq(got, expected)
  local low, high = assert(c:watermarks(t, 0))
  assert_eq({ low, high }, { 0, 6 + #plan })
  c:close()
  p:close()
end, { timeout_ms = 60000 })

test("a transactional producer has a metatable of its own; the plain producer's is not patched", function()
  local plain = klua.producer()
  local plain_mt = getmetatable(plain)
  local p = txn_producer()
  local mt = getmetatable(p)
  assert_true(mt ~= plain_mt, "its own metatable")
  -- it has every producer method, and its own transactional ones
  for name, fn in pairs(plain_mt.__index) do
    if name ~= "close" and name ~= "init_transactions" and name ~= "begin" and name ~= "send_offsets" and
       name ~= "commit" and name ~= "abort" and name ~= "transaction" then
      assert_true(mt.__index[name] == fn, "shares " .. name)
    end
  end
  assert_true(mt.__index.commit ~= plain_mt.__index.commit)
  -- nothing private on either
  for _, m in ipairs({ plain_mt.__index, mt.__index }) do
    assert_eq(rawget(m, "_abort_nowait"), nil)
    assert_eq(rawget(m, "_prepare_close"), nil)
  end
  assert_match(tostring(p), "^klua%.producer%(")
  assert_eq(p:init_transactions(), true)
  assert_eq(p:transaction(function() return 42 end), 42)
  -- the producer's own calls work on it (the type checks take either metatable)
  assert_eq(p:outq_len(), 0)
  assert_eq(p:flush{ timeout_ms = 1000 }, true)
  p:close()
  assert_eq(p:close(), true)
  plain:close()
end, { timeout_ms = 60000 })
