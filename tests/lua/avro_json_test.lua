-- Tests for the Avro JSON encoding, s:to_json and s:from_json (scripts/klua/avro/json.lua), with the
-- spec's rules; fastavro's json_writer/json_reader check generated cases
-- (tests/avro/fastavro_resolution_test.py). Run with: klua test tests/lua/avro_json_test.lua
local avro = klua.avro
local json = klua.json
local ffi = require("ffi")

local function parse(schema)
  if type(schema) == "string" and not schema:find("^%s*[%[{\"]") then schema = string.format("%q", schema) end
  if type(schema) == "table" then schema = json.encode(schema) end
  return assert(avro.parse(schema))
end

local function to_json(schema, v)
  return assert(parse(schema):to_json(v))
end

local function from_json(schema, text)
  local v, err = parse(schema):from_json(text)
  assert_nil(err)
  return v
end

local function rec(name, fields) return { type = "record", name = name, fields = fields } end

test("primitives", function()
  assert_eq(to_json("null", nil), "null")
  assert_eq(to_json("boolean", true), "true")
  assert_eq(to_json("int", -5), "-5")
  assert_eq(to_json("long", 2 ^ 53), "9007199254740992")
  assert_eq(to_json("double", 1.5), "1.5")
  assert_eq(to_json("double", 3), "3.0")
  assert_eq(to_json("double", 0.1), "0.1")
  assert_eq(to_json("float", ffi.new("float[1]", 1.1)[0]), "1.1") -- the shortest text of the float
  assert_eq(to_json("double", 0 / 0), '"NaN"')
  assert_eq(to_json("double", -math.huge), '"-Infinity"')
  assert_eq(to_json("string", 'a"b\\c\n\1h\195\169'), '"a\\"b\\\\c\\n\\u0001h\195\169"')
  assert_eq(from_json("int", "-5"), -5)
  assert_eq(from_json("double", "3"), 3)
  assert_eq(from_json("double", '"NaN"') ~= from_json("double", '"NaN"'), true)
  assert_eq(from_json("double", "Infinity"), math.huge) -- fastavro's bare word
  assert_eq(from_json("string", '"a\\u00e9\\ud83d\\ude00"'), "a\195\169\240\159\152\128")
  assert_nil(from_json("null", "null"))
end)

test("longs beyond 2^53 are exact both ways, as int64 cdata", function()
  local min = ffi.new("int64_t", -9223372036854775807LL - 1)
  assert_eq(to_json("long", min), "-9223372036854775808")
  assert_eq(to_json("long", 9223372036854775807LL), "9223372036854775807")
  local v = from_json("long", "9007199254740993")
  assert_true(type(v) == "cdata" and v == 9007199254740993LL)
  assert_true(from_json("long", "-9223372036854775808") == min)
  local _, err = parse("long"):from_json("9223372036854775808")
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_match(err.message, "beyond 64 bits")
  _, err = parse("int"):from_json("2147483648")
  assert_match(err.message, "expected an int")
end)

test("bytes and fixed are strings of code points U+0000-U+00FF", function()
  assert_eq(to_json("bytes", "\0a\255\"\127"), '"\\u0000a\\u00ff\\"\\u007f"')
  assert_eq(from_json("bytes", '"\\u0000a\\u00ff"'), "\0a\255")
  assert_eq(from_json("bytes", '"\195\191"'), "\255") -- U+00FF written raw, as Java prints it
  local _, err = parse("bytes"):from_json('"\\u0100"')
  assert_match(err.message, "above U%+00FF")
  local fx = { type = "fixed", name = "F", size = 2 }
  assert_eq(to_json(fx, "\1\2"), '"\\u0001\\u0002"')
  assert_eq(from_json(fx, '"ab"'), "ab")
  _, err = parse(fx):from_json('"abc"')
  assert_match(err.message, "expected 2 bytes")
  _, err = parse(fx):to_json("abc")
  assert_error(err, "KLUA_SERIALIZATION")
end)

test("records in field order, null fields written; enums; arrays; maps with sorted keys", function()
  local s = rec("R", {
    { name = "z", type = "int" },
    { name = "n", type = { "null", "string" } },
    { name = "e", type = { type = "enum", name = "E", symbols = { "A", "B" } } },
    { name = "a", type = { type = "array", items = { "null", "int" } } },
    { name = "m", type = { type = "map", values = "long" } },
  })
  local text = to_json(s, { z = 1, e = "B", a = { 1, json.null }, m = { b = 2, a = 1 } })
  assert_eq(text, '{"z":1,"n":null,"e":"B","a":[{"int":1},null],"m":{"a":1,"b":2}}')
  local v = from_json(s, text)
  assert_equal(v, { z = 1, e = "B", a = { 1, json.null }, m = { b = 2, a = 1 } })
end)

