-- klua consume's and produce's output and input against kcat 1.7.1 on the real broker, byte for
-- byte: -f tokens, --json with every byte value, produce's lines; and stdout's buffering (idle
-- flush, signals).
local KLUA = os.getenv("KLUA_BIN") or "./build/klua"
local BROKERS = os.getenv("KLUA_BROKERS") or ""
local fresh, q, sh = klua.testkit.fresh, klua.testkit.quote, klua.testkit.sh

local function kcat(args, stdin)
  local o, rc = sh("timeout 60 kcat -b " .. q(BROKERS) .. " -q " .. args, stdin)
  assert_eq(rc, 0, "kcat " .. args)
  return o
end

local function kl(args, stdin)
  local o, rc = sh("timeout 60 " .. KLUA .. " " .. args, stdin)
  assert_eq(rc, 0, "klua " .. args)
  return o
end

local function bytes(from, to)
  local t = {}
  for i = from, to do t[#t + 1] = string.char(i) end
  return table.concat(t)
end
local ALL = bytes(0, 255)

-- Records of every shape on one partition (so both tools print them in the same order).
local function fixture(with_nul_headers)
  local t = fresh("fmt")
  assert(klua.admin():create_topics({ { name = t, partitions = 1 } }))
  local p = klua.producer()
  local hv = with_nul_headers and ALL or bytes(1, 255)
  local msgs = {
    { key = ALL, value = ALL, headers = { { "bin", hv }, { "null" }, { "empty", "" }, { "dup", "1" }, { "dup", "2" } } },
    { key = "", value = "" },
    {},
    { key = "k", value = "v", headers = { { "a", "1" } } },
    { key = "é", value = string.rep("x", 100000), timestamp = 1700000000123 },
  }
  for _, m in ipairs(msgs) do
    m.topic, m.partition = t, 0
    assert(p:produce(m))
  end
  return t, msgs
end

test("-f with every kcat token and escape prints what kcat -f prints", function()
  local t = fixture(false)
  for _, f in ipairs({ "%t|%p|%o|%T|%k|%K|%s|%S|%R|%h\\n", "%%s=%s\\t%k\\x41\\\\%o\\n", "%s%k" }) do
    local want = kcat("-C -t " .. t .. " -o beginning -e -f " .. q(f))
    local got = kl("consume " .. t .. " --from beginning -e -f " .. q(f))
    assert_true(got == want, "klua -f " .. f .. " differs from kcat at byte " ..
      (function() for i = 1, #want do if got:byte(i) ~= want:byte(i) then return i end end return #want + 1 end)())
    assert_true(#got > 100000)
  end
end)

test("-Z prints NULL for a null key or value as kcat -Z does (kcat also marks empty ones: klua does not)", function()
  local t = fresh("nul")
  assert(klua.admin():create_topics({ { name = t, partitions = 1 } }))
  local p = klua.producer()
  assert(p:produce{ topic = t, partition = 0, key = "k" })
  assert(p:produce{ topic = t, partition = 0, value = "v" })
  assert(p:produce{ topic = t, partition = 0, key = "", value = "" })
  local f = "%k|%s\\n"
  local want = kcat("-C -t " .. t .. " -o beginning -e -Z -f " .. q(f))
  local got = kl("consume " .. t .. " --from beginning -e -Z -f " .. q(f))
  assert_eq(want, "k|NULL\nNULL|v\nNULL|NULL\n")
  assert_eq(got, "k|NULL\nNULL|v\n|\n")
end)

test("--json: all 256 byte values in keys, values and headers come back exactly; null and empty stay apart", function()
  local t, msgs = fixture(true)
  local out = kl("consume " .. t .. " --from beginning -e --json")
  local got = {}
  for line in out:gmatch("[^\n]+") do got[#got + 1] = assert(klua.json.decode(line)) end
  assert_eq(#got, #msgs)
  local function field(j, name)
    if j[name .. "_b64"] ~= nil then return klua.base64.decode(j[name .. "_b64"]) end
    if j[name] == klua.json.null then return nil end
    return j[name]
  end
  for i, m in ipairs(msgs) do
    assert_true(field(got[i], "key") == m.key, "key of message " .. i)
    assert_true(field(got[i], "value") == m.value, "value of message " .. i)
    local hs = {}
    for _, h in ipairs(got[i].headers) do hs[#hs + 1] = { field(h, "name"), field(h, "value") } end
    assert_eq(hs, m.headers or {}, "headers of message " .. i)
    assert_eq(got[i].offset, i - 1)
  end
  assert_eq(got[5].timestamp, 1700000000123)
  -- the same bytes as kcat reads them (kcat's %k/%s: raw bytes, nothing for null or empty)
  local raw = kcat("-C -t " .. t .. " -o beginning -e -c 1 -f '%k%s'")
  assert_true(raw == field(got[1], "key") .. field(got[1], "value"))
  -- --json-binary base64: every key, value and header value in its _b64 field
  local b = assert(klua.json.decode(kl("consume " .. t .. " --from beginning -e -n 4 --json --json-binary base64"):match("[^\n]+\n[^\n]+\n[^\n]+\n([^\n]+)")))
  assert_eq({ b.key_b64, b.value_b64, b.headers[1].value_b64, b.key, b.value },
            { klua.base64.encode("k"), klua.base64.encode("v"), klua.base64.encode("1"), nil, nil })
end)

test("produce reads lines as kcat -P does: \\r kept, empty lines skipped, -K, -Z; kcat reads them back alike", function()
  local input = "a:1\r\n\n\r\n:v\nk:\nnokey\n\n::x\nlast:line"
  local f = "%K %k|%S %s\\n"
  for _, z in ipairs({ "", " -Z" }) do
    local t1, t2 = fresh("kp"), fresh("cp")
    assert(klua.admin():create_topics({ { name = t1, partitions = 1 }, { name = t2, partitions = 1 } }))
    sh("timeout 60 " .. KLUA .. " produce " .. t1 .. " -K :" .. z .. " 2>/dev/null", input)
    kcat("-P -t " .. t2 .. " -K :" .. z, input)
    local mine = kcat("-C -t " .. t1 .. " -o beginning -e -f " .. q(f))
    local theirs = kcat("-C -t " .. t2 .. " -o beginning -e -f " .. q(f))
    assert_eq(mine, theirs, "klua produce" .. z .. " vs kcat -P" .. z)
    if z == "" then
      assert_eq(mine, "1 a|2 1\r\n-1 |1 \r\n0 |1 v\n1 k|0 \n-1 |5 nokey\n0 |2 :x\n4 last|4 line\n")
    end
  end
end)

-- Starts `klua consume ARGS` in the background writing to a file; returns the file, and a
-- function that reads the pid (written by the shell) and one that waits for the exit status.
local function background(args, tag)
  local dir = os.getenv("KLUA_BROKER_STATE") or "build"
  local base = dir .. "/cli-output-" .. tag .. "-" .. klua.uuid():sub(1, 8)
  -- pid and rc are written whole (mv), so a reader never sees half of one
  os.execute("(timeout -s KILL 60 " .. KLUA .. " " .. args .. " >" .. q(base .. ".out") .. " 2>" .. q(base .. ".err") ..
    " & echo $! >" .. q(base .. ".pid.tmp") .. "; mv " .. q(base .. ".pid.tmp") .. " " .. q(base .. ".pid") ..
    "; wait $!; echo $? >" .. q(base .. ".rc.tmp") .. "; mv " .. q(base .. ".rc.tmp") .. " " .. q(base .. ".rc") ..
    ") &")
  local function read(ext)
    local f = io.open(base .. "." .. ext, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
  end
  local function cleanup()
    for _, ext in ipairs({ "out", "err", "pid", "rc" }) do os.remove(base .. "." .. ext) end
  end
  return read, cleanup
end

-- Waits (polling a file the child writes: the event is outside this process) up to ms.
local function wait_for(pred, ms)
  local deadline = klua.now() + ms
  while klua.now() < deadline do
    local v = pred()
    if v then return v end
    klua.sleep(20)
  end
  return nil
end

test("to a file, a message consumed while following reaches it within ~100 ms idle; SIGINT flushes and exits 130", function()
  local t = fresh("follow")
  assert(klua.admin():create_topics({ { name = t, partitions = 1 } }))
  local read, cleanup = background("consume " .. t .. " --from beginning", "follow")
  local pid = assert(wait_for(function() return read("pid") end, 10000))
  local p = klua.producer()
  assert(p:produce{ topic = t, value = "first" })
  -- klua keeps running (no -e): without the idle flush the line would wait for its exit
  assert_true(wait_for(function() return read("out") == "first\n" end, 20000),
    "the line did not reach the file while klua kept running: " .. tostring(read("out")))
  assert_eq(read("rc"), nil, "still running")
  -- now that it is caught up: from the delivery to the file, a fetch plus at most the 100 ms idle flush
  assert(p:produce{ topic = t, value = "second" })
  local sent = klua.now()
  assert_true(wait_for(function() return read("out") == "first\nsecond\n" end, 10000))
  assert_true(klua.now() - sent < 2000, "took " .. (klua.now() - sent) .. " ms")
  os.execute("kill -INT " .. pid:match("%d+"))
  local rc = wait_for(function() return read("rc") end, 20000)
  assert_eq(tonumber(rc), 130)
  assert_eq(read("out"), "first\nsecond\n")
  cleanup()
end)

test("two signals at once while printing a backlog: what reached the file is whole messages only", function()
  local t = fresh("twosig")
  assert(klua.admin():create_topics({ { name = t, partitions = 1 } }))
  local p = klua.producer()
  local batch = {}
  for i = 1, 200000 do batch[i] = { topic = t, partition = 0, value = string.format("m%07d", i) } end
  for _, r in ipairs(assert(p:produce_batch(batch))) do assert(r.error == nil) end
  local read, cleanup = background("consume " .. t .. " --from beginning", "twosig")
  local pid = assert(wait_for(function() return read("pid") end, 10000)):match("%d+")
  assert_true(wait_for(function() local o = read("out") return o and #o > 0 end, 20000), "printing started")
  os.execute("kill -INT " .. pid .. "; kill -INT " .. pid)
  assert_true(wait_for(function() return read("rc") end, 20000))
  local out = read("out")
  assert_true(#out > 0 and #out % 9 == 0, "whole lines only: " .. #out .. " bytes")
  local n = 0
  for line in out:gmatch("([^\n]*)\n") do
    n = n + 1
    assert_eq(line, string.format("m%07d", n))
  end
  assert_eq(n * 9, #out)
  cleanup()
end)
