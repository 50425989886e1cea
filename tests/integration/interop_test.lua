-- Interop with kcat (librdkafka's CLI) on a real broker: what klua writes, kcat reads
-- exactly, and the other way round; consumer group offsets are shared both ways.
-- kcat runs through io.popen/os.execute, which blocks the loop while it runs (fine here).
local BROKERS = os.getenv("KLUA_BROKERS") or ""

local fresh = klua.testkit.fresh
local q = klua.testkit.quote
local null = klua.json.null

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs a shell command (with a 60 s guard); returns stdout, and fails the test on a
-- non-zero exit, showing stderr. (LuaJIT's p:close() does not report the exit status.)
local function sh(cmd)
  local errf, rcf = os.tmpname(), os.tmpname()
  local p = assert(io.popen("timeout 60 " .. cmd .. " 2>" .. q(errf) .. "; echo $? >" .. q(rcf)))
  local out = p:read("*a")
  p:close()
  local err, rc = read_file(errf), tonumber(read_file(rcf):match("%d+"))
  os.remove(errf)
  os.remove(rcf)
  if rc ~= 0 then
    error(string.format("command exited with %s: %s\nstderr: %s", tostring(rc), cmd, err), 2)
  end
  return out, err
end

local function kcat(args) return sh("kcat -b " .. q(BROKERS) .. " " .. args) end

-- kcat -C -J: one decoded JSON object per message.
local function kcat_json(topic, extra)
  local out = kcat("-C -t " .. q(topic) .. " -e -q -J " .. (extra or ""))
  local msgs = {}
  for line in out:gmatch("[^\n]+") do
    local v, err = klua.json.decode(line)
    assert(v, "kcat printed undecodable JSON: " .. tostring(err) .. ": " .. line)
    msgs[#msgs + 1] = v
  end
  return msgs
end

-- kcat -C -f with lengths: exact bytes of key and value (nil for NULL), and the offset.
local function kcat_raw(topic)
  local out = kcat("-C -t " .. q(topic) .. " -e -q -f '%K %S %o\\n%k%s\\n'")
  local msgs, pos = {}, 1
  while pos <= #out do
    local klen, vlen, off, nxt = out:match("^(%-?%d+) (%-?%d+) (%d+)\n()", pos)
    assert(klen, "unexpected kcat output at byte " .. pos .. ": " .. out:sub(pos, pos + 40))
    klen, vlen, pos = tonumber(klen), tonumber(vlen), nxt
    local m = { offset = tonumber(off) }
    if klen >= 0 then m.key = out:sub(pos, pos + klen - 1); pos = pos + klen end
    if vlen >= 0 then m.value = out:sub(pos, pos + vlen - 1); pos = pos + vlen end
    assert(out:sub(pos, pos) == "\n", "missing record terminator at byte " .. pos)
    pos = pos + 1
    msgs[#msgs + 1] = m
  end
  return msgs
end

local function consumer(topic, group, extra)
  local conf = { group = group or fresh("g"), topics = { topic }, ["auto.offset.reset"] = "earliest",
                 ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 1000 }
  for k, v in pairs(extra or {}) do conf[k] = v end
  return klua.consumer(conf)
end

local poll_n = klua.testkit.poll_n

local assert_nothing_more = klua.testkit.assert_nothing_more

test("kcat is installed and a broker is configured", function()
  assert_true(BROKERS ~= "", "KLUA_BROKERS is not set")
  local out = kcat("-L -m 10")
  assert_match(out, "broker 1 at")
  assert_match(sh("kcat -V"), "librdkafka")
  assert_raises(function() sh("kcat -b " .. q(BROKERS) .. " -C -t no-topic-given-here -e -q -o 99999999 -X bad.prop=1") end,
    "command exited with 1")
end)

test("what klua produces, kcat -J reads exactly (key, value, headers, timestamp)", function()
  local t = fresh("tokcat")
  local p = klua.producer()
  local text = "hello\0world\1\t\n\"\\ /é ✓ 🙂 \127"
  local sent = {
    { topic = t, key = "k1", value = text, timestamp = 1700000000456,
      headers = { { "x", "1" }, { "nil" }, { "x", "2" }, { "blank", "" }, { "u", "é\0ü" } } },
    { topic = t, key = "", value = "" },
    { topic = t, value = "no key", headers = { { "only", "one" } } },
    { topic = t, key = "tomb" },
  }
  local reports = {}
  for i, m in ipairs(sent) do reports[i] = assert(p:produce(m)) end
  p:close()
  local got = kcat_json(t)
  assert_eq(#got, 4)
  for i, j in ipairs(got) do
    assert_eq(j.topic, t)
    assert_eq(j.partition, 0)
    assert_eq(j.offset, reports[i].offset)
    assert_eq(j.offset, i - 1)
    assert_eq(j.tstype, "create")
    assert_eq(j.ts, reports[i].timestamp, "kcat sees the timestamp klua's report gave, message " .. i)
  end
  assert_eq(got[1].ts, 1700000000456)
  assert_eq(got[1].key, "k1")
  assert_true(got[1].payload == text, "payload differs: " .. tostring(got[1].payload))
  assert_eq(got[1].headers, { "x", "1", "nil", null, "x", "2", "blank", "", "u", "é\0ü" })
  assert_eq(got[2].key, "")
  assert_eq(got[2].payload, "")
  assert_eq(got[2].headers, nil)
  assert_eq(got[3].key, null)
  assert_eq(got[3].payload, "no key")
  assert_eq(got[3].headers, { "only", "one" })
  assert_eq(got[4].key, "tomb")
  assert_eq(got[4].payload, null)
end, { timeout_ms = 60000 })

test("what klua produces, kcat reads byte-exact (all 256 byte values, 200 KiB random, NULLs)", function()
  local t = fresh("tokcatraw")
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  bytes = table.concat(bytes)
  local big = klua.random_bytes(200 * 1024)
  local sent = {
    { key = "\255\0\n", value = bytes },
    { value = big },
    { key = "k" },
    { key = "", value = "" },
    { key = "\n\n", value = "\n" },
  }
  local p = klua.producer()
  local list = {}
  for i, m in ipairs(sent) do list[i] = { topic = t, key = m.key, value = m.value } end
  local res = assert(p:produce_batch(list))
  for i = 1, #sent do assert_eq(res[i].error, nil, "message " .. i) end
  p:close()
  local got = kcat_raw(t)
  assert_eq(#got, #sent)
  for i, m in ipairs(got) do
    assert_eq(m.offset, i - 1)
    assert_eq(m.key, sent[i].key, "key of message " .. i)
    assert_true(m.value == sent[i].value,
      string.format("value of message %d differs (%d vs %d bytes)", i, #(m.value or ""), #(sent[i].value or "")))
  end
end, { timeout_ms = 60000 })

test("what kcat -P -K: -H produces, klua reads exactly (keys, values, headers)", function()
  local t = fresh("fromkcat")
  local input = os.tmpname()
  write_file(input, "k1:v1\nnodelim\n:\nk:a:b\n  spaced key :  spaced value  \n")
  local before = klua.time()
  kcat("-P -t " .. q(t) .. " -K: -H a=1 -H a=2 -H b= -H c -H 'd=x=y' -H 'sp= v ' -l " .. q(input))
  local after = klua.time()
  os.remove(input)
  local c = consumer(t)
  local got = poll_n(c, 5)
  assert_eq(#got, 5)
  local headers = { { "a", "1" }, { "a", "2" }, { "b", "" }, { "c" }, { "d", "x=y" }, { "sp", " v " } }
  local expect = {
    { key = "k1", value = "v1" },
    { key = nil, value = "nodelim" },
    { key = "", value = "" },
    { key = "k", value = "a:b" },
    { key = "  spaced key ", value = "  spaced value  " },
  }
  for i, m in ipairs(got) do
    assert_eq(m.topic, t)
    assert_eq(m.offset, i - 1)
    assert_eq(m.key, expect[i].key, "key of message " .. i)
    assert_eq(m.value, expect[i].value, "value of message " .. i)
    assert_eq(m.headers, headers, "headers of message " .. i)
    assert_eq(m.timestamp_type, "create")
    assert_true(m.timestamp >= before - 5 and m.timestamp <= after + 5,
      string.format("timestamp %s not within [%s, %s]", tostring(m.timestamp), before, after))
  end
  assert_eq(got[1]:header_all("a"), { "1", "2" })
  assert_eq(got[1]:header("a"), "2")
  assert_eq(got[1]:header("b"), "")
  assert_eq(got[1]:header("c"), nil)
  assert_nothing_more(c, 1000)
  c:close()
end, { timeout_ms = 60000 })

test("what kcat produces with binary delimiters and -Z (NULL values), klua reads byte-exact", function()
  local t = fresh("fromkcatbin")
  local input = os.tmpname()
  -- \x1e separates messages, \x1f key from value; keys and values hold \0, \n and \255
  write_file(input, "k\0\255\31v\0\n\255\30\31onlyvalue\30nokeydelim\30key-null-value\31\30")
  kcat("-P -t " .. q(t) .. " -K '\\x1f' -D '\\x1e' -Z -l " .. q(input))
  os.remove(input)
  local c = consumer(t)
  local got = poll_n(c, 4)
  assert_eq(#got, 4)
  assert_eq(got[1].key, "k\0\255")
  assert_eq(got[1].value, "v\0\n\255")
  assert_eq(got[2].key, nil, "-Z sends an empty key as NULL")
  assert_eq(got[2].value, "onlyvalue")
  assert_eq(got[3].key, nil)
  assert_eq(got[3].value, "nokeydelim")
  assert_eq(got[4].key, "key-null-value")
  assert_eq(got[4].value, nil, "-Z sends an empty value as NULL")
  for i, m in ipairs(got) do
    assert_eq(m.offset, i - 1)
    assert_eq(m.headers, {})
  end
  assert_nothing_more(c, 1000)
  c:close()
end, { timeout_ms = 60000 })

test("group offsets: klua's commit is where a kcat -G member starts, and kcat's where klua resumes", function()
  local t = fresh("groups")
  local p = klua.producer()
  local list = {}
  for i = 1, 9 do list[i] = { topic = t, value = "m" .. i } end
  local res = assert(p:produce_batch(list))
  assert_eq(res[9].offset, 8)
  p:close()
  local group = fresh("g")
  -- klua consumes 3 and commits the 3rd
  local c = consumer(t, group)
  local got = poll_n(c, 3)
  assert_eq(#got, 3)
  assert_eq(c:commit(got[3]), true)
  c:close()
  -- kcat in the same group starts at offset 3, takes 3 messages, commits on exit
  local out = kcat("-G " .. q(group) .. " -X auto.offset.reset=earliest -e -q -c 3 -f '%o=%s\\n' " .. q(t))
  assert_eq(out, "3=m4\n4=m5\n5=m6\n")
  -- klua resumes where kcat stopped
  local c2 = consumer(t, group)
  local rest = poll_n(c2, 3)
  assert_eq(#rest, 3)
  assert_eq(rest[1].offset, 6)
  assert_eq({ rest[1].value, rest[2].value, rest[3].value }, { "m7", "m8", "m9" })
  assert_nothing_more(c2, 1000)
  c2:close()
end, { timeout_ms = 90000 })
