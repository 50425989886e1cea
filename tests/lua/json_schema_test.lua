-- Tests for klua.json_schema (scripts/klua/json_schema.lua). The official test suite runs in
-- json_schema_suite_test.lua, Python's jsonschema as an oracle in tests/json_schema/oracle_test.py;
-- this file checks what those do not: error paths, keywords and messages, schema errors, the Lua
-- value mapping, references, the regex subset and formats.
-- Run with: klua test tests/lua/json_schema_test.lua
local js = klua.json_schema
local json = klua.json

local function compile(schema, opts)
  local v, err = js.compile(schema, opts)
  if not v then error("compile failed: " .. tostring(err), 2) end
  return v
end

local function invalid(v, value)
  local ok, err = v:validate(value)
  assert_nil(ok, "expected invalid: " .. json.encode(value))
  assert_error(err, "KLUA_SERIALIZATION")
  return err
end

local function schema_err(schema, opts)
  local v, err = js.compile(schema, opts)
  assert_nil(v, "expected a schema error")
  assert_error(err, "KLUA_SCHEMA")
  return err
end

test("a valid value gives true; an invalid one nil, err with path, keyword, schema_path, message", function()
  local v = compile([[{
    "title": "Order",
    "type": "object",
    "required": ["id", "items"],
    "properties": {
      "id": { "type": "string" },
      "items": { "type": "array", "items": {
        "type": "object", "properties": { "qty": { "type": "integer", "minimum": 1 } } } }
    }
  }]])
  assert_eq(v.title, "Order")
  assert_eq(v:validate({ id = "o-1", items = { { qty = 1 }, { qty = 2 } } }), true)
  local err = invalid(v, json.decode('{"id":"o-1","items":[{"qty":1},{"qty":5},{"qty":0}]}'))
  assert_eq(err.path, "$.items[2].qty")
  assert_eq(err.keyword, "minimum")
  assert_eq(err.schema_path, "#/properties/items/items/properties/qty/minimum")
  assert_eq(err.message, "$.items[2].qty: 0 is less than the minimum 1")
  assert_match(tostring(err), "KLUA_SERIALIZATION")
  err = invalid(v, { items = json.array {} })
  assert_eq(err.path, "$")
  assert_eq(err.keyword, "required")
  assert_eq(err.message, '$: missing required property "id"')
  assert_true(v:check({ id = "x", items = json.array {} }))
  assert_false(v:check({ id = 1, items = json.array {} }))
  assert_eq(invalid(v, { id = "x", items = {} }).path, "$.items")
end)

test("messages of each keyword", function()
  local cases = {
    { { type = "integer" }, "3", 'expected integer, found string "3"' },
    { { type = { "string", "null" } }, 1.5, "expected string or null, found number 1.5" },
    { { maximum = 3 }, 4, "4 is greater than the maximum 3" },
    { { exclusiveMinimum = 3 }, 3, "3 is not greater than the exclusive minimum 3" },
    { { exclusiveMaximum = 3 }, 3, "3 is not less than the exclusive maximum 3" },
    { { multipleOf = 0.5 }, 0.7, "0.7 is not a multiple of 0.5" },
    { { minLength = 3 }, "ab", '"ab" is shorter than 3 characters' },
    { { maxLength = 2 }, "日本語", '"日本語" is longer than 2 characters' },
    { { pattern = "^a+$" }, "ab", '"ab" does not match the pattern "^a+$"' },
    { { enum = { "a", "b" } }, "c", '"c" is not one of the allowed values' },
    { { const = 2 }, 3, "3 is not the constant 2" },
    { { minItems = 2 }, json.array { 1 }, "1 items, fewer than the minimum 2" },
    { { maxItems = 1 }, { 1, 2 }, "2 items, more than the maximum 1" },
    { { uniqueItems = true }, { 1, 2, 1 }, "items 0 and 2 are equal" },
    { { contains = { type = "string" } }, { 1 }, "no item matches the contains schema" },
    { { items = { { type = "integer" } }, additionalItems = false }, { 1, 2 },
      "2 items, more than the 1 allowed (additionalItems is false)" },
    { { minProperties = 1 }, json.object {}, "0 properties, fewer than the minimum 1" },
    { { maxProperties = 1 }, { a = 1, b = 2 }, "2 properties, more than the maximum 1" },
    { { dependencies = { a = { "b" } } }, { a = 1 }, 'property "a" requires property "b"' },
    { { propertyNames = { maxLength = 1 } }, { ab = 1 }, 'property name "ab": "ab" is longer than 1 characters' },
    { { ["not"] = { type = "string" } }, "x", "matches the schema of not" },
    { { oneOf = { { type = "number" }, { type = "integer" } } }, 1, "matches schemas 0 and 1 of oneOf, exactly one is allowed" },
    { false, 1, "no value is allowed here (the schema is false)" },
  }
  for _, c in ipairs(cases) do
    local err = invalid(compile(c[1]), c[2])
    assert_eq(err.message, "$: " .. c[3])
  end
end)

