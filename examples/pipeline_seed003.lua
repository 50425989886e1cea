-- Seed 003 (NPipeline Kafka connector): a consume-transform-produce pipeline with exactly-once,
-- metrics and a dead-letter topic.
--   klua -b BROKERS run examples/pipeline_seed003.lua [N] [avro]     (needs a real broker: transactions)
-- With "avro" (and a schema registry: --schema-registry URL or KLUA_SCHEMA_REGISTRY), the orders and the
-- processed orders are Avro records in the Confluent wire format (the seed's AvroMessageSerializer), their
-- schemas registered under ORDERS-value and ORDERS.processed-value; an input that is not an Avro frame
-- (a wrong magic byte) is dead-lettered as a SerializationException, as bad JSON is without it.
-- It publishes N orders (default 500) to a 3-partition "orders" topic, a few of them invalid
-- (bad JSON, a negative quantity). The pipeline reads them read_committed, turns each valid
-- Order into a ProcessedOrder (total, tax) on "orders.processed" and each invalid one into a
-- DeadLetterEnvelope on "orders.dlq" (x-dead-letter-reason, x-exception-type, x-original-*
-- headers) -- outputs and input offsets in one transaction per batch. The first batch's
-- transaction is aborted on purpose (a simulated sink failure): the pipeline rewinds to the
-- committed offsets and processes it again. The seed's IKafkaMetrics (counters and timings) are
-- klua.metrics families, served to Prometheus while it runs with the built-in client metrics
-- (klua_consumer_*, klua_producer_*, klua_transactions_total) and health:
--   METRICS_ADDR=HOST:PORT (default 127.0.0.1:9464; port 0 picks a free one; "off" serves nothing)
--   GET /metrics, /healthz (the loop is alive), /readyz (200 while the pipeline consumes, its
--   consumer assigned; 503 before, and once it drains).
-- The pipeline's own metrics print at the end as Prometheus reads them, then the outcome is checked
-- with a read_committed reader:
--   seed003 ok: processed=492 dead_lettered=8 aborted=1 duplicates=0 lag=0   (for N=500)
-- or "seed003 FAIL: ..." and exit 4.
local N = tonumber(arg and arg[1] or "") or 500
local AVRO = arg and arg[2] == "avro"
local BATCH = 100
local suffix = klua.uuid():sub(1, 8)
local IN, OUT, DLQ = "orders-" .. suffix, "orders.processed-" .. suffix, "orders.dlq-" .. suffix
local GROUP = "order-processor-" .. suffix

---------------------------------------------------------------------------------------------
-- Metrics, in the shape of the seed's IKafkaMetrics, and the endpoints that serve them.
local m = klua.metrics
local consumed = m.counter{ name = "pipeline_consumed_total", help = "Orders read from the input topic (a rewound batch counts again)" }
local orders = m.counter{ name = "pipeline_orders_total", labels = { "outcome" },
                          help = "Orders committed to an output topic: processed, or dead_lettered" }
local processed_n, dead_lettered_n = orders:labels("processed"), orders:labels("dead_lettered")
local transactions = m.counter{ name = "pipeline_transactions_total", labels = { "outcome" },
                                help = "Batch transactions by outcome: committed or aborted" }
local committed_n, aborted_n = transactions:labels("committed"), transactions:labels("aborted")
local txn_seconds = m.histogram{ name = "pipeline_transaction_seconds", buckets = m.DEFAULT_BUCKETS,
                                    help = "A batch's transaction, from its first send to its commit, in seconds" }
local batch_size = m.histogram{ name = "pipeline_batch_size", buckets = { 1, 10, 25, 50, 100 },
                                help = "Orders per committed batch" }
local purged = 0 -- records an abort purged (expected, so counted rather than printed)
local aborts = 0 -- the check below expects exactly one

local phase = "starting" -- "consuming" once the loop runs, "draining" once it stops
local srv -- the metrics server (a listening server keeps the script running: closed at the end)
do
  local addr = os.getenv("METRICS_ADDR") or "127.0.0.1:9464"
  if addr ~= "off" then
    local host, port = addr:match("^%[?([^%]]-)%]?:(%d+)$")
    assert(host, "METRICS_ADDR must be HOST:PORT (or off), got " .. addr)
    -- /readyz adds klua's own checks (the consumer has its assignment, some broker is up) to this one
    srv = assert(m.serve{ host = host, port = tonumber(port), ready = function()
      if phase ~= "consuming" then return false, "pipeline " .. phase end
      return true
    end })
    print("metrics: " .. srv.url .. "/metrics  health: /healthz /readyz")
    io.stdout:flush()
  end
end

local admin = klua.admin()
for _, r in ipairs(assert(admin:create_topics({ { name = IN, partitions = 3 }, { name = OUT, partitions = 3 },
                                                { name = DLQ, partitions = 1 } }))) do
  assert(r.error == nil, tostring(r.error))
end

-- The seed's Order and ProcessedOrder, as Avro records (used with "avro"): encoders register the schema
-- on first use; one decoder reads either (the schema comes from the id in each record).
local ORDER = [[{"type": "record", "name": "Order", "namespace": "npipeline.samples", "fields": [
  {"name": "orderId", "type": "string"}, {"name": "customerId", "type": "string"},
  {"name": "quantity", "type": "int"}, {"name": "unitPrice", "type": "double"}]}]]
local PROCESSED = [[{"type": "record", "name": "ProcessedOrder", "namespace": "npipeline.samples", "fields": [
  {"name": "orderId", "type": "string"}, {"name": "customerId", "type": "string"},
  {"name": "total", "type": "double"}, {"name": "tax", "type": "double"},
  {"name": "processedAt", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}]]
local encode_order, encode_processed, decode
if AVRO then
  encode_order = klua.serde.avro{ schema = ORDER, topic = IN }
  encode_processed = klua.serde.avro{ schema = PROCESSED, topic = OUT }
  decode = select(2, klua.serde.avro{})
  print("values: Avro, schemas in " .. tostring(klua.config()["schema.registry.url"] or os.getenv("KLUA_SCHEMA_REGISTRY")))
end

-- Orders: every 97th has a negative quantity, every 131st is not JSON (with avro: not an Avro frame).
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
      local order = { orderId = string.format("o-%05d", i), customerId = "c-" .. (i % 40), quantity = qty,
                      unitPrice = 9.5 + i % 7 }
      value = AVRO and assert(encode_order(order)) or klua.json.encode(order)
    end
    batch[#batch + 1] = { topic = IN, key = "c-" .. (i % 40), value = value,
                          headers = { { "x-correlation-id", "corr-" .. i } } }
  end
  for _, r in ipairs(assert(p:produce_batch(batch))) do assert(r.error == nil, tostring(r.error)) end
  p:close()
end

-- The transform: Order -> ProcessedOrder, or an error naming what is wrong.
local function transform(msg)
  local order, jerr
  if AVRO then
    order, jerr = decode(msg.value or "", msg)  -- msg: the topic, partition and offset in the error
  else
    order, jerr = klua.json.decode(msg.value or "")
  end
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
    if err and err.name == "_PURGE_QUEUE" then purged = purged + 1
    elseif err then io.stderr:write("delivery failed: ", tostring(err), "\n") end
  end }
local c = klua.consumer{ group = GROUP, topics = { IN }, ["isolation.level"] = "read_committed",
                         ["enable.auto.commit"] = false, ["auto.offset.reset"] = "earliest" }
local fail_first = true -- the simulated sink failure
local started = klua.now()
local idle_since = klua.now()
phase = "consuming"
while klua.now() - idle_since < 5000 do
  local batch = {}
  for msg in c:messages{ timeout_ms = 500 } do
    batch[#batch + 1] = msg
    if #batch == BATCH then break end
  end
  if #batch > 0 then
    consumed:inc(#batch)
    local t0 = klua.now()
    local outputs, dlqs = 0, 0
    local ok, err = pcall(p.transaction, p, function()
      for _, msg in ipairs(batch) do
        local processed, terr = transform(msg)
        if processed then
          local value = AVRO and assert(encode_processed(processed)) or klua.json.encode(processed)
          assert(p:send{ topic = OUT, key = processed.customerId, value = value,
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
      committed_n:inc()
      txn_seconds:observe((klua.now() - t0) / 1000)
      batch_size:observe(#batch)
      processed_n:inc(outputs)
      dead_lettered_n:inc(dlqs)
    else
      -- aborted: rewind every partition of the batch to its first message, process it again
      aborted_n:inc()
      aborts = aborts + 1
      io.stderr:write("transaction aborted (", tostring(ok and err or err), "): rewinding\n")
      local first = {}
      for _, msg in ipairs(batch) do
        if not first[msg.partition] then first[msg.partition] = msg.offset end
      end
      for part, off in pairs(first) do assert(c:seek(IN, part, off)) end
    end
  end
end
phase = "draining"
local elapsed = (idle_since - started) / 1000 -- until the last batch, not the idle wait
c:close()
p:close()

-- The pipeline's metrics as Prometheus reads them (bucket lines left out), and the throughput.
print(string.format("metrics (%d records purged by the abort):", purged))
local committed_orders = 0
for line in m.expose():gmatch("[^\n]+") do
  if line:find("^pipeline_") and not line:find("_bucket{", 1, true) then print("  " .. line) end
  local n = line:match('^pipeline_orders_total{outcome="[%w_]+"} (%S+)$')
  if n then committed_orders = committed_orders + tonumber(n) end
end
print(string.format("throughput %.0f orders/s", committed_orders / math.max(elapsed, 0.001)))

---------------------------------------------------------------------------------------------
-- The outcome, as a read_committed reader sees it.
local kit = klua.testkit
local out = assert(kit.read(OUT, { isolation = "read_committed", partitions = 3 }))
local dlq = assert(kit.read(DLQ, { isolation = "read_committed", partitions = 1 }))
local seen, dups = {}, 0
for _, m in ipairs(out) do
  local id = (AVRO and assert(decode(m.value)) or klua.json.decode(m.value)).orderId
  if seen[id] then dups = dups + 1 end
  seen[id] = true
end
local problems = {}
local function expect(cond, what) if not cond then problems[#problems + 1] = what end end
expect(#out == N - invalid, string.format("%d processed orders, expected %d", #out, N - invalid))
expect(dups == 0, dups .. " duplicate order(s)")
expect(#dlq == invalid, string.format("%d dead-lettered, expected %d", #dlq, invalid))
expect(aborts == 1, "expected one aborted transaction")
expect(committed_orders == N, string.format("pipeline_orders_total sums to %d, expected %d", committed_orders, N))
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
print(string.format("seed003 " .. (AVRO and "avro " or "") .. "ok: processed=%d dead_lettered=%d aborted=%d duplicates=0 lag=0", #out, #dlq, aborts))
if srv then srv:close() end
