-- klua test [--filter PATTERN] [--tap] [--junit FILE] [--timeout MS] PATH...
--
-- Runs test files (a directory means its *_test.lua files, sorted). A test file calls, as globals:
--   test(name, fn [, {timeout_ms = 30000}])     a test; fn runs as its own task and may wait
--   describe(name, fn)                           a group; its tests' full names are "group name"
--   it(name, fn [, opts])                        the same as test (busted's name)
--   pending(name)                                a test not written yet: reported as skipped
--   before_each(fn), after_each(fn)              around every test of the group (outer first in,
--                                                inner first out); after_each runs even when the
--                                                test failed or timed out
--   setup(fn), teardown(fn)                      once around the group's tests (the file's when at
--                                                top level); aliases before_all / after_all,
--                                                lazy_setup / lazy_teardown; setup is skipped
--                                                when the filter selects none of its tests
--   assert_eq (deep, with a diff of tables), assert_ne, assert_true, assert_false, assert_nil,
--   assert_not_nil, assert_match, assert_raises(fn, pattern), assert_error(err, name), and
--   luassert-style assert.same/equal/is_true/is_nil/has_error/... (klua.testkit.assertions).
-- Every test, hook and its hooks run in tasks with the test's timeout (a timed-out task is
-- cancelled). A failing setup fails the group's tests; a failing teardown counts as a failure.
-- --filter PATTERN  runs the tests whose full name matches the Lua pattern (repeatable: any of them)
-- --tap             TAP version 13 on stdout instead of the plain lines
-- --junit FILE      also writes JUnit XML (one testsuite per file) for CI systems
-- --timeout MS      the default per-test timeout (30000)
-- Output ends with "N passed, N failed" ("# N passed, N failed" in TAP). Exit 1 on any failure,
-- 2 on a usage error.
-- During the run os.tmpname() names a new empty file in the run's scratch directory
-- ($TMPDIR or /tmp, klua-test.XXXXXX), which is removed with everything in it when the run ends:
-- a test that fails before its own os.remove (or makes name .. ".suffix" files beside it) leaves
-- nothing behind in /tmp.
local A = require("klua.testkit.assertions")
local M = {}

local DEFAULT_TIMEOUT_MS = 30000
local CANCEL_GRACE_MS = 2000 -- how long a cancelled test may take to unwind before its after_each

local USAGE = [[
usage: klua test [--filter PATTERN] [--tap] [--junit FILE] [--timeout MS] PATH...
  PATH             a test file, or a directory (its *_test.lua files)
  --filter PATTERN run only tests whose full name ("describe name" + " " + "test name") matches
                   the Lua pattern (repeatable: tests matching any of them)
  --tap            TAP version 13 output
  --junit FILE     also write JUnit XML to FILE
  --timeout MS     default per-test timeout (30000)
]]

local function usage_error(msg)
  io.stderr:write("klua: " .. msg .. " (see klua test --help)\n")  -- one line, as every command's
  klua.exit(2)
end

