-- klua repl: the interactive prompt. On a terminal, lines are edited with libedit through
-- klua.line_editor, which reads without blocking the loop: a consumer spawned in the background
-- keeps consuming while the user types. Each input chunk runs in a task of its own; Ctrl-C
-- cancels that task when it waits, and interrupts it when it computes (a pure-Lua loop: the
-- chunk is compiled with jit.off and a debug hook set from the signal stops it), never the REPL;
-- an error in a background task prints and the REPL goes on; Ctrl-D leaves through klua.exit,
-- so producers flush and consumers commit and leave as at the end of any script.
-- With standard input not a terminal it reads lines without prompts, like a script: values of
-- expressions still print, and the first error of a chunk ends it with exit 1 (an error in a
-- background task only prints).
local pretty = require("klua.pretty")
local complete = require("klua.repl_complete")
local M = {}

local PROMPT, CONTINUE = "klua> ", "   >> "

-- $XDG_STATE_HOME/klua/history, or ~/.local/state/klua/history.
function M.history_path()
  local state = os.getenv("XDG_STATE_HOME")
  if state == nil or state == "" then
    local home = os.getenv("HOME")
    if home == nil or home == "" then return nil end
    state = home .. "/.local/state"
  end
  return state .. "/klua/history"
end

-- Compiles a chunk: `=expr` and bare expressions return their values. Returns the function,
-- or nil, message, incomplete (true when more lines could complete it). An expression is
-- compiled as an argument of an identity call rather than after a bare `return`: `return f()`
-- is a tail call, which drops the chunk's frame, so error("x") would be located at the REPL's
-- own code instead of stdin:1. With interruptible, the chunk runs interpreted (jit.off): a
-- compiled loop runs no debug hooks, so Ctrl-C could not stop it.
function M.compile(src, interruptible)
  local expr = src:match("^%s*=(.*)$")
  if expr then src = expr end
  local fn = loadstring("return (function(...) return ... end)(" .. src .. "\n)", "=stdin")
  if not fn then
    if expr then src = "return " .. src end
    local err
    fn, err = loadstring(src, "=stdin")
    if not fn then return nil, err, err:find("<eof>", 1, true) ~= nil end
  end
  if interruptible then jit.off(fn, true) end
  return fn
end

-- An error as the REPL prints it: klua errors and strings as their text, other values (tables
-- given to error()) through klua.pretty.
function M.error_text(err)
  if type(err) == "string" or klua.errors.is(err) then return tostring(err) end
  return pretty.format(err)
end

local function show(out, n, ...)
  if n == 0 then return end
  local parts, multiline = {}, false
  for i = 1, n do
    parts[i] = pretty.format((select(i, ...)))
    if parts[i]:find("\n") then multiline = true end
  end
  out:write(table.concat(parts, multiline and "\n" or "\t"), "\n")
end

local function pack(...) return { n = select("#", ...), ... } end

local Session = {}
Session.__index = Session

-- Runs one compiled chunk in a task of its own and prints its values or its error.
-- Returns true when it succeeded.
function Session:run(fn)
  local results
  local le = self.interruptible and klua.line_editor
  local task = klua.spawn(function()
    if le then le.interrupt_arm() end
    results = pack(fn())
    if le then le.interrupt_disarm() end
  end)
  self.running = task
  local _, err = task:join()
  self.running = nil
  if le then le.interrupt_disarm() end
  if task:status() == "failed" then
    if type(err) == "table" and err.name == "KLUA_CANCELLED" then
      io.stderr:write("cancelled\n")
    else
      io.stderr:write(M.error_text(err), "\n")
    end
    return false
  end
  show(io.stdout, results.n, unpack(results, 1, results.n))
  return true
end

