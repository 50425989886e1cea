-- Interop with confluent-kafka (Python; its own, newer librdkafka) on a real broker,
-- through tests/integration/pyclient.py. Needs: python3 -m pip install confluent-kafka==2.16.1
-- Bytes cross the process boundary as hex inside JSON lines.
local BROKERS = os.getenv("KLUA_BROKERS") or ""
local HERE = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
local PYCLIENT = HERE .. "/pyclient.py"
local null = klua.json.null

local fresh = klua.testkit.fresh
local q = klua.testkit.quote
local function hex(s)
  if s == nil then return null end
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
local function unhex(h)
  if h == null or h == nil then return nil end
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

PYTHON = dofile("tests/integration/helpers/python.lua")

-- Runs pyclient.py with args (and optional stdin); returns the decoded JSON lines.
-- Fails on a non-zero exit, showing stderr. (LuaJIT's p:close() gives no exit status.)
local function py(args, stdin)
  local inf, errf, rcf = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(inf, "wb"))
  f:write(stdin or "")
  f:close()
  local cmd = "timeout 90 " .. q(PYTHON) .. " " .. q(PYCLIENT) .. " " .. args .. " <" .. q(inf) .. " 2>" .. q(errf) ..
              "; echo $? >" .. q(rcf)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  local err, rc = read_file(errf), tonumber(read_file(rcf):match("%d+"))
  os.remove(inf)
  os.remove(errf)
  os.remove(rcf)
  if rc ~= 0 then error(string.format("pyclient exited with %s: %s\nstderr: %s", tostring(rc), args, err), 2) end
  local lines = {}
  for line in out:gmatch("[^\n]+") do
    local v, derr = klua.json.decode(line)
    assert(v, "pyclient printed undecodable JSON: " .. tostring(derr) .. ": " .. line)
    lines[#lines + 1] = v
  end
  return lines
end

local function py_consume(topic, group, count, commit_last)
  local got = py(table.concat({ "consume", q(BROKERS), q(topic), q(group), tostring(count),
                                commit_last and "commit_last" or nil }, " "))
  for _, m in ipairs(got) do
    m.key, m.value = unhex(m.key), unhex(m.value)
    if m.headers ~= null then
      local hs = {}
      for i, h in ipairs(m.headers) do hs[i] = { h[1], unhex(h[2]) } end
      m.headers = hs
    end
  end
  return got
end

local function py_produce(messages)
  local list = {}
  for i, m in ipairs(messages) do
    local hs
    if m.headers then
      hs = {}
      for j, h in ipairs(m.headers) do hs[j] = { h[1], hex(h[2]) } end
    end
    list[i] = { topic = m.topic, key = hex(m.key), value = hex(m.value), headers = hs, timestamp = m.timestamp }
  end
  return py("produce " .. q(BROKERS), klua.json.encode({ messages = list }))
end

local function consumer(topic, group)
  return klua.consumer{ group = group or fresh("g"), topics = { topic }, ["auto.offset.reset"] = "earliest",
                        ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 1000 }
end

local poll_n = klua.testkit.poll_n

local assert_nothing_more = klua.testkit.assert_nothing_more

local function all_bytes()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

test("confluent-kafka for Python is installed", function()
  local v = py("version")
  assert_eq(#v, 1)
  assert_match(v[1].client, "^%d+%.%d+")
  assert_match(v[1].librdkafka, "^%d+%.%d+")
  assert_true(BROKERS ~= "", "KLUA_BROKERS is not set")
end)

test("what klua produces, confluent-kafka reads exactly", function()
  local t = fresh("topy")
  local p = klua.producer()
  local sent = {
    { topic = t, key = "\0k\255", value = all_bytes(), timestamp = 1700000000789,
      headers = { { "x", "1" }, { "nil", nil }, { "x", "2" }, { "blank", "" }, { "bin", "\0\255" } } },
    { topic = t, key = "", value = "" },
    { topic = t, value = "no key" },
    { topic = t, key = "tomb" },
    { topic = t, key = "big", value = klua.random_bytes(300 * 1024) },
  }
  local reports = {}
  for i, m in ipairs(sent) do reports[i] = assert(p:produce(m)) end
  p:close()
  local got = py_consume(t, fresh("g"), #sent)
  assert_eq(#got, #sent)
  for i, m in ipairs(got) do
    assert_eq(m.topic, t)
    assert_eq(m.partition, 0)
    assert_eq(m.offset, i - 1)
    assert_eq(m.key, sent[i].key, "key of message " .. i)
    assert_true(m.value == sent[i].value, "value of message " .. i .. " differs")
    assert_eq(m.timestamp_type, "create")
    assert_eq(m.timestamp, reports[i].timestamp, "timestamp of message " .. i)
  end
  assert_eq(got[1].timestamp, 1700000000789)
  assert_eq(got[1].headers, { { "x", "1" }, { "nil" }, { "x", "2" }, { "blank", "" }, { "bin", "\0\255" } })
  assert_eq(got[2].headers, null, "no headers")
end, { timeout_ms = 90000 })

test("what confluent-kafka produces, klua reads exactly", function()
  local t = fresh("frompy")
  local sent = {
    { topic = t, key = "\255\0py", value = all_bytes(), timestamp = 1600000000001,
      headers = { { "h", "1" }, { "h", nil }, { "h", "3" }, { "empty", "" }, { "bin", "\0\n\255" } } },
    { topic = t, key = "", value = "" },
    { topic = t, value = "no key" },
    { topic = t, key = "tomb" },
    { topic = t, key = "big", value = klua.random_bytes(300 * 1024), headers = {} },
  }
  local before = klua.time()
  local res = py_produce(sent)
  local after = klua.time()
  assert_eq(#res, #sent)
  for i, r in ipairs(res) do
    assert_eq(r.error, null, "python delivery of message " .. i)
    assert_eq(r.offset, i - 1)
  end
  local c = consumer(t)
  local got = poll_n(c, #sent)
  assert_eq(#got, #sent)
  for i, m in ipairs(got) do
    assert_eq(m.topic, t)
    assert_eq(m.offset, i - 1)
    assert_eq(m.key, sent[i].key, "key of message " .. i)
    assert_true(m.value == sent[i].value, "value of message " .. i .. " differs")
    assert_eq(m.timestamp_type, "create")
    if sent[i].timestamp then
      assert_eq(m.timestamp, sent[i].timestamp)
    else
      assert_true(m.timestamp >= before - 5 and m.timestamp <= after + 5, "timestamp " .. tostring(m.timestamp))
    end
  end
  assert_eq(got[1].headers, { { "h", "1" }, { "h" }, { "h", "3" }, { "empty", "" }, { "bin", "\0\n\255" } })
  assert_eq(got[1]:header("h"), "3")
  assert_eq(got[1]:header_all("bin"), { "\0\n\255" })
  assert_eq(got[2].headers, {})
  assert_eq(got[5].headers, {})
  assert_nothing_more(c, 1000)
  c:close()
end, { timeout_ms = 90000 })

test("group offsets: klua's commit is where a Python member starts, and Python's where klua resumes", function()
  local t = fresh("pygroups")
  local p = klua.producer()
  local list = {}
  for i = 1, 9 do list[i] = { topic = t, value = "m" .. i } end
  local res = assert(p:produce_batch(list))
  assert_eq(res[9].offset, 8)
  p:close()
  local group = fresh("g")
  local c = consumer(t, group)
  local got = poll_n(c, 2)
  assert_eq(#got, 2)
  assert_eq(c:commit(got[2]), true)
  c:close()
  local pygot = py_consume(t, group, 4, true)
  assert_eq(#pygot, 4)
  assert_eq(pygot[1].offset, 2)
  assert_eq(pygot[1].value, "m3")
  assert_eq(pygot[4].value, "m6")
  local c2 = consumer(t, group)
  local rest = poll_n(c2, 3)
  assert_eq(#rest, 3)
  assert_eq(rest[1].offset, 6)
  assert_eq({ rest[1].value, rest[2].value, rest[3].value }, { "m7", "m8", "m9" })
  assert_nothing_more(c2, 1000)
  c2:close()
end, { timeout_ms = 120000 })
