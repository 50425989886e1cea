-- tests/integration/helpers/proc.lua: start klua scripts as separate processes from a test.
--   local proc = dofile("tests/integration/helpers/proc.lua")
--   local h = proc.spawn(dir, "w1", "tests/integration/helpers/group_worker.lua", { "a", "b" })
--   local r = proc.spawn_klua(dir, "r1", { "replay", "src", "dst", "--group", "g" })
--   h:pid(); h:kill(); local rc = h:wait(60000); h:read(); h:stderr()
-- The binary is $KLUA_BIN, else ./build/klua (tests run from the repo root). Processes start in
-- the background (os.execute returns at once); waiting polls a file with klua.sleep, so the
-- test's loop keeps running. Exit status is the shell's: 137 after SIGKILL.
local M = {}

M.bin = os.getenv("KLUA_BIN") or "./build/klua"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = q

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.slurp = slurp

-- A fresh directory for a test's files, named after an os.tmpname() file: under `klua test` that
-- is in the run's scratch directory, which goes when the run ends even if the test failed before
-- its remove_dir (a mktemp -d in /tmp stayed behind then).
local made = {}
function M.tmpdir(prefix)
  local base = os.tmpname()
  local d = base .. "." .. (prefix or "klua-it")
  local rc = os.execute("mkdir -m 700 " .. q(d))
  os.remove(base)
  assert(rc == 0 or rc == true, "mkdir " .. d .. " failed")
  made[d] = true
  return d
end

function M.remove_dir(dir)
  if made[dir] then
    os.execute("rm -rf " .. q(dir))
    made[dir] = nil
  end
end

local Proc = {}
Proc.__index = Proc

-- Runs `klua args...` (any command: `replay SRC DST ...`) in the background with stdout and
-- stderr in dir/name.out|.err.
function M.spawn_klua(dir, name, args)
  local h = setmetatable({ name = name, out = dir .. "/" .. name .. ".out", err = dir .. "/" .. name .. ".err",
                           pidf = dir .. "/" .. name .. ".pid", rcf = dir .. "/" .. name .. ".rc" }, Proc)
  local argv = {}
  for i, a in ipairs(args or {}) do argv[i] = q(a) end
  -- `cmd &` in the subshell forks and execs klua, so $! is klua's own pid; `wait` gives its status.
  local cmd = string.format("( %s %s >%s 2>%s </dev/null & echo $! >%s.tmp; mv %s.tmp %s; wait $!; echo $? >%s.tmp; mv %s.tmp %s ) >/dev/null 2>&1 </dev/null &",
    q(M.bin), table.concat(argv, " "), q(h.out), q(h.err), q(h.pidf), q(h.pidf), q(h.pidf),
    q(h.rcf), q(h.rcf), q(h.rcf))
  local st = os.execute(cmd)
  assert(st == 0 or st == true, "could not start " .. name .. ": " .. tostring(st))
  return h
end

-- Runs `klua run script args...` the same way.
function M.spawn(dir, name, script, args)
  local argv = { "run", script }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return M.spawn_klua(dir, name, argv)
end

function Proc:pid(timeout_ms)
  local deadline = klua.now() + (timeout_ms or 10000)
  while true do
    local s = slurp(self.pidf)
    if s and s:match("%d+") then return tonumber(s:match("%d+")) end
    if klua.now() > deadline then error(self.name .. ": no pid after " .. tostring(timeout_ms or 10000) .. " ms") end
    klua.sleep(50)
  end
end

-- The exit status, or nil while it runs.
function Proc:status()
  local s = slurp(self.rcf)
  return s and tonumber(s:match("%d+"))
end

-- Waits for the exit status (nil on timeout).
function Proc:wait(timeout_ms)
  local deadline = klua.now() + (timeout_ms or 60000)
  while klua.now() < deadline do
    local rc = self:status()
    if rc then return rc end
    klua.sleep(100)
  end
  return nil
end

function Proc:kill(sig)
  local pid = self:pid()
  return os.execute("kill -" .. (sig or "9") .. " " .. pid .. " 2>/dev/null")
end

-- Kills the process if it still runs (cleanup after a failed test).
function Proc:ensure_dead()
  if self:status() == nil and slurp(self.pidf) then self:kill(9) end
end

function Proc:read() return slurp(self.out) or "" end
function Proc:stderr() return slurp(self.err) or "" end

function Proc:lines()
  local out = {}
  for line in self:read():gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

-- A one-line summary for assertion messages.
function Proc:describe()
  local e = self:stderr()
  return string.format("%s (status %s): stderr: %s", self.name, tostring(self:status()), #e > 0 and e:sub(-1500) or "(empty)")
end

return M