test("anyOf and oneOf name what each branch expected", function()
  local v = compile { anyOf = { { type = "integer" }, { type = "object", required = { "id" } } } }
  local err = invalid(v, json.decode('{"x":1}'))
  assert_eq(err.keyword, "anyOf")
  assert_eq(err.message, '$: matches none of the 2 schemas of anyOf: [0] expected integer, found object; ' ..
    '[1] missing required property "id"')
  v = compile { properties = { a = { oneOf = { { type = "integer" }, { properties = { b = { type = "string" } } } } } } }
  err = invalid(v, json.decode('{"a":{"b":1}}'))
  assert_eq(err.path, "$.a")
  assert_match(err.message, "^%$%.a: matches none of the 2 schemas of oneOf: %[0%] expected")
  assert_match(err.message, "%[1%] %.b: expected string, found integer 1")
end)

test("paths name array items 0-based (as JSON and the other codecs count) and odd keys in brackets", function()
  local v = compile { items = { properties = { ["a b"] = { type = "string" }, ["1"] = { type = "null" } } } }
  assert_eq(invalid(v, json.decode('[{}, {"a b": 1}]')).path, '$[1]["a b"]')
  assert_eq(invalid(v, json.decode('[{"1": 1}]')).path, '$[0]["1"]')
  local err = invalid(compile { additionalProperties = false, properties = { a = {} } }, { a = 1, zz = 2 })
  assert_eq(err.path, "$.zz")
  assert_eq(err.keyword, "additionalProperties")
  assert_eq(err.message, '$.zz: property "zz" is not allowed (additionalProperties)')
end)

test("Lua values read as klua.json.encode writes them", function()
  local arr, obj = compile { type = "array" }, compile { type = "object" }
  assert_true(arr:check({ 1, 2 }))
  assert_true(arr:check(json.array {}))
  assert_true(obj:check({}))            -- an empty unmarked table encodes as {}
  assert_false(arr:check({}))
  assert_match(invalid(arr, {}).message, "mark it with klua.json.array")
  assert_true(obj:check({ 1, 2, x = 3 }))  -- mixed keys: an object
  assert_true(obj:check({ [1] = "a", [3] = "b" }))
  assert_true(obj:check(json.object { 1, 2 }))
  -- nil at the top and klua.json.null are null; nil inside an object is an absent key
  local null = compile { type = "null" }
  assert_true(null:check(nil))
  assert_true(null:check(json.null))
  assert_false(compile { required = { "a" } }:check({ a = nil }))
  assert_true(compile { required = { "a" } }:check({ a = json.null }))
  -- number keys are their decimal text
  assert_true(compile { required = { "1" }, properties = { ["1"] = { type = "string" } } }:check({ [1] = "x", a = 1 }))
  assert_false(compile { properties = { ["1"] = { type = "string" } } }:check({ [1] = 2, a = 1 }))
  assert_false(compile { propertyNames = { pattern = "^[a-z]+$" } }:check({ [7] = 1, a = 1 }))
  -- 1.0 is an integer; what JSON cannot hold is no JSON type
  assert_true(compile { type = "integer" }:check(1.0))
  assert_false(compile { type = "integer" }:check(1.5))
  assert_false(compile { type = { "string", "number", "object" } }:check(print))
  assert_false(compile { type = "number" }:check(0 / 0))
end)

