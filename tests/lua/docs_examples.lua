-- Runs the examples of the reference (docs/*.md, as bundled into the binary and parsed by
-- klua.help) as tests: one test per example, named "docs/PAGE.md:LINE ENTRY".
--   dofile("tests/lua/docs_examples.lua")(test, function(kind) return wanted end)
-- Kinds (the code block's info string, see docs/index.md): "lua" runs in a task of this process
-- with its own globals (print silenced), "lua process [exit=N]" as a script of its own, "sh" with
-- bash in an empty directory (`klua` is $KLUA_BIN); "lua broker" and "sh broker" likewise, for the
-- broker suite; "lua registry" with the test schema registry configured (KLUA_SCHEMA_REGISTRY, the
-- registry suite: tests/registry/docs_examples_test.lua); "lua norun" never.
local help = require("klua.help")
local kit = klua.testkit

local function bin()
  local b = os.getenv("KLUA_BIN")
  assert(b and b ~= "", "KLUA_BIN must name the klua binary (ctest sets it)")
  return b
end

-- An empty scratch directory for one example, removed afterwards.
local function with_scratch(fn)
  local base = os.tmpname()  -- a unique name; the directory takes its place
  os.remove(base)
  local dir = base .. ".docs"
  os.execute("mkdir -p " .. kit.quote(dir))
  local ok, err = pcall(fn, dir)
  os.execute("rm -rf " .. kit.quote(dir))
  if not ok then error(err, 0) end
end

local function parse_kind(kind)
  local words = {}
  for w in kind:gmatch("%S+") do words[#words + 1] = w end
  local k = { lang = words[1], broker = false, registry = false, process = false, norun = false, exit = 0 }
  for i = 2, #words do
    local w = words[i]
    if w == "broker" then k.broker = true
    elseif w == "registry" then k.registry = true
    elseif w == "process" then k.process = true
    elseif w == "norun" then k.norun = true
    elseif w:match("^exit=%d+$") then k.exit = tonumber(w:sub(6))
    else error("unknown example kind word '" .. w .. "' in '" .. kind .. "'") end
  end
  return k
end

local function run_in_task(code, chunkname)
  local printed = {}
  local env = setmetatable({ print = function(...) printed[#printed + 1] = select("#", ...) end },
                           { __index = _G })
  local fn, err = loadstring(code, chunkname)
  if not fn then error(err, 0) end
  setfenv(fn, env)
  fn()
end

local function run_process(code, k, where)
  with_scratch(function(dir)
    local file = dir .. "/example.lua"
    local f = assert(io.open(file, "w"))
    f:write(code, "\n")
    f:close()
    local out, status = kit.sh("cd " .. kit.quote(dir) .. " && " .. kit.quote(bin()) .. " run example.lua 2>&1")
    if status ~= k.exit then
      error(string.format("%s: exit %s, expected %d; output:\n%s", where, tostring(status), k.exit, out), 0)
    end
  end)
end

local function run_sh(code, k, where)
  with_scratch(function(dir)
    local script = "set -e\nklua() { \"$KLUA_BIN\" \"$@\"; }\ncd " .. kit.quote(dir) .. "\n" .. code .. "\n"
    local file = dir .. "/example.sh"
    local f = assert(io.open(file, "w"))
    f:write(script)
    f:close()
    local out, status = kit.sh("bash " .. kit.quote(file) .. " 2>&1")
    if status ~= k.exit then
      error(string.format("%s: exit %s, expected %d; output:\n%s", where, tostring(status), k.exit, out), 0)
    end
  end)
end

-- Every example of the docs: { page=, line=, entry=, kind=, parsed=, code= }.
local function examples()
  local out = {}
  for _, page in ipairs(help.pages()) do
    for _, ex in ipairs(page.examples) do
      out[#out + 1] = { page = page.name, line = ex.line, entry = ex.entry, kind = ex.kind,
                        parsed = parse_kind(ex.kind), code = ex.code }
    end
  end
  return out
end

-- Declares one test per example that want(parsed_kind) accepts.
return function(test, want)
  local n = 0
  for _, ex in ipairs(examples()) do
    local k = ex.parsed
    if not k.norun and want(k) then
      n = n + 1
      local where = string.format("docs/%s.md:%d", ex.page, ex.line)
      test(where .. " " .. (ex.entry or "(page)"), function()
        if k.lang == "sh" then
          run_sh(ex.code, k, where)
        elseif k.process then
          run_process(ex.code, k, where)
        else
          run_in_task(ex.code, "@" .. where)
        end
      end, { timeout_ms = 60000 })
    end
  end
  return n, examples
end
