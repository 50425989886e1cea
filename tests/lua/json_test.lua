-- Tests for klua.json (bindings/json.cpp). Run with: klua test tests/lua/json_test.lua
local json = klua.json

local function decode_err(s, opts)
  local v, err = json.decode(s, opts)
  assert_eq(v, nil, "decode(" .. string.format("%q", s) .. ") should fail")
  assert_true(type(err) == "table", "err is a table")
  assert_eq(err.name, "KLUA_JSON")
  assert_eq(err.code, klua.errors.codes.KLUA_JSON)
  return err
end

-- encode: scalars ----------------------------------------------------------------------

test("encode scalars", function()
  assert_eq(json.encode(true), "true")
  assert_eq(json.encode(false), "false")
  assert_eq(json.encode(nil), "null")
  assert_eq(json.encode(json.null), "null")
  assert_eq(json.encode("hi"), '"hi"')
end)

test("integers encode without a decimal point", function()
  assert_eq(json.encode(1), "1")
  assert_eq(json.encode(-42), "-42")
  assert_eq(json.encode(0), "0")
  assert_eq(json.encode(1e15), "1000000000000000")
  assert_eq(json.encode(2 ^ 53), "9007199254740992")
  assert_eq(json.encode(-(2 ^ 53)), "-9007199254740992")
  assert_eq(json.encode({ 3, 4.0 }), "[3,4]")
end)

test("floats encode with round-trip precision", function()
  assert_eq(json.encode(1.5), "1.5")
  assert_eq(json.encode(0.1), "0.1")
  assert_eq(json.encode(-2.25), "-2.25")
  assert_eq(json.encode(1e300), "1e+300")
  for _, x in ipairs({ 0.1, 1 / 3, 2 / 3, math.pi, 1e-300, 123456.789, 5e-324, 1.7976931348623157e308 }) do
    assert_true(json.decode(json.encode(x)) == x, "round-trip of " .. string.format("%.17g", x))
    assert_true(json.decode(json.encode({ x }))[1] == x, "round-trip in array")
  end
end)

test("NaN and infinity raise", function()
  assert_raises(function() json.encode(0 / 0) end, "cannot encode NaN at %$")
  assert_raises(function() json.encode({ a = math.huge }) end, "cannot encode inf at %$%.a")
  assert_raises(function() json.encode({ -math.huge }) end, "cannot encode %-inf at %$%[1%]")
end)

-- encode: strings ----------------------------------------------------------------------

test("string escapes", function()
  assert_eq(json.encode('a"b\\c/d'), '"a\\"b\\\\c/d"')
  assert_eq(json.encode("\b\f\n\r\t"), '"\\b\\f\\n\\r\\t"')
  assert_eq(json.encode("\1\31"), '"\\u0001\\u001f"')
end)

