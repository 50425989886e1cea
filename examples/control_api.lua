-- Seed 000's control API (the Kafka backend a UI calls) served as JSON by klua.http.serve: topics
-- (list with partition counts, create, delete), consumer groups with members and lag, a group's
-- per-partition offsets, resetting a group (only when it is empty), producing a keyed message, health.
--   klua -b localhost:9092 run examples/control_api.lua [PORT] [--port PORT] [--host HOST]
--   klua run examples/control_api.lua 0        (embedded cluster; port 0: any free port)
-- It prints "listening on http://HOST:PORT" once it listens (default 127.0.0.1:8080) and serves until
-- SIGINT/SIGTERM, which stop it gracefully (in-flight requests finish, the producer flushes).
--
--   GET    /api/kafka/health                 {status, brokers, rttMs}                       503 when down
--   GET    /api/kafka/topics                 [{name, partitionCount, replicationFactor, messageCount, lastActivity}]
--   GET    /api/kafka/topics/:name           one of those                                   404
--   POST   /api/kafka/topics                 {name, partitions=1, replicationFactor, configs}   201, 400, 409
--   DELETE /api/kafka/topics/:name                                                          204, 404
--   GET    /api/kafka/groups                 [{groupId, state, memberCount, totalLag}]
--   GET    /api/kafka/groups/:id             {groupId, state, memberCount, totalLag, members, partitions}
--   POST   /api/kafka/groups/:id/reset       {topic, resetTo="earliest"|"latest"}            200, 404, 409
--   DELETE /api/kafka/groups/:id                                                            204, 404, 409
--   POST   /api/kafka/produce                {topic, key, value}  -> {topic, partition, offset, timestamp}
-- Names are the seed's DTOs as ASP.NET writes them (camelCase); timestamps are ISO-8601 UTC. Errors answer
-- {"error": {"name", "message", "field"}}: 400 names the bad field; a Kafka error keeps klua's name and maps
-- to 404 (unknown topic or group), 409 (exists, group not empty), 503 (brokers down), 504 (timed out),
-- 501 (what the embedded cluster cannot serve: group listing and description, deleting topics and groups).
local json = klua.json

local host, port = "127.0.0.1", 8080
do
  local function usage()
    io.stderr:write("usage: control_api.lua [PORT] [--port PORT] [--host HOST] (a port is 0..65535)\n")
    klua.exit(2)
  end
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a == "--port" or a == "--host" then
      local v = arg[i + 1] or usage()
      if a == "--port" then port = tonumber(v) else host = v end
      i = i + 2
    else
      port = tonumber(a)
      i = i + 1
    end
    if port == nil or port % 1 ~= 0 or port < 0 or port > 65535 then usage() end
  end
end

local admin = klua.admin{ timeout_ms = 15000 }
-- acks=all and idempotence as in the seed; a message that cannot be delivered fails in 15 s, not 300.
local producer = klua.producer{ ["request.required.acks"] = "all", ["message.timeout.ms"] = 15000 }

-- Answers -------------------------------------------------------------------------------------------

local function iso(ms)
  if type(ms) ~= "number" or ms < 0 then return json.null end
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03dZ", math.floor(ms % 1000))
end

-- A client mistake: 400 naming the field.
local function bad_request(field, message)
  return { status = 400, json = { error = { name = "BAD_REQUEST", field = field, message = message } } }
end

-- klua error name -> HTTP status. Anything else is the server's problem: 500.
local STATUS = {
  UNKNOWN_TOPIC_OR_PART = 404, _UNKNOWN_TOPIC = 404, _UNKNOWN_PARTITION = 404, GROUP_ID_NOT_FOUND = 404,
  TOPIC_ALREADY_EXISTS = 409, NON_EMPTY_GROUP = 409, GROUP_SUBSCRIBED_TO_TOPIC = 409,
  INVALID_PARTITIONS = 400, INVALID_REPLICATION_FACTOR = 400, INVALID_CONFIG = 400, INVALID_TOPIC_EXCEPTION = 400,
  POLICY_VIOLATION = 400, INVALID_REQUEST = 400, KLUA_INVALID_ARGUMENT = 400,
  _ALL_BROKERS_DOWN = 503, _TRANSPORT = 503, BROKER_NOT_AVAILABLE = 503, COORDINATOR_NOT_AVAILABLE = 503,
  _TIMED_OUT = 504, REQUEST_TIMED_OUT = 504,
  KLUA_EMBEDDED_UNSUPPORTED = 501,
  CLUSTER_AUTHORIZATION_FAILED = 403, TOPIC_AUTHORIZATION_FAILED = 403, GROUP_AUTHORIZATION_FAILED = 403,
}
-- Which request field an error is about, when Kafka's answer says so.
local FIELD = { INVALID_PARTITIONS = "partitions", INVALID_REPLICATION_FACTOR = "replicationFactor",
                INVALID_CONFIG = "configs", INVALID_TOPIC_EXCEPTION = "name" }

