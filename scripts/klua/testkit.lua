-- klua.testkit: helpers for smoke tests and test files (real broker or embedded cluster).
--
--   local kit = klua.testkit
--   local t = kit.topic("orders", { partitions = 3 })          -- a fresh topic, created
--   local g = kit.group("billing")                             -- a fresh group name
--   local got = kit.roundtrip(t, { { key = "k", value = "v" } })  -- produce, then read those back
--   local msg = assert(kit.expect_message(t, function(m) return m.key == "k" end, { timeout_ms = 5000 }))
--   local msg2 = assert(kit.expect_message(t, { key = "k", headers = { ["x-id"] = "1" } }))
--   kit.assert_eq(actual, expected)                            -- and the other assertions
--
-- - fresh(prefix): prefix .. "-" .. 8 random hex digits; group(prefix) is the same.
-- - topic(prefix, {partitions=1, replication_factor=, configs=}): creates a fresh topic (admin
--   create_topics, which the embedded cluster serves too) and returns its name, or nil, err.
-- - produce(topic, msgs): msgs are strings (values) or message tables; yields until delivered;
--   returns the delivery reports in input order, or nil, err naming the first failure.
-- - read(topic, {from="beginning"|"end"|{[partition]=offset}, n=, timeout_ms=10000,
--   until_end=true, isolation=}) -> list of messages: assigns every partition (no group, no join
--   delay), stops after n messages, at the end offsets taken at start (until_end, the default
--   without n), or at the timeout. `partitions` gives the count when known.
-- - expect_message(topic, predicate, {timeout_ms=10000, from="beginning"}) -> msg, or nil, err
--   (_TIMED_OUT, naming the topic and how many messages did not match). predicate is a function
--   or a table of fields that must be equal (key, value, partition, ...; headers by name).
-- - roundtrip(topic, msgs, {timeout_ms=}) -> the consumed copies of msgs, in input order
--   (read back at the offsets their delivery reports gave), or nil, err.
-- - poll_n(consumer, n, timeout_ms) -> up to n messages (poll errors raise);
--   assert_nothing_more(consumer, ms).
-- - group_conf([t]) -> a copy of t plus the consumer group settings for tests: under the classic
--   protocol session.timeout.ms=6000 and heartbeat.interval.ms=1000 (a member that dies loses
--   its partitions in seconds); with KLUA_TEST_GROUP_PROTOCOL=consumer in the environment,
--   group.protocol=consumer and nothing else (KIP-848: the broker sets those, see
--   tools/kafka-broker.d). group_protocol() -> "classic" or "consumer".
-- - sh(cmd [, stdin]) -> stdout, exit status (stdin a string, else /dev/null; stderr goes to the
--   test's stderr); quote(s) for a shell word.
local A = require("klua.testkit.assertions")
local M = {}

for k, v in pairs(A) do
  if k:match("^assert_") then M[k] = v end
end
M.show, M.diff, M.assertions = A.show, A.diff, A

-- A wrong argument raises KLUA_INVALID_ARGUMENT at the caller's line (n: the argument's position).
local function check(cond, fn, n, msg)
  if not cond then klua.errors.bad_argument("klua.testkit." .. fn, n, msg) end
end

-- A timeout in ms: nil (the default) or a finite number >= 0 (NaN would never end a wait).
local function check_timeout(v, fn, n, name)
  check(v == nil or (type(v) == "number" and v >= 0 and v ~= math.huge), fn, n,
        (name or "timeout_ms") .. " must be a number of milliseconds >= 0, got " .. tostring(v))
end

function M.fresh(prefix)
  check(prefix == nil or type(prefix) == "string", "fresh", 1, "prefix must be a string")
  return (prefix or "t") .. "-" .. klua.uuid():gsub("-", ""):sub(1, 8)
end
M.group = M.fresh

function M.group_protocol()
  local p = os.getenv("KLUA_TEST_GROUP_PROTOCOL")
  if p == nil or p == "" then return "classic" end
  if p ~= "classic" and p ~= "consumer" then
    klua.errors.misuse("klua.testkit.group_protocol", "KLUA_TEST_GROUP_PROTOCOL must be classic or consumer, not " .. p)
  end
  return p
