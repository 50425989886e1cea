-- Seed 003 (NPipeline Kafka connector): a consume-transform-produce pipeline with exactly-once,
-- metrics and a dead-letter topic.
--   klua -b BROKERS run examples/pipeline_seed003.lua [N]     (needs a real broker: transactions)
-- It publishes N orders (default 500) to a 3-partition "orders" topic, a few of them invalid
-- (bad JSON, a negative quantity). The pipeline reads them read_committed, turns each valid
-- Order into a ProcessedOrder (total, tax) on "orders.processed" and each invalid one into a
-- DeadLetterEnvelope on "orders.dlq" (x-dead-letter-reason, x-exception-type, x-original-*
-- headers) -- outputs and input offsets in one transaction per batch. The first batch's
-- transaction is aborted on purpose (a simulated sink failure): the pipeline rewinds to the
-- committed offsets and processes it again. Metrics (IKafkaMetrics' counters and timings) print
-- at the end, then the outcome is checked with a read_committed reader:
--   seed003 ok: processed=492 dead_lettered=8 aborted=1 duplicates=0 lag=0   (for N=500)
-- or "seed003 FAIL: ..." and exit 4.
local N = tonumber(arg and arg[1] or "") or 500
local BATCH = 100
local suffix = klua.uuid():sub(1, 8)
local IN, OUT, DLQ = "orders-" .. suffix, "orders.processed-" .. suffix, "orders.dlq-" .. suffix
local GROUP = "order-processor-" .. suffix

local admin = klua.admin()
for _, r in ipairs(assert(admin:create_topics({ { name = IN, partitions = 3 }, { name = OUT, partitions = 3 },
                                                { name = DLQ, partitions = 1 } }))) do
  assert(r.error == nil, tostring(r.error))
end

-- Orders: every 97th has a negative quantity, every 131st is not JSON.
local invalid = 0
do
  local p = klua.producer{ ["linger.ms"] = 5 }
  local batch = {}
  for i = 1, N do
    local value
    if i % 131 == 0 then
      value, invalid = "{not json " .. i, invalid + 1
    else
      local qty = i % 97 == 0 and -1 or (i % 5 + 1)
      if qty < 0 then invalid = invalid + 1 end
      value = klua.json.encode{ orderId = string.format("o-%05d", i), customerId = "c-" .. (i % 40), quantity = qty,
                                unitPrice = 9.5 + i % 7 }
    end
    batch[#batch + 1] = { topic = IN, key = "c-" .. (i % 40), value = value,
                          headers = { { "x-correlation-id", "corr-" .. i } } }
  end
  for _, r in ipairs(assert(p:produce_batch(batch))) do assert(r.error == nil, tostring(r.error)) end
  p:close()
end

---------------------------------------------------------------------------------------------
-- Metrics, in the shape of the seed's IKafkaMetrics.
local metrics = { consumed = 0, produced = 0, dead_lettered = 0, txn_commits = 0, txn_aborts = 0,
                  commit_ms = {}, batch_sizes = {} }
local function percentile(list, p)
  if #list == 0 then return 0 end
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  return s[math.max(1, math.ceil(#s * p))]
end

-- The transform: Order -> ProcessedOrder, or an error naming what is wrong.
local function transform(msg)
  local order, jerr = klua.json.decode(msg.value or "")
  if not order then return nil, { type = "SerializationException", message = tostring(jerr) } end
  if type(order.quantity) ~= "number" or order.quantity <= 0 then
    return nil, { type = "ValidationException", message = "quantity must be > 0, got " .. tostring(order.quantity) }
  end
  local total = order.quantity * order.unitPrice
  return { orderId = order.orderId, customerId = order.customerId, total = total,
           tax = math.floor(total * 0.2 * 100 + 0.5) / 100, processedAt = klua.time() }
end

local function dead_letter(msg, err)
  local headers = {}
  for i, h in ipairs(msg.headers) do headers[i] = h end
  for _, h in ipairs{ { "x-dead-letter-reason", err.type }, { "x-exception-type", err.type },
                      { "x-exception-message", err.message }, { "x-original-topic", msg.topic },
                      { "x-original-partition", tostring(msg.partition) },
                      { "x-original-offset", string.format("%d", msg.offset) } } do
    headers[#headers + 1] = h
  end
  return { topic = DLQ, key = msg.key, value = msg.value, headers = headers }
end

---------------------------------------------------------------------------------------------
-- The pipeline.
local p = klua.producer{ ["transactional.id"] = GROUP, ["compression.type"] = "lz4",
  -- an abort purges the transaction's queued records: expected, counted rather than printed
  on_delivery = function(report, err)
    if err and err.name == "_PURGE_QUEUE" then metrics.purged = (metrics.purged or 0) + 1
    elseif err then io.stderr:write("delivery failed: ", tostring(err), "\n") end
  end }
local c = klua.consumer{ group = GROUP, topics = { IN }, ["isolation.level"] = "read_committed",
                         ["enable.auto.commit"] = false, ["auto.offset.reset"] = "earliest" }
local fail_first = true -- the simulated sink failure
local started = klua.now()
local idle_since = klua.now()
while klua.now() - idle_since < 5000 do
  local batch = {}
  for msg in c:messages{ timeout_ms = 500 } do
    batch[#batch + 1] = msg
    if #batch == BATCH then break end
  end
  if #batch > 0 then
    metrics.consumed = metrics.consumed + #batch
    local t0 = klua.now()
    local outputs, dlqs = 0, 0
    local ok, err = pcall(p.transaction, p, function()
      for _, msg in ipairs(batch) do
        local processed, terr = transform(msg)
        if processed then
          assert(p:send{ topic = OUT, key = processed.customerId, value = klua.json.encode(processed),
                         headers = { { "x-correlation-id", msg:header("x-correlation-id") } } })
          outputs = outputs + 1
        else
          assert(p:send(dead_letter(msg, terr)))
          dlqs = dlqs + 1
        end
      end
      if fail_first then
        fail_first = false
        error("simulated sink failure: the transaction is aborted")
      end
      assert(p:send_offsets(c))
      return true
    end)
    idle_since = klua.now()
    if ok and err then
      metrics.txn_commits = metrics.txn_commits + 1
      metrics.commit_ms[#metrics.commit_ms + 1] = klua.now() - t0
      metrics.batch_sizes[#metrics.batch_sizes + 1] = #batch
      metrics.produced = metrics.produced + outputs
      metrics.dead_lettered = metrics.dead_lettered + dlqs
    else
      -- aborted: rewind every partition of the batch to its first message, process it again
      metrics.txn_aborts = metrics.txn_aborts + 1
      io.stderr:write("transaction aborted (", tostring(ok and err or err), "): rewinding\n")
      local first = {}
      for _, msg in ipairs(batch) do
        if not first[msg.partition] then first[msg.partition] = msg.offset end
      end
      for part, off in pairs(first) do assert(c:seek(IN, part, off)) end
    end
  end
end
local elapsed = (idle_since - started) / 1000 -- until the last batch, not the idle wait
c:close()
p:close()

print(string.format("metrics: consumed=%d produced=%d dead_lettered=%d transactions committed=%d aborted=%d (%d records purged)",
  metrics.consumed, metrics.produced, metrics.dead_lettered, metrics.txn_commits, metrics.txn_aborts, metrics.purged or 0))
print(string.format("metrics: commit latency p50=%.0f ms p99=%.0f ms, batch size p50=%d, throughput %.0f msg/s",
  percentile(metrics.commit_ms, 0.5), percentile(metrics.commit_ms, 0.99), percentile(metrics.batch_sizes, 0.5),
  (metrics.produced + metrics.dead_lettered) / math.max(elapsed, 0.001)))

---------------------------------------------------------------------------------------------
-- The outcome, as a read_committed reader sees it.
local kit = klua.testkit
local out = assert(kit.read(OUT, { isolation = "read_committed", partitions = 3 }))
local dlq = assert(kit.read(DLQ, { isolation = "read_committed", partitions = 1 }))
local seen, dups = {}, 0
for _, m in ipairs(out) do
  local id = klua.json.decode(m.value).orderId
  if seen[id] then dups = dups + 1 end
  seen[id] = true
end
local problems = {}
local function expect(cond, what) if not cond then problems[#problems + 1] = what end end
expect(#out == N - invalid, string.format("%d processed orders, expected %d", #out, N - invalid))
expect(dups == 0, dups .. " duplicate order(s)")
expect(#dlq == invalid, string.format("%d dead-lettered, expected %d", #dlq, invalid))
expect(metrics.txn_aborts == 1, "expected one aborted transaction")
for _, m in ipairs(dlq) do
  expect(m:header("x-original-topic") == IN and m:header("x-original-offset") and m:header("x-correlation-id"),
    "dead letter without its headers at offset " .. m.offset)
  local t = m:header("x-exception-type")
  expect(t == "ValidationException" or t == "SerializationException", "unexpected exception type " .. tostring(t))
end
local lag = assert(klua.lag(GROUP, { IN }))
expect(lag.lag == 0, "the input's offsets are not all committed: lag " .. tostring(lag.lag))
if #problems > 0 then
  print("seed003 FAIL: " .. table.concat(problems, "; "))
  klua.exit(4)
end
print(string.format("seed003 ok: processed=%d dead_lettered=%d aborted=%d duplicates=0 lag=0", #out, #dlq,
  metrics.txn_aborts))
