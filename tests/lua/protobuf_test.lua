-- Tests for klua.protobuf (bindings/protobuf.cpp, bindings/lua/protobuf.lua). Run with:
--   klua test tests/lua/protobuf_test.lua
-- Byte-for-byte interop with Python's protobuf library is tests/protobuf/interop_test.py; here the
-- expected bytes are worked out by hand from the encoding spec.
local pb = klua.protobuf
local ffi = require("ffi")

local COMMON = [[
syntax = "proto3";
package common;
message Money { string currency = 1; int64 units = 2; int32 nanos = 3; }
]]

local ORDER = [[
syntax = "proto3";
package shop;

import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/wrappers.proto";
import "common.proto";

message Order {
  enum Status { UNKNOWN = 0; NEW = 1; SHIPPED = 2; }
  message Line { string sku = 1; int32 qty = 2; double price = 3; }
  string id = 1;
  repeated Line lines = 2;
  Status status = 3;
  map<string, int64> counts = 4;
  oneof payment { string card = 5; int64 voucher = 6; }
  google.protobuf.Timestamp created = 7;
  common.Money total = 8;
  optional string note = 9;
  google.protobuf.Int64Value big = 10;
  google.protobuf.Struct extra = 11;
  google.protobuf.Duration ttl = 12;
  map<int32, Line> by_pos = 13;
}

message Scalars {
  double d = 1; float f = 2; int32 i32 = 3; int64 i64 = 4; uint32 u32 = 5; uint64 u64 = 6;
  sint32 s32 = 7; sint64 s64 = 8; fixed32 f32 = 9; fixed64 f64 = 10; sfixed32 sf32 = 11; sfixed64 sf64 = 12;
  bool b = 13; string s = 14; bytes by = 15; repeated int32 packed = 16;
}
]]

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function unhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

local function compile()
  local f, err = pb.compile(ORDER, { name = "order.proto", imports = { ["common.proto"] = COMMON } })
  assert_nil(err)
  return f
end

test("compile: the file, its messages and their Confluent index paths", function()
  local f = compile()
  assert_eq(f.name, "order.proto")
  assert_eq(f.package, "shop")
  assert_eq(f.syntax, "proto3")
  assert_eq(f.messages, { "shop.Order", "shop.Order.Line", "shop.Scalars" })
  local order = f:message("Order")
  assert_eq(order.full_name, "shop.Order")
  assert_eq(order.index, { 0 })
  assert_eq(f:message("shop.Order.Line").index, { 0, 0 })
  assert_eq(f:message("Scalars").index, { 1 })
  assert_true(f:message("shop.Order") == order, "the same object for the same type")
  assert_eq(f:message_at({ 0, 0 }).full_name, "shop.Order.Line")
  assert_eq(f:message_at({ 1 }).full_name, "shop.Scalars")
  local m, err = f:message_at({ 0, 5 })
  assert_nil(m)
  assert_match(err.message, "shop.Order has 3 nested")
  m, err = f:message("Nope")
  assert_nil(m)
  assert_error(err, "KLUA_SCHEMA")
  -- A type of an import (well-known types included) has no index in this file.
  assert_nil(f:message("google.protobuf.Timestamp").index)
end)

test("message indexes: Confluent's zigzag varint array", function()
  assert_eq(pb.message_indexes_bytes({ 0 }), "\0")
  assert_eq(hex(pb.message_indexes_bytes({ 0, 0 })), "040000")
  assert_eq(hex(pb.message_indexes_bytes({ 1 })), "0202")
  assert_eq(hex(pb.message_indexes_bytes({ 2, 70 })), "04048c01")
  local list, nxt = pb.read_message_indexes("\0rest")
  assert_eq(list, { 0 })
  assert_eq(nxt, 1)
  list, nxt = pb.read_message_indexes("xx\4\0\0body", 2)
  assert_eq(list, { 0, 0 })
  assert_eq(nxt, 5)
  list, nxt = pb.read_message_indexes(unhex("04048c01"))
  assert_eq(list, { 2, 70 })
  assert_eq(nxt, 4)
  for _, bad in ipairs({ "", "\4\0", "\1", "\127", "\4\1\0", "\255\255\255\255\255\255\255\255\255\255\1" }) do
    local l, err = pb.read_message_indexes(bad)
    assert_nil(l, hex(bad))
    assert_error(err, "KLUA_DESERIALIZATION")
  end
  assert_raises(function() pb.message_indexes_bytes({}) end, "non%-empty list")
  assert_raises(function() pb.message_indexes_bytes({ -1 }) end, "whole number")
  assert_raises(function() pb.read_message_indexes("\0", -1) end, "byte offset")
end)