test("binary-safe strings with NUL", function()
  local s = "a\0b\0\0c"
  local enc = json.encode(s)
  assert_eq(enc, '"a\\u0000b\\u0000\\u0000c"')
  local back = json.decode(enc)
  assert_eq(#back, 6)
  assert_eq(back, s)
  assert_eq(json.decode('"\\u0000"'), "\0")
end)

test("valid UTF-8 passes through unescaped", function()
  local s = "caf\195\169 \226\130\172 \240\159\152\128"
  assert_eq(json.encode(s), '"' .. s .. '"')
  assert_eq(json.decode(json.encode(s)), s)
end)

test("invalid UTF-8 raises naming the offset and path", function()
  assert_raises(function() json.encode("ab\255c") end, "invalid UTF%-8 at byte 2 of string at %$")
  assert_raises(function() json.encode({ name = { "ok", "x\192\128" } }) end,
    "invalid UTF%-8 at byte 1 of string at %$%.name%[2%]")
  -- truncated sequence, encoded surrogate, overlong: all invalid
  assert_raises(function() json.encode("\226\130") end, "invalid UTF%-8 at byte 0")
  assert_raises(function() json.encode("\237\160\128") end, "invalid UTF%-8 at byte 0")
  assert_raises(function() json.encode("\224\128\128") end, "invalid UTF%-8 at byte 0")
  assert_raises(function() json.encode({ ["k\255"] = 1 }) end, "invalid UTF%-8 at byte 1 of key at %$")
end)

test("invalid_utf8 option: replace and ignore", function()
  assert_eq(json.encode("ab\255c", { invalid_utf8 = "replace" }), '"ab\239\191\189c"')
  assert_eq(json.encode("ab\255c\226\130", { invalid_utf8 = "replace" }), '"ab\239\191\189c\239\191\189"')
  assert_eq(json.encode("ab\255c", { invalid_utf8 = "ignore" }), '"abc"')
  assert_raises(function() json.encode("ab\255c", { invalid_utf8 = "error" }) end, "invalid UTF%-8 at byte 2")
end)

-- encode: tables -----------------------------------------------------------------------

test("array vs object detection", function()
  assert_eq(json.encode({ 1, 2, 3 }), "[1,2,3]")
  assert_eq(json.encode({}), "{}")
  assert_eq(json.encode({ a = 1 }), '{"a":1}')
  assert_eq(json.encode({ [1] = "a", [3] = "c" }), '{"1":"a","3":"c"}')    -- hole: object
  assert_eq(json.encode({ 1, 2, x = 3 }), '{"1":1,"2":2,"x":3}')             -- mixed: object
  assert_eq(json.encode({ [0] = "z", "a" }), '{"0":"z","1":"a"}')
  assert_eq(json.encode({ [1.5] = true }), '{"1.5":true}')
end)

test("object keys are sorted", function()
  assert_eq(json.encode({ b = 1, a = 2, c = { z = 1, y = 2 }, B = 3 }), '{"B":3,"a":2,"b":1,"c":{"y":2,"z":1}}')
  -- numeric keys sort as their text
  assert_eq(json.encode(json.object({ [10] = 1, [2] = 2, [1] = 3 })), '{"1":3,"10":1,"2":2}')
end)

test("array() and object() markers", function()
  local a = {}
  assert_true(json.array(a) == a, "array returns its argument")
  assert_eq(json.encode(a), "[]")
  assert_eq(json.encode(json.object({})), "{}")
  assert_eq(json.encode(json.array()), "[]")
  assert_eq(json.encode(json.object()), "{}")
  assert_eq(json.encode(json.array({ 1, nil, 3 })), "[1,null,3]")
  assert_eq(json.encode(json.array({ [2] = "b" })), '[null,"b"]')
  assert_eq(json.encode(json.object({ "x", "y" })), '{"1":"x","2":"y"}')
  assert_eq(json.encode({ list = json.array(), map = json.object() }), '{"list":[],"map":{}}')
  -- re-marking is allowed, a foreign metatable is not
  assert_eq(json.encode(json.object(json.array({}))), "{}")
  assert_raises(function() json.array(setmetatable({}, {})) end, "bad argument #1 to 'array'")
  assert_raises(function() json.object(42) end, "bad argument #1 to 'object' %(table expected, got number%)")
end)

test("__jsontype in a user metatable", function()
  local mt = { __index = function() return "x" end, __jsontype = "array" }
  assert_eq(json.encode(setmetatable({}, mt)), "[]")
  assert_eq(json.encode(setmetatable({}, { __jsontype = "object" })), "{}")
  -- metamethods are not consulted: contents are read raw
  assert_eq(json.encode(setmetatable({ 1 }, mt)), "[1]")
end)

test("marked array errors", function()
  assert_raises(function() json.encode({ a = json.array({ 1, x = 2 }) }) end,
    "table marked as array has a key that is not a positive integer at %$%.a%.x")
  assert_raises(function() json.encode(json.array({ [100] = 1 })) end, "excessively sparse array")
end)

test("null sentinel", function()
  assert_eq(type(json.null), "userdata")
  assert_true(json.null ~= nil)
  assert_eq(json.encode({ 1, json.null, 3 }), "[1,null,3]")
  assert_eq(json.encode({ a = json.null }), '{"a":null}')
end)

test("pretty printing with indent", function()
  local v = { a = { 1, 2 }, b = json.object(), c = json.array(), d = "x" }
  assert_eq(json.encode(v, { indent = 2 }),
    '{\n  "a": [\n    1,\n    2\n  ],\n  "b": {},\n  "c": [],\n  "d": "x"\n}')
  assert_eq(json.encode({ 1 }, { indent = 0 }), "[\n1\n]")
  assert_eq(json.encode(5, { indent = 4 }), "5")
end)

test("unsupported values raise with a path", function()
  assert_raises(function() json.encode({ a = { 1, print } }) end, "cannot encode a function at %$%.a%[2%]")
  assert_raises(function() json.encode(coroutine.create(print)) end, "cannot encode a thread at %$$")
  assert_raises(function() json.encode({ ["a b"] = { io.stdout } }) end, 'cannot encode a userdata at %$%["a b"%]%[1%]')
  assert_raises(function() json.encode({ [true] = 1 }) end, "cannot encode a boolean key at %$")
  assert_raises(function() json.encode({ [{}] = 1 }) end, "cannot encode a table key at %$")
  assert_raises(function() json.encode({ [1] = 1, ["1"] = 2 }) end, 'duplicate key "1"')
end)

test("encode errors are klua errors named KLUA_JSON", function()
  local ok, err = pcall(json.encode, { f = print })
  assert_eq(ok, false)
  assert_eq(err.name, "KLUA_JSON")
  assert_eq(err.message, "klua.json.encode: cannot encode a function at $.f")
  assert_match(tostring(err), "^KLUA_JSON: klua%.json%.encode: cannot encode a function at %$%.f$")
end)

test("cycles raise", function()
  local t = { a = {} }
  t.a.back = t
  assert_raises(function() json.encode(t) end, "cannot encode a cycle %(table contains itself%) at %$%.a%.back")
  local arr = {}
  arr[1] = arr
  assert_raises(function() json.encode(arr) end, "cycle.- at %$%[1%]")
  -- the same table twice (not a cycle) is fine
  local shared = { 1 }
  assert_eq(json.encode({ shared, shared }), "[[1],[1]]")
end)

local function nest(n)
  local v = 1
  for _ = 1, n do v = { v } end
  return v
end

test("encode depth limit", function()
  assert_eq(#json.encode(nest(128)), 128 * 2 + 1)
  assert_raises(function() json.encode(nest(129)) end, "nesting deeper than max_depth 128 at %$%[1%]")
  assert_eq(json.encode(nest(3), { max_depth = 3 }), "[[[1]]]")
  assert_raises(function() json.encode(nest(3), { max_depth = 2 }) end, "nesting deeper than max_depth 2 at %$%[1%]%[1%]$")
  assert_eq(json.encode(nest(500), { max_depth = 500 }):sub(1, 3), "[[[")
  assert_eq(json.encode(7, { max_depth = 0 }), "7")
  assert_raises(function() json.encode({}, { max_depth = 0 }) end, "nesting deeper than max_depth 0 at %$$")
end)

-- decode ---------------------------------------------------------------------------------

test("decode scalars", function()
  assert_eq(json.decode("true"), true)
  assert_eq(json.decode("false"), false)
  assert_true(json.decode("null") == json.null)
  assert_eq(json.decode(" 12 "), 12)
  assert_eq(json.decode("-1.5e3"), -1500)
  assert_eq(json.decode('"x"'), "x")
end)

test("decode nested and round-trip", function()
  local doc = '{"a":[1,2,{"b":null,"c":[true,false]}],"d":{"e":"f"},"g":-0.5,"h":[],"i":{}}'
  local v = json.decode(doc)
  assert_eq(v.a[3].c, { true, false })
  assert_true(v.a[3].b == json.null)
  assert_eq(v.d.e, "f")
  assert_eq(v.g, -0.5)
  assert_eq(json.encode(v), doc)
  -- encode -> decode -> encode is stable
  local t = { name = "n", list = { 1, 2.5, "three", { x = 1 } }, flag = true }
  local s = json.encode(t)
  assert_eq(json.decode(s), t)
  assert_eq(json.encode(json.decode(s)), s)
end)

test("null in arrays keeps the length", function()
  local v = json.decode("[1,null,3]")
  assert_eq(#v, 3)
  assert_true(v[2] == json.null)
  assert_eq(json.encode(v), "[1,null,3]")
  assert_eq(#json.decode("[null,null]"), 2)
end)

test("empty array vs object round-trip", function()
  assert_eq(json.encode(json.decode("[]")), "[]")
  assert_eq(json.encode(json.decode("{}")), "{}")
  assert_eq(json.encode(json.decode('{"a":[],"b":{}}')), '{"a":[],"b":{}}')
  -- a decoded array stays an array after edits that empty it
  local v = json.decode("[1]")
  v[1] = nil
  assert_eq(json.encode(v), "[]")
  assert_true(getmetatable(json.decode("[]")) ~= getmetatable(json.decode("{}")))
end)

test("decoded numbers are doubles", function()
  assert_eq(json.decode("9007199254740993"), 9007199254740992)
  assert_eq(json.decode("18446744073709551616"), 2 ^ 64)
  assert_eq(json.decode("-9223372036854775808"), -(2 ^ 63))
  assert_true(json.decode("0.1") == 0.1)
  local err = decode_err("1e400")
  assert_match(err.message, "^json decode: number out of range at byte 0: 1e400$")
end)

test("unicode escapes decode to UTF-8", function()
  assert_eq(json.decode('"\\u00e9"'), "\195\169")
  assert_eq(json.decode('"\\u20AC"'), "\226\130\172")
  assert_eq(json.decode('"\\ud83d\\ude00"'), "\240\159\152\128")
  assert_eq(json.decode('"a\\nb\\t\\"\\\\\\/"'), 'a\nb\t"\\/')
  assert_match(decode_err('"\\ud800"').message, "surrogate")
  assert_match(decode_err('"\\udc00"').message, "surrogate")
end)

test("decode syntax errors name the byte offset", function()
  local err = decode_err("[1,2,}")
  assert_eq(err.message, "json decode: syntax error at byte 5: expected value, found '}'")
  assert_eq(decode_err('{"a":1,}').message, "json decode: syntax error at byte 7: expected string key, found '}'")
  assert_eq(decode_err("[1,2").message, "json decode: syntax error at byte 4: expected ',' or ']', found end of input")
  assert_eq(decode_err("").message, "json decode: syntax error at byte 0: expected value, found end of input")
  assert_eq(decode_err('{"a" 1}').message, "json decode: syntax error at byte 5: expected ':', found '1'")
  assert_eq(decode_err("{1:2}").message, "json decode: syntax error at byte 1: expected string key or '}', found '1'")
  assert_eq(decode_err('{"a":1 "b":2}').message, "json decode: syntax error at byte 7: expected ',' or '}', found '\"b\"'")
  assert_eq(decode_err("[1] x").message, "json decode: syntax error at byte 4: invalid literal")
  assert_eq(decode_err("[1] 2").message, "json decode: syntax error at byte 4: expected end of input, found '2'")
  assert_eq(decode_err("[tru]").message, "json decode: syntax error at byte 4: invalid literal")
  assert_match(decode_err('"abc').message, "at byte 4: invalid string: missing closing quote")
  assert_match(decode_err('"a\nb"').message, "at byte 2: invalid string: control character U%+000A")
  assert_match(decode_err("[-]").message, "at byte 2: invalid number; expected digit after '%-'")
  assert_match(tostring(decode_err("[")), "^KLUA_JSON: json decode: syntax error at byte 1")
end)

test("decode rejects invalid UTF-8", function()
  assert_eq(decode_err('"ab\255"').message, "json decode: syntax error at byte 3: invalid string: ill-formed UTF-8 byte")
end)

test("decode depth limit", function()
  local deep = string.rep("[", 128) .. string.rep("]", 128)
  assert_eq(json.encode(json.decode(deep)), deep)
  local err = decode_err(string.rep("[", 129) .. string.rep("]", 129))
  assert_eq(err.message, "json decode: nesting deeper than max_depth 128 at byte 128")
  assert_eq(decode_err('{"a":[{"b":[]}]}', { max_depth = 3 }).message,
    "json decode: nesting deeper than max_depth 3 at byte 11")
  assert_eq(json.encode(json.decode('{"a":[{"b":[]}]}', { max_depth = 4 })), '{"a":[{"b":[]}]}')
  assert_eq(json.decode("5", { max_depth = 0 }), 5)
  decode_err("[]", { max_depth = 0 })
  local d = string.rep("[", 1000) .. string.rep("]", 1000)
  assert_eq(#json.encode(json.decode(d, { max_depth = 1000 }), { max_depth = 1000 }), 2000)
end)

test("decode duplicate keys: last wins", function()
  assert_eq(json.decode('{"a":1,"a":2}').a, 2)
end)

-- argument checks ----------------------------------------------------------------------

test("argument errors", function()
  assert_raises(function() json.decode(nil) end, "bad argument #1 to 'decode' %(string expected, got nil%)")
  assert_raises(function() json.decode({}) end, "bad argument #1 to 'decode' %(string expected, got table%)")
  assert_raises(function() json.encode() end, "bad argument #1 to 'encode'")
  assert_raises(function() json.decode("1", 5) end, "bad argument #2 to 'decode' %(table expected, got number%)")
  assert_raises(function() json.encode(1, "x") end, "bad argument #2 to 'encode' %(table expected, got string%)")
  assert_raises(function() json.encode(1, { indent = -1 }) end, "bad argument #2 to 'encode' %(opts%.indent must be")
  assert_raises(function() json.encode(1, { indent = 1.5 }) end, "opts%.indent must be an integer")
  assert_raises(function() json.encode(1, { max_depth = 1001 }) end, "opts%.max_depth must be an integer between 0 and 1000")
  assert_raises(function() json.decode("1", { max_depth = "x" }) end, "opts%.max_depth")
  assert_raises(function() json.encode(1, { invalid_utf8 = "drop" }) end, "opts%.invalid_utf8 must be")
  assert_raises(function() json.encode(1, { indnet = 2 }) end, "unknown option 'indnet'")
  assert_raises(function() json.decode("1", { indent = 2 }) end, "unknown option 'indent'")
end)

test("large document round-trip", function()
  local t = {}
  for i = 1, 2000 do
    t[i] = { id = i, name = "item" .. i, tags = { "a", "b" }, score = i / 7, ok = i % 2 == 0 }
  end
  local s = json.encode(t)
  local back = json.decode(s)
  assert_eq(#back, 2000)
  assert_eq(back[1234].name, "item1234")
  assert_true(back[700].score == 100)
  assert_true(back[701].score == 701 / 7)
  assert_eq(json.encode(back), s)
end)

test("encodes one after another are independent (the encoder's buffers are reused)", function()
  local small = { message = "hello", n = 42 }
  assert_eq(json.encode(small), '{"message":"hello","n":42}')
  local cyc = {}
  cyc.self = cyc
  assert_false(pcall(json.encode, { a = { b = cyc } }))        -- fails deep inside an object
  assert_false(pcall(json.encode, { x = "\255" }))              -- fails inside a string
  assert_eq(json.encode(small), '{"message":"hello","n":42}')   -- nothing left of the failures
  assert_eq(json.encode({ k = { 1 } }, { indent = 2 }), '{\n  "k": [\n    1\n  ]\n}')
  assert_eq(json.encode(small), '{"message":"hello","n":42}')   -- compact again
  local big = {}
  for i = 1, 5000 do
    big["k" .. i] = string.rep("v", 20)
  end
  local text = json.encode(big)                                 -- past what is kept (64 KiB, 1,024 keys)
  assert_eq(#text, #json.encode(json.decode(text)))
  assert_eq(json.decode(text).k4321, string.rep("v", 20))
  assert_eq(json.encode({ [1.5] = true, z = { y = { x = 1 } } }), '{"1.5":true,"z":{"y":{"x":1}}}')
  assert_eq(json.encode(small), '{"message":"hello","n":42}')
end)