local function kafka_error(err)
  if not klua.errors.is(err) then
    err = { name = "KLUA_INTERNAL", message = tostring(err) }
  end
  return { status = STATUS[err.name] or 500,
           json = { error = { name = err.name, message = err.message, field = FIELD[err.name] } } }
end

-- Runs fn; a raised klua error (a Kafka handle's fatal error, a bug) becomes a JSON answer, so the UI
-- always gets {"error": ...}; klua.http.serve would answer a bare 500 and log the traceback.
local function api(fn)
  return function(req)
    local ok, res = xpcall(fn, function(e)
      if not klua.errors.is(e) then io.stderr:write(debug.traceback(tostring(e), 2), "\n") end
      return e
    end, req)
    if ok then return res end
    if klua.errors.is(res) and res.name == klua.errors.KLUA_CANCELLED then error(res, 0) end
    return kafka_error(res)
  end
end

-- Decoded JSON arrays carry klua.json.array's mark; an object is any other table.
local ARRAY = getmetatable(json.array())
local function is_object(t)
  return type(t) == "table" and getmetatable(t) ~= ARRAY and #t == 0
end

-- The request body as a JSON object, or nil plus the 400 to answer.
local function body_object(req)
  if req.body == nil or req.body == "" then return nil, bad_request("body", "a JSON object is required") end
  local t, err = json.decode(req.body)
  if t == nil then return nil, bad_request("body", "not JSON: " .. err.message) end
  if not is_object(t) then return nil, bad_request("body", "a JSON object is required") end
  return t
end

local function whole(v, lo, hi)
  return type(v) == "number" and v % 1 == 0 and v >= lo and v <= hi
end

local function valid_topic_name(name)
  return type(name) == "string" and #name > 0 and #name <= 249 and not name:find("[^%w%._%-]")
     and name ~= "." and name ~= ".."
end

-- Topics --------------------------------------------------------------------------------------------

-- {name, partitionCount, replicationFactor, messageCount, lastActivity} for the topics given (all when nil).
local function topic_infos(only)
  local topics = assert(admin:list_topics())
  local wanted, names, by_name = {}, {}, {}
  for _, t in ipairs(topics) do
    if only == nil or only == t.name then
      names[#names + 1] = t.name
      by_name[t.name] = t
    end
  end
  if only and not by_name[only] then
    return nil, klua.errors.new{ name = "UNKNOWN_TOPIC_OR_PART", message = "topic " .. only .. " does not exist",
                                 topic = only }
  end
  -- messageCount: high - low summed over the partitions (two ListOffsets for all of them at once).
  local count = {}
  if #names > 0 then
    local low = assert(admin:list_offsets(names, { spec = "earliest" }))
    local high = assert(admin:list_offsets(names, { spec = "latest" }))
    for i, h in ipairs(high) do
      local l = low[i]
      -- A topic deleted a moment ago can still be in the metadata list_topics read; its
      -- offsets then say it is gone.
      if only and h.error and h.error.name == "UNKNOWN_TOPIC_OR_PART" then return nil, h.error end
      if h.offset and l and l.offset and not h.error and not l.error then
        count[h.topic] = (count[h.topic] or 0) + (h.offset - l.offset)
      end
    end
  end
  for _, name in ipairs(names) do
    local t = by_name[name]
    wanted[#wanted + 1] = { name = name, partitionCount = t.partitions, replicationFactor = t.replication_factor,
                            messageCount = count[name] or 0, lastActivity = json.null }
  end
  return json.array(wanted)
end

local function list_topics()
  return { json = assert(topic_infos()) }
end

local function get_topic(req)
  local info, err = topic_infos(req.params.name)
  if not info then return kafka_error(err) end
  return { json = info[1] }
end

local function create_topic(req)
  local b, bad = body_object(req)
  if not b then return bad end
  if not valid_topic_name(b.name) then
    return bad_request("name", "a topic name of 1 to 249 characters out of a-z A-Z 0-9 . _ - is required")
  end
  local partitions = b.partitions == nil and 1 or b.partitions
  if not whole(partitions, 1, 100000) then return bad_request("partitions", "a whole number from 1 to 100000") end
  local rf = b.replicationFactor
  if rf ~= nil and not whole(rf, 1, 32767) then
    return bad_request("replicationFactor", "a whole number from 1 to 32767 (omit it for the broker's default)")
  end
  local configs
  if b.configs ~= nil then
    if not is_object(b.configs) then return bad_request("configs", "an object of name: value") end
    configs = {}
    for k, v in pairs(b.configs) do
      if type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then
        return bad_request("configs." .. tostring(k), "a string, number or boolean")
      end
      configs[k] = tostring(v)
    end
  end
  local res = assert(admin:create_topics({ { name = b.name, partitions = partitions, replication_factor = rf,
                                             configs = configs } }))
  if res[1].error then return kafka_error(res[1].error) end
  -- The answer as GET has it; the new topic's metadata can take a moment to reach the broker asked,
  -- so until then it is what was asked for.
  local info = topic_infos(b.name)
  return { status = 201, headers = { location = "/api/kafka/topics/" .. b.name },
           json = info and info[1] or { name = b.name, partitionCount = partitions, replicationFactor = rf or json.null,
                                         messageCount = 0, lastActivity = json.null } }
end

local function delete_topic(req)
  local res = assert(admin:delete_topics({ req.params.name }))
  if res[1].error then return kafka_error(res[1].error) end
  return { status = 204 }
end

-- Groups --------------------------------------------------------------------------------------------

-- Runs fn(item) for every item, at most `width` at once (each in a task: admin calls yield only their task).
local function each_parallel(items, width, fn)
  local out, next_i, tasks = {}, 1, {}
  for w = 1, math.min(width, #items) do
    tasks[w] = klua.spawn(function()
      while next_i <= #items do
        local i = next_i
        next_i = i + 1
        out[i] = fn(items[i])
      end
      return true
    end)
  end
  for _, t in ipairs(tasks) do assert(t:join()) end
  return out
end

local function list_groups()
  local groups = assert(admin:list_groups())
  local ids = {}
  for i, g in ipairs(groups) do ids[i] = g.group end
  local desc = #ids > 0 and assert(admin:describe_groups(ids)) or {}
  local lags = each_parallel(ids, 8, function(id)
    local l = klua.lag(id, nil, { admin = admin })
    return l and l.lag or json.null
  end)
  local out = {}
  for i, g in ipairs(groups) do
    local d = desc[i] or {}
    out[i] = { groupId = g.group, state = d.state or g.state or json.null,
               memberCount = d.members and #d.members or 0, totalLag = lags[i] }
  end
  return { json = json.array(out) }
end

local function group_detail(req)
  local id = req.params.id
  local d = assert(admin:describe_groups({ id }))[1]
  if d.error then return kafka_error(d.error) end
  local members, topics, seen = {}, nil, {}
  for i, m in ipairs(d.members or {}) do
    members[i] = { memberId = m.member_id, clientId = m.client_id, host = m.host }
    for _, p in ipairs(m.assignment or {}) do
      if not seen[p.topic] then
        seen[p.topic] = true
        topics = topics or {}
        topics[#topics + 1] = p.topic
      end
    end
  end
  -- Lag over the committed topics and the assigned ones (a partition assigned but never committed
  -- counts from its low watermark).
  if topics then
    for _, p in ipairs(assert(admin:list_group_offsets(id))) do
      if not seen[p.topic] then seen[p.topic] = true; topics[#topics + 1] = p.topic end
    end
  end
  local lag = assert(klua.lag(id, topics, { admin = admin }))
  local parts = {}
  for i, p in ipairs(lag.partitions) do
    parts[i] = { topic = p.topic, partition = p.partition, currentOffset = p.committed or json.null,
                 highWatermark = p.high, lag = p.lag }
  end
  return { json = { groupId = id, state = d.state, memberCount = #members, totalLag = lag.lag,
                    members = json.array(members), partitions = json.array(parts) } }
end

local function reset_group(req)
  local b, bad = body_object(req)
  if not b then return bad end
  if b.topic ~= nil and not valid_topic_name(b.topic) then return bad_request("topic", "a topic name") end
  local to = b.resetTo
  if type(to) == "string" then to = to:lower() end
  if to ~= "earliest" and to ~= "latest" then return bad_request("resetTo", '"earliest" or "latest"') end
  -- Without a topic: every topic the group has committed offsets for.
  local res, err = admin:reset_group_offsets(req.params.id, b.topic and { b.topic } or nil, to)
  if not res then return kafka_error(err) end
  local parts = {}
  for i, r in ipairs(res) do
    if r.error then return kafka_error(r.error) end
    parts[i] = { topic = r.topic, partition = r.partition, previousOffset = r.current or json.null, newOffset = r.new }
  end
  if #parts == 0 and b.topic then
    -- Nothing to reset: the topic has no partitions known to the broker.
    return kafka_error(klua.errors.new{ name = "UNKNOWN_TOPIC_OR_PART", message = "topic " .. b.topic .. " does not exist" })
  end
  return { json = { groupId = req.params.id, resetTo = to, partitions = json.array(parts) } }
end

local function delete_group(req)
  local res = assert(admin:delete_groups({ req.params.id }))
  if res[1].error then return kafka_error(res[1].error) end
  return { status = 204 }
end

-- Produce and health ---------------------------------------------------------------------------------

local function produce(req)
  local b, bad = body_object(req)
  if not b then return bad end
  if not valid_topic_name(b.topic) then return bad_request("topic", "a topic name is required") end
  if b.key ~= nil and b.key ~= json.null and type(b.key) ~= "string" then return bad_request("key", "a string or null") end
  if type(b.value) ~= "string" then return bad_request("value", "a string is required") end
  -- An unknown topic is a 404 now, not a delivery timeout later (brokers may also auto-create it).
  local d = assert(admin:describe_topics({ b.topic }, { configs = false }))[1]
  if d.error then return kafka_error(d.error) end
  local r, err = producer:produce{ topic = b.topic, key = b.key ~= json.null and b.key or nil, value = b.value }
  if not r then return kafka_error(err) end
  return { json = { topic = r.topic, partition = r.partition, offset = r.offset, timestamp = iso(r.timestamp) } }
end

local function health()
  local rtt, err = admin:ping{ timeout_ms = 5000 }
  local cluster = rtt and admin:describe_cluster{ timeout_ms = 5000 }
  if not cluster then
    err = err or select(2, admin:describe_cluster{ timeout_ms = 5000 })
    return { status = 503, json = { status = "unhealthy", error = { name = err and err.name, message = err and err.message } } }
  end
  return { json = { status = "healthy", brokers = #cluster.brokers, rttMs = math.floor(rtt * 10 + 0.5) / 10 } }
end

local srv, err = klua.http.serve{
  host = host, port = port,
  routes = {
    ["GET /api/kafka/health"] = api(health),
    ["GET /api/kafka/topics"] = api(list_topics),
    ["POST /api/kafka/topics"] = api(create_topic),
    ["GET /api/kafka/topics/:name"] = api(get_topic),
    ["DELETE /api/kafka/topics/:name"] = api(delete_topic),
    ["GET /api/kafka/groups"] = api(list_groups),
    ["GET /api/kafka/groups/:id"] = api(group_detail),
    ["DELETE /api/kafka/groups/:id"] = api(delete_group),
    ["POST /api/kafka/groups/:id/reset"] = api(reset_group),
    ["POST /api/kafka/produce"] = api(produce),
  },
}
if not srv then   -- the port is taken, or the address is not this machine's
  io.stderr:write("cannot listen: ", tostring(err), "\n")
  klua.exit(1)
end
print("listening on " .. srv.url)
io.stdout:flush()
srv:wait()
