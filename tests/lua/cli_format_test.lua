-- klua consume's printing (scripts/klua/cli/format.lua, klua._stdout) and klua.base64, without a
-- broker: templates, JSON lines, filters checked against bytes written out by hand; then the
-- commands themselves on the embedded cluster.
local format = require("klua.cli.format")
local out = klua._stdout
local KLUA = os.getenv("KLUA_BIN") or "./build/klua"
local sh, q = klua.testkit.sh, klua.testkit.quote

-- Runs emit over msgs in a child klua (the buffer writes to fd 1) and returns its stdout.
local function printed(code)
  local o, rc = sh(KLUA .. " -e " .. q("local format = require('klua.cli.format') " .. code ..
    " klua._stdout.flush()"))
  assert_eq(rc, 0, o)
  return o
end

test("base64: RFC 4648's vectors both ways; decode takes URL-safe and unpadded text, refuses junk", function()
  local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
                    foobar = "Zm9vYmFy" }
  for plain, coded in pairs(vectors) do
    assert_eq(klua.base64.encode(plain), coded)
    assert_eq(klua.base64.decode(coded), plain)
  end
  local all = {}
  for i = 0, 255 do all[#all + 1] = string.char(i) end
  all = table.concat(all)
  assert_eq(klua.base64.decode(klua.base64.encode(all)), all)
  assert_eq(klua.base64.decode("_-8"), "\255\239")
  local bad, err = klua.base64.decode("ab$c")
  assert_eq(bad, nil)
  assert_match(tostring(err), "not base64 at byte 2")
end)

test("-f: every kcat token, escapes, and -Z's marker for null only", function()
  local o = printed([[
    local e = assert(format.template("%t|%p|%o|%T|%k|%K|%s|%S|%h|%%|%v\\t\\x41\\101\\\\n\\n", "NULL"))
    e({ topic = "t", partition = 3, offset = 42, timestamp = 1700000000123, key = "k", value = "vv",
        headers = { { "a", "1" }, { "n" }, { "e", "" } } })
    e({ topic = "t", partition = 0, offset = 0, key = "", headers = {} })
  ]])
  assert_eq(o, "t|3|42|1700000000123|k|1|vv|2|a=1,n=NULL,e=|%|vv\tAe\\n\n" ..
               "t|0|0|-1||0|NULL|-1||%|NULL\tAe\\n\n")
end)

test("-f %R writes the value's size as 4 bytes big-endian, 0xFFFFFFFF for null", function()
  local o = printed([[
    local e = assert(format.template("%R%s"))
    e({ value = string.rep("x", 258), headers = {} })
    e({ headers = {} })
  ]])
  assert_eq(o, "\0\0\1\2" .. string.rep("x", 258) .. "\255\255\255\255")
end)

test("-f: an unknown token or a lone % is refused, naming it", function()
  local e, err = format.template("%k %y")
  assert_eq(e, nil)
  assert_match(err, "unknown token %%y")
  e, err = format.template("%k%")
  assert_eq(e, nil)
  assert_match(err, "lone %%")
end)