test("enum, const and uniqueItems compare deeply, objects regardless of key order", function()
  local v = compile { enum = { json.decode('{"a":[1,{"b":null}]}'), 2, "x" } }
  assert_true(v:check(json.decode('{"a":[1,{"b":null}]}')))
  assert_true(v:check({ a = { 1, { b = json.null } } }))
  assert_false(v:check({ a = { 1, { b = 0 } } }))
  assert_false(v:check({ a = { 1 } }))
  assert_true(v:check(2.0))
  assert_false(v:check("2"))
  local u = compile { uniqueItems = true }
  assert_false(u:check(json.decode('[{"a":1,"b":2},{"b":2,"a":1}]')))
  assert_true(u:check(json.decode('[[1],[1,2],1,"1",true]')))
  assert_false(u:check(json.decode('[[],[]]')))
  assert_true(u:check(json.decode('[{},[]]')))
  assert_false(compile { const = false }:check(0))
  assert_false(compile { const = json.null }:check(false))
  assert_true(compile { const = json.null }:check(nil))
end)

test("lengths count code points; minLength and maxLength of multi-byte text", function()
  local v = compile { minLength = 2, maxLength = 3 }
  assert_true(v:check("日本"))
  assert_true(v:check("日本語"))
  assert_false(v:check("日"))
  assert_false(v:check("日本語x"))
  assert_true(v:check("😀😀"))
  assert_false(v:check("😀"))
  assert_true(v:check(12)) -- not a string: not checked
end)

test("$ref: pointers, escapes, recursion, $id anchors and base URIs", function()
  local tree = compile [[{
    "definitions": { "node": { "type": "object", "required": ["v"],
      "properties": { "v": { "type": "integer" }, "kids": { "type": "array", "items": { "$ref": "#/definitions/node" } } } },
      "a/b~c": { "type": "string" } },
    "properties": { "root": { "$ref": "#/definitions/node" }, "esc": { "$ref": "#/definitions/a~1b~0c" } }
  }]]
  assert_true(tree:check(json.decode('{"root":{"v":1,"kids":[{"v":2,"kids":[{"v":3}]}]},"esc":"s"}')))
  local err = invalid(tree, json.decode('{"root":{"v":1,"kids":[{"v":2,"kids":[{"v":"x"}]}]}}'))
  assert_eq(err.path, "$.root.kids[0].kids[0].v")
  assert_eq(err.schema_path, "#/definitions/node/properties/v/type")
  assert_false(tree:check({ esc = 1 }))
  local ids = compile [[{
    "$id": "http://example.com/schemas/root.json",
    "definitions": {
      "A": { "$id": "#int", "type": "integer" },
      "B": { "$id": "other/b.json", "definitions": { "S": { "type": "string" } } }
    },
    "properties": {
      "a": { "$ref": "#int" },
      "b": { "$ref": "other/b.json#/definitions/S" },
      "c": { "$ref": "http://example.com/schemas/other/b.json#/definitions/S" }
    }
  }]]
  assert_true(ids:check({ a = 1, b = "x", c = "y" }))
  assert_false(ids:check({ a = "1" }))
  assert_false(ids:check({ b = 1 }))
  assert_false(ids:check({ c = 1 }))
  -- draft 7: siblings of $ref are ignored; 2019-09: they apply
  local s = [[{"definitions":{"n":{"type":"integer"}},"properties":{"a":{"$ref":"#/definitions/n","minimum":5}}}]]
  assert_true(compile(s):check({ a = 1 }))
  assert_false(compile(s, { draft = "2019-09" }):check({ a = 1 }))
  assert_false(compile(s, { draft = "2019-09" }):check({ a = "x" }))
end)