end

function M.group_conf(t)
  check(t == nil or type(t) == "table", "group_conf", 1, "expected a table of options")
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  if M.group_protocol() == "consumer" then
    c["group.protocol"] = "consumer"
  else
    if c["session.timeout.ms"] == nil then c["session.timeout.ms"] = 6000 end
    if c["heartbeat.interval.ms"] == nil then c["heartbeat.interval.ms"] = 1000 end
  end
  return c
end

local admin
local function get_admin()
  admin = admin or klua.admin()
  return admin
end

function M.topic(prefix, opts)
  check(opts == nil or type(opts) == "table", "topic", 2, "opts must be a table")
  opts = opts or {}
  local name = M.fresh(prefix or "topic")
  local res, err = get_admin():create_topics({ { name = name, partitions = opts.partitions or 1,
    replication_factor = opts.replication_factor, configs = opts.configs } })
  if not res then return nil, err end
  if res[1].error then return nil, res[1].error end
  return name
end

local producer
local function get_producer()
  producer = producer or klua.producer()
  return producer
end

local function as_message(topic, m)
  local msg = type(m) == "table" and {} or { value = m }
  if type(m) == "table" then for k, v in pairs(m) do msg[k] = v end end
  msg.topic = msg.topic or topic
  return msg
end

function M.produce(topic, msgs)
  check(type(topic) == "string", "produce", 1, "topic must be a string")
  check(type(msgs) == "table", "produce", 2, "msgs must be a list of values or message tables")
  local list = {}
  for i, m in ipairs(msgs) do list[i] = as_message(topic, m) end
  local res, err = get_producer():produce_batch(list)
  if not res then return nil, err end
  for _, r in ipairs(res) do
    if r.error then return nil, r.error end
  end
  return res
end

local function partition_count(topic)
  local list, err = get_admin():list_topics()
  if not list then return nil, err end
  for _, t in ipairs(list) do
    if t.name == topic then return t.partitions end
  end
  return nil, klua.errors.new{ name = klua.errors.UNKNOWN_TOPIC_OR_PART, kafka = true, message = "no topic " .. topic,
                               topic = topic }
end

