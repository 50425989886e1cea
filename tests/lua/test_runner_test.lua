-- `klua test` itself, run as a subprocess on tests/fixtures/runner/sample.lua (which fails on
-- purpose): exit codes, the closing line, hook order, --filter, TAP and JUnit output.
local BIN = os.getenv("KLUA_BIN") or "./build/klua"
local SAMPLE = "tests/fixtures/runner/sample.lua"

local q = klua.testkit.quote

-- A fresh path ending in suffix (os.tmpname creates its own name's file: remove it, or it stays in /tmp).
local function tmpfile(suffix)
  local base = os.tmpname()
  if not suffix then return base end
  os.remove(base)
  return base .. suffix
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs `klua test args...`; returns stdout, exit code, and the hook log.
local function klua_test(args)
  local log = tmpfile(".log")
  os.remove(log)
  local out_path = tmpfile(".out")
  local rc = os.execute(string.format("RUNNER_LOG=%s %s test %s >%s 2>&1", q(log), q(BIN), args, q(out_path)))
  if type(rc) == "number" and rc > 255 then rc = rc / 256 end -- os.execute gives the wait status in 5.1
  local out = slurp(out_path) or ""
  local logged = slurp(log) or ""
  os.remove(out_path); os.remove(log)
  return out, rc, logged
end

local function last_line(s) return s:match("([^\n]*)\n*$") end

test("a failing file exits 1 with the counts and readable failures", function()
  local out, rc, log = klua_test(q(SAMPLE))
  assert_eq(rc, 1, out)
  assert_eq(last_line(out), "2 passed, 4 failed")
  assert_match(out, "1 skipped")
  assert_match(out, "ok   " .. SAMPLE:gsub("%p", "%%%0") .. ": top%-level passes")
  assert_match(out, "FAIL [^\n]*outer inner compares tables\n[^\n]*sample%.lua:%d+: tables differ")
  assert_match(out, "%.list%[3%]: expected 4, got 3")
  assert_match(out, "FAIL [^\n]*outer inner times out\n%s*timed out after 300 ms")
  assert_match(out, "FAIL [^\n]*errors <&> raises\n[^\n]*boom")
  assert_match(out, "FAIL [^\n]*broken setup never runs\n%s*setup failed: broken setup: [^\n]*no database")
  assert_eq(log, table.concat({
    "file setup",
    "outer setup",
    "outer before", "outer passes", "outer after",
    "outer before", "inner before", "inner compares", "inner after", "outer after",
    "outer before", "inner before", "inner times out", "inner after", "outer after",
    "outer teardown",
    "file teardown", "" }, "\n"))
end)

test("--filter selects by full name and skips unselected setups", function()
  local out, rc, log = klua_test("--filter 'passes$' " .. q(SAMPLE))
  assert_eq(rc, 0, out)
  assert_eq(last_line(out), "2 passed, 0 failed")
  assert_eq(log, "file setup\nouter setup\nouter before\nouter passes\nouter after\nouter teardown\nfile teardown\n")
  out, rc = klua_test("--filter 'inner compares' " .. q(SAMPLE))
  assert_eq(rc, 1, out)
  assert_eq(last_line(out), "0 passed, 1 failed")
  out, rc = klua_test("--filter 'passes$' --filter=compares " .. q(SAMPLE)) -- repeated: any of them
  assert_eq(rc, 1, out)
  assert_eq(last_line(out), "2 passed, 1 failed")
end)

test("--tap writes TAP version 13 with a plan and diagnostics", function()
  local out, rc = klua_test("--tap " .. q(SAMPLE))
  assert_eq(rc, 1, out)
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  assert_eq(lines[1], "TAP version 13")
  assert_match(out, "\nok 1 %- [^\n]*: top%-level passes\n")
  assert_match(out, "\nnot ok 3 %- [^\n]*: outer inner compares tables\n  %-%-%-\n  kind: error\n  message: |\n    [^\n]*tables differ")
  assert_match(out, "\nnot ok 4 %- [^\n]*outer inner times out\n  %-%-%-\n  kind: timeout\n")
  assert_match(out, "\nok 6 %- [^\n]*errors <&> later # SKIP pending\n")
  local nots = select(2, out:gsub("\nnot ok ", ""))
  assert_eq(nots, 4)
  assert_match(out, "\n1%.%.7\n")
  assert_eq(lines[#lines], "# 2 passed, 4 failed")
  -- a TAP consumer agrees (Perl's prove, when installed)
  local _, has_prove = klua.testkit.sh("command -v prove >/dev/null")
  if has_prove == 0 then
    local tap = tmpfile(".tap")
    local f = assert(io.open(tap, "w"))
    f:write(out)
    f:close()
    local report = klua.testkit.sh("prove -e cat " .. q(tap) .. " 2>&1")
    os.remove(tap)
    assert_match(report, "Tests: 7 Failed: 4%)")
    assert_match(report, "Failed tests:%s+3%-5, 7")
  end
end)

test("--junit writes one testsuite with failures, skips and escaped names", function()
  local xml_path = tmpfile(".xml")
  local out, rc = klua_test("--junit " .. q(xml_path) .. " " .. q(SAMPLE))
  assert_eq(rc, 1, out)
  local xml = slurp(xml_path)
  assert_true(xml, "no JUnit file written")
  -- well-formed XML, as a CI system's parser reads it (when python3 is there to check)
  local _, has_python = klua.testkit.sh("command -v python3 >/dev/null")
  if has_python == 0 then
    local perr, prc = klua.testkit.sh("python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' " ..
      q(xml_path) .. " 2>&1")
    assert_eq(prc, 0, perr)
  end
  os.remove(xml_path)
  assert_match(xml, '^<%?xml version="1%.0" encoding="UTF%-8"%?>\n<testsuites name="klua test" tests="7" failures="4" errors="0" skipped="1"')
  assert_match(xml, '<testsuite name="' .. SAMPLE:gsub("%p", "%%%0") .. '" tests="7" failures="4" errors="0" skipped="1"')
  assert_match(xml, '<testcase classname="[^"]*" name="top%-level passes" time="[%d%.]+"/>')
  assert_match(xml, '<testcase [^>]*name="outer inner times out"[^>]*>\n%s*<failure message="timed out after 300 ms" type="timeout">')
  assert_match(xml, 'name="errors &lt;&amp;&gt; raises"')
  assert_match(xml, 'name="errors &lt;&amp;&gt; later"[^>]*>\n%s*<skipped message="pending"/>')
  local opened = select(2, xml:gsub("<testcase ", ""))
  assert_eq(opened, 7)
end)

test("usage errors exit 2; a path without tests is a failure", function()
  local out, rc = klua_test("--bogus " .. q(SAMPLE))
  assert_eq(rc, 2, out)
  assert_match(out, "unknown option %-%-bogus")
  out, rc = klua_test("--filter '[' " .. q(SAMPLE))
  assert_eq(rc, 2, out)
  assert_match(out, "bad Lua pattern")
  out, rc = klua_test("/nonexistent/dir")
  assert_eq(rc, 1, out)
  assert_match(out, "no test files at /nonexistent/dir")
  assert_eq(last_line(out), "0 passed, 1 failed")
end)

test("assert_eq shows a diff of nested tables", function()
  local err = assert_raises(function()
    assert_eq({ a = { b = 1, c = "x" }, list = { 1 } }, { a = { b = 2, c = "x" }, list = { 1, 2 }, z = true })
  end)
  assert_match(err, "tables differ")
  assert_match(err, "%.a%.b: expected 2, got 1")
  assert_match(err, "%.list%[2%]: missing %(expected 2%)")
  assert_match(err, "%.z: missing %(expected true%)")
  assert.same({ 1, 2 }, { 1, 2 })
  assert.are.equal(3, 3)
  assert.is_nil(nil)
  assert.has_error(function() error("x") end, "x")
  assert_raises(function() assert.are_not.same({ 1 }, { 1 }) end, "anything but")
  assert_raises(function() assert(false, "plain assert") end, "plain assert")
  assert_eq(select(2, pcall(assert, nil, { name = "E" })).name, "E")
end)

test("os.tmpname() names files in the run's scratch directory, removed with it when the run ends", function()
  -- A test that makes a temporary file (and a directory beside it) and fails before removing
  -- them: the run's end removes them anyway, so a failing suite leaves nothing in /tmp.
  local script = tmpfile("_test.lua")
  local record = tmpfile(".names")
  local f = assert(io.open(script, "w"))
  f:write(string.format([[
test("leaves its files behind and fails", function()
  local a = os.tmpname()
  local dir = a .. ".d"
  os.execute("mkdir " .. klua.testkit.quote(dir) .. " && touch " .. klua.testkit.quote(dir .. "/inside"))
  local out = assert(io.open(%q, "w"))
  out:write(a, "\n", dir, "\n", os.tmpname(), "\n")
  out:close()
  error("failed before cleaning up")
end)
]], record))
  f:close()
  local out, rc = klua_test(q(script))
  os.remove(script)
  assert_eq(rc, 1, out)
  assert_match(out, "failed before cleaning up")
  local names = {}
  for line in (slurp(record) or ""):gmatch("[^\n]+") do names[#names + 1] = line end
  os.remove(record)
  assert_eq(#names, 3)
  local scratch = names[1]:match("^(.*/klua%-test%.[%w]+)/lua_%d+$")
  assert_not_nil(scratch, "not in a scratch directory: " .. names[1])
  assert_true(names[3]:sub(1, #scratch + 1) == scratch .. "/" and names[3] ~= names[1], names[3])
  for _, path in ipairs({ names[1], names[2], names[2] .. "/inside", names[3], scratch }) do
    local _, status = klua.testkit.sh("test -e " .. q(path))
    assert_eq(status, 1, path .. " is still there")
  end
end)