test("references: other documents by URI, by the $ref's text, by a registry reference's name", function()
  local customer = '{"type":"object","required":["name"],"properties":{"name":{"type":"string"}},' ..
                   '"definitions":{"id":{"type":"integer"}}}'
  local v = compile([[{"properties":{"customer":{"$ref":"customer.json"},
                                     "cid":{"$ref":"customer.json#/definitions/id"}}}]],
                    { references = { ["customer.json"] = customer } })
  assert_true(v:check({ customer = { name = "x" }, cid = 3 }))
  assert_eq(invalid(v, { customer = { name = 1 } }).path, "$.customer.name")
  assert_eq(invalid(v, { customer = { name = 1 } }).schema_path, "customer.json#/properties/name/type")
  assert_false(v:check({ cid = "3" }))
  -- an absolute $id resolves "customer.json" to http://example.com/customer.json: found by its name
  v = compile({ ["$id"] = "http://example.com/order.json", properties = { c = { ["$ref"] = "customer.json" } } },
              { references = { ["customer.json"] = json.decode(customer) } })
  assert_false(v:check({ c = {} }))
  v = compile({ properties = { c = { ["$ref"] = "http://x.test/c.json" } } },
              { references = { ["http://x.test/c.json"] = { type = "string" } } })
  assert_true(v:check({ c = "s" }))
  assert_false(v:check({ c = 1 }))
  -- a reference that refers to another one, and back
  v = compile('{"$ref":"a.json"}', { references = {
    ["a.json"] = '{"type":"object","properties":{"b":{"$ref":"b.json"}}}',
    ["b.json"] = '{"type":"array","items":{"$ref":"a.json"}}' } })
  assert_true(v:check(json.decode('{"b":[{"b":[]},{}]}')))
  assert_false(v:check(json.decode('{"b":[{"b":{}}]}')))
  -- missing documents and anchors are schema errors naming the $ref
  local err = schema_err('{"properties":{"x":{"$ref":"missing.json"}}}')
  assert_match(err.message, "^#/properties/x/%$ref: cannot resolve %$ref \"missing.json\"")
  assert_eq(err.schema_path, "#/properties/x/$ref")
  assert_match(schema_err('{"$ref":"#/definitions/nope"}').message, "nothing at #/definitions/nope")
  assert_match(schema_err('{"$ref":"#nope"}').message, "no anchor")
  assert_match(schema_err({ properties = { x = { ["$ref"] = "r.json" } } }, { references = { ["r.json"] = "{bad" } }).message,
               "reference r.json is not JSON")
end)

test("a $ref cycle that never looks inside the value is a schema error; one that does is fine", function()
  assert_match(schema_err('{"$ref":"#"}').message, "%$ref cycle")
  assert_match(schema_err('{"definitions":{"a":{"allOf":[{"$ref":"#/definitions/b"}]},"b":{"anyOf":[{"$ref":"#/definitions/a"}]}},"$ref":"#/definitions/a"}').message,
               "%$ref cycle")
  local v = compile '{"anyOf":[{"type":"integer"},{"type":"array","items":{"$ref":"#"}}]}'
  assert_true(v:check(json.decode("[1,[2,[3,[]]]]")))
  assert_false(v:check(json.decode('[1,[2,["x"]]]')))
end)

test("draft 4: boolean exclusiveMaximum/Minimum, id; draft 6 has no if; $schema picks the draft", function()
  local v = compile({ maximum = 3, exclusiveMaximum = true, minimum = 1, exclusiveMinimum = false }, { draft = 4 })
  assert_false(v:check(3))
  assert_true(v:check(2.9))
  assert_true(v:check(1))
  assert_eq(invalid(v, 3).keyword, "exclusiveMaximum")
  v = compile { ["$schema"] = "http://json-schema.org/draft-04/schema#", maximum = 3, exclusiveMaximum = true }
  assert_eq(v.draft, 4)
  assert_false(v:check(3))
  v = compile { ["$schema"] = "http://json-schema.org/draft-04/schema#", id = "http://e.test/s.json",
                definitions = { a = { id = "#a", type = "string" } }, items = { ["$ref"] = "#a" } }
  assert_false(v:check({ 1 }))
  assert_true(compile({ ["if"] = { type = "string" }, ["then"] = { minLength = 9 } }, { draft = 6 }):check("x"))
  assert_false(compile({ ["if"] = { type = "string" }, ["then"] = { minLength = 9 } }):check("x"))
  assert_eq(compile({ ["$schema"] = "https://json-schema.org/draft/2020-12/schema" }).draft, 2020)
  assert_error(select(2, js.compile { ["$schema"] = "http://json-schema.org/draft-03/schema#" }), "KLUA_SCHEMA")
end)