test("scalars: every type, bytes worked out from the encoding spec", function()
  local s = compile():message("Scalars")
  local cases = {
    { { d = 1.5 }, "09000000000000f83f" },
    { { f = -2 }, "15000000c0" },
    { { i32 = 150 }, "189601" },
    { { i32 = -1 }, "20ffffffffffffffffff01" and "18ffffffffffffffffff01" },
    { { i64 = 1 }, "2001" },
    { { u32 = 4294967295 }, "28ffffffff0f" },
    { { u64 = 300 }, "30ac02" },
    { { s32 = -1 }, "3801" },
    { { s64 = -2 }, "4003" },
    { { f32 = 1 }, "4d01000000" },
    { { f64 = 2 }, "510200000000000000" },
    { { sf32 = -1 }, "5dffffffff" },
    { { sf64 = -1 }, "61ffffffffffffffff" },
    { { b = true }, "6801" },
    { { s = "hé" }, "7203" .. hex("hé") },
    { { by = "\0\255" }, "7a0200ff" },
    { { packed = { 1, 2, 300 } }, "820104" .. "0102ac02" },
  }
  for i, c in ipairs(cases) do
    local bytes, err = s:encode(c[1])
    assert_nil(err, "case " .. i)
    assert_eq(hex(bytes), c[2], "case " .. i)
    local back = s:decode(bytes)
    for k, v in pairs(c[1]) do assert_eq(back[k], v, "case " .. i .. " field " .. k) end
  end
  -- proto3: every scalar is there on decode, at its default; repeated fields are empty lists.
  assert_eq(s:decode(""), { d = 0, f = 0, i32 = 0, i64 = 0, u32 = 0, u64 = 0, s32 = 0, s64 = 0, f32 = 0, f64 = 0,
    sf32 = 0, sf64 = 0, b = false, s = "", by = "", packed = {} })
  assert_eq(s:encode({}), "")
end)

test("64-bit integers: numbers up to 2^53, int64/uint64 cdata beyond", function()
  local s = compile():message("Scalars")
  local max, min, umax = 9223372036854775807LL, -9223372036854775807LL - 1, 18446744073709551615ULL
  local b = assert(s:encode({ i64 = max, s64 = min, u64 = umax, sf64 = min, f64 = umax }))
  local t = s:decode(b)
  assert_true(t.i64 == max and type(t.i64) == "cdata", "int64 max")
  assert_true(t.s64 == min, "sint64 min")
  assert_true(t.sf64 == min, "sfixed64 min")
  assert_true(t.u64 == umax and ffi.istype("uint64_t", t.u64), "uint64 max as uint64_t")
  assert_true(t.f64 == umax, "fixed64 max")
  t = s:decode(assert(s:encode({ i64 = 2 ^ 53, u64 = 2 ^ 53, s64 = -(2 ^ 53) })))
  assert_eq(t.i64, 2 ^ 53)
  assert_eq(type(t.i64), "number")
  assert_eq(t.s64, -(2 ^ 53))
  -- The value beyond 2^53 that a number cannot hold comes back as cdata.
  t = s:decode(assert(s:encode({ i64 = 9007199254740993LL })))
  assert_true(t.i64 == 9007199254740993LL, "2^53 + 1")
  -- proto3 JSON writes 64-bit integers as strings: they are taken.
  assert_true(s:decode(assert(s:encode({ i64 = "-9223372036854775808" }))).i64 == min, "a decimal string")
  local _, err = s:encode({ i32 = 2 ^ 31 })
  assert_error(err, "KLUA_SERIALIZATION")
  assert_eq(err.path, "$.i32")
  _, err = s:encode({ u64 = -1 })
  assert_eq(err.path, "$.u64")
  _, err = s:encode({ u32 = -1LL })
  assert_eq(err.path, "$.u32")
  _, err = s:encode({ i64 = 18446744073709551615ULL })
  assert_match(err.message, "whole number in range")
  _, err = s:encode({ i32 = 1.5 })
  assert_match(err.message, "%$%.i32: expected a whole number in range for shop.Scalars.i32 %(int32%), got number 1.5")
end)

