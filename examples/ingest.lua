-- Seed 002 (CloudSync) as one service: POST /api/datasync puts DataSyncMessages into Kafka, and two sync
-- workers (an "AWS" and an "Azure" consumer group) save every message to their cloud's HTTP endpoint.
--   klua -b localhost:9092 run examples/ingest.lua --aws URL --azure URL [--port PORT] [--host HOST]
--        [--topic data-topic] [--group-prefix PREFIX] [--concurrency 12]
-- The endpoint URLs also come from SYNC_AWS_URL and SYNC_AZURE_URL. It prints "listening on
-- http://HOST:PORT" once it listens (default 127.0.0.1:8080) and runs until SIGINT/SIGTERM, which stop
-- it gracefully: the server finishes its requests, saves in flight finish, offsets are committed.
--
--   POST /api/datasync      a DataSyncMessage {MessageId?, Data, Source?, CreatedAt?, Metadata?} or, as
--                           the seed's curl sends it, a bare JSON string (the Data). 202 {MessageId, topic,
--                           partition, offset, status} once the broker acknowledged it; 400 naming the
--                           bad field; 503 when Kafka cannot take it.
--   GET  /api/datasync/status  each sync group's counters and lag (Kafka's: from its committed offsets).
--
-- Each endpoint gets POST <url> with the message as JSON and an Idempotency-Key header (the MessageId).
-- A 5xx, 408, 429, a refused connection or a timeout is retried with back-off (the worker's retry);
-- another 4xx is final: the message goes to the dead-letter topic (<topic>-dlq) with the status.
-- The two groups run side by side on one loop: a slow endpoint holds back only its own group.
local json = klua.json

local usage = "usage: ingest.lua --aws URL --azure URL [--port PORT] [--host HOST] [--topic T] " ..
              "[--group-prefix P] [--concurrency N]"
local opt = { port = 8080, host = "127.0.0.1", topic = "data-topic", ["group-prefix"] = "", concurrency = 12,
              aws = os.getenv("SYNC_AWS_URL"), azure = os.getenv("SYNC_AZURE_URL") }
do
  local i = 1
  while arg and arg[i] do
    local name = arg[i]:match("^%-%-(.+)$")
    if not name or opt[name] == nil and name ~= "aws" and name ~= "azure" or arg[i + 1] == nil then
      io.stderr:write(usage, "\n")
      klua.exit(2)
    end
    opt[name] = arg[i + 1]
    i = i + 2
  end
  opt.port, opt.concurrency = tonumber(opt.port), tonumber(opt.concurrency)
  if not (opt.aws and opt.azure and opt.port and opt.concurrency and opt.port % 1 == 0 and opt.port >= 0
          and opt.port <= 65535 and opt.concurrency % 1 == 0 and opt.concurrency >= 1) then
    io.stderr:write(usage, "\n(both endpoint URLs are required; a port is 0..65535)\n")
    klua.exit(2)
  end
end

local topic, dlq = opt.topic, opt.topic .. "-dlq"
local admin = klua.admin()
for _, r in ipairs(assert(admin:create_topics({ { name = topic, partitions = 12 }, { name = dlq, partitions = 4 } },
                                              { if_not_exists = true }))) do
  assert(r.error == nil, tostring(r.error))
end

-- The API's producer, configured as the seed's: acks=all, lz4; a message that cannot be delivered
-- fails in 15 s (the client gets a 503 then) instead of librdkafka's 300 s.
local producer = klua.producer{ ["request.required.acks"] = "all", ["compression.type"] = "lz4",
                                ["linger.ms"] = 5, ["message.timeout.ms"] = 15000 }

-- The ingest API -------------------------------------------------------------------------------------

local ARRAY = getmetatable(json.array())
local function is_object(t) return type(t) == "table" and getmetatable(t) ~= ARRAY and #t == 0 end

local function bad_request(field, message)
  return { status = 400, json = { error = { name = "BAD_REQUEST", field = field, message = message } } }
end

local function iso_now()
  local ms = klua.time()
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03dZ", math.floor(ms % 1000))
end

-- The DataSyncMessage of a request, with MessageId and CreatedAt filled in, or nil and the 400.
local function data_sync_message(req)
  if req.body == nil or req.body == "" then return nil, bad_request("body", "a DataSyncMessage is required") end
  local m, err = json.decode(req.body)
  if m == nil then return nil, bad_request("body", "not JSON: " .. err.message) end
  if type(m) == "string" then m = { Data = m } end           -- the seed's `-d '"text"'`
  if not is_object(m) then return nil, bad_request("body", "a DataSyncMessage object or a JSON string") end
  if type(m.Data) ~= "string" or m.Data == "" then return nil, bad_request("Data", "a non-empty string is required") end
  if m.MessageId ~= nil and (type(m.MessageId) ~= "string" or not m.MessageId:match("^[%w%-_.:]+$") or #m.MessageId > 128) then
    return nil, bad_request("MessageId", "1 to 128 characters out of letters, digits and - _ . :")
  end
  if m.Source ~= nil and type(m.Source) ~= "string" then return nil, bad_request("Source", "a string") end
  if m.CreatedAt ~= nil and (type(m.CreatedAt) ~= "string" or not m.CreatedAt:match("^%d%d%d%d%-%d%d%-%d%dT")) then
    return nil, bad_request("CreatedAt", "an ISO-8601 time such as 2026-01-31T12:00:00Z")
  end
  if m.Metadata ~= nil then
    if not is_object(m.Metadata) then return nil, bad_request("Metadata", "an object of name: string") end
    for k, v in pairs(m.Metadata) do
      if type(v) ~= "string" then return nil, bad_request("Metadata." .. tostring(k), "a string") end
    end
  end
  m.MessageId = m.MessageId or klua.uuid(7)
  m.CreatedAt = m.CreatedAt or iso_now()
  return m
end

local function datasync(req)
  local m, bad = data_sync_message(req)
  if not m then return bad end
  -- keyed by the MessageId: a re-sent message lands on the same partition, after the first
  local r, err = producer:produce{ topic = topic, key = m.MessageId, value = json.encode(m),
                                   headers = { ["x-event-id"] = m.MessageId } }
  if not r then
    return { status = err.name == "KLUA_INVALID_ARGUMENT" and 400 or 503,
             json = { error = { name = err.name, message = err.message } } }
  end
  return { status = 202, json = { MessageId = m.MessageId, topic = r.topic, partition = r.partition, offset = r.offset,
                                  status = "queued for synchronization" } }
end

-- The sync workers -----------------------------------------------------------------------------------

local function message_id(msg)
  local id = msg:header("x-event-id")
  if id then return id end
  local t = json.decode(msg.value or "")
  return type(t) == "table" and t.MessageId or nil
end

-- Statuses worth another attempt: the endpoint is down or overloaded, not refusing this message.
local function transient(status) return status >= 500 or status == 408 or status == 429 end

local function save_to(cloud, url)
  return function(msg, info)
    local data = json.decode(msg.value or "")
    if type(data) ~= "table" then
      -- Not ours to retry: park it with the reason.
      info.send{ topic = dlq, key = msg.key, value = msg.value,
                 headers = { ["x-dead-letter-reason"] = "not-json", ["x-original-topic"] = msg.topic } }
      return true
    end
    local res, err = klua.http.request{ method = "POST", url = url, json = data, timeout_ms = 10000,
                                        headers = { ["idempotency-key"] = data.MessageId } }
    if not res then return nil, err end                    -- connect refused, DNS, timeout: retried
    if transient(res.status) then
      return nil, klua.errors.new{ name = "SYNC_HTTP_" .. res.status,
                                   message = cloud .. " endpoint answered " .. res.status .. " for " .. tostring(data.MessageId) }
    end
    if res.status >= 400 then
      info.send{ topic = dlq, key = msg.key, value = msg.value,
                 headers = { ["x-dead-letter-reason"] = "refused", ["x-http-status"] = tostring(res.status),
                             ["x-original-topic"] = msg.topic, ["x-sync-target"] = cloud } }
    end
    return true
  end
end

local workers, order = {}, { "aws", "azure" }
for _, cloud in ipairs(order) do
  workers[cloud] = klua.worker{
    group = opt["group-prefix"] .. cloud .. "-sync-group", topics = { topic },
    handlers = { [topic] = save_to(cloud, opt[cloud]) },
    retry = { max = 8, base_ms = 100, max_ms = 2000, jitter = 0.2 }, dead_letter = dlq,
    dedupe = { key = message_id, window = 10000 },      -- a client's re-sent MessageId is saved once
    concurrency = opt.concurrency,
  }
end
for _, cloud in ipairs(order) do
  klua.spawn(function()
    local counters, err = workers[cloud]:run()
    if not counters then
      io.stderr:write(cloud, " sync worker stopped: ", tostring(err), "\n")
      klua.exit(1)
    end
  end)
end

local function status()
  local out = {}
  for _, cloud in ipairs(order) do
    local c = workers[cloud]:counters()
    out[cloud] = { group = opt["group-prefix"] .. cloud .. "-sync-group", consumed = c.consumed, processed = c.processed,
                   retried = c.retried, deadLettered = c.dead_lettered, deduplicated = c.deduplicated,
                   inFlight = c.in_flight, lag = workers[cloud]:lag() or json.null }
  end
  return { json = out }
end

local srv, err = klua.http.serve{
  host = opt.host, port = opt.port,
  routes = { ["POST /api/datasync"] = datasync, ["GET /api/datasync/status"] = status },
}
if not srv then   -- the port is taken, or the address is not this machine's
  io.stderr:write("cannot listen: ", tostring(err), "\n")
  klua.exit(1)
end
print("listening on " .. srv.url)
io.stdout:flush()
srv:wait()
