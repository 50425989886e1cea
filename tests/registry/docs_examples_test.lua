-- The examples of the reference (docs/*.md) marked `registry`: they need the test schema registry
-- (KLUA_SCHEMA_REGISTRY, set by tests/registry.cmake's fixture). The others run in
-- tests/lua/docs_test.lua (embedded cluster) and tests/integration/docs_examples_test.lua (broker).
local n = dofile("tests/lua/docs_examples.lua")(test, function(k) return k.registry and not k.broker end)
test("the docs have registry examples to run", function()
  assert_true(n >= 10, n .. " registry examples")
end)