test("unions: null bare, other branches as {TYPE: value}, named types by fullname", function()
  local u = { "null", "string", "long", { type = "record", name = "P", namespace = "ns", fields = { { name = "x", type = "int" } } },
    { type = "array", items = "int" }, { type = "map", values = "int" } }
  assert_eq(to_json(u, nil), "null")
  assert_eq(to_json(u, "s"), '{"string":"s"}')
  assert_eq(to_json(u, 5), '{"long":5}')
  assert_eq(to_json(u, { x = 1 }), '{"ns.P":{"x":1}}')
  assert_eq(to_json({ "null", { type = "array", items = "int" } }, { 1, 2 }), '{"array":[1,2]}')
  assert_eq(from_json(u, '{"ns.P": {"x": 1}}').x, 1)
  assert_eq(from_json(u, '{"P": {"x": 2}}').x, 2) -- the unqualified name is taken too
  assert_equal(from_json(u, '{"map": {"k": 3}}'), { k = 3 })
  assert_nil(from_json(u, "null"))
  -- the union's first fitting branch, as the binary encoder picks it
  assert_eq(to_json({ "int", "double" }, 3), '{"int":3}')
  assert_eq(to_json({ "int", "double" }, 3.5), '{"double":3.5}')
  local _, err = parse(u):from_json('"bare"')
  assert_match(err.message, "{\"TYPE\": value}")
  _, err = parse(u):from_json('{"boolean": true}')
  assert_match(err.message, "not a branch")
  _, err = parse({ "string", "int" }):from_json("null")
  assert_error(err, "KLUA_DESERIALIZATION")
end)

test("from_json: missing fields take defaults, unknown fields and bad JSON are errors", function()
  local s = rec("R", { { name = "a", type = "int" }, { name = "b", type = "string", default = "d" },
    { name = "c", type = { "null", "int" }, default = json.null } })
  assert_equal(from_json(s, '{"a": 1}'), { a = 1, b = "d" })
  local _, err = parse(s):from_json('{"b": "x"}')
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_eq(err.path, "$.a")
  _, err = parse(s):from_json('{"a": 1, "typo": 2}')
  assert_match(err.message, "no such field")
  _, err = parse(s):from_json('{"a": 1')
  assert_match(err.message, "bad JSON")
  _, err = parse(s):from_json('{"a": "1"}')
  assert_match(err.message, "%$%.a: expected an int")
  assert_raises(function() parse(s):from_json(5) end, "from_json")
end)

test("to_json errors name the path", function()
  local s = rec("Order", { { name = "lines", type = { type = "array", items = rec("Line", { { name = "qty", type = "int" } }) } } })
  local _, err = parse(s):to_json({ lines = { { qty = 1 }, { qty = "x" } } })
  assert_error(err, "KLUA_SERIALIZATION")
  assert_eq(err.path, "$.lines[1].qty")
  assert_match(err.message, "expected an int")
end)

test("logical types are written as their underlying type, read back into the Lua mapping", function()
  local dec = { type = "bytes", logicalType = "decimal", precision = 6, scale = 2 }
  assert_eq(to_json(dec, "12.34"), '"\\u0004\\u00d2"')
  assert_eq(to_json(dec, "-12.34"), '"\\u00fb."')
  assert_eq(from_json(dec, '"\\u0004\\u00d2"'), "12.34")
  local fdec = { type = "fixed", name = "D", size = 4, logicalType = "decimal", precision = 8, scale = 1 }
  assert_eq(to_json(fdec, "-0.1"), '"\\u00ff\\u00ff\\u00ff\\u00ff"')
  assert_eq(from_json(fdec, '"\\u0000\\u0000\\u0001\\u0000"'), "25.6")
  local dur = { type = "fixed", name = "Dur", size = 12, logicalType = "duration" }
  local text = to_json(dur, { months = 1, days = 2, milliseconds = 1000 })
  assert_eq(text, '"\\u0001\\u0000\\u0000\\u0000\\u0002\\u0000\\u0000\\u0000\\u00e8\\u0003\\u0000\\u0000"')
  assert_equal(from_json(dur, text), { months = 1, days = 2, milliseconds = 1000 })
  assert_eq(to_json({ type = "int", logicalType = "date" }, 19000), "19000")
  assert_eq(to_json({ type = "string", logicalType = "uuid" }, "0b6e6e59-8e6c-4b0e-9a55-3f1d2c8f4b11"),
    '"0b6e6e59-8e6c-4b0e-9a55-3f1d2c8f4b11"')
end)

