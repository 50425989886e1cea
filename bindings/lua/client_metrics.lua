-- The built-in client metrics' collector and readiness checks (docs/metrics.md, "Built-in metrics"):
-- the C++ snapshots of the live producers and consumers (bindings/client_metrics.cpp) become
-- klua.metrics collector families at each scrape. Reached as
-- debug.getregistry()["klua.private"].client_metrics; klua.metrics.serve calls enable().
local klua, prims = ...
local ipairs, pairs, tostring, sort = ipairs, pairs, tostring, table.sort
local snapshot, states = prims.snapshot, prims.states
local BUCKETS = prims.buckets

-- Statistics every 5 s for clients made after enable(), unless a configuration layer sets
-- statistics.interval.ms (the user's choice, 0 included, wins).
local STATISTICS_INTERVAL_MS = 5000

local function family(name, kind, help)
  return { name = name, type = kind, help = help, samples = {} }
end

local function add(f, labels, value)
  local s = f.samples
  s[#s + 1] = { labels = labels, value = value }
end

local function add_histogram(f, labels, h)
  local s = f.samples
  s[#s + 1] = { labels = labels, buckets = BUCKETS, counts = h.counts, sum = h.sum }
end

-- Labels every client series has, plus the extra ones (a fresh table per series).
local function labels(c, extra)
  local l = { client_id = c.client_id, client = c.client }
  if extra then for k, v in pairs(extra) do l[k] = v end end
  return l
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys)
  return keys
end

-- The families of every live client, in a fixed order (families without samples are left out).
local function collect()
  local F = {
    produced = family("klua_producer_messages_total", "counter", "Messages delivered (acknowledged by the broker)"),
    produced_bytes = family("klua_producer_bytes_total", "counter", "Key and value bytes of the delivered messages"),
    delivery_errors = family("klua_producer_delivery_errors_total", "counter",
      "Messages whose delivery failed, by librdkafka error name"),
    delivery_latency = family("klua_producer_delivery_latency_seconds", "histogram",
      "Time from send to delivery report of delivered messages"),
    consumed = family("klua_consumer_messages_total", "counter", "Messages handed to the script"),
    consumed_bytes = family("klua_consumer_bytes_total", "counter", "Key and value bytes of the messages handed to the script"),
    lag = family("klua_consumer_lag", "gauge",
      "High watermark minus the consumer's position (before its first message: its start), per assigned partition"),
    assigned = family("klua_consumer_assigned_partitions", "gauge", "Partitions assigned to the consumer"),
    rebalances = family("klua_consumer_rebalances_total", "counter", "Rebalances handled, by kind"),
    commits = family("klua_consumer_commits_total", "counter", "Offset commits that succeeded"),
    commit_failures = family("klua_consumer_commit_failures_total", "counter", "Offset commits that failed, by error name"),
    commit_latency = family("klua_consumer_commit_latency_seconds", "histogram",
      "Time from c:commit to its result (auto-commits are counted, not timed)"),
    transactions = family("klua_transactions_total", "counter", "Transactions ended, by outcome"),
    rtt = family("klua_broker_rtt_seconds", "gauge", "Average broker round-trip time (librdkafka statistics)"),
    up = family("klua_broker_up", "gauge", "1 when the client's connection to the broker is up (librdkafka statistics)"),
    down = family("klua_client_all_brokers_down", "gauge", "1 while every broker of the client is down"),
  }
  for _, c in ipairs(snapshot()) do
    local producer = c.kind == "producer"
    for _, t in ipairs(c.topics) do
      local tl = labels(c, { topic = t.topic })
      if producer then
        if t.messages > 0 then
          add(F.produced, tl, t.messages)
          add(F.produced_bytes, labels(c, { topic = t.topic }), t.bytes)
          add_histogram(F.delivery_latency, labels(c, { topic = t.topic }), t.latency)
        end
        for _, code in ipairs(sorted_keys(t.errors)) do
          add(F.delivery_errors, labels(c, { topic = t.topic, code = code }), t.errors[code])
        end
      else
        add(F.consumed, tl, t.messages)
        add(F.consumed_bytes, labels(c, { topic = t.topic }), t.bytes)
      end
    end
    if not producer then
      for _, p in ipairs(c.lag) do
        add(F.lag, labels(c, { topic = p.topic, partition = tostring(p.partition) }), p.lag)
      end
      add(F.assigned, labels(c), c.assigned)
      for _, kind in ipairs({ "assign", "revoke", "lost" }) do
        add(F.rebalances, labels(c, { kind = kind }), c.rebalances[kind])
      end
      add(F.commits, labels(c), c.commits)
      for _, code in ipairs(sorted_keys(c.commit_failures)) do
        add(F.commit_failures, labels(c, { code = code }), c.commit_failures[code])
      end
      add_histogram(F.commit_latency, labels(c), c.commit_latency)
    end
    if c.transactional then
      add(F.transactions, labels(c, { outcome = "committed" }), c.txn_committed)
      add(F.transactions, labels(c, { outcome = "aborted" }), c.txn_aborted)
    end
    for _, b in ipairs(c.brokers) do
      if b.rtt then add(F.rtt, labels(c, { broker = b.name }), b.rtt) end
      add(F.up, labels(c, { broker = b.name }), b.up and 1 or 0)
    end
    add(F.down, labels(c), c.all_brokers_down and 1 or 0)
  end
  local out = {}
  for _, k in ipairs({ "produced", "produced_bytes", "delivery_errors", "delivery_latency", "consumed",
                       "consumed_bytes", "lag", "assigned", "rebalances", "commits", "commit_failures",
                       "commit_latency", "transactions", "rtt", "up", "down" }) do
    if #F[k].samples > 0 then out[#out + 1] = F[k] end
  end
  return out
end

-- Readiness: every consumer that subscribed (or was assigned partitions) has had an assignment,
-- possibly empty.
local function consumers_ready()
  for _, c in ipairs(states()) do
    if c.awaiting_assignment then
      return false, ("consumer group %s (client %s) has no partition assignment yet"):format(c.group, c.client)
    end
  end
  return true
end

-- Readiness: no client has every broker down.
local function brokers_ready()
  for _, c in ipairs(states()) do
    if c.all_brokers_down then
      return false, ("%s %s (client.id %s): all brokers are down"):format(c.kind, c.client, c.client_id)
    end
  end
  return true
end

local enabled = false

-- enable() -> { client name, ... }: registers the collector and the readiness checks (once),
-- turns statistics on for clients made from now on, and returns the live clients that have no
-- statistics (their broker rtt and state cannot be reported).
local function enable()
  if not enabled then
    local m = klua.metrics
    m.register_collector(collect)
    m.add_readiness_check("consumers", consumers_ready)
    m.add_readiness_check("brokers", brokers_ready)
    prims.serving()  -- consumers look up committed offsets for the lag of unread partitions
    enabled = true
  end
  prims.statistics_default(STATISTICS_INTERVAL_MS)
  local without = {}
  for _, c in ipairs(states()) do
    if c.statistics_interval_ms == 0 then without[#without + 1] = c.client end
  end
  return without
end

return {
  enable = enable,
  collect = collect,
  snapshot = snapshot,
  states = states,
  consumers_ready = consumers_ready,
  brokers_ready = brokers_ready,
  decode_stats = prims.decode_stats,
  serving = prims.serving,  -- what enable() turns on, without registering (tests)
  buckets = BUCKETS,
  STATISTICS_INTERVAL_MS = STATISTICS_INTERVAL_MS,
}
