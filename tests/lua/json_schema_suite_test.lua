-- The official JSON-Schema-Test-Suite (tests/fixtures/json-schema-test-suite: drafts 7 and 4 without
-- the optional tests, MIT licence) against klua.json_schema. Every case must agree with the suite,
-- except the ones listed in KNOWN below, each with the reason; a known case that starts passing
-- fails the test too, so the list stays exact. Run with: klua test tests/lua/json_schema_suite_test.lua
local js = klua.json_schema
local json = klua.json


-- "file: group description: test description" of the cases klua does not pass, and why.
local KNOWN = {
}

local suite = dofile("tests/json_schema/suite_fixture.lua")
local ROOT, read, list, remotes = suite.root, suite.read, suite.list, suite.remotes

local function run(draft)
  local passed, failed, known_seen = 0, {}, {}
  for _, file in ipairs(list("ls " .. ROOT .. "draft" .. draft .. " | grep '\\.json$'")) do
    local groups = assert(json.decode(read(ROOT .. "draft" .. draft .. "/" .. file)))
    for _, g in ipairs(groups) do
      local v, cerr = js.compile(g.schema, { draft = draft, references = remotes })
      for _, t in ipairs(g.tests) do
        local name = ("draft%d/%s: %s: %s"):format(draft, file, g.description, t.description)
        local got
        if v then
          local ok, err = v:validate(t.data)
          got = ok == true
          if not ok then assert(err and err.name == "KLUA_SERIALIZATION", name .. ": " .. tostring(err)) end
        else
          got = "compile error: " .. tostring(cerr)
        end
        if got == t.valid then
          if KNOWN[name] then known_seen[#known_seen + 1] = name .. " (listed as known, now passes)" end
          passed = passed + 1
        elseif KNOWN[name] then
          passed = passed
        else
          failed[#failed + 1] = name .. " -> expected " .. tostring(t.valid) .. ", got " .. tostring(got)
        end
      end
    end
  end
  return passed, failed, known_seen
end

for _, draft in ipairs({ 7, 4 }) do
  test("JSON-Schema-Test-Suite draft " .. draft, function()
    local passed, failed, stale = run(draft)
    print(("draft %d: %d passed, %d failed (+ known: see KNOWN)"):format(draft, passed, #failed))
    for _, f in ipairs(failed) do print("  FAIL " .. f) end
    for _, f in ipairs(stale) do print("  STALE " .. f) end
    assert_eq(#failed, 0, "unexpected failures")
    assert_eq(#stale, 0, "KNOWN entries that now pass")
  end)
end