test("to_json and from_json round-trip through the binary encoding", function()
  local s = parse(rec("Big", {
    { name = "b", type = "boolean" }, { name = "i", type = "int" }, { name = "l", type = "long" },
    { name = "f", type = "float" }, { name = "d", type = "double" }, { name = "by", type = "bytes" },
    { name = "s", type = "string" }, { name = "u", type = { "null", "bytes", "double" } },
    { name = "nested", type = { type = "array", items = { type = "map", values = { "null", "string" } } } },
  }))
  local v = { b = false, i = 7, l = 9223372036854775807LL, f = 0.5, d = 1e300, by = "\0\1\255", s = "\226\130\172",
    u = "\255", nested = { { k = "v", n = json.null }, {} } }
  local bytes = assert(s:encode(v))
  local text = assert(s:to_json(assert(s:decode(bytes))))
  -- (bytes may differ in the order of a map's entries: Lua tables have none)
  assert_equal(assert(s:decode(assert(s:encode(assert(s:from_json(text)))))), assert(s:decode(bytes)))
  local one = parse(rec("One", { { name = "m", type = { type = "map", values = "long" } }, { name = "x", type = "int" } }))
  bytes = assert(one:encode({ m = { k = 1 }, x = 2 }))
  assert_eq(assert(one:encode(assert(one:from_json(assert(one:to_json(assert(one:decode(bytes)))))))), bytes)
end)

test("a table that contains itself fails cleanly", function()
  local s = parse(rec("Node", { { name = "next", type = { "null", "Node" } } }))
  local t = {}
  t.next = t
  local text, err = s:to_json(t)
  assert_nil(text)
  assert_error(err, "KLUA_SERIALIZATION")
  assert_match(err.message, "nests too deep")
end)

test("from_json never raises on broken text", function()
  local s = parse(rec("R", { { name = "a", type = { "null", "long", { type = "array", items = "string" } } },
    { name = "m", type = { type = "map", values = "bytes" } }, { name = "e", type = { type = "enum", name = "E", symbols = { "X" } } } }))
  local good = '{"a": {"array": ["x", "y\\u00e9"]}, "m": {"k": "\\u00ff"}, "e": "X"}'
  assert_true(s:from_json(good) ~= nil)
  math.randomseed(7)
  for _ = 1, 3000 do
    local t = good
    for _ = 1, math.random(1, 4) do
      local i = math.random(1, #t)
      local r = math.random(3)
      if r == 1 then t = t:sub(1, i - 1) .. t:sub(i + 1)
      elseif r == 2 then t = t:sub(1, i - 1) .. string.char(math.random(0, 255)) .. t:sub(i + 1)
      else t = t:sub(1, i) end
    end
    local ok, v, err = pcall(s.from_json, s, t)
    assert_true(ok, "from_json raised on " .. string.format("%q", t) .. ": " .. tostring(v))
    assert_true(v ~= nil or (err and err.name == "KLUA_DESERIALIZATION"), "value or error for " .. string.format("%q", t))
  end
end)

test("decode_json prints the bytes' value with the union branch that was written", function()
  local s = parse(rec("R", { { name = "u", type = { "null", "int", "long", "string", "bytes" } },
    { name = "m", type = { type = "map", values = "double" } },
    { name = "a", type = { type = "array", items = { type = "enum", name = "E", symbols = { "A", "B" } } } },
    { name = "f", type = { type = "fixed", name = "F", size = 2 } }, { name = "fl", type = "float" },
    { name = "l", type = "long" } }))
  -- u: branch 2 (long) 4; m: {k: 1.5}; a: [B, A]; f: 00 01; fl: 1.1; l: 2^63-1
  local bytes = "\4\8" .. "\2\2k" .. "\0\0\0\0\0\0\248\63" .. "\0" .. "\4\2\0\0" .. "\0\1" .. "\205\204\140\63"
    .. "\254\255\255\255\255\255\255\255\255\1"
  assert_eq(assert(s:decode_json(bytes)),
    '{"u":{"long":4},"m":{"k":1.5},"a":["B","A"],"f":"\\u0000\\u0001","fl":1.1,"l":9223372036854775807}')
  -- to_json of the decoded value cannot tell the long branch from the int one
  assert_match(assert(s:to_json(assert(s:decode(bytes)))), '^{"u":{"int":4}')
  assert_eq(assert(s:decode_json("\0\0\0\0\1" .. bytes, 5)), assert(s:decode_json(bytes)))
  local v, err = s:decode_json(bytes:sub(1, -3))
  assert_nil(v)
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_eq(err.path, "$.l")
  v, err = s:decode_json(bytes .. "x")
  assert_match(err.message, "trailing")
  assert_raises(function() s:decode_json(5) end, "decode_json")
end)