-- A consumer without a group subscription, assigned to every partition of topic.
local function assigned_consumer(topic, opts)
  local n = opts.partitions
  if not n then
    local err
    n, err = partition_count(topic)
    if not n then return nil, err end
  end
  local conf = { group = M.fresh("klua-testkit"), ["enable.auto.commit"] = false }
  if opts.isolation then conf["isolation.level"] = opts.isolation end
  local c = klua.consumer(conf)
  local parts = {}
  for p = 0, n - 1 do
    local from = opts.from or "beginning"
    if type(from) == "table" then from = from[p] or "end" end
    parts[#parts + 1] = { topic = topic, partition = p, offset = from }
  end
  local ok, err = c:assign(parts)
  if not ok then c:close(); return nil, err end
  return c
end

function M.read(topic, opts)
  check(type(topic) == "string", "read", 1, "topic must be a string")
  opts = opts or {}
  check_timeout(opts.timeout_ms, "read", 2)
  local c, err = assigned_consumer(topic, opts)
  if not c then return nil, err end
  local got = {}
  local until_end = opts.until_end
  if until_end == nil then until_end = opts.n == nil end
  local ok, perr = pcall(function()
    local deadline = klua.now() + (opts.timeout_ms or 10000)
    for msg in c:messages{ until_end = until_end or nil, timeout_ms = math.max(1, deadline - klua.now()) } do
      got[#got + 1] = msg
      if opts.n and #got >= opts.n then break end
      if klua.now() >= deadline then break end
    end
  end)
  c:close()
  if not ok then return nil, perr end
  return got
end

local function matcher(pred)
  if type(pred) == "function" then return pred end
  check(type(pred) == "table", "expect_message", 2, "predicate must be a function or a table of fields")
  return function(m)
    for k, v in pairs(pred) do
      if k == "headers" then
        for name, hv in pairs(v) do
          if m:header(name) ~= hv then return false end
        end
      elseif m[k] ~= v then
        return false
      end
    end
    return true
  end
end

function M.expect_message(topic, predicate, opts)
  check(type(topic) == "string", "expect_message", 1, "topic must be a string")
  opts = opts or {}
  check_timeout(opts.timeout_ms, "expect_message", 3)
  local match = matcher(predicate)
  local timeout = opts.timeout_ms or 10000
  local c, err = assigned_consumer(topic, opts)
  if not c then return nil, err end
  local seen = 0
  local deadline = klua.now() + timeout
  local found, perr
  local ok, e = pcall(function()
    while klua.now() < deadline do
      local m, pe = c:poll(math.max(1, math.min(500, deadline - klua.now())))
      if pe then perr = pe; return end
      if m then
        seen = seen + 1
        if match(m) then found = m; return end
      end
    end
  end)
  c:close()
  if not ok then error(e, 0) end
  if found then return found end
  if perr then return nil, perr end
  return nil, klua.errors.new{ name = klua.errors._TIMED_OUT, kafka = true, topic = topic, timeout_ms = timeout,
    message = string.format("expect_message: no matching message in %s within %d ms (%d other message(s) seen)",
      topic, timeout, seen) }
end

function M.roundtrip(topic, msgs, opts)
  opts = opts or {}
  check_timeout(opts.timeout_ms, "roundtrip", 3)
  local reports, err = M.produce(topic, msgs)
  if not reports then return nil, err end
  local from, want = {}, {}
  local last = -1
  for i, r in ipairs(reports) do
    if from[r.partition] == nil or r.offset < from[r.partition] then from[r.partition] = r.offset end
    want[r.partition .. ":" .. r.offset] = i
    if r.partition > last then last = r.partition end
  end
  local c, cerr = assigned_consumer(reports[1] and reports[1].topic or topic,
    { from = from, partitions = last + 1, isolation = opts.isolation })
  if not c then return nil, cerr end
  local out, left = {}, #reports
  local deadline = klua.now() + (opts.timeout_ms or 10000)
  local ok, e = pcall(function()
    while left > 0 and klua.now() < deadline do
      local m, pe = c:poll(500)
      if pe then error(pe, 0) end
      local i = m and want[m.partition .. ":" .. m.offset]
      if i and not out[i] then out[i] = m; left = left - 1 end
    end
  end)
  c:close()
  if not ok then return nil, e end
  if left > 0 then
    return nil, klua.errors.new{ name = klua.errors._TIMED_OUT, kafka = true, topic = topic,
      message = string.format("roundtrip: %d of %d message(s) not read back from %s", left, #reports, topic) }
  end
  return out
end

function M.poll_n(c, n, timeout_ms)
  check_timeout(timeout_ms, "poll_n", 3, "timeout_ms")
  local got = {}
  local deadline = klua.now() + (timeout_ms or 30000)
  while #got < n and klua.now() < deadline do
    local m, err = c:poll(math.max(1, math.min(1000, deadline - klua.now())))
    if err then error(err, 2) end
    if m then got[#got + 1] = m end
  end
  return got
end

function M.assert_nothing_more(c, ms)
  local m, err = c:poll(ms or 1000)
  if err then error(err, 2) end
  if m then
    A.fail(string.format("unexpected message %s [%d] at offset %d: %s", m.topic, m.partition, m.offset, A.show(m.value)))
  end
end

function M.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function M.sh(cmd, stdin)
  check(type(cmd) == "string", "sh", 1, "cmd must be a string")
  check(stdin == nil or type(stdin) == "string", "sh", 2, "stdin must be a string")
  -- klua.process, not io.popen: the test's other tasks (a consumer, a server under test) keep
  -- running while the command does, and stdin needs no temporary file.
  local res, err = klua.process.shell(cmd, { stdin = stdin })
  if not res then error(err, 2) end
  if res.stderr ~= "" then io.stderr:write(res.stderr) end
  -- The status a shell reports for a signal (128 + its number), as `$?` would say.
  return res.stdout, res.status or (128 + res.signal)
end

return M
