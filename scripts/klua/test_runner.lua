-- klua test PATH...: a minimal test runner.
--
-- A test file calls, as globals:
--   test(name, fn [, {timeout_ms = 30000}])   fn runs as its own task and may wait (produce, poll, sleep)
--   assert_eq(actual, expected [, msg])       deep equality for tables
--   assert_true(v [, msg]), assert_match(str, pattern [, msg])
--   assert_raises(fn, pattern)                fn must raise an error whose tostring matches pattern
--   assert_error(err, name)                   err is a klua error with that name
-- Directories are searched for *_test.lua. Output: one line per test, then "N passed, N failed".
-- Exit code 1 when any test failed.
local M = {}

local DEFAULT_TIMEOUT_MS = 30000

local function show(v, depth)
  depth = depth or 0
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" or depth > 3 then return tostring(v) end
  local mt = getmetatable(v)
  if mt and mt.__tostring then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = (type(k) == "string" and k or "[" .. tostring(k) .. "]") .. "=" .. show(v[k], depth + 1)
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function deep_eq(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function fail(msg, level)
  error(msg, (level or 2) + 1)
end

local function helpers(register)
  local env = setmetatable({}, { __index = _G })
  env.test = register
  env.assert_eq = function(actual, expected, msg)
    if not deep_eq(actual, expected) then
      fail(string.format("%sexpected %s, got %s", msg and (msg .. ": ") or "", show(expected), show(actual)))
    end
  end
  env.assert_true = function(v, msg)
    if not v then fail(msg or ("expected a true value, got " .. show(v))) end
    return v
  end
  env.assert_match = function(s, pattern, msg)
    if type(s) ~= "string" or not s:find(pattern) then
      fail(string.format("%sexpected %s to match %q", msg and (msg .. ": ") or "", show(s), pattern))
    end
  end
  env.assert_raises = function(fn, pattern)
    local ok, err = pcall(fn)
    if ok then fail("expected an error matching " .. string.format("%q", pattern or ".") .. ", but none was raised") end
    local text = tostring(err)
    if pattern and not text:find(pattern) then
      fail(string.format("expected an error matching %q, got %s", pattern, text))
    end
    return err
  end
  env.assert_error = function(err, name)
    if type(err) ~= "table" or err.name ~= name then
      fail(string.format("expected a %s error, got %s", name, show(err)))
    end
    return err
  end
  return env
end

local function list_files(path)
  local q = "'" .. path:gsub("'", "'\\''") .. "'"
  local p = io.popen("if [ -d " .. q .. " ]; then find " .. q .. " -name '*_test.lua' | sort; " ..
    "elif [ -f " .. q .. " ]; then printf '%s\\n' " .. q .. "; fi")
  local out = p:read("*a")
  p:close()
  local files = {}
  for line in out:gmatch("[^\n]+") do files[#files + 1] = line end
  if #files == 0 then return nil, "no test files at " .. path end
  return files
end

function M.run_file(path, stats)
  local tests = {}
  local env = helpers(function(name, fn, opts)
    assert(type(name) == "string", "test(name, fn): name must be a string")
    assert(type(fn) == "function", "test(name, fn): fn must be a function")
    tests[#tests + 1] = { name = name, fn = fn, timeout_ms = opts and opts.timeout_ms or DEFAULT_TIMEOUT_MS }
  end)
  local chunk, err = loadfile(path)
  if not chunk then
    print("FAIL " .. path .. ": " .. err)
    stats.failed = stats.failed + 1
    return
  end
  setfenv(chunk, env)
  local ok, lerr = pcall(chunk)
  if not ok then
    print("FAIL " .. path .. ": " .. tostring(lerr))
    stats.failed = stats.failed + 1
    return
  end
  for _, t in ipairs(tests) do
    local started = klua.now()
    local task = klua.spawn(t.fn)
    local r1, r2 = task:join(t.timeout_ms)
    local status = task:status()
    local elapsed = klua.now() - started
    if status == "done" then
      stats.passed = stats.passed + 1
      print(string.format("ok   %s: %s (%.0f ms)", path, t.name, elapsed))
    else
      if status ~= "failed" then
        task:cancel()
        r2 = string.format("timed out after %d ms", t.timeout_ms)
      end
      stats.failed = stats.failed + 1
      local msg = tostring(r2)
      if type(r2) == "table" and r2.traceback then msg = msg .. "\n" .. r2.traceback end
      print(string.format("FAIL %s: %s\n     %s", path, t.name, (msg:gsub("\n", "\n     "))))
    end
  end
end

function M.main(...)
  io.stdout:setvbuf("line")
  local paths = { ... }
  local stats = { passed = 0, failed = 0 }
  for _, p in ipairs(paths) do
    local files, err = list_files(p)
    if not files then
      print("FAIL " .. err)
      stats.failed = stats.failed + 1
    else
      for _, f in ipairs(files) do M.run_file(f, stats) end
    end
  end
  print(string.format("%d passed, %d failed", stats.passed, stats.failed))
  klua.exit(stats.failed == 0 and 0 or 1)
end

return M
