-- klua.testkit on the embedded cluster: fresh names, topic creation, round trip, expect_message.
local kit = klua.testkit

test("fresh names differ and keep the prefix", function()
  local a, b = kit.fresh("orders"), kit.group("orders")
  assert_match(a, "^orders%-%x%x%x%x%x%x%x%x$")
  assert_ne(a, b)
  assert_raises(function() kit.fresh(42) end, "prefix must be a string")
end)

test("roundtrip reads back exactly the produced messages, in input order", function()
  local t = assert(kit.topic("rt", { partitions = 3 }))
  local msgs = {}
  for i = 1, 9 do msgs[i] = { key = "k" .. i, value = "\0v" .. i, headers = { { "n", tostring(i) } } } end
  local got = assert(kit.roundtrip(t, msgs))
  assert_eq(#got, 9)
  for i, m in ipairs(got) do
    assert_eq({ m.key, m.value, m:header("n") }, { "k" .. i, "\0v" .. i, tostring(i) })
  end
end)

describe("expect_message", function()
  local t
  setup(function()
    t = assert(kit.topic("em", { partitions = 2 }))
    assert(kit.produce(t, { "plain", { key = "user-7", value = "hello", headers = { ["x-id"] = "42" } } }))
  end)

  it("finds a message by predicate function", function()
    local m = assert(kit.expect_message(t, function(msg) return msg.value == "hello" end))
    assert_eq(m.key, "user-7")
  end)

  it("finds a message by a table of fields and headers", function()
    local m = assert(kit.expect_message(t, { key = "user-7", headers = { ["x-id"] = "42" } }))
    assert_eq(m.value, "hello")
  end)

  it("times out naming the topic and what it saw", function()
    -- 5 s: both partitions' messages must arrive first (the mock answers a fetch only after
    -- fetch.wait.max.ms, 500 ms); 1.5 s was too short under AddressSanitizer.
    local m, err = kit.expect_message(t, { value = "never" }, { timeout_ms = 5000 })
    assert_nil(m)
    assert_error(err, "_TIMED_OUT")
    assert_match(tostring(err), "no matching message in " .. t:gsub("%-", "%%-") .. " within 5000 ms %(2 other")
  end)
end)

test("read stops at the end offsets taken at start", function()
  local t = assert(kit.topic("rd", { partitions = 2 }))
  assert(kit.produce(t, { "a", "b", "c" }))
  local got = assert(kit.read(t))
  assert_eq(#got, 3)
  assert_eq(#assert(kit.read(t, { n = 2 })), 2)
end)

test("sh returns output and exit status", function()
  local out, st = kit.sh("printf 'a b'; exit 3")
  assert_eq({ out, st }, { "a b", 3 })
  assert_eq(kit.quote("it's"), "'it'\\''s'")
end)
