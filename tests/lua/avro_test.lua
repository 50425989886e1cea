-- klua.avro: parsing (names, namespaces, defaults, logical types, errors naming the path), Parsing
-- Canonical Form and CRC-64-AVRO, and the binary encoding of every type against the spec's bytes.
-- fastavro checks the same over random schemas in tests/avro/fastavro_property_test.py.
local avro = klua.avro
local ffi = require("ffi")
local NULL = klua.json.null

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
local function unhex(h)
  return (h:gsub("%s", ""):gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function P(schema)
  local s, err = avro.parse(schema)
  if not s then error(tostring(err), 2) end
  return s
end

-- encode, compare with the expected hex, decode back and compare with `back` (default: v).
local function roundtrip(schema, v, want_hex, back)
  local s = type(schema) == "table" and schema.node and schema or P(schema)
  local b, err = s:encode(v)
  assert_true(b ~= nil, tostring(err))
  if want_hex then assert_eq(hex(b), want_hex:gsub("%s", "")) end
  local got, derr = s:decode(b)
  assert_nil(derr)
  if back == nil then back = v end
  if back == NULL then assert_nil(got) else assert_eq(got, back) end
  return b
end

describe("binary encoding: the spec's examples", function()
  test("int and long zigzag varints", function()
    local cases = { { 0, "00" }, { -1, "01" }, { 1, "02" }, { -2, "03" }, { 2, "04" }, { -64, "7f" },
                    { 64, "8001" }, { 2147483647, "feffffff0f" }, { -2147483648, "ffffffff0f" } }
    for _, c in ipairs(cases) do
      roundtrip('"int"', c[1], c[2])
      roundtrip('"long"', c[1], c[2])
    end
    roundtrip('"long"', 2 ^ 40, "808080808040")
    roundtrip('"long"', 1764498600123, nil)
    roundtrip('"long"', -(2 ^ 53), nil)
  end)

  test("longs beyond 2^53 are int64 cdata; encode takes numbers and int64/uint64 cdata", function()
    local s = P('"long"')
    local b = assert(s:encode(9223372036854775807LL))
    assert_eq(hex(b), "feffffffffffffffff01")
    local v = s:decode(b)
    assert_true(type(v) == "cdata" and v == 9223372036854775807LL)
    local m = s:decode(assert(s:encode(-9223372036854775807LL - 1)))
    assert_true(m == -9223372036854775807LL - 1)
    assert_eq(hex(assert(s:encode(2 ^ 62))), hex(assert(s:encode(4611686018427387904LL))))
    assert_eq(s:decode(assert(s:encode(ffi.new("uint64_t", 5)))), 5)
    assert_eq(s:decode(assert(s:encode(2 ^ 53))), 2 ^ 53)
    local big = s:decode(assert(s:encode(2 ^ 53 + 2)))
    assert_true(type(big) == "cdata" and big == 9007199254740994LL)
    local _, err = s:encode(2 ^ 63)
    assert_error(err, "KLUA_SERIALIZATION")
    _, err = s:encode(1.5)
    assert_match(err.message, "expected long, got number 1.5")
  end)

  test("the spec's record, array, union and string examples", function()
    roundtrip('"string"', "foo", "06666f6f")
    roundtrip('{"type":"record","name":"test","fields":[{"name":"a","type":"long"},{"name":"b","type":"string"}]}',
              { a = 27, b = "foo" }, "36 06 666f6f")
    roundtrip('{"type":"array","items":"long"}', { 3, 27 }, "04 06 36 00")
    roundtrip('["null","string"]', nil, "00", NULL)
    roundtrip('["null","string"]', "a", "02 02 61")
  end)

  test("every primitive", function()
    roundtrip('"null"', nil, "", NULL)
    roundtrip('"boolean"', true, "01")
    roundtrip('"boolean"', false, "00")
    roundtrip('"float"', 1.5, "0000c03f")
    roundtrip('"double"', -2.25, "00000000000002c0")
    roundtrip('"bytes"', "\0\1\255", "06 0001ff")
    roundtrip('"string"', "", "00")
    roundtrip('{"type":"fixed","name":"F","size":3}', "abc", "616263")
    roundtrip('{"type":"enum","name":"E","symbols":["A","B","C"]}', "C", "04")
    local f = P('"float"')
    assert_eq(f:decode(assert(f:encode(0.1))), tonumber(ffi.new("float", 0.1)))
  end)

  test("maps, nested arrays, empty containers; decoded arrays are JSON arrays", function()
    roundtrip('{"type":"map","values":"int"}', { a = 1 }, "02 02 61 02 00")
    roundtrip('{"type":"map","values":"int"}', {}, "00")
    local s = P('{"type":"array","items":{"type":"array","items":"int"}}')
    roundtrip(s, { { 1 }, {}, { 2, 3 } }, "06 02 02 00 00 04 04 06 00 00")
    assert_eq(klua.json.encode(s:decode(unhex("00"))), "[]")
    local m = P('{"type":"map","values":"string"}')
    local t = m:decode(assert(m:encode { x = "1", y = "2", z = "3" }))
    assert_eq(t, { x = "1", y = "2", z = "3" })
  end)

  test("negative block counts (count, byte size) and several blocks decode", function()
    local a = P('{"type":"array","items":"int"}')
    -- block of -2 items (size 2 bytes): 1, 2; then a block of 1: 3; then 0
    assert_eq(a:decode(unhex("03 04 02 04 02 06 00")), { 1, 2, 3 })
    local m = P('{"type":"map","values":"int"}')
    assert_eq(m:decode(unhex("01 06 0261 02  02 0262 04 00")), { a = 1, b = 2 })
  end)

  test("generated encoders: maps, empty arrays and unions hot with the JIT on", function()
    local s = P([[{"type":"record","name":"T","fields":[
      {"name":"m","type":{"type":"map","values":{"type":"map","values":"long"}}},
      {"name":"a","type":{"type":"array","items":"int"}},
      {"name":"u","type":["null",{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]},
                          {"type":"record","name":"B","fields":[{"name":"y","type":"int"}]},
                          {"type":"map","values":"int"}]}]}]])
    local v = { m = { p = { a = 1, b = 2 ^ 40 }, q = {} }, a = {}, u = { y = 1 } }
    for _ = 1, 300 do  -- hot enough to compile
      local b = assert(s:encode(v))
      assert_eq(s:decode(b), { m = v.m, a = {}, u = { y = 1 } })
    end
    local _, err = s:encode { m = { p = { [1] = 1 } }, a = {}, u = NULL }
    assert_match(err.message, '^%$%.m%["p"%]: expected string %(a map key%), got number 1')
    _, err = s:encode { m = {}, a = { x = 1 }, u = NULL }
    assert_match(err.message, "^%$%.a: expected array %(a sequence%)")
  end)
  test("null in record fields is an absent key; in arrays and maps klua.json.null", function()
    local s = P([[{"type":"record","name":"R","fields":[
      {"name":"a","type":["null","int"]},
      {"name":"l","type":{"type":"array","items":["null","int"]}},
      {"name":"m","type":{"type":"map","values":"null"}}]}]])
    local b = roundtrip(s, { l = { 1, NULL, 2 }, m = { k = NULL } }, "00 06 0202 00 0204 00 02 026b 00")
    local t = s:decode(b)
    assert_nil(t.a)
    assert_true(t.l[2] == NULL and t.m.k == NULL)
    assert_eq(hex(assert(s:encode { a = NULL, l = {}, m = {} })), "000000")
  end)

  test("union branch selection: numbers, strings, tables, first fitting branch", function()
    roundtrip('["int","long","double"]', 5, "00 0a")
    roundtrip('["int","long","double"]', 2 ^ 40, "02 808080808040")
    roundtrip('["int","long","double"]', 0.5, "04 000000000000e03f")
    roundtrip('["float","double"]', 0.5, "02 000000000000e03f")  -- fastavro's rule: double over float
    roundtrip('["float","string"]', 0.5, "00 0000003f")
    local e = '{"type":"enum","name":"Sym","symbols":["A","B"]}'
    roundtrip('[' .. e .. ',"string"]', "B", "00 02")
    roundtrip('[' .. e .. ',"string"]', "C", "02 02 43")
    roundtrip('[{"type":"fixed","name":"F2","size":2},"string"]', "ab", "00 6162")
    roundtrip('[{"type":"fixed","name":"F2","size":2},"string"]', "abc", "02 06 616263")
    roundtrip('["boolean",{"type":"array","items":"int"},{"type":"map","values":"int"}]', { 1 }, "02 02 02 00")
    roundtrip('["boolean",{"type":"array","items":"int"},{"type":"map","values":"int"}]', { a = 1 }, "04 02 0261 02 00")
    local two = [[[{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]},
                  {"type":"record","name":"B","fields":[{"name":"y","type":"string"},{"name":"z","type":["null","int"]}]}] ]]
    roundtrip(two, { x = 1 }, "00 02")
    roundtrip(two, { y = "s", z = 3 }, "02 02 73 02 06")
    local _, err = P('["null","int"]'):encode("x")
    assert_error(err, "KLUA_SERIALIZATION")
    assert_match(err.message, "expected one of the union's branches %(null, int%), got string \"x\"")
  end)

  test("a missing field takes its default; klua.json.null writes null where the default is not", function()
    local s = P([[{"type":"record","name":"D","fields":[
      {"name":"n","type":"int","default":7},
      {"name":"s","type":["string","null"],"default":"dflt"},
      {"name":"r","type":{"type":"record","name":"In","fields":[{"name":"q","type":"long"}]},"default":{"q":3}},
      {"name":"l","type":{"type":"array","items":"int"},"default":[1,2]}]}]])
    assert_eq(s:decode(assert(s:encode {})), { n = 7, s = "dflt", r = { q = 3 }, l = { 1, 2 } })
    assert_eq(s:decode(assert(s:encode { n = 1, s = NULL, r = { q = 1 }, l = {} })), { n = 1, r = { q = 1 }, l = {} })
  end)