-- Handles a line starting with ':'. Returns false when it is not a REPL command.
function Session:command(line)
  local name, rest = line:match("^:(%a+)%s*(.-)%s*$")
  if not name then return false end
  if name == "help" or name == "h" then
    require("klua.help").show(rest ~= "" and rest or nil)  -- paged when long and stdout is a terminal
  elseif name == "connect" then
    if rest == "" then
      io.stdout:write("brokers: ", klua.config()["bootstrap.servers"] or "(the embedded cluster)", "\n")
    else
      klua.set_config("bootstrap.servers", rest, ":connect")
      io.stdout:write("new clients connect to ", rest, "\n")
    end
  elseif name == "quit" or name == "q" then
    self.done = true
  else
    io.stderr:write("unknown command :", name, " (:help lists them)\n")
  end
  return true
end

-- Feeds one input line; returns the prompt for the next one.
function Session:feed(line)
  if self.buffer == nil and line:match("^:%a") then
    self:command(line)
    return PROMPT
  end
  local src = self.buffer and (self.buffer .. "\n" .. line) or line
  if src:match("^%s*$") then return PROMPT end
  local fn, err, incomplete = M.compile(src, self.interruptible)
  if incomplete then
    self.buffer = src
    return CONTINUE
  end
  self.buffer = nil
  if fn then
    if not self:run(fn) then self.failures = self.failures + 1 end
  else
    io.stderr:write(err, "\n")
    self.failures = self.failures + 1
  end
  return PROMPT
end

local function new_session(interruptible)
  return setmetatable({ failures = 0, interruptible = interruptible }, Session)
end

-- An error in a background task (one nobody joins) prints, with the task, and the REPL goes on.
local function report_task_errors()
  local le = klua.line_editor
  le.on_task_error(function(err, traceback, id)
    local text = ("error in background task %d: %s\n"):format(id, M.error_text(err))
    if traceback ~= "" then text = text .. traceback .. "\n" end
    le.output(function() io.stderr:write(text) end)  -- above the line being typed
  end)
end

-- Where the data goes: the brokers named (-b, a profile, KLUA_BROKERS), else the embedded cluster.
function M.cluster_text()
  local c = klua.config()
  local b = c["bootstrap.servers"] or c["metadata.broker.list"]
  return b and ("on " .. b) or "on the embedded mock cluster (no broker named: -b to name one)"
end

local function interactive()
  local le = klua.line_editor
  local s = new_session(true)
  report_task_errors()
  local hist = M.history_path()
  if hist then
    local ok, err = le.load_history(hist)
    if not ok then io.stderr:write("klua: ", err, "\n") end
  end
  le.set_completer(complete.candidates)
  -- Ctrl-C while a line runs cancels its task; the REPL itself carries on.
  le.on_interrupt(function()
    if s.running then s.running:cancel() end
    return true
  end)
  -- print from a background task while a line is being typed goes above that line
  local print = print
  _G.print = function(...) le.output(print, ...) end
  io.stdout:write("klua ", klua.version, ": Lua with Kafka, ", M.cluster_text(), ".\n",
                  ":help for help, Ctrl-D to leave.\n")
  local prompt = PROMPT
  while not s.done do
    local line = le.read(prompt)
    if line == nil then
      io.stdout:write("\n")
      break
    elseif line == false then
      s.buffer, prompt = nil, PROMPT  -- Ctrl-C abandons the chunk being typed
    else
      if line:find("%S") then le.add_history(line) end
      if hist then le.save_history(hist) end
      prompt = s:feed(line)
    end
  end
  le.on_interrupt(nil)
  klua.exit(0)  -- background tasks end; producers flush, consumers commit and leave
end

local function piped()
  local s = new_session(false)
  report_task_errors()
  while true do
    local line = klua.read_line()
    if line == nil then break end
    s:feed(line)
    if s.failures > 0 or s.done then break end
  end
  if s.buffer then
    local _, err = M.compile(s.buffer)
    io.stderr:write(err, "\n")
    s.failures = 1
  end
  klua.exit(s.failures > 0 and 1 or 0)
end

local USAGE = [[
usage: klua repl
  the interactive prompt (klua alone on a terminal); on the brokers named by -b, KLUA_BROKERS
  or a profile, else on the embedded mock cluster. :help inside lists its commands
]]

function M.main(...)
  require("klua.cli.common").parse({ ... }, {}, USAGE, 0)
  if klua.line_editor.available() then interactive() else piped() end
end

return M
