-- Seed 002 (CloudSync): one 12-partition topic fanned out to two consumer groups (an "AWS" and an
-- "Azure" sync service), each a klua.worker with retries, a shared 4-partition dead-letter topic and
-- de-duplication by the message's MessageId; lag and throughput are printed while it runs, and
-- served to Prometheus with the service's health:
--   klua run examples/worker_seed002.lua [N]          (embedded cluster, or -b BROKERS)
--   METRICS_ADDR=HOST:PORT (default 127.0.0.1:9464; port 0 picks a free one; "off" serves nothing)
--   serves GET /metrics (the built-in client and klua_worker_* metrics), /healthz (the loop is
--   alive) and /readyz (200 once both workers run and their consumers have their assignments).
-- It publishes N DataSyncMessages (default 600), 30 re-sent duplicates and 6 poison messages; every
-- 25th message fails once (a flaky endpoint) and is retried. It ends by itself and prints
--   seed002 ok: groups=2 processed=N+N deduplicated=30+30 dead_lettered=6+6 retried=R+R dlq=12 lag=0+0
-- or "seed002 FAIL: ..." and exit 4. Before that line it reads its own /metrics and checks that
-- the workers' metrics equal their counters.
local N = tonumber(arg and arg[1] or "") or 600
local DUPS, POISON = 30, 6
local suffix = klua.uuid():sub(1, 8)
local topic, dlq = "data-topic-" .. suffix, "data-topic-dlq-" .. suffix
local groups = { aws = "aws-sync-group-" .. suffix, azure = "azure-sync-group-" .. suffix }

-- Metrics and health, served before any client exists (so statistics are on for them all).
local running = {} -- cloud -> true while its worker runs
local metrics_url
do
  local addr = os.getenv("METRICS_ADDR") or "127.0.0.1:9464"
  if addr ~= "off" then
    local host, port = addr:match("^%[?([^%]]-)%]?:(%d+)$")
    assert(host, "METRICS_ADDR must be HOST:PORT (or off), got " .. addr)
    local srv = assert(klua.metrics.serve{ host = host, port = tonumber(port), ready = function()
      for _, cloud in ipairs{ "aws", "azure" } do
        if not running[cloud] then return false, cloud .. " worker not running" end
      end
      return true
    end })
    metrics_url = srv.url
    print("metrics: " .. srv.url .. "/metrics  health: /healthz /readyz")
    io.stdout:flush()
  end
end

local admin = klua.admin()
for _, r in ipairs(assert(admin:create_topics({ { name = topic, partitions = 12 }, { name = dlq, partitions = 4 } },
                                              { if_not_exists = true }))) do
  assert(r.error == nil, tostring(r.error))
end

local function message_id(m)
  local t = klua.json.decode(m.value or "")
  return t and t.MessageId
end

local saved = { aws = {}, azure = {} }
local function endpoint(cloud)
  return function(msg, info)
    local data = assert(klua.json.decode(msg.value))
    if data.Poison then error({ type = "InvalidPayload", message = "cannot map " .. data.MessageId }) end
    if data.Seq % 25 == 0 and info.attempt == 1 then
      error({ type = "EndpointTimeout", message = cloud .. " endpoint timed out" })
    end
    klua.sleep(1) -- the HTTP call to the cloud endpoint
    saved[cloud][data.MessageId] = (saved[cloud][data.MessageId] or 0) + 1
  end
end

local workers = {}
for _, cloud in ipairs{ "aws", "azure" } do
  workers[cloud] = klua.worker{
    group = groups[cloud], topics = { topic }, handlers = { [topic] = endpoint(cloud) },
    retry = { max = 2, base_ms = 50, max_ms = 500, jitter = 0.2 }, dead_letter = dlq,
    dedupe = { key = message_id, window = 10000 }, concurrency = 12,
    ["auto.commit.interval.ms"] = 1000,
    quiet = true,
  }
end
local tasks = {}
for cloud, w in pairs(workers) do
  tasks[cloud] = klua.spawn(function()
    running[cloud] = true
    local c, err = w:run()
    running[cloud] = nil
    return c, err
  end)
end

-- the API's producer: acks=all and lz4 as in the seed; the key is the message id
local p = klua.producer{ ["request.required.acks"] = "all", ["compression.type"] = "lz4", ["linger.ms"] = 5 }
local function data_message(i, poison)
  local id = poison and ("poison-" .. i) or string.format("msg-%05d", i)
  return { topic = topic, key = id, value = klua.json.encode{ MessageId = id, Seq = i, Poison = poison or nil,
           Payload = "sync record " .. i, CreatedAt = klua.time() } }
