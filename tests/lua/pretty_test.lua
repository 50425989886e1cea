-- klua.pretty: stable order, aligned records, escaping, truncation, one-line and indented forms.
local pretty = require("klua.pretty")

test("scalars and top-level strings", function()
  assert_eq(pretty.format(42), "42")
  assert_eq(pretty.format(1.5), "1.5")
  assert_eq(pretty.format(2 ^ 60), "1152921504606846976")
  assert_eq(pretty.format(nil), "nil")
  assert_eq(pretty.format(true), "true")
  assert_eq(pretty.format("plain text\nsecond line"), "plain text\nsecond line")  -- printable: as is
  assert_eq(pretty.format("bin\0\255"), '"bin\\x00\\xFF"')
  assert_eq(pretty.format("é ok"), "é ok")  -- valid UTF-8 is printable
end)

test("quote escapes control bytes and invalid UTF-8, keeps valid UTF-8", function()
  assert_eq(pretty.quote('a"b\\c\n\t'), '"a\\"b\\\\c\\n\\t"')
  assert_eq(pretty.quote("\1\127"), '"\\x01\\x7F"')
  assert_eq(pretty.quote("\195\169\195"), '"é\\xC3"')   -- a truncated sequence is escaped
  assert_eq(pretty.quote("\237\160\128x"), '"\\xED\\xA0\\x80x"')  -- not a valid start: escaped bytes
  assert_raises(function() pretty.quote(1) end, "expected a string")
end)

test("tables: array part first, then keys sorted; one line when short", function()
  local t = { "one", "two", b = 2, a = 1, [10] = "ten", ["with space"] = true }
  assert_eq(pretty.format(t), '{ "one", "two", [10] = "ten", a = 1, b = 2, ["with space"] = true }')
  -- the same text whatever the insertion order
  local u = {}
  u["with space"] = true; u.b = 2; u[10] = "ten"; u.a = 1; u[1] = "one"; u[2] = "two"
  assert_eq(pretty.format(u), pretty.format(t))
  assert_eq(pretty.format({}), "{}")
end)

test("nested tables indent when they do not fit the width", function()
  local s = pretty.format({ config = { servers = string.rep("b", 60), mech = "PLAIN" }, n = 1 }, { width = 40 })
  assert_eq(s, table.concat({
    "{",
    "  config = {",
    '    mech = "PLAIN",',
    '    servers = "' .. string.rep("b", 60) .. '"',
    "  },",
    "  n = 1",
    "}" }, "\n"))
end)

test("a list of records prints as an aligned table with the usual columns first", function()
  local topics = { { name = "orders", partitions = 12, replication_factor = 3 },
                   { name = "a", partitions = 1, replication_factor = 1 } }
  assert_eq(pretty.format(topics), table.concat({
    "name    partitions  replication_factor",
    "orders          12                   3",
    "a                1                   1" }, "\n"))
  local msgs = { { topic = "t", partition = 0, offset = 7, key = "k", value = "\255", headers = { { "trace", "1" } } },
                 { topic = "t", partition = 1, offset = 8, value = "v" } }
  assert_eq(pretty.format(msgs), table.concat({
    "topic  partition  offset  key  value   headers",
    "t              0       7  k    \"\\xFF\"  trace=1",
    "t              1       8  -    v       -" }, "\n"))
end)

test("a nested list of records is aligned too; keywords are quoted as keys", function()
  local lag = { group = "g", lag = 4, partitions = {
    { topic = "t", partition = 0, committed = 1, low = 0, high = 2, ["end"] = 2, lag = 1 },
    { topic = "t", partition = 1, low = 0, high = 3, ["end"] = 3, lag = 3 } } }
  assert_eq(pretty.format(lag), table.concat({
    "{",
    '  group = "g",',
    "  lag = 4,",
    "  partitions = {",
    "    topic  partition  committed  low  high  end  lag",
    "    t              0          1    0     2    2    1",
    "    t              1          -    0     3    3    3",
    "  }",
    "}" }, "\n"))
  assert_eq(pretty.format({ ["end"] = 1, ["nil"] = 2 }), '{ ["end"] = 1, ["nil"] = 2 }')
end)

test("long lists are cut with a count", function()
  local list = {}
  for i = 1, 120 do list[i] = i end
  local s = pretty.format(list)
  assert_match(s, "%.%.%. %(70 more, 120 in all%)")
  assert_true(not s:find("51,", 1, true), "items after max_items are left out")
  local rows = {}
  for i = 1, 10 do rows[i] = { partition = i, lag = i * 2 } end
  local r = pretty.format(rows, { max_items = 3 })
  assert_eq(select(2, r:gsub("\n", "\n")), 4)  -- header, 3 rows, the count line
  assert_match(r, "%.%.%. %(7 more, 10 in all%)$")
end)

test("cycles, depth, long strings, error objects", function()
  local t = { name = "x" }
  t.self = t
  assert_match(pretty.format(t), "self = <cycle>")
  assert_match(pretty.format({ a = { b = { c = {} } } }, { max_depth = 2 }), "{%.%.%.}")
  assert_match(pretty.format({ s = string.rep("x", 300) }), '%.%.%.%(300 bytes%)')
  local err = klua.errors.new{ name = "KLUA_CANCELLED", message = "stop" }
  assert_match(pretty.format({ err }), "KLUA_CANCELLED")
  assert_raises(function() pretty.format(1, { colour = 1 }) end, "unknown option colour")
  assert_raises(function() pretty.format(1, { width = 0 }) end, "positive number")
end)