test("enums, repeated messages, maps, oneof, optional", function()
  local order = compile():message("Order")
  local t = {
    id = "o-1", status = "SHIPPED",
    lines = { { sku = "a", qty = 2, price = 1.25 }, { sku = "b", qty = 1, price = 10 } },
    counts = { x = 1, y = 9007199254740993LL },
    card = "visa",
    by_pos = { [1] = { sku = "p" }, [-3] = { qty = 4 } },
    note = "",
  }
  local back = order:decode(assert(order:encode(t)))
  assert_eq(back.status, "SHIPPED")
  assert_eq(back.lines, t.lines)
  assert_eq(back.counts.x, 1)
  assert_true(back.counts.y == 9007199254740993LL, "map value beyond 2^53")
  assert_eq(back.card, "visa")
  assert_nil(back.voucher, "only the oneof member that is set")
  assert_eq(back.note, "", "an optional field set to its default is present")
  assert_eq(back.by_pos[1], { sku = "p", qty = 0, price = 0 })
  assert_eq(back.by_pos[-3], { sku = "", qty = 4, price = 0 })
  assert_nil(back.created, "an unset message field is absent")
  -- The enum's number is taken too, and an unknown number of an open (proto3) enum comes back as a number.
  assert_eq(order:decode(assert(order:encode({ status = 1 }))).status, "NEW")
  assert_eq(order:decode(assert(order:encode({ status = 7 }))).status, 7)
  local plain = order:decode(assert(order:encode({})))
  assert_nil(plain.note)
  assert_eq(plain.status, "UNKNOWN")
  assert_eq(plain.lines, {})
  assert_eq(plain.counts, {})
  -- Map entries are written sorted by key: the same table gives the same bytes.
  local a = assert(order:encode({ counts = { b = 2, a = 1, c = 3 } }))
  assert_eq(hex(a), "2205" .. "0a01611001" .. "2205" .. "0a01621002" .. "2205" .. "0a01631003")
  -- Integer map keys from JSON (strings of digits) are taken.
  assert_eq(order:decode(assert(order:encode({ by_pos = { ["7"] = { qty = 1 } } }))).by_pos[7].qty, 1)
  -- klua.json.null leaves a field unset.
  assert_nil(order:decode(assert(order:encode({ note = klua.json.null }))).note)
end)

test("well-known types are plain tables of their fields", function()
  local order = compile():message("Order")
  local t = {
    created = { seconds = 1700000000, nanos = 5000000 },
    ttl = { seconds = 90 },
    big = { value = 42 },
    extra = { fields = { k = { string_value = "v" }, n = { number_value = 1.5 }, z = { null_value = "NULL_VALUE" } } },
    total = { currency = "EUR", units = 12, nanos = 500000000 },
  }
  local bytes = assert(order:encode(t))
  local back = order:decode(bytes)
  assert_eq(back.created, { seconds = 1700000000, nanos = 5000000 })
  assert_eq(back.ttl, { seconds = 90, nanos = 0 })
  assert_eq(back.big, { value = 42 })
  assert_eq(back.extra.fields.k, { string_value = "v" })
  assert_eq(back.extra.fields.z, { null_value = "NULL_VALUE" })
  assert_eq(back.total, t.total)
  local json = assert(order:to_json(bytes))
  local j = klua.json.decode(json)
  assert_eq(j.created, "2023-11-14T22:13:20.005Z")
  assert_eq(j.ttl, "90s")
  assert_eq(j.big, "42")
  assert_eq(j.extra, { k = "v", n = 1.5, z = klua.json.null })
  assert_eq(j.total, { currency = "EUR", units = "12", nanos = 500000000 })
end)

test("proto3 JSON both ways, with a prefix and an offset", function()
  local order = compile():message("Order")
  local t = { id = "o-1", lines = { { sku = "a", qty = 2 } }, status = "NEW", voucher = 7 }
  local bytes = assert(order:encode(t))
  assert_eq(klua.json.decode(order:to_json(bytes)), { id = "o-1", lines = { { sku = "a", qty = 2 } }, status = "NEW",
    voucher = "7" })
  local with_defaults = klua.json.decode(order:to_json(bytes, 0, { defaults = true, proto_names = true }))
  assert_eq(with_defaults.by_pos, {})
  assert_eq(with_defaults.lines[1].price, 0)
  assert_eq(assert(order:from_json('{"voucher":"7","status":"NEW","lines":[{"qty":2,"sku":"a"}],"id":"o-1"}')), bytes,
    "from_json writes in field-number order")
  assert_eq(order:from_json('{"id":"x"}', "\0\0\0\0\1\0"), "\0\0\0\0\1\0" .. order:encode({ id = "x" }))
  assert_eq(order:to_json("HDR" .. bytes, 3), order:to_json(bytes))
  assert_eq(order:decode("HDR" .. bytes, 3), order:decode(bytes))
  assert_eq(order:encode(t, "\0\0\0\0\7\0"), "\0\0\0\0\7\0" .. bytes)
  local _, err = order:from_json('{"nope":1}')
  assert_error(err, "KLUA_SERIALIZATION")
  assert_true(order:from_json('{"nope":1}', nil, { ignore_unknown = true }) == "", "unknown ignored")
  _, err = order:to_json("\255")
  assert_error(err, "KLUA_DESERIALIZATION")
end)