end
local batch = {}
for i = 1, N do batch[#batch + 1] = data_message(i) end
for i = 1, POISON do batch[#batch + 1] = data_message(i, true) end
for i = 1, DUPS do batch[#batch + 1] = data_message(i) end -- same id, same key: same partition, after the original
local t0 = klua.now()
for _, r in ipairs(p:produce_batch(batch)) do assert(r.error == nil, tostring(r.error)) end
print(string.format("produced %d messages to %s (12 partitions) in %.0f ms", #batch, topic, klua.now() - t0))

local function done(w)
  local c = w:counters()
  return c.processed + c.deduplicated + c.dead_lettered >= #batch
end
local deadline = klua.now() + 120000
while klua.now() < deadline and not (done(workers.aws) and done(workers.azure)) do
  klua.sleep(1000)
  for _, cloud in ipairs{ "aws", "azure" } do
    local w = workers[cloud]
    local c = w:counters()
    print(string.format("  %-5s consumed %5d  processed %5d  retried %3d  dlq %2d  dup %2d  lag %s  %.0f msg/s", cloud,
      c.consumed, c.processed, c.retried, c.dead_lettered, c.deduplicated, tostring(w:lag() or "?"),
      c.processed / math.max(c.elapsed_ms, 1) * 1000))
  end
end

local results = {}
for _, cloud in ipairs{ "aws", "azure" } do
  workers[cloud]:stop()
  local c, err = tasks[cloud]:join()
  assert(c, tostring(err))
  c.lag = klua.lag(groups[cloud]).lag
  results[cloud] = c
  print(string.format("%-5s %d processed in %.1f s: %.0f msg/s", cloud, c.processed, c.elapsed_ms / 1000,
    c.processed / math.max(c.elapsed_ms, 1) * 1000))
end

-- the dead-letter topic: each poison message once per group, with its headers
local r = klua.consumer{ group = "dlq-reader-" .. suffix, topics = { dlq }, ["auto.offset.reset"] = "earliest" }
local dead, bad_headers = {}, 0
for m in r:messages{ timeout_ms = 8000 } do
  dead[#dead + 1] = m
  if m:header("x-original-topic") ~= topic or m:header("x-exception-type") ~= "InvalidPayload"
     or m:header("x-attempts") ~= "3" or not message_id(m):find("^poison%-") then
    bad_headers = bad_headers + 1
  end
  if #dead == 2 * POISON then break end
end
r:close()

local problems = {}
local a, z = results.aws, results.azure
local want_retried = 2 * POISON + math.floor(N / 25)
for cloud, c in pairs(results) do
  if c.processed ~= N then problems[#problems + 1] = cloud .. " processed " .. c.processed end
  if c.deduplicated ~= DUPS then problems[#problems + 1] = cloud .. " deduplicated " .. c.deduplicated end
  if c.dead_lettered ~= POISON then problems[#problems + 1] = cloud .. " dead_lettered " .. c.dead_lettered end
  if c.retried ~= want_retried then problems[#problems + 1] = cloud .. " retried " .. c.retried end
  if c.lag ~= 0 then problems[#problems + 1] = cloud .. " lag " .. c.lag end
  local once = 0
  for _, n in pairs(saved[cloud]) do if n == 1 then once = once + 1 end end
  if once ~= N then problems[#problems + 1] = cloud .. " saved exactly once: " .. once end
end
-- What Prometheus scrapes agrees with the workers' own counters.
if metrics_url then
  local res = assert(klua.http.get(metrics_url .. "/metrics"))
  local function scraped(group, outcome)
    local line = string.format('klua_worker_messages_total{worker="%s",topic="%s",outcome="%s"} ', group, topic, outcome)
    local at = res.body:find(line, 1, true)
    return at and tonumber(res.body:match("^(%S+)", at + #line)) or 0
  end
  for cloud, c in pairs(results) do
    for outcome, want in pairs{ ok = c.processed, retried = c.retried, dead_lettered = c.dead_lettered,
                                deduplicated = c.deduplicated, failed = c.failed } do
      local got = scraped(groups[cloud], outcome)
      if got ~= want then problems[#problems + 1] = string.format("%s /metrics %s=%d, counters %d", cloud, outcome, got, want) end
    end
  end
end
if #dead ~= 2 * POISON or bad_headers > 0 then
  problems[#problems + 1] = string.format("dlq has %d messages, %d with wrong headers", #dead, bad_headers)
end
if #problems > 0 then
  print("seed002 FAIL: " .. table.concat(problems, "; "))
  klua.exit(4)
end
print(string.format("seed002 ok: groups=2 processed=%d+%d deduplicated=%d+%d dead_lettered=%d+%d retried=%d+%d dlq=%d lag=%d+%d",
  a.processed, z.processed, a.deduplicated, z.deduplicated, a.dead_lettered, z.dead_lettered, a.retried, z.retried,
  #dead, a.lag, z.lag))
klua.exit(0)
