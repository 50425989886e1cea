-- Tests for klua.log (host/lua/log.lua, host/log.cpp). Run with: klua test tests/lua/log_test.lua
-- What the records look like on stderr is tests/log/log_test.py's (Python parses them); here the
-- API, its argument errors, and the cost of a record below the threshold.
local KLUA = os.getenv("KLUA_BIN") or "./build/klua"

local function raises(fn, pattern)
  local ok, err = pcall(fn)
  assert_true(not ok, "expected an error matching " .. pattern)
  assert_eq(err.name, "KLUA_INVALID_ARGUMENT")
  assert_match(tostring(err), pattern)
  assert_match(err.where, "log_test%.lua:%d+")  -- located at the call, not inside klua.log
end

test("the level: set_level, level, enabled; the format", function()
  local before = klua.log.level()
  assert_eq(before, "info")
  assert_eq(klua.log.format(), "text")
  klua.log.set_level("WARN")
  assert_eq(klua.log.level(), "warn")
  assert_true(klua.log.enabled("error") and klua.log.enabled("warn"))
  assert_true(not klua.log.enabled("info") and not klua.log.enabled("debug"))
  klua.log.set_level("warning")
  assert_eq(klua.log.level(), "warn")
  klua.log.set_level(before)
  assert_eq(klua.log.level(), "info")
end)

test("programmer errors name the argument", function()
  raises(function() klua.log.info(42) end, "bad argument #1 to 'klua%.log%.info' %(message must be a string, got number%)")
  raises(function() klua.log.error() end, "bad argument #1 to 'klua%.log%.error' %(message must be a string, got nil%)")
  raises(function() klua.log.warn("m", "f") end, "bad argument #2 to 'klua%.log%.warn' %(fields must be a table, got string%)")
  raises(function() klua.log.info("m", { [1] = "x" }) end, "bad argument #2 to 'klua%.log%.info' %(field names must be strings, got number%)")
  raises(function() klua.log.set_level("loud") end, "bad argument #1 to 'klua%.log%.set_level' %(level must be \"debug\", \"info\", \"warn\" or \"error\", got \"loud\"%)")
  raises(function() klua.log.set_level(nil) end, "got nil")
  raises(function() klua.log.enabled(3) end, "bad argument #1 to 'klua%.log%.enabled'")
  -- a non-string message is refused below the threshold too: the mistake shows at any level
  raises(function() klua.log.debug({}) end, "got table")
end)

test("a record below the threshold costs a few nanoseconds: no formatting, no C call", function()
  -- Fields that would raise if they were read (a table whose JSON encoding fails is tostring'ed;
  -- here the metatable makes reading any field an error): below the threshold nothing reads them.
  local trap = setmetatable({}, { __index = function() error("read") end })
  klua.log.debug("x", trap)
  local n, best = 1e6, math.huge
  local fields = { a = 1 }
  for _ = 1, 5 do
    local t0 = klua.now()
    for i = 1, n do klua.log.debug("message", fields) end
    best = math.min(best, (klua.now() - t0) * 1e6 / n)
  end
  -- best of five runs of 1e6 calls, JIT-compiled: a type check and a load (typically ~1 ns)
  assert_true(best < 20, string.format("%.1f ns a call", best))
end)

test("records reach stderr in the chosen format (a child klua, parsed by klua.json)", function()
  local r = assert(klua.process.run{ cmd = KLUA, args = { "--log-format", "json", "-e",
    'klua.log.warn("w", { n = 1, t = { 1, 2 } }); klua.log.set_level("error"); klua.log.warn("dropped")' } })
  assert_eq(r.status, 0)
  local lines = {}
  for line in r.stderr:gmatch("[^\n]+") do lines[#lines + 1] = assert(klua.json.decode(line)) end
  assert_eq(#lines, 1)
  assert_eq(lines[1].message, "w")
  assert_eq(lines[1].level, "warn")
  assert_eq(lines[1].fields, { n = 1, t = { 1, 2 } })
end)