end)

describe("logical types", function()
  test("date, times and timestamps keep their underlying number", function()
    local s = P([[{"type":"record","name":"T","fields":[
      {"name":"d","type":{"type":"int","logicalType":"date"}},
      {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
      {"name":"tu","type":{"type":"long","logicalType":"time-micros"}},
      {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
      {"name":"tsu","type":{"type":"long","logicalType":"timestamp-micros"}},
      {"name":"lts","type":{"type":"long","logicalType":"local-timestamp-millis"}},
      {"name":"ltu","type":{"type":"long","logicalType":"local-timestamp-micros"}},
      {"name":"u","type":{"type":"string","logicalType":"uuid"}}]}]])
    local v = { d = 20000, tm = 3600000, tu = 3600000000, ts = 1764498600123, tsu = 1764498600123456,
                lts = 1764498600123, ltu = 1764498600123456, u = "123e4567-e89b-12d3-a456-426614174000" }
    roundtrip(s, v)
    assert_eq(s.node.fields[1].type.logical, "date")
    assert_eq(s.node.fields[8].type.logical, "uuid")
  end)

  test("decimal on bytes: exact digit strings, two's complement as fastavro writes it", function()
    local s = P('{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}')
    roundtrip(s, "-12.50", "04 fb1e")  -- -1250 = 0xFB1E
    roundtrip(s, "12.5", "04 04e2", "12.50")
    roundtrip(s, 0, "02 00", "0.00")
    roundtrip(s, "0.05", "02 05")
    roundtrip(s, "-0.05", "02 fb")
    roundtrip(s, "1.28", "04 0080")
    roundtrip(s, "-1.28", "04 ff80")  -- fastavro: (bit length + 8) // 8 bytes
    roundtrip(s, 3.14159, nil, "3.14")
    local _, err = s:encode("1.234")
    assert_match(err.message, "more than 2 digits after the point")
    _, err = s:encode("123456789.00")
    assert_match(err.message, "more than 10 digits")
    _, err = s:encode("12a")
    assert_error(err, "KLUA_SERIALIZATION")
    local big = P('{"type":"bytes","logicalType":"decimal","precision":38,"scale":9}')
    roundtrip(big, "-12345678901234567890123456789.123456789")
  end)

  test("decimal on fixed, duration on fixed(12)", function()
    local s = P('{"type":"fixed","name":"Dec","size":4,"logicalType":"decimal","precision":9,"scale":3}')
    roundtrip(s, "-1.000", "fffffc18")
    roundtrip(s, "999999.999", "3b9ac9ff")
    local d = P('{"type":"fixed","name":"Dur","size":12,"logicalType":"duration"}')
    roundtrip(d, { months = 1, days = 2, milliseconds = 3 }, "01000000 02000000 03000000")
  end)

  test("invalid logical types are ignored: the underlying type is used", function()
    local cases = {
      '{"type":"string","logicalType":"date"}', '{"type":"int","logicalType":"timestamp-millis"}',
      '{"type":"bytes","logicalType":"decimal","precision":2,"scale":3}',
      '{"type":"bytes","logicalType":"decimal","scale":1}',
      '{"type":"fixed","name":"X","size":2,"logicalType":"decimal","precision":5}',
      '{"type":"fixed","name":"Y","size":10,"logicalType":"duration"}',
      '{"type":"long","logicalType":"no-such-thing"}',
    }
    for _, c in ipairs(cases) do
      local s = P(c)
      assert_nil(s.node.logical, c)
    end
    roundtrip('{"type":"bytes","logicalType":"decimal","scale":1}', "\1\2", "04 0102")
  end)
end)

describe("names, namespaces, recursion, aliases", function()
  test("fullnames: namespace attribute, dotted names, inherited namespaces, references", function()
    local s = P([[{"type":"record","name":"Order","namespace":"shop","fields":[
      {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","DONE"]}},
      {"name":"other","type":{"type":"enum","name":"x.y.Kind","symbols":["K"]}},
      {"name":"inner","type":{"type":"record","name":"Inner","namespace":"deep","fields":[
        {"name":"k2","type":"x.y.Kind"}, {"name":"self","type":["null","Inner"]}]}},
      {"name":"again","type":"Status"},
      {"name":"full","type":"shop.Status"},
      {"name":"nons","type":{"type":"fixed","name":"Bare","namespace":"","size":1}},
      {"name":"bare","type":"Bare"}]}]], nil)
    assert_eq(s.name, "shop.Order")
    assert_eq(s.node.fields[1].type.name, "shop.Status")
    assert_eq(s.node.fields[2].type.name, "x.y.Kind")
    assert_eq(s.node.fields[3].type.name, "deep.Inner")
    assert_true(s.node.fields[4].type == s.node.fields[1].type and s.node.fields[5].type == s.node.fields[1].type)
    assert_eq(s.node.fields[6].type.name, "Bare")
    assert_true(s.node.fields[3].type.fields[2].type.branches[2] == s.node.fields[3].type)
  end)

  test("recursive types encode and decode (a linked list and a tree)", function()
    local list = P([[{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},
                     {"name":"next","type":["null","Node"]}]}]])
    roundtrip(list, { v = 1, next = { v = 2, next = { v = 3 } } }, "02 02 04 02 06 00")
    local tree = P([[{"type":"record","name":"T","fields":[{"name":"kids","type":{"type":"array","items":"T"}}]}]])
    roundtrip(tree, { kids = { { kids = {} }, { kids = { { kids = {} } } } } })
    assert_true(list.node.fields[2].type.branches[2] == list.node, "named nodes are shared")
  end)

  test("aliases are kept as fullnames; field aliases and docs and extra attributes too", function()
    local s = P([[{"type":"record","name":"A","namespace":"n","aliases":["Old","o.Older"],"doc":"d","x-extra":1,
      "fields":[{"name":"f","type":"int","aliases":["g"],"doc":"fd","order":"descending"}]}]])
    assert_eq(s.node.aliases, { "n.Old", "o.Older" })
    assert_eq(s.node.fields[1].aliases, { "g" })
    assert_eq(s.node.fields[1].order, "descending")
    assert_eq(s.node.props, { ["x-extra"] = 1 })
    assert_eq(s.node.doc, "d")
  end)

  test("named types from elsewhere (registry references) through opts.named", function()
    local addr = P('{"type":"record","name":"Address","namespace":"c","fields":[{"name":"city","type":"string"}]}')
    local s, err = avro.parse('{"type":"record","name":"Customer","namespace":"c","fields":[{"name":"a","type":"Address"}]}',
                              { named = { ["c.Address"] = addr } })
    assert_nil(err)
    roundtrip(s, { a = { city = "Oslo" } }, "08 4f736c6f")
    local _, e2 = avro.parse('{"type":"record","name":"C","fields":[{"name":"a","type":"Address"}]}')
    assert_error(e2, "KLUA_SCHEMA")
    assert_match(e2.message, 'C.a: unknown type "Address"')
  end)
end)

describe("schema errors name the path", function()
  local function bad(schema, pattern)
    local s, err = avro.parse(schema)
    assert_nil(s, schema)
    assert_error(err, "KLUA_SCHEMA")
    assert_match(err.message, pattern)
  end
  test("unknown types, bad names, duplicates, bad defaults", function()
    bad([[{"type":"record","name":"Order","fields":[{"name":"lines","type":{"type":"array","items":"strng"}}]}]],
        'Order.lines.items: unknown type "strng"')
    bad('{"type":"record","name":"9x","fields":[]}', 'invalid name "9x"')
    bad('{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}', "R.a: duplicate field")
    bad('{"type":"enum","name":"E","symbols":["A","A"]}', 'duplicate enum symbol "A"')
    bad('{"type":"enum","name":"E","symbols":["A"],"default":"B"}', "enum default")
    bad('["int","int"]', "%[1%]: duplicate int in union")
    bad('["int",["null"]]', "cannot directly contain a union")
    bad('{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}', 'R.a: default "x" does not match type int')
    bad('{"type":"record","name":"R","fields":[{"name":"a","type":["null","int"],"default":1}]}', "does not match type null")
    bad('{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"fixed","name":"F","size":2},"default":"abc"}]}', "fixed F has 2")
    bad('{"type":"record","name":"int","fields":[]}', "cannot be redefined")
    bad('{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"record","name":"R","fields":[]}}]}', "defined twice")
    bad('{"type":"array"}', "needs items")
    bad('{"type":', "not JSON")
  end)
  test("programmer errors raise", function()
    assert_raises(function() avro.parse(42) end, "klua.avro.parse")
    assert_raises(function() avro.parse('"int"', { nmed = {} }) end, "unknown option 'nmed'")
    assert_raises(function() P('"int"'):decode(5) end, "expected a string")
  end)
end)

describe("canonical form and fingerprint", function()
  test("the spec's transformations", function()
    local s = P([[ {"namespace":"a.b","name":"R","type":"record","doc":"x","aliases":["Q"],
      "fields":[{"name":"f","type":{"type":"int","logicalType":"date"},"default":1,"doc":"y"},
                {"type":{"type":"enum","name":"E","symbols":["X","Y"]},"name":"e"},
                {"name":"g","type":"E"},
                {"name":"h","type":{"type":"fixed","size":16,"name":"c.F"}},
                {"name":"m","type":{"values":["null",{"type":"array","items":"string"}],"type":"map"}}]} ]])
    assert_eq(s:canonical(), '{"name":"a.b.R","type":"record","fields":[{"name":"f","type":"int"},' ..
      '{"name":"e","type":{"name":"a.b.E","type":"enum","symbols":["X","Y"]}},{"name":"g","type":"a.b.E"},' ..
      '{"name":"h","type":{"name":"c.F","type":"fixed","size":16}},' ..
      '{"name":"m","type":{"type":"map","values":["null",{"type":"array","items":"string"}]}}]}')
    assert_eq(P('{"type":"string"}'):canonical(), '"string"')
  end)
  test("CRC-64-AVRO as fastavro prints it", function()
    assert_eq(P('"int"'):fingerprint(), "8f5c393f1ad57572")  -- fastavro.schema.fingerprint('"int"', "CRC-64-AVRO")
  end)
end)

describe("errors on encode name the field path", function()
  local order = [[{"type":"record","name":"Order","fields":[
    {"name":"id","type":"long"},
    {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
       {"name":"sku","type":"string"},{"name":"qty","type":"int"}]}}},
    {"name":"tags","type":{"type":"map","values":"string"}},
    {"name":"kind","type":{"type":"enum","name":"K","symbols":["A","B"]}}]}]]
  test("array index, record field, map key, enum symbol, missing field", function()
    local s = P(order)
    local good = { id = 1, lines = { { sku = "a", qty = 1 }, { sku = "b", qty = 2 }, { sku = "c", qty = 3 } }, tags = {}, kind = "A" }
    assert_true(s:encode(good) ~= nil)
    good.lines[3].qty = "3"
    local _, err = s:encode(good)
    assert_error(err, "KLUA_SERIALIZATION")
    assert_eq(err.path, "$.lines[2].qty")
    assert_match(err.message, '^%$%.lines%[2%]%.qty: expected int, got string "3"')
    good.lines[3].qty = 3
    good.tags = { t = 5 }
    _, err = s:encode(good)
    assert_eq(err.path, '$.tags["t"]')
    good.tags = {}
    good.kind = "Z"
    _, err = s:encode(good)
    assert_eq(err.path, "$.kind")
    assert_match(err.message, "a symbol of enum K %(A, B%)")
    good.kind = "A"
    good.id = nil
    _, err = s:encode(good)
    assert_eq(err.path, "$.id")
    assert_match(err.message, "expected long, got nil")
    _, err = s:encode("x")
    assert_eq(err.path, "$")
  end)
  test("encode with a prefix writes it first", function()
    local s = P('"string"')
    assert_eq(hex(assert(s:encode("a", "\0\0\0\0\1"))), "0000000001" .. "0261")
    assert_eq(s:decode("\0\0\0\0\1\2a", 5), "a")
  end)