local function parse_args(args)
  local o = { paths = {}, timeout_ms = DEFAULT_TIMEOUT_MS }
  local i = 1
  local function value(name, inline)
    if inline then return inline end
    i = i + 1
    if args[i] == nil then usage_error(name .. " needs a value") end
    return args[i]
  end
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^(%-%-[%w%-]+)=(.*)$")
    name = name or a
    if name == "-h" or name == "--help" then
      io.stdout:write(USAGE)
      klua.exit(0)
    elseif name == "--filter" then
      local f = value(name, inline)
      local ok, err = pcall(string.find, "", f)
      if not ok then usage_error("--filter: bad Lua pattern " .. string.format("%q", f) .. ": " .. tostring(err)) end
      o.filters = o.filters or {}
      o.filters[#o.filters + 1] = f
    elseif name == "--tap" then
      o.tap = true
    elseif name == "--junit" then
      o.junit = value(name, inline)
    elseif name == "--timeout" then
      local v = value(name, inline)
      o.timeout_ms = tonumber(v)
      if not o.timeout_ms or o.timeout_ms <= 0 then usage_error("--timeout must be a positive number of ms, got " .. v) end
    elseif a:sub(1, 1) == "-" and #a > 1 then
      usage_error("unknown option " .. a)
    else
      o.paths[#o.paths + 1] = a
    end
    i = i + 1
  end
  if #o.paths == 0 then usage_error("no PATH given") end
  return o
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

---------------------------------------------------------------------------------------------
-- Reporting: plain lines or TAP on stdout, results kept for JUnit.

local Report = {}
Report.__index = Report

local function new_report(o)
  return setmetatable({ o = o, n = 0, passed = 0, failed = 0, skipped = 0, files = {} }, Report)
end

function Report:file(path)
  local f = { path = path, cases = {}, started = klua.now(), timestamp = klua.time() }
  self.files[#self.files + 1] = f
  self.current = f
  return f
end

local function indent(text, pad) return (tostring(text):gsub("\n", "\n" .. pad)) end

-- status: "ok" | "fail" | "skip"
function Report:result(name, status, ms, message, kind)
  local f = self.current
  f.cases[#f.cases + 1] = { name = name, status = status, ms = ms or 0, message = message, kind = kind }
  self.n = self.n + 1
  if status == "ok" then self.passed = self.passed + 1
  elseif status == "fail" then self.failed = self.failed + 1
  else self.skipped = self.skipped + 1 end
  local label = f.path .. ": " .. name
  if self.o.tap then
    if status == "ok" then
      print(string.format("ok %d - %s", self.n, label))
    elseif status == "skip" then
      print(string.format("ok %d - %s # SKIP %s", self.n, label, message or "pending"))
    else
      print(string.format("not ok %d - %s", self.n, label))
      print("  ---")
      print("  kind: " .. (kind or "error"))
      print("  message: |")
      print("    " .. indent(message, "    "))
      print("  ...")
    end
  else
    if status == "ok" then
      print(string.format("ok   %s (%.0f ms)", label, ms or 0))
    elseif status == "skip" then
      print(string.format("skip %s (%s)", label, message or "pending"))
    else
      print(string.format("FAIL %s\n     %s", label, indent(message, "     ")))
    end
  end
end

function Report:finish()
  if self.o.tap then
    print("1.." .. self.n)
    if self.skipped > 0 then print("# " .. self.skipped .. " skipped") end
    print(string.format("# %d passed, %d failed", self.passed, self.failed))
  else
    if self.skipped > 0 then print(self.skipped .. " skipped") end
    print(string.format("%d passed, %d failed", self.passed, self.failed))
  end
end

local function xml_escape(s)
  s = tostring(s):gsub("[%z\1-\8\11\12\14-\31]", "?")
  return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;" }))
end

function Report:write_junit(path)
  local out = { '<?xml version="1.0" encoding="UTF-8"?>' }
  local total_ms = 0
  for _, f in ipairs(self.files) do total_ms = total_ms + (f.ms or 0) end
  out[#out + 1] = string.format('<testsuites name="klua test" tests="%d" failures="%d" errors="0" skipped="%d" time="%.3f">',
    self.n, self.failed, self.skipped, total_ms / 1000)
  for _, f in ipairs(self.files) do
    local failures, skipped = 0, 0
    for _, c in ipairs(f.cases) do
      if c.status == "fail" then failures = failures + 1 elseif c.status == "skip" then skipped = skipped + 1 end
    end
    out[#out + 1] = string.format('  <testsuite name="%s" tests="%d" failures="%d" errors="0" skipped="%d" time="%.3f" timestamp="%s">',
      xml_escape(f.path), #f.cases, failures, skipped, (f.ms or 0) / 1000, os.date("!%Y-%m-%dT%H:%M:%S", math.floor(f.timestamp / 1000)))
    for _, c in ipairs(f.cases) do
      local open = string.format('    <testcase classname="%s" name="%s" time="%.3f"', xml_escape(f.path), xml_escape(c.name), c.ms / 1000)
      if c.status == "ok" then
        out[#out + 1] = open .. "/>"
      elseif c.status == "skip" then
        out[#out + 1] = open .. ">"
        out[#out + 1] = string.format('      <skipped message="%s"/>', xml_escape(c.message or "pending"))
        out[#out + 1] = "    </testcase>"
      else
        local first = tostring(c.message or ""):match("^[^\n]*")
        out[#out + 1] = open .. ">"
        out[#out + 1] = string.format('      <failure message="%s" type="%s">%s</failure>', xml_escape(first),
          xml_escape(c.kind or "error"), xml_escape(c.message or ""))
        out[#out + 1] = "    </testcase>"
      end
    end
    out[#out + 1] = "  </testsuite>"
  end
  out[#out + 1] = "</testsuites>"
  local fh, err = io.open(path, "w")
  if not fh then return nil, err end
  fh:write(table.concat(out, "\n"), "\n")
  fh:close()
  return true
end

---------------------------------------------------------------------------------------------
-- Declaring tests: a tree of groups built while the file's chunk runs.

local function new_group(name, parent)
  return { name = name, parent = parent, children = {}, before_each = {}, after_each = {},
           setup = {}, teardown = {} }
end

local function full_name(group, name)
  local parts = { name }
  local g = group
  while g do
    if g.name then table.insert(parts, 1, g.name) end
    g = g.parent
  end
  return table.concat(parts, " ")
end

local function declare_env(root, default_timeout)
  local env = setmetatable({}, { __index = _G })
  A.install(env)
  local current = root
  local function check(what, name, fn)
    if type(name) ~= "string" then error(what .. "(name, fn): name must be a string, got " .. type(name), 3) end
    if type(fn) ~= "function" then error(what .. "(" .. string.format("%q", name) .. ", fn): fn must be a function, got " .. type(fn), 3) end
  end
  local function add_test(what, name, fn, opts)
    check(what, name, fn)
    if opts ~= nil and type(opts) ~= "table" then error(what .. ": opts must be a table like {timeout_ms = 5000}", 3) end
    local timeout = opts and opts.timeout_ms or default_timeout
    if type(timeout) ~= "number" or timeout <= 0 then error(what .. ": timeout_ms must be a positive number", 3) end
    current.children[#current.children + 1] = { kind = "test", name = name, full = full_name(current, name),
                                                fn = fn, timeout_ms = timeout, group = current }
  end
  env.test = function(name, fn, opts) add_test("test", name, fn, opts) end
  env.it = function(name, fn, opts) add_test("it", name, fn, opts) end
  env.pending = function(name)
    if type(name) ~= "string" then error("pending(name): name must be a string", 2) end
    current.children[#current.children + 1] = { kind = "test", name = name, full = full_name(current, name), pending = true }
  end
  env.describe = function(name, fn)
    check("describe", name, fn)
    local g = new_group(name, current)
    current.children[#current.children + 1] = { kind = "group", group = g }
    local saved = current
    current = g
    local ok, err = pcall(fn)
    current = saved
    if not ok then error(err, 0) end
  end
  local function hook(list)
    return function(fn)
      if type(fn) ~= "function" then error("expected a function", 2) end
      table.insert(current[list], fn)
    end
  end
  env.before_each, env.after_each = hook("before_each"), hook("after_each")
  env.setup, env.teardown = hook("setup"), hook("teardown")
  env.before_all, env.after_all = env.setup, env.teardown
  env.lazy_setup, env.lazy_teardown = env.setup, env.teardown
  env.strict_setup, env.strict_teardown = env.setup, env.teardown
  return env
end

---------------------------------------------------------------------------------------------
-- Running

local function message_of(err)
  local msg = tostring(err)
  if type(err) == "table" and err.traceback then msg = msg .. "\n" .. err.traceback end
  return msg
end

-- Runs fns one after another in one task, within timeout_ms. Returns true, or false, message, kind
-- ("timeout" | "error").
local function run_in_task(fns, timeout_ms)
  local task = klua.spawn(function()
    for _, fn in ipairs(fns) do
      local ok, err = pcall(fn)
      if not ok then return false, err end
    end
    return true
  end)
  local ok, err = task:join({ timeout_ms = timeout_ms })
  local status = task:status()
  if status == "done" then
    if ok then return true end
    return false, message_of(err), "error"
  end
  if status == "failed" then return false, message_of(err), "error" end
  task:cancel()
  task:join({ timeout_ms = CANCEL_GRACE_MS }) -- let it unwind (close what it opened) before the hooks run
  return false, string.format("timed out after %d ms", timeout_ms), "timeout"
end

local function selected(node, filters)
  if node.kind == "test" then
    if not filters then return true end
    for _, f in ipairs(filters) do
      if node.full:find(f) then return true end
    end
    return false
  end
  for _, child in ipairs(node.group.children) do
    if selected(child, filters) then return true end
  end
  return false
end

local function hooks_of(group, list, outer_first)
  local chain = {}
  local g = group
  while g do
    table.insert(chain, 1, g)
    g = g.parent
  end
  local out = {}
  if outer_first then
    for _, gg in ipairs(chain) do for _, h in ipairs(gg[list]) do out[#out + 1] = h end end
  else
    for i = #chain, 1, -1 do
      local hs = chain[i][list]
      for j = #hs, 1, -1 do out[#out + 1] = hs[j] end
    end
  end
  return out
end

local function run_test(t, report, setup_error)
  if t.pending then return report:result(t.full, "skip", 0, "pending") end
  if setup_error then return report:result(t.full, "fail", 0, "setup failed: " .. setup_error, "setup") end
  local started = klua.now()
  local fns = hooks_of(t.group, "before_each", true)
  fns[#fns + 1] = t.fn
  local ok, msg, kind = run_in_task(fns, t.timeout_ms)
  local after = hooks_of(t.group, "after_each", false)
  if #after > 0 then
    local aok, amsg = run_in_task(after, t.timeout_ms)
    if not aok then
      msg = (msg and (msg .. "\n") or "") .. "after_each: " .. amsg
      kind = kind or "after_each"
      ok = false
    end
  end
  report:result(t.full, ok and "ok" or "fail", klua.now() - started, msg, kind)
end

local function run_group(g, o, report, setup_error)
  local any = false
  for _, child in ipairs(g.children) do
    if selected(child, o.filters) then any = true; break end
  end
  if not any then return end
  if not setup_error and #g.setup > 0 then
    local ok, msg = run_in_task(g.setup, o.timeout_ms)
    if not ok then setup_error = (g.name and (g.name .. ": ") or "") .. msg end
  end
  for _, child in ipairs(g.children) do
    if selected(child, o.filters) then
      if child.kind == "test" then run_test(child, report, setup_error)
      else run_group(child.group, o, report, setup_error) end
    end
  end
  if #g.teardown > 0 then
    local ok, msg = run_in_task(g.teardown, o.timeout_ms)
    if not ok then report:result((g.name and (g.name .. " ") or "") .. "(teardown)", "fail", 0, msg, "teardown") end
  end
end

function M.run_file(path, o, report)
  local f = report:file(path)
  local root = new_group(nil, nil)
  local chunk, err = loadfile(path)
  if not chunk then
    report:result("(load)", "fail", 0, err, "load")
  else
    setfenv(chunk, declare_env(root, o.timeout_ms))
    local ok, lerr = pcall(chunk)
    if not ok then
      report:result("(load)", "fail", 0, message_of(lerr), "load")
    else
      run_group(root, o, report, nil)
    end
  end
  f.ms = klua.now() - f.started
end

-- The run's scratch directory (see the top): made at the first os.tmpname(), removed by main.
local scratch, scratch_n = nil, 0
local function scratch_tmpname()
  if not scratch then
    local ffi = require("ffi")
    pcall(ffi.cdef, "char *mkdtemp(char *template);")
    local template = (os.getenv("TMPDIR") or "/tmp") .. "/klua-test.XXXXXX"
    local buf = ffi.new("char[?]", #template + 1)
    ffi.copy(buf, template)
    if ffi.C.mkdtemp(buf) == nil then error("klua test: cannot make a scratch directory " .. template, 2) end
    scratch = ffi.string(buf)
  end
  scratch_n = scratch_n + 1
  local path = string.format("%s/lua_%d", scratch, scratch_n)
  local f = assert(io.open(path, "w"))   -- like os.tmpname: the file exists
  f:close()
  return path
end

local function remove_scratch()
  if scratch then
    os.execute("rm -rf '" .. scratch:gsub("'", "'\\''") .. "'")
    scratch = nil
  end
end

function M.main(...)
  io.stdout:setvbuf("line")
  local o = parse_args({ ... })
  local real_tmpname = os.tmpname
  os.tmpname = scratch_tmpname
  local main_ok, code = pcall(M.run_all, o)
  os.tmpname = real_tmpname
  remove_scratch()
  if not main_ok then error(code, 0) end
  klua.exit(code)
end

-- Runs the files; returns the exit status.

function M.run_all(o)
  local report = new_report(o)
  if o.tap then print("TAP version 13") end
  for _, p in ipairs(o.paths) do
    local files, err = list_files(p)
    if not files then
      report:file(p)
      report:result("(files)", "fail", 0, err, "load")
    else
      for _, f in ipairs(files) do M.run_file(f, o, report) end
    end
  end
  report:finish()
  if o.junit then
    local ok, err = report:write_junit(o.junit)
    if not ok then
      io.stderr:write("klua test: cannot write --junit " .. o.junit .. ": " .. tostring(err) .. "\n")
      return 1
    end
  end
  return report.failed == 0 and 0 or 1
end

return M