test("errors name the field path", function()
  local order = compile():message("Order")
  local _, err = order:encode({ lines = { { sku = "a", qty = 1 }, { sku = "b", qty = "2" } } })
  assert_error(err, "KLUA_SERIALIZATION")
  assert_eq(err.path, "$.lines[1].qty")
  assert_match(err.message, 'expected an integer for shop.Order.Line.qty %(int32%), got string "2"')
  _, err = order:encode({ lines = { { qtty = 1 } } })
  assert_eq(err.path, "$.lines[0].qtty")
  assert_match(err.message, 'unknown field "qtty" in shop.Order.Line')
  _, err = order:encode({ status = "LOST" })
  assert_match(err.message, "a value of enum shop.Order.Status")
  _, err = order:encode({ card = "x", voucher = 1 })
  assert_match(err.message, "oneof shop.Order.payment has two members set")
  _, err = order:encode({ lines = { sku = "a" } })
  assert_match(err.message, "expected a list")
  _, err = order:encode({ counts = { a = "x" } })
  assert_eq(err.path, '$.counts["a"]')
  _, err = order:encode({ created = 5 })
  assert_match(err.message, "google.protobuf.Timestamp")
  _, err = order:encode({ id = "\255" })
  assert_match(err.message, "UTF%-8")
  _, err = order:encode({ [1] = "x" })
  assert_match(err.message, "keys are field names")
  local loop = {}
  loop.total = {}
  local cyc = { lines = {} }
  cyc.extra = { fields = { a = { struct_value = nil } } }
  local s = { fields = {} }
  s.fields.me = { struct_value = s }
  _, err = order:encode({ extra = s })
  assert_match(err.message, "nested deeper than 100")
  assert_raises(function() order:encode("x") end, "bad argument #2 to 'm:encode'")
  assert_raises(function() order:decode({}) end, "bad argument #2 to 'm:decode'")
end)