test("2019-09 and 2020-12: $defs, $anchor, dependentRequired/Schemas, min/maxContains, prefixItems", function()
  local v = compile({ ["$defs"] = { n = { ["$anchor"] = "num", type = "integer" } },
                      dependentRequired = { a = { "b" } }, dependentSchemas = { b = { required = { "c" } } },
                      properties = { a = { ["$ref"] = "#num" } } }, { draft = "2019-09" })
  assert_true(v:check({ a = 1, b = 1, c = 1 }))
  assert_false(v:check({ a = 1 }))
  assert_false(v:check({ b = 1 }))
  assert_false(v:check({ a = "x", b = 1, c = 1 }))
  v = compile({ contains = { type = "integer" }, minContains = 2, maxContains = 2 }, { draft = "2019-09" })
  assert_true(v:check({ 1, "a", 2 }))
  assert_eq(invalid(v, { 1, "a" }).keyword, "minContains")
  assert_eq(invalid(v, { 1, 2, 3 }).keyword, "maxContains")
  v = compile({ prefixItems = { { type = "integer" }, { type = "string" } }, items = false }, { draft = "2020-12" })
  assert_true(v:check({ 1, "a" }))
  assert_false(v:check({ 1, "a", 3 }))
  assert_eq(invalid(v, { "x" }).path, "$[0]")
  for _, kw in ipairs({ "$recursiveRef", "$dynamicRef", "unevaluatedProperties", "unevaluatedItems" }) do
    assert_match(schema_err({ [kw] = kw:find("Ref") and "#" or false }, { draft = "2020-12" }).message, "not supported")
  end
end)

test("bad schemas: compile returns nil, KLUA_SCHEMA naming the schema path", function()
  assert_eq(schema_err('{"type": "strin"}').message, '#/type: unknown type "strin"')
  assert_eq(schema_err('{"properties": {"a": {"minimum": "1"}}}').message,
            '#/properties/a/minimum: minimum must be a number, got "1"')
  assert_eq(schema_err('{"items": {"maxItems": -1}}').message, "#/items/maxItems: maxItems must be a non-negative integer, got -1")
  assert_eq(schema_err('{"required": "a"}').message, "#/required: required must be an array of strings")
  assert_eq(schema_err('{"allOf": []}').message, "#/allOf: allOf must be a non-empty array of schemas")
  assert_eq(schema_err('{"properties": {"a": 3}}').message, "#/properties/a: a schema must be an object or a boolean, got 3")
  assert_eq(schema_err('{"multipleOf": 0}').message, "#/multipleOf: multipleOf must be greater than 0")
  assert_match(schema_err('{"pattern": "(a"}').message, "^#/pattern: pattern: missing %)")
  assert_match(schema_err('{"a":').message, "^schema is not JSON")
  assert_match(schema_err({ patternProperties = { ["(?=x)"] = {} } }).message, "^#/patternProperties/%(%?=x%): .*lookahead")
end)

test("programmer errors raise KLUA_INVALID_ARGUMENT", function()
  assert_raises(function() js.compile(42) end, "bad argument #1 to 'klua.json_schema.compile'")
  assert_raises(function() js.compile({}, { nope = 1 }) end, "unknown option nope")
  assert_raises(function() js.compile({}, { draft = 5 }) end, "draft must be")
  assert_raises(function() js.compile({}, "x") end, "opts must be a table")
end)

