-- The examples of the reference (docs/*.md) marked `broker`: they need the real broker (admin
-- calls the embedded cluster does not serve, exactly-once, timestamps). The others run on the
-- embedded cluster in tests/lua/docs_test.lua.
local n = dofile("tests/lua/docs_examples.lua")(test, function(k) return k.broker end)
test("the docs have broker examples to run", function()
  assert_true(n >= 15, n .. " broker examples")
end)