test("decoding bad bytes returns nil, err and never raises", function()
  local f = compile()
  local order = f:message("Order")
  local _, err = order:decode("\10\5ab")  -- a string field cut short
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_match(err.message, "cannot decode shop.Order")
  _, err = order:decode("\10\1\255")  -- not UTF-8 in a proto3 string
  assert_match(err.message, "UTF%-8")
  _, err = order:decode("\0", 5)
  assert_error(err, "KLUA_DESERIALIZATION")
  math.randomseed(20)
  local good = assert(order:encode({ id = "o", lines = { { sku = "a", qty = 2 } }, counts = { x = 1 },
    created = { seconds = 1 }, extra = { fields = { k = { list_value = { values = { { bool_value = true } } } } } } }))
  local decoded, failed = 0, 0
  for _ = 1, 3000 do
    local b
    if math.random() < 0.5 then
      local t = {}
      for i = 1, math.random(0, 40) do t[i] = string.char(math.random(0, 255)) end
      b = table.concat(t)
    else  -- a valid message with a byte changed or the tail cut
      local i = math.random(1, #good)
      b = good:sub(1, i - 1) .. string.char(math.random(0, 255)) .. good:sub(i + 1, math.random(i, #good))
    end
    for _, m in ipairs({ order, f:message("Scalars") }) do
      local ok, v, e = pcall(m.decode, m, b)
      assert_true(ok, "decode raised on " .. hex(b) .. ": " .. tostring(v))
      if v then decoded = decoded + 1 else failed = failed + 1; assert_error(e, "KLUA_DESERIALIZATION") end
      ok = pcall(m.to_json, m, b)
      assert_true(ok, "to_json raised on " .. hex(b))
    end
  end
  assert_true(decoded > 100 and failed > 100, "both outcomes seen: " .. decoded .. " / " .. failed)
end)

test("NaNs with any payload decode as Lua's NaN (a raw NaN would be taken for another type)", function()
  local s = compile():message("Scalars")
  local v = assert(s:decode("\9\255\255\255\255\255\255\255\255" .. "\21\255\255\255\255"))
  assert_eq(type(v.d), "number")
  assert_eq(type(v.f), "number")
  assert_true(v.d ~= v.d and v.f ~= v.f, "NaN")
  collectgarbage()
  assert_eq(#assert(s:encode(v)), 14)
end)

test("schema errors carry positions", function()
  local f, err = pb.compile('syntax = "proto3";\nmessage A {\n  int32 x = ;\n}\n', { name = "order.proto" })
  assert_nil(f)
  assert_error(err, "KLUA_SCHEMA")
  assert_match(err.message, "order.proto:3:13: Expected field number")
  f, err = pb.compile('syntax = "proto3";\nmessage A {\n  Missing x = 1;\n}\n', { name = "a.proto" })
  assert_match(err.message, 'a.proto:3:3: "Missing" is not defined')
  f, err = pb.compile('syntax = "proto3";\nimport "nope.proto";\nmessage A {}\n', { name = "a.proto" })
  assert_match(err.message, 'a.proto:2:1: import "nope.proto" was not found')
  f, err = pb.compile('syntax = "proto3";\nmessage A { int32 x = 1; int32 y = 1; }\n', { name = "dup.proto" })
  assert_match(err.message, "dup.proto:2:36: Field number 1 has already been used")
  f, err = pb.compile('import "b.proto";', { name = "a.proto", imports = { ["b.proto"] = 'import "a.proto";' } })
  assert_match(err.message, "import cycle")
  assert_raises(function() pb.compile(ORDER, { nmae = "x" }) end, "unknown option nmae")
  assert_raises(function() pb.compile(42) end, "bad argument #1 to 'klua.protobuf.compile'")
end)

test("FileDescriptorProto: emitted, loaded back in binary and base64", function()
  local f = compile()
  local desc = f:descriptor()
  local common = pb.compile(COMMON, { name = "common.proto" }):descriptor()
  for _, form in ipairs({ desc, klua.base64.encode(desc) }) do
    local g = assert(pb.load_descriptor(form, { imports = { ["common.proto"] = klua.base64.encode(common) } }))
    assert_eq(g.name, "order.proto")
    assert_eq(g.messages, f.messages)
    local t = { id = "x", lines = { { qty = 3 } }, total = { units = 5 } }
    assert_eq(g:message("Order"):encode(t), f:message("Order"):encode(t))
  end
  -- klua.protobuf.load takes either form.
  assert_eq(assert(pb.load(klua.base64.encode(desc), { imports = { ["common.proto"] = COMMON } })).name, "order.proto")
  assert_eq(assert(pb.load(COMMON, { name = "common.proto" })).package, "common")
  local g, err = pb.load_descriptor("\10\3a.p\34\255")
  assert_nil(g)
  assert_error(err, "KLUA_SCHEMA")
end)

test("proto2: required fields, closed enums, defaults absent until set", function()
  local f = assert(pb.compile([[
    syntax = "proto2";
    message P { required int32 a = 1; optional string b = 2 [default = "d"]; enum E { X = 1; Y = 2; } optional E e = 3; }
  ]]))
  local p = f:message("P")
  local _, err = p:encode({ b = "x" })
  assert_error(err, "KLUA_SERIALIZATION")
  assert_match(err.message, "missing required field")
  assert_eq(p:decode(assert(p:encode({ a = 1 }))), { a = 1 })
  _, err = p:encode({ a = 1, e = 5 })
  assert_match(err.message, "enum P.E")
  _, err = p:decode("\18\1x")
  assert_match(err.message, "missing required")
end)

test("the message reused across calls carries nothing from one call to the next", function()
  local order = compile():message("Order")
  local full = assert(order:encode({ id = "a", lines = { { qty = 1 } }, counts = { x = 1 }, card = "c", created = { seconds = 1 } }))
  assert_eq(order:encode({}), "")
  assert_eq(order:encode({ voucher = 5 }), "\48\5")
  assert_true(order:decode(full).card == "c")
  assert_eq(order:encode({}), "", "after a decode")
  local _, err = order:encode({ id = "b", lines = { { qty = "bad" } } })
  assert_true(err ~= nil)
  assert_eq(order:encode({ status = "NEW" }), "\24\1", "after a failed encode")
  assert_eq(order:decode(order:encode({ id = "z" })).lines, {})
end)

test("a compiled file outlives its references and is collected", function()
  local m = compile():message("Order.Line")
  collectgarbage()
  collectgarbage()
  assert_eq(m:decode(assert(m:encode({ sku = "z" }))).sku, "z")
  for _ = 1, 50 do compile():message("Order"):encode({ id = "x" }) end
  collectgarbage()
end)