test("the regex subset: what ECMA-262 patterns match, and what is refused", function()
  local re = require("klua.json_schema.regex")
  local function m(p, s)
    local f, err = re.compile(p)
    assert(f, err)
    return f(s)
  end
  assert_true(m("^[a-z]+(-[a-z]+)*$", "abc-def"))
  assert_false(m("^[a-z]+(-[a-z]+)*$", "abc-"))
  assert_true(m("(?:foo|bar)baz", "xbarbaz"))
  assert_false(m("^(?:foo|bar)baz$", "xbarbaz"))
  assert_true(m("^\\d{3}-\\d{4}$", "555-1234"))
  assert_false(m("^\\d{3}-\\d{4}$", "55-1234"))
  assert_true(m("^a{2,3}$", "aaa"))
  assert_false(m("^a{2,3}$", "aaaa"))
  assert_true(m("^.$", "日"))         -- one character, three bytes
  assert_false(m("^..$", "日"))
  assert_true(m("^[^a]$", "é"))
  assert_true(m("^[à-ÿ]+$", "éè"))
  assert_false(m("a.c", "a\nc"))    -- . does not match a line terminator
  assert_true(m("\\bfoo\\b", "a foo b"))
  assert_false(m("\\bfoo\\b", "afoob"))
  assert_true(m("^(a|ab)(c|bcd)(d*)$", "abcd"))
  assert_true(m("^x*?y$", "xxy"))
  assert_true(m("a{,2}", "a{,2}"))  -- not a quantifier: literal braces, as ECMA's Annex B reads them
  assert_true(m("^\\u00e9\\x41$", "éA"))
  assert_true(m("^\\s+$", " \t\u{a0}"))
  assert_true(m("^[\\w.-]+@[\\w-]+\\.com$", "j.doe@ex-ample.com"))
  assert_true(m("", "anything"))
  -- "." and negated classes run as a Lua pattern on ASCII text and on the VM otherwise: one answer
  for _, c in ipairs({ { "^.{2}$", "ab", true }, { "^.{2}$", "日本", true }, { "^.{2}$", "日", false },
                       { "^[^a]\\S$", "bc", true }, { "^[^a]\\S$", "éc", true }, { "^[^a]\\S$", "é ", false },
                       { "^\\W+$", "-+", true }, { "^\\W+$", "é-", true }, { "^\\W+$", "a-", false },
                       { "a.c", "a\rc", false }, { "a.c", "a\u{2028}c", false }, { "a.c", "aéc", true } }) do
    assert_eq(m(c[1], c[2]), c[3], c[1] .. " on " .. c[2])
  end
  assert_true(m("^(?<year>\\d{4})-\\d\\d$", "2024-05"))
  for _, p in ipairs({ "(?=a)", "(?!a)", "(?<=a)b", "(?<!a)b", "(a)\\1", "\\p{L}", "\\k<x>", "\\q", "a**", "(a",
                       "a)", "[a", "[z-a]", "*a", "a{3,2}" }) do
    local f, err = re.compile(p)
    assert_nil(f, p .. " should be refused")
    assert_true(type(err) == "string" and #err > 0)
  end
end)

test("format is an annotation unless formats = true", function()
  local s = { type = "object", properties = {
    when = { format = "date-time" }, day = { format = "date" }, at = { format = "time" },
    mail = { format = "email" }, ip4 = { format = "ipv4" }, ip6 = { format = "ipv6" },
    uri = { format = "uri" }, id = { format = "uuid" }, other = { format = "unknown-format" } } }
  local bad = { when = "2024-02-30T10:00:00Z", day = "2023-02-29", at = "25:00:00Z", mail = "no-at", ip4 = "256.1.1.1",
                ip6 = "1::2::3", uri = "not a uri", id = "1234", other = "x" }
  assert_true(compile(s):check(bad))
  local v = compile(s, { formats = true })
  for k, x in pairs(bad) do
    if k ~= "other" then
      local err = invalid(v, { [k] = x })
      assert_eq(err.keyword, "format")
      assert_eq(err.path, "$." .. k)
    end
  end
  assert_true(v:check({ when = "2024-02-29T23:59:60Z", day = "2024-02-29", at = "10:00:00.5+02:00",
                        mail = "a.b@example.com", ip4 = "10.0.0.1", ip6 = "::ffff:10.0.0.1", uri = "https://x.test/a?b#c",
                        id = "123e4567-e89b-12d3-a456-426614174000", other = "x" }))
  assert_eq(invalid(v, { ip6 = "fe80::1::" }).message, '$.ip6: "fe80::1::" is not a valid ipv6')
end)

test("large schemas: 40 properties and 60 keywords (the generated code splits under Lua's 60 upvalues)", function()
  local props, value = {}, {}
  for i = 1, 40 do
    props["p" .. i] = { type = "integer", minimum = i }
    value["p" .. i] = i
  end
  local v = compile { properties = props }
  assert_true(v:check(value))
  value.p37 = 36
  assert_eq(invalid(v, value).path, "$.p37")
  local names = {}
  for i = 1, 40 do names[i] = "p" .. i end
  v = compile { required = names }
  value.p37 = 37
  assert_true(v:check(value))
  value.p33 = nil
  assert_eq(invalid(v, value).message, '$: missing required property "p33"')
  local all = {}
  for i = 1, 60 do all[i] = { minimum = i } end
  v = compile { allOf = all }
  assert_true(v:check(60))
  assert_eq(invalid(v, 59).schema_path, "#/allOf/59/minimum")
end)

test("patterns run in time linear in the text: no backtracking blow-up, no recursion per repetition", function()
  local v = compile { pattern = "^(a|aa)+$", patternProperties = { ["^(a|aa)+$"] = { type = "null" } } }
  local long = string.rep("a", 5000) .. "b"
  assert_eq(invalid(v, long).keyword, "pattern")
  assert_true(v:check(string.rep("a", 5000)))
  assert_true(v:check({ [long] = 1 }))
  assert_eq(invalid(v, { [string.rep("a", 5000)] = 1 }).keyword, "type")
  assert_false(v:check("aab"))
  local dot = compile { pattern = "^.*x$" }
  assert_true(dot:check(string.rep("é", 50000) .. "x"))
  assert_false(dot:check(string.rep("é", 50000)))
  assert_true(compile { pattern = "^[a-c]{2,}?d" }:check(string.rep("abc", 30000) .. "d"))
  local groups = compile { pattern = "^(ab|cd)+$" }
  assert_true(groups:check(string.rep("abcd", 50000)))
  assert_false(groups:check(string.rep("abcd", 50000) .. "a"))
  assert_true(compile { pattern = "(x+x+)+y" }:check(string.rep("x", 3000) .. "y"))
  assert_false(compile { pattern = "(x+x+)+y" }:check(string.rep("x", 3000)))
  assert_match(schema_err({ pattern = "((a{1000}){1000})" }).message, "pattern too large")
end)

test("arrays and objects told apart; additionalProperties with number aliases", function()
  -- sequences with and without other keys
  local arr = compile { type = "array" }
  assert_true(arr:validate({ 1, 2, 3 }))
  assert_eq(invalid(arr, { 1, 2, x = 3 }).keyword, "type")
  assert_eq(invalid(arr, { 1, 2, [4] = 4 }).keyword, "type")
  assert_eq(invalid(arr, { 1, 2, [2.5] = 4 }).keyword, "type")
  assert_true(compile { type = "object", minProperties = 3, maxProperties = 3 }:validate({ 1, x = 2, [3.5] = 3 }))
  -- additionalProperties: declared properties matched under their names and number aliases
  local closed = compile [[{"properties":{"1":{"type":"integer"},"1.5":{},"a":{}},"additionalProperties":false}]]
  for _ = 1, 100 do
    assert_true(closed:validate({ [1] = 1, ["1"] = 2, a = 3 }))
    assert_true(closed:validate({ [1.5] = 1, a = 3 }))
    assert_eq(invalid(closed, { [1] = 1, b = 3 }).path, "$.b")
    assert_eq(invalid(closed, { [2] = 1, a = 3 }).keyword, "additionalProperties")
    assert_eq(invalid(closed, { [1] = "x", a = 1 }).keyword, "type")
  end
end)