end)

describe("decoding bad bytes gives nil, err and never raises", function()
  test("truncated, bad union/enum index, negative length, long varints, trailing bytes, bad boolean", function()
    local rec = P([[{"type":"record","name":"R","fields":[{"name":"s","type":"string"},
                    {"name":"u","type":["null","int"]},{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}]}]])
    local function bad(s, bytes, pattern, path)
      local v, err = s:decode(unhex(bytes))
      assert_nil(v, bytes)
      assert_error(err, "KLUA_DESERIALIZATION")
      assert_match(err.message, pattern)
      if path then assert_eq(err.path, path) end
    end
    bad(rec, "06 6162", "truncated", "$.s")
    bad(rec, "02 61 04", "union index 2 out of range", "$.u")
    bad(rec, "02 61 00 02", "enum index 1 out of range", "$.e")
    bad(rec, "01", "negative length", "$.s")
    bad(rec, "ffffffffffffffff7f", "beyond 2%^48", "$.s")
    bad(P('"long"'), "ffffffffffffffffffff01", "longer than 10 bytes")
    bad(P('"int"'), "ffffffffff01", "longer than 5 bytes")
    bad(P('"int"'), "0203", "trailing bytes")
    bad(P('"boolean"'), "02", "invalid boolean")
    bad(P('{"type":"array","items":"string"}'), "04 0261 0462", "truncated", "$[1]")
    bad(P('{"type":"array","items":"double"}'), "feffffff0f", "truncated")
    bad(P('{"type":"array","items":"null"}'), "feffffff0f", "more than 1000000 zero%-size items")
    bad(P('{"type":"array","items":"null"}'), ("80897a"):rep(3) .. "00", "more than 1000000 zero%-size items")
    assert_eq(#P('{"type":"array","items":"null"}'):decode(unhex("80897a 00")), 1000000)
    bad(P('{"type":"map","values":"int"}'), "02 02 61", "truncated", '$["a"]')
  end)

  test("random bytes against a schema with every type", function()
    local s = P([[{"type":"record","name":"All","fields":[
      {"name":"a","type":["null","boolean","int","long","float","double","bytes","string"]},
      {"name":"b","type":{"type":"array","items":{"type":"map","values":"All"}}},
      {"name":"c","type":{"type":"enum","name":"E","symbols":["X","Y"]}},
      {"name":"d","type":{"type":"fixed","name":"F","size":2}},
      {"name":"e","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":4}},
      {"name":"f","type":{"type":"fixed","name":"Du","size":12,"logicalType":"duration"}}]}]])
    math.randomseed(20)
    local ok_count = 0
    for _ = 1, 3000 do
      local n = math.random(0, 40)
      local t = {}
      for i = 1, n do t[i] = string.char(math.random(0, 255)) end
      local ok, v, err = pcall(s.decode, s, table.concat(t))
      assert_true(ok, tostring(v))
      if v then ok_count = ok_count + 1 else assert_error(err, "KLUA_DESERIALIZATION") end
    end
    assert_true(ok_count >= 0)
  end)
end)