test("--json: UTF-8 as strings, other bytes as base64 twins, null and empty distinct", function()
  local o = printed([[
    local e = format.json()
    e({ topic = "t", partition = 1, offset = 7, timestamp = 5, key = "\255k", value = "é\"\n\1",
        headers = { { "h", "\0\200" }, { "n" }, { "e", "" } } })
    e({ topic = "t", partition = 1, offset = 8, key = "", headers = {} })
    format.json("base64")({ topic = "t", partition = 0, offset = 0, value = "hi", headers = { { "a", "b" } } })
  ]])
  local lines = {}
  for l in o:gmatch("[^\n]+") do lines[#lines + 1] = l end
  assert_eq(lines[1], '{"headers":[{"name":"h","value_b64":"AMg="},{"name":"n","value":null},{"name":"e","value":""}],' ..
    '"key_b64":"/2s=","offset":7,"partition":1,"timestamp":5,"topic":"t","value":"é\\"\\n\\u0001"}')
  assert_eq(lines[2], '{"headers":[],"key":"","offset":8,"partition":1,"timestamp":null,"topic":"t","value":null}')
  assert_eq(lines[3], '{"headers":[{"name":"a","value_b64":"Yg=="}],"key_b64":null,"offset":0,"partition":0,' ..
    '"timestamp":null,"topic":"t","value_b64":"aGk="}')
  -- and klua.json reads them back
  local m = assert(klua.json.decode(lines[1]))
  assert_eq(klua.base64.decode(m.key_b64), "\255k")
  assert_eq(m.value, "é\"\n\1")
end)

test("--filter: the message's fields, headers by name and as a list, json decoded, no io or os", function()
  local keep = assert(format.filter('json and json.n > 1 and headers.src == "a" and #headers == 2'))
  local hs = { { "src", "b" }, { "src", "a" } }
  assert_true(keep({ value = '{"n":2}', headers = hs }))
  assert_false(keep({ value = '{"n":1}', headers = hs }) and true or false)
  assert_eq(keep({ value = "not json", headers = hs }), nil)
  local k2 = assert(format.filter("offset % 2 == 0 and value:find('^a%d') ~= nil and key == nil"))
  assert_true(k2({ offset = 4, value = "a1" }))
  assert_false(k2({ offset = 3, value = "a1" }))
  local _, err = format.filter("value ==")
  assert_match(err, "unexpected symbol")
  local k3 = assert(format.filter("os.exit(3)"))
  assert_raises(function() k3({}) end, "global 'os'")
  local k4 = assert(format.filter("io == nil and require == nil and string.dump == nil and load == nil"))
  assert_true(k4({}))
  local k5 = assert(format.filter("(function() x = 1 end)()"))
  assert_raises(function() k5({}) end, "cannot set the global x")
end)

test("--grep: a plain substring of the key or the value", function()
  local g = format.grep("a.b")
  assert_true(g({ value = "xxa.byy" }))
  assert_true(g({ key = "a.b" }))
  assert_false(g({ value = "aXb", key = "aXb" }))
  assert_false(g({}))
end)

test("the stdout buffer: pieces larger than the buffer, many small ones, in order", function()
  local o = printed([[
    local put = klua._stdout.put
    for i = 1, 20000 do put(tostring(i)) put("\n") end
    put(string.rep("y", 200000)) put("\n")
    klua._stdout.put_int(-9007199254740991) put("\n")
  ]])
  local want = {}
  for i = 1, 20000 do want[#want + 1] = tostring(i) end
  want[#want + 1] = string.rep("y", 200000)
  want[#want + 1] = "-9007199254740991"
  assert_eq(o, table.concat(want, "\n") .. "\n")
  assert_false(out.failed())
end)

-- The commands on the embedded cluster.
local function klua_cmd(args)
  return KLUA .. " -b " .. klua.embedded.bootstrap() .. " " .. args
end

test("consume: -f, --json, --filter, --grep and -n (counting printed messages) end to end", function()
  local t = klua.testkit.fresh("fmt")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer()
  for i = 1, 10 do
    assert(p:produce{ topic = t, key = "k" .. i, value = klua.json.encode({ n = i }), headers = { { "i", tostring(i) } } })
  end
  assert(p:produce{ topic = t, value = "\255\254" })
  local o, rc = sh(klua_cmd("consume " .. t .. " --from beginning -e -f '%o:%k:%h\\n'"))
  assert_eq(rc, 0)
  assert_match(o, "^0:k1:i=1\n1:k2:i=2\n")
  o = sh(klua_cmd("consume " .. t .. " --from beginning -e --filter 'json and json.n % 3 == 0' -f '%k '"))
  assert_eq(o, "k3 k6 k9 ")
  o = sh(klua_cmd("consume " .. t .. " --from beginning -e --grep 'k1' -f '%k '"))
  assert_eq(o, "k1 k10 ")
  o = sh(klua_cmd("consume " .. t .. " --from beginning -e --filter 'headers.i ~= \"1\"' -n 2 -f '%k '"))
  assert_eq(o, "k2 k3 ")
  local js, rc2 = sh(klua_cmd("consume " .. t .. " --from beginning -e --json"))
  assert_eq(rc2, 0)
  local last
  for l in js:gmatch("[^\n]+") do last = assert(klua.json.decode(l)) end
  assert_eq(klua.base64.decode(last.value_b64), "\255\254")
end)

test("consume: usage errors (-f token, --filter syntax, -f with --json, --json-binary) exit 2 naming the mistake", function()
  local t = "no-need"
  local cases = {
    { "-f '%k %x'", "unknown token %%x" },
    { "--filter 'value =='", "%-%-filter value ==: " },
    { "--json -f '%s'", "exclusive" },
    { "--json-binary hex", "auto or base64" },
  }
  for _, c in ipairs(cases) do
    local o, rc = sh(klua_cmd("consume " .. t .. " " .. c[1] .. " 2>&1"))
    assert_eq(rc, 2, c[1])
    assert_match(o, "klua: .*" .. c[2])
  end
  local o, rc = sh(klua_cmd("consume " .. t .. " --filter 'nosuch.field' -f x 2>&1"))
  assert_eq(rc, 3, o)  -- the expression compiles; the topic does not exist
end)

test("consume: an error inside --filter exits 1 naming the expression and the message", function()
  local t = klua.testkit.fresh("ferr")
  klua.embedded.create_topic(t, 1)
  assert(klua.producer():produce{ topic = t, value = "v" })
  local o, rc = sh(klua_cmd("consume " .. t .. " --from beginning -e --filter 'key:find(\"x\")' 2>&1"))
  assert_eq(rc, 1)
  assert_match(o, "^klua: %-%-filter key:find%(\"x\"%): attempt to index local 'key' %(a nil value%) %(at " ..
    t:gsub("%-", "%%-") .. "/0@0%)\n$")
end)

test("produce: \\r kept, empty lines skipped (or kept with --keep-empty), -K and -Z", function()
  local t = klua.testkit.fresh("prod")
  klua.embedded.create_topic(t, 1)
  local _, rc = sh(klua_cmd("produce " .. t .. " -K : -Z 2>/dev/null"), "a:1\r\n\n\nb:\n:c\nd\nlast")
  assert_eq(rc, 0)
  local o = sh(klua_cmd("consume " .. t .. " --from beginning -e -f '%K:%k|%S:%s\\n'"))
  assert_eq(o, "1:a|2:1\r\n1:b|-1:\n-1:|1:c\n-1:|1:d\n-1:|4:last\n")
  local t2 = klua.testkit.fresh("prod")
  klua.embedded.create_topic(t2, 1)
  sh(klua_cmd("produce " .. t2 .. " --keep-empty 2>/dev/null"), "x\n\n\ny\n")
  o = sh(klua_cmd("consume " .. t2 .. " --from beginning -e -f '%S,'"))
  assert_eq(o, "1,0,0,1,")
  local _, rc3 = sh(klua_cmd("produce " .. t2 .. " -k '' 2>/dev/null"), "x\n")
  assert_eq(rc3, 2)
end)
