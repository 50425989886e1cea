-- Tests for klua.avro.resolver (scripts/klua/avro/resolve.lua): the spec's "Schema Resolution"
-- rules, one or more tests per rule. The Java and fastavro oracles (tests/avro/*_resolution_test.py)
-- cover generated pairs. Run with: klua test tests/lua/avro_resolve_test.lua
local avro = klua.avro
local json = klua.json
local ffi = require("ffi")

local function parse(schema)
  if type(schema) == "string" and not schema:find("^%s*[%[{\"]") then schema = string.format("%q", schema) end
  if type(schema) == "table" then schema = json.encode(schema) end
  return assert(avro.parse(schema))
end

-- value written with `w`, read with `r`
local function resolve(w, r, value)
  local ws, rs = parse(w), parse(r)
  local bytes = assert(ws:encode(value))
  local res = assert(avro.resolver(ws, rs))
  return res:decode(bytes)
end

local function unhex(h)
  return (h:gsub("%s", ""):gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function refused(w, r)
  local res, err = avro.resolver(parse(w), parse(r))
  assert_nil(res, "the pair should not resolve")
  assert_error(err, "KLUA_SCHEMA")
  return err
end

local function rec(name, fields, extra)
  local t = { type = "record", name = name, fields = fields }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- ---- promotions --------------------------------------------------------------------------

test("int is promoted to long, float and double", function()
  assert_eq(resolve("int", "long", -5), -5)
  assert_eq(resolve("int", "double", 2147483647), 2147483647)
  -- 2^24 + 1 is not a single-precision value: it rounds to 2^24, as Java's (float) does
  assert_eq(resolve("int", "float", 16777217), 16777216)
end)

test("long is promoted to float and double, exactly rounded from 64 bits", function()
  assert_eq(resolve("long", "double", 2 ^ 40 + 1), 2 ^ 40 + 1)
  local big = ffi.new("int64_t", 9007199254740993LL) -- 2^53 + 1: the double is 2^53
  assert_eq(resolve("long", "double", big), 2 ^ 53)
  assert_eq(resolve("long", "float", 16777217), 16777216)
end)

test("float is promoted to double with the float's value", function()
  local v = resolve("float", "double", 1.1)
  local f = ffi.new("float[1]", 1.1)[0]
  assert_eq(v, f)
  assert_true(v ~= 1.1)
end)

test("string and bytes read as each other", function()
  assert_eq(resolve("string", "bytes", "h\195\169"), "h\195\169")
  assert_eq(resolve("bytes", "string", "\0\255"), "\0\255")
end)

test("longs beyond 2^53 stay int64 cdata", function()
  local v = assert(avro.resolver(parse("long"), parse("long"))):decode(unhex("ffffffffffffffffff01"))
  assert_true(type(v) == "cdata" and v == ffi.new("int64_t", -9223372036854775807LL - 1))
  v = assert(avro.resolver(parse("int"), parse("long"))):decode(unhex("ffffffff0f"))
  assert_eq(v, -2147483648)
end)

test("narrowing and unrelated types do not resolve", function()
  assert_match(refused("long", "int").message, "long cannot be read as int")
  refused("double", "float")
  refused("string", "int")
  refused("null", "int")
  refused({ type = "array", items = "int" }, { type = "map", values = "int" })
  refused("boolean", "int")
end)

-- ---- records -----------------------------------------------------------------------------

test("fields match by name in any order; writer-only fields are skipped", function()
  local w = rec("R", { { name = "a", type = "int" }, { name = "b", type = "string" }, { name = "c", type = "double" } })
  local r = rec("R", { { name = "c", type = "double" }, { name = "a", type = "long" } })
  assert_equal(resolve(w, r, { a = 1, b = "skipped", c = 2.5 }), { a = 1, c = 2.5 })
end)

test("every writer type is skipped, arrays and maps with byte-sized blocks whole", function()
  local w = rec("W", {
    { name = "n", type = "null" }, { name = "b", type = "boolean" }, { name = "i", type = "int" },
    { name = "l", type = "long" }, { name = "f", type = "float" }, { name = "d", type = "double" },
    { name = "by", type = "bytes" }, { name = "s", type = "string" },
    { name = "e", type = { type = "enum", name = "E", symbols = { "X", "Y" } } },
    { name = "fx", type = { type = "fixed", name = "FX", size = 3 } },
    { name = "a", type = { type = "array", items = "string" } },
    { name = "m", type = { type = "map", values = "double" } },
    { name = "u", type = { "null", "string", { type = "array", items = "int" } } },
    { name = "rec", type = rec("Inner", { { name = "x", type = "long" } }) },
    { name = "keep", type = "int" },
  })
  local r = rec("W", { { name = "keep", type = "int" } })
  local v = resolve(w, r, { b = true, i = -5, l = 2 ^ 40, f = 1.5, d = 2.5, by = "\0\255", s = "str", e = "Y",
    fx = "xyz", a = { "p", "q" }, m = { x = 1 }, u = { 1, 2 }, rec = { x = 7 }, keep = 42 })
  assert_equal(v, { keep = 42 })
  -- an array of two strings written as one block with its byte size (count -2, size 4), then the int
  local wa = rec("A", { { name = "a", type = { type = "array", items = "string" } }, { name = "k", type = "int" } })
  local res = assert(avro.resolver(parse(wa), parse(rec("A", { { name = "k", type = "int" } }))))
  assert_equal(res:decode(unhex("03 08 0270 0271 00 54")), { k = 42 })
  -- the same block read item by item
  local full = assert(avro.resolver(parse(wa), parse(wa)))
  assert_equal(full:decode(unhex("03 08 0270 0271 00 54")), { a = { "p", "q" }, k = 42 })
end)

test("reader-only fields take their defaults, of every type", function()
  local w = rec("R", { { name = "a", type = "int" } })
  local r = rec("R", {
    { name = "a", type = "int" },
    { name = "n", type = "null", default = json.null },
    { name = "b", type = "boolean", default = true },
    { name = "i", type = "int", default = -7 },
    { name = "l", type = "long", default = 1234567890123 },
    { name = "f", type = "float", default = 1.25 },
    { name = "d", type = "double", default = -0.5 },
    { name = "by", type = "bytes", default = "\195\191\0a" }, -- U+00FF U+0000 a
    { name = "s", type = "string", default = "h\195\169" },
    { name = "e", type = { type = "enum", name = "E", symbols = { "X", "Y" } }, default = "Y" },
    { name = "fx", type = { type = "fixed", name = "F2", size = 2 }, default = "\1\2" },
    { name = "arr", type = { type = "array", items = "int" }, default = { 1, 2, 3 } },
    { name = "m", type = { type = "map", values = "string" }, default = { k = "v" } },
    { name = "u", type = { "null", "string" }, default = json.null },
    { name = "u2", type = { "string", "null" }, default = "first" },
    { name = "r", type = rec("Inner", { { name = "x", type = "int" } }), default = { x = 3 } },
  })
  local v = resolve(w, r, { a = 1 })
  assert_equal(v, { a = 1, b = true, i = -7, l = 1234567890123, f = 1.25, d = -0.5, by = "\255\0a",
    s = "h\195\169", e = "Y", fx = "\1\2", arr = { 1, 2, 3 }, m = { k = "v" }, u2 = "first", r = { x = 3 } })
  -- defaults are copied: changing one decoded value leaves the next alone
  v.arr[1] = 99
  assert_equal(resolve(w, r, { a = 1 }).arr, { 1, 2, 3 })
end)

test("a reader field without a default, missing in the writer, does not resolve", function()
  local err = refused(rec("R", { { name = "a", type = "int" } }),
    rec("R", { { name = "a", type = "int" }, { name = "b", type = "string" } }))
  assert_match(err.message, "%$%.b: the reader's field has no default")
  -- nested: the path names it
  err = refused(rec("A", { { name = "inner", type = rec("B", { { name = "x", type = "int" } }) } }),
    rec("A", { { name = "inner", type = rec("B", { { name = "x", type = "int" }, { name = "q", type = "int" } }) } }))
  assert_match(err.message, "%$%.inner%.q")
end)

test("nested records resolve field by field", function()
  local w = rec("A", { { name = "b", type = rec("B", { { name = "x", type = "int" }, { name = "y", type = "string" } }) } })
  local r = rec("A", { { name = "b", type = rec("B", { { name = "y", type = "string" },
    { name = "z", type = "float", default = 0.5 } }) } })
  assert_equal(resolve(w, r, { b = { x = 1, y = "why" } }), { b = { y = "why", z = 0.5 } })
end)

test("records match by unqualified name or a reader alias", function()
  assert_equal(resolve(rec("ns1.R", { { name = "a", type = "int" } }), rec("ns2.R", { { name = "a", type = "int" } }),
    { a = 2 }), { a = 2 })
  assert_equal(resolve(rec("Old", { { name = "a", type = "int" } }),
    rec("New", { { name = "a", type = "int" } }, { aliases = { "Old" } }), { a = 2 }), { a = 2 })
  assert_match(refused(rec("Old", { { name = "a", type = "int" } }), rec("New", { { name = "a", type = "int" } })).message,
    "different names")
end)

test("fields match by a reader field's alias", function()
  local w = rec("R", { { name = "old_name", type = "string" } })
  local r = rec("R", { { name = "new_name", type = "string", aliases = { "old_name" } } })
  assert_equal(resolve(w, r, { old_name = "v" }), { new_name = "v" })
end)

test("recursive types: a linked list resolved, a recursive writer-only field skipped", function()
  local w = rec("Node", { { name = "value", type = "int" }, { name = "next", type = { "null", "Node" } } })
  local r = rec("Node", { { name = "value", type = "long" }, { name = "label", type = "string", default = "?" },
    { name = "next", type = { "null", "Node" } } })
  local v = resolve(w, r, { value = 1, next = { value = 2, next = { value = 3 } } })
  assert_equal(v, { value = 1, label = "?", next = { value = 2, label = "?", next = { value = 3, label = "?" } } })
  local tree = rec("Tree", { { name = "v", type = "int" }, { name = "kids", type = { type = "array", items = "Tree" } } })
  local wo = rec("Outer", { { name = "skip", type = tree }, { name = "keep", type = "string" } })
  local ro = rec("Outer", { { name = "keep", type = "string" } })
  assert_equal(resolve(wo, ro, { skip = { v = 1, kids = { { v = 2, kids = {} }, { v = 3, kids = { { v = 4, kids = {} } } } } },
    keep = "k" }), { keep = "k" })
end)

-- ---- enums and fixed ------------------------------------------------------------------------

local SUIT_W = { type = "enum", name = "Suit", symbols = { "SPADES", "HEARTS", "DIAMONDS", "CLUBS" } }
local SUIT_R = { type = "enum", name = "Suit", symbols = { "UNKNOWN", "HEARTS", "SPADES" }, default = "UNKNOWN" }
local SUIT_R_NODEFAULT = { type = "enum", name = "Suit", symbols = { "HEARTS", "SPADES" } }

test("enum symbols map by name; an unknown symbol reads as the reader's default", function()
  assert_eq(resolve(SUIT_W, SUIT_R, "HEARTS"), "HEARTS")
  assert_eq(resolve(SUIT_W, SUIT_R, "SPADES"), "SPADES")
  assert_eq(resolve(SUIT_W, SUIT_R, "CLUBS"), "UNKNOWN")
  assert_equal(resolve({ type = "array", items = SUIT_W }, { type = "array", items = SUIT_R }, { "CLUBS", "SPADES" }),
    { "UNKNOWN", "SPADES" })
end)

test("an unknown symbol without a reader default fails when it is read, naming it", function()
  local r = assert(avro.resolver(parse(SUIT_W), parse(SUIT_R_NODEFAULT)))
  assert_eq(r:decode(assert(parse(SUIT_W):encode("SPADES"))), "SPADES")
  local v, err = r:decode(assert(parse(SUIT_W):encode("DIAMONDS")))
  assert_nil(v)
  assert_error(err, "KLUA_SCHEMA")
  assert_match(err.message, "DIAMONDS")
  -- a bad index is bad data
  v, err = r:decode(unhex("08"))
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_match(err.message, "bad enum index 4")
end)

test("enums and fixed match by name or alias; fixed sizes must be equal", function()
  assert_eq(resolve({ type = "enum", name = "OldE", symbols = { "A", "B" } },
    { type = "enum", name = "NewE", symbols = { "B", "A" }, aliases = { "OldE" } }, "A"), "A")
  assert_eq(resolve({ type = "fixed", name = "OldF", size = 3 },
    { type = "fixed", name = "NewF", size = 3, aliases = { "OldF" } }, "abc"), "abc")
  assert_match(refused({ type = "fixed", name = "F", size = 4 }, { type = "fixed", name = "F", size = 5 }).message,
    "4 bytes, the reader's 5")
  refused({ type = "fixed", name = "F", size = 4 }, { type = "fixed", name = "G", size = 4 })
  refused({ type = "enum", name = "E", symbols = { "A" } }, { type = "enum", name = "G", symbols = { "A" } })
end)

-- ---- unions --------------------------------------------------------------------------------

test("both unions: each writer branch resolves against the reader's union", function()
  assert_eq(resolve({ "null", "int" }, { "null", "long" }, 3), 3)
  assert_nil(resolve({ "null", "int" }, { "null", "long" }, nil))
  assert_eq(resolve({ "null", "string" }, { "string", "null" }, "x"), "x")
end)

test("a writer union into a non-union: the matching branch reads, another fails at decode", function()
  local w, r = parse({ "int", "string" }), parse("string")
  local res = assert(avro.resolver(w, r))
  assert_eq(res:decode(assert(w:encode("s"))), "s")
  local v, err = res:decode(assert(w:encode(1)))
  assert_nil(v)
  assert_error(err, "KLUA_SCHEMA")
  assert_match(err.message, "int cannot be read as string")
  -- no branch at all can be read: refused up front
  refused({ "null", "string" }, "int")
end)

test("a reader union takes the first exact match, else the first promotion", function()
  local r = parse({ "null", "string", "long" })
  local res = assert(avro.resolver(parse("int"), r))
  assert_eq(res:decode(assert(parse("int"):encode(7))), 7)
  -- the exact int branch wins over the earlier double
  local v = resolve("int", { "null", "double", "int" }, 7)
  assert_eq(v, 7)
  refused("string", { "null", "int" })
  assert_equal(resolve(rec("R", { { name = "a", type = "int" } }),
    { "null", rec("R", { { name = "a", type = "long" }, { name = "b", type = "int", default = 4 } }) }, { a = 9 }),
    { a = 9, b = 4 })
  assert_equal(resolve({ "null", rec("R", { { name = "a", type = "int" } }) }, rec("R", { { name = "a", type = "long" } }),
    { a = 1 }), { a = 1 })
end)

test("arrays and maps resolve their items; nulls inside are klua.json.null", function()
  assert_equal(resolve({ type = "array", items = "int" }, { type = "array", items = "double" }, { 1, 2, 3 }), { 1, 2, 3 })
  assert_equal(resolve({ type = "map", values = "int" }, { type = "map", values = "long" }, { a = 1, b = -2 }),
    { a = 1, b = -2 })
  local v = resolve({ type = "array", items = { "null", "int" } }, { type = "array", items = { "null", "long" } },
    { 1, json.null, 3 })
  assert_eq(#v, 3)
  assert_eq(v[2], json.null)
end)

-- ---- logical types --------------------------------------------------------------------------

test("logical types: the reader's decides the Lua shape", function()
  assert_eq(resolve({ type = "int", logicalType = "date" }, { type = "long", logicalType = "timestamp-millis" }, 19000),
    19000)
  local dec6 = { type = "bytes", logicalType = "decimal", precision = 6, scale = 2 }
  local dec8 = { type = "bytes", logicalType = "decimal", precision = 8, scale = 2 }
  local res = assert(avro.resolver(parse(dec6), parse(dec8)))
  assert_eq(res:decode(unhex("04 04d2")), "12.34")
  assert_eq(res:decode(unhex("04 fb2e")), "-12.34")
  -- plain bytes read as a decimal take the reader's scale
  res = assert(avro.resolver(parse("bytes"), parse(dec6)))
  assert_eq(res:decode(unhex("02 ff")), "-0.01")
  refused(dec6, { type = "bytes", logicalType = "decimal", precision = 6, scale = 3 })
  refused(dec8, dec6) -- the writer's precision is larger
  local dur = { type = "fixed", name = "D", size = 12, logicalType = "duration" }
  res = assert(avro.resolver(parse({ type = "fixed", name = "D", size = 12 }), parse(dur)))
  assert_equal(res:decode(unhex("01000000 02000000 e8030000")), { months = 1, days = 2, milliseconds = 1000 })
end)

-- ---- errors, offsets, cost -------------------------------------------------------------------

test("bad bytes give KLUA_DESERIALIZATION naming the path, never a raise", function()
  local w = rec("R", { { name = "a", type = "int" }, { name = "lines", type = { type = "array",
    items = rec("L", { { name = "sku", type = "string" }, { name = "qty", type = "int" } }) } } })
  local r = rec("R", { { name = "lines", type = { type = "array",
    items = rec("L", { { name = "qty", type = "long" } }) } } })
  local res = assert(avro.resolver(parse(w), parse(r)))
  local good = assert(parse(w):encode({ a = 1, lines = { { sku = "a", qty = 1 }, { sku = "b", qty = 2 } } }))
  assert_equal(res:decode(good), { lines = { { qty = 1 }, { qty = 2 } } })
  local v, err = res:decode(good:sub(1, #good - 2)) -- truncated in the second line's qty
  assert_nil(v)
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_match(err.message, "truncated")
  assert_match(err.path, "^%$%.lines%[1%]")
  for cut = 0, #good - 1 do -- every truncation fails cleanly
    v, err = res:decode(good:sub(1, cut))
    assert_true(v == nil and err and err.name == "KLUA_DESERIALIZATION", "cut at " .. cut)
  end
  -- a string whose length runs past the end, a bad varint, a bad union index
  v, err = assert(avro.resolver(parse("string"), parse("string"))):decode("\20ab")
  assert_match(err.message, "truncated")
  v, err = assert(avro.resolver(parse("long"), parse("long"))):decode(("\255"):rep(11))
  assert_match(err.message, "longer than 10 bytes")
  v, err = assert(avro.resolver(parse({ "null", "int" }), parse({ "null", "int" }))):decode("\4")
  assert_match(err.message, "bad union index 2")
end)

test("decode starts at an offset (after a frame header)", function()
  local res = assert(avro.resolver(parse("int"), parse("long")))
  assert_eq(res:decode("\0\0\0\0\1" .. "\6", 5), 3)
  assert_raises(function() res:decode("\6", 2) end, "offset")
  assert_raises(function() res:decode(5) end, "bytes")
end)

test("resolver() takes schema text too, and returns the cached resolver for the same parsed pair", function()
  local w, r = parse("int"), parse("long")
  local a = assert(avro.resolver(w, r))
  assert_true(a == avro.resolver(w, r), "cached")
  local b = assert(avro.resolver('"int"', '{"type": "long"}'))
  assert_eq(b:decode("\6"), 3)
  assert_raises(function() avro.resolver(5, r) end, "klua.avro.resolver")
  local bad, err = avro.resolver('"nope"', r)
  assert_nil(bad)
  assert_error(err, "KLUA_SCHEMA")
end)

test("a recursive type nested past 500 levels fails cleanly, read or skipped", function()
  local node = rec("Node", { { name = "v", type = "int" }, { name = "next", type = { "null", "Node" } } })
  local s = parse(node)
  local r = assert(avro.resolver(s, s))
  assert_true(r:decode(("\0\2"):rep(400) .. "\0\0") ~= nil, "400 levels decode")
  local v, err = r:decode(("\0\2"):rep(100000) .. "\0\0")
  assert_nil(v)
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_match(err.message, "nested deeper than 500")
  -- the same data in a writer-only field, skipped
  local w = parse(rec("Outer", { { name = "skip", type = node }, { name = "k", type = "int" } }))
  local skipper = assert(avro.resolver(w, parse(rec("Outer", { { name = "k", type = "int" } }))))
  assert_equal(skipper:decode(("\0\2"):rep(400) .. "\0\0" .. "\6"), { k = 3 })
  v, err = skipper:decode(("\0\2"):rep(100000) .. "\0\0" .. "\6")
  assert_match(err.message, "nested deeper than 500")
end)

test("decimal and duration defaults come in the Lua mapping, as decoding gives them", function()
  local w = rec("R", { { name = "a", type = "int" } })
  local r = rec("R", { { name = "a", type = "int" },
    { name = "d", type = { type = "bytes", logicalType = "decimal", precision = 4, scale = 2 }, default = "\4\195\146" },
    { name = "u", type = { { type = "bytes", logicalType = "decimal", precision = 4, scale = 1 }, "null" }, default = "\195\191" }, -- U+00FF: the byte FF
    { name = "dur", type = { type = "fixed", name = "Dur", size = 12, logicalType = "duration" },
      default = "\1\0\0\0\2\0\0\0\195\168\3\0\0" } }) -- U+00E8: E8
  local v = resolve(w, r, { a = 1 })
  assert_equal(v, { a = 1, d = "12.34", u = "-0.1", dur = { months = 1, days = 2, milliseconds = 1000 } })
  local rs = parse(r)
  assert_equal(assert(rs:from_json('{"a": 1}')), v)
  assert_eq(assert(rs:to_json{ a = 1 }), assert(rs:to_json(v)))
end)

test("decode never raises on random bytes", function()
  local w = parse(rec("W", { { name = "a", type = { "null", "int", "string", { type = "array", items = "long" } } },
    { name = "m", type = { type = "map", values = { type = "enum", name = "E", symbols = { "X", "Y", "Z" } } } },
    { name = "f", type = { type = "fixed", name = "F", size = 3 } }, { name = "d", type = "double" },
    { name = "s", type = rec("S", { { name = "b", type = "boolean" }, { name = "x", type = "bytes" } }) } }))
  local r = parse(rec("W", { { name = "a", type = { "null", "long", "bytes", { type = "array", items = "double" } } },
    { name = "m", type = { type = "map", values = { type = "enum", name = "E", symbols = { "X", "Y" }, default = "X" } } },
    { name = "d", type = "double" }, { name = "z", type = "int", default = 0 } }))
  local res = assert(avro.resolver(w, r))
  math.randomseed(11)
  for _ = 1, 3000 do
    local n = math.random(0, 40)
    local b = {}
    for i = 1, n do b[i] = string.char(math.random(0, 255)) end
    local bytes = table.concat(b)
    local ok, v, err = pcall(res.decode, res, bytes)
    assert_true(ok, "decode raised: " .. tostring(v))
    assert_true(v ~= nil or (err and (err.name == "KLUA_DESERIALIZATION" or err.name == "KLUA_SCHEMA")))
  end
end)