describe("limits", function()
  local list = [[{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}]]
  test("recursive values nest up to 500 records; deeper input or a cyclic table fails without raising", function()
    local s = P(list)
    local ok = assert(s:decode(("\2"):rep(499) .. "\0"))
    local depth, n = 0, ok
    while n do depth = depth + 1; n = n.next end
    assert_eq(depth, 500)
    assert_eq(assert(s:encode(ok)), ("\2"):rep(499) .. "\0")
    local v, err = s:decode(("\2"):rep(100000) .. "\0")
    assert_nil(v)
    assert_error(err, "KLUA_DESERIALIZATION")
    assert_match(err.message, "nesting deeper than 500")
    local cyc = {}
    cyc.next = cyc
    local b, eerr = s:encode(cyc)
    assert_nil(b)
    assert_match(eerr.message, "a cycle in the value")
    -- a union that must validate its table branches meets the cycle too
    local two = P([[ [{"type":"record","name":"A","fields":[{"name":"a","type":["null","A"]}]},
                      {"type":"map","values":"int"}] ]])
    local c2 = {}
    c2.a = c2
    local b2, e2 = two:encode(c2)
    assert_nil(b2)
    assert_error(e2, "KLUA_SERIALIZATION")
  end)
  test("NaNs with any payload decode as Lua's NaN (LuaJIT keeps its other values in the NaN space)", function()
    -- found by tests/fuzz/avro_fuzz: such a double crashed the VM
    for _, case in ipairs { { '"double"', "fdbdfb00b2e2fdff" }, { '"double"', "01000000 0000f07f" },
                            { '"float"', "0100c0ff" }, { '"float"', "ffffffff" } } do
      local s = P(case[1])
      local v = s:decode(unhex(case[2]))
      assert_true(v ~= v, case[2])
      assert_true(tostring(v):find("nan") ~= nil)
      local again = s:decode(assert(s:encode(v)))
      assert_true(again ~= again)
    end
    assert_eq(P('"double"'):decode(unhex("000000000000f0ff")), -math.huge)
    assert_eq(P('"float"'):decode(unhex("0000807f")), math.huge)
  end)
  test("a decimal longer than its precision allows is refused before conversion", function()
    local s = P('{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}')
    local v, err = s:decode("\x80\x10" .. ("\1"):rep(1024))
    assert_nil(v)
    assert_match(err.message, "decimal of 1024 bytes exceeds its precision 4")
  end)
  test("every truncation of a valid encoding fails cleanly", function()
    local f = assert(io.open("bench/avro_schema.json"))
    local s = P(f:read("*a"))
    f:close()
    local b = assert(s:encode { id = 2 ^ 40, customer = "c", price = 1.5, paid = true, qty = 300, status = "PAID",
                                note = "n", created = 1764498600000, scores = { 1, 2 }, attrs = { a = "b" } })
    for i = 0, #b - 1 do
      local v, err = s:decode(b:sub(1, i))
      assert_nil(v, i)
      assert_error(err, "KLUA_DESERIALIZATION")
    end
    assert_true(s:decode(b) ~= nil)
  end)
end)
