-- The official JSON Schema test suite copied under tests/fixtures, as the suite test
-- (tests/lua/json_schema_suite_test.lua) and the JIT stress (tests/json_schema/jit_stress.lua) read it:
-- dofile("tests/json_schema/suite_fixture.lua") -> { root =, read = fn(path), list = fn(cmd), remotes = }.
-- Paths are relative to the source tree, where both run.
local M = { root = "tests/fixtures/json-schema-test-suite/" }

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function M.list(cmd)
  local out = {}
  local p = assert(io.popen(cmd))
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- The suite's remotes, served at http://localhost:1234/ by its convention.
M.remotes = {}
for _, path in ipairs(M.list("cd " .. M.root .. "remotes && find . -name '*.json' | sort")) do
  M.remotes["http://localhost:1234/" .. path:sub(3)] = M.read(M.root .. "remotes/" .. path:sub(3))
end

return M
