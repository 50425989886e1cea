-- klua.process: the policy over bindings/process.cpp's run primitive (argument checks, defaults,
-- shell). run(cmd, args, stdin, env, env_clear, cwd, timeout_ms, max_output, kill_grace_ms) yields
-- the calling task and returns the result table or nil, err.
local klua, run_primitive = ...
local type, pairs, tostring, math_floor = type, pairs, tostring, math.floor

local DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024  -- per stream
local DEFAULT_KILL_GRACE_MS = 1000

local function argerr(fn, n, fmt, ...)
  klua.errors.bad_argument(fn, n, fmt:format(...))
end

local OPTIONS = {
  cmd = true, args = true, stdin = true, env = true, env_clear = true, cwd = true,
  timeout_ms = true, max_output = true, kill_grace_ms = true,
}

local function check_string(fn, n, name, v, allow_empty)
  if type(v) ~= "string" then argerr(fn, n, "option '%s' must be a string, got %s", name, type(v)) end
  if not allow_empty and v == "" then argerr(fn, n, "option '%s' must not be empty", name) end
  if v:find("\0", 1, true) then argerr(fn, n, "option '%s' must not contain a NUL byte", name) end
end

local function check_ms(fn, n, name, v, positive)
  if type(v) ~= "number" or v ~= v or v < 0 or (positive and v == 0) then
    argerr(fn, n, "option '%s' must be a %s number of ms, got %s", name, positive and "positive" or "non-negative",
      type(v) == "number" and tostring(v) or type(v))
  end
end

-- Checks the options table (argument n of fn) and runs the program.
local function run_checked(fn, n, opts)
  if type(opts) ~= "table" then argerr(fn, n, "expected an options table {cmd=, args=, ...}, got %s", type(opts)) end
  for k in pairs(opts) do
    if not OPTIONS[k] then argerr(fn, n, "unknown option '%s'", tostring(k)) end
  end
  if opts.cmd == nil then argerr(fn, n, "option 'cmd' (the program to run) is required") end
  check_string(fn, n, "cmd", opts.cmd)
  local args = opts.args
  if args == nil then
    args = {}
  elseif type(args) ~= "table" then
    argerr(fn, n, "option 'args' must be a list of strings, got %s", type(args))
  else
    local count = #args
    for k, v in pairs(args) do
      if type(k) ~= "number" or k < 1 or k > count or k ~= math_floor(k) then
        argerr(fn, n, "option 'args' must be a list of strings (found key %s)", tostring(k))
      end
      if type(v) ~= "string" then argerr(fn, n, "option 'args' must be a list of strings (args[%d] is a %s)", k, type(v)) end
      if v:find("\0", 1, true) then argerr(fn, n, "option 'args': args[%d] contains a NUL byte", k) end
    end
  end
  if opts.stdin ~= nil and type(opts.stdin) ~= "string" then
    argerr(fn, n, "option 'stdin' must be a string, got %s", type(opts.stdin))
  end
  local env = opts.env
  if env ~= nil then
    if type(env) ~= "table" then argerr(fn, n, "option 'env' must be a table of name = value, got %s", type(env)) end
    -- Names are shown in errors, values never (they are often secrets).
    for k, v in pairs(env) do
      if type(k) ~= "string" or k == "" or k:find("[=%z]") then
        argerr(fn, n, "option 'env': names must be non-empty strings without '=' (got %s)",
          type(k) == "string" and ("'" .. k:gsub("%z", "\\0") .. "'") or type(k))
      end
      local tv = type(v)
      if tv == "string" then
        if v:find("\0", 1, true) then argerr(fn, n, "option 'env': the value of '%s' contains a NUL byte", k) end
      elseif tv ~= "number" and v ~= false then
        argerr(fn, n, "option 'env': the value of '%s' must be a string, a number or false (to remove it), got %s", k, tv)
      end
    end
    local copy = {}  -- the caller's table is left as it is
    for k, v in pairs(env) do copy[k] = type(v) == "number" and tostring(v) or v end
    env = copy
  end
  if opts.env_clear ~= nil and type(opts.env_clear) ~= "boolean" then
    argerr(fn, n, "option 'env_clear' must be a boolean, got %s", type(opts.env_clear))
  end
  if opts.cwd ~= nil then check_string(fn, n, "cwd", opts.cwd) end
  local timeout = -1
  if opts.timeout_ms ~= nil then
    check_ms(fn, n, "timeout_ms", opts.timeout_ms, true)
    timeout = opts.timeout_ms
  end
  local max_output = DEFAULT_MAX_OUTPUT
  if opts.max_output ~= nil then
    local m = opts.max_output
    if type(m) ~= "number" or m < 0 or m ~= math_floor(m) or m > 2 ^ 40 then
      argerr(fn, n, "option 'max_output' must be a whole number of bytes >= 0, got %s",
        type(m) == "number" and tostring(m) or type(m))
    end
    max_output = m
  end
  local grace = DEFAULT_KILL_GRACE_MS
  if opts.kill_grace_ms ~= nil then
    check_ms(fn, n, "kill_grace_ms", opts.kill_grace_ms, false)
    grace = opts.kill_grace_ms
  end
  return run_primitive(opts.cmd, args, opts.stdin, env, opts.env_clear == true, opts.cwd, timeout, max_output, grace)
end

local process = {}

-- klua.process.run{cmd=, args=, stdin=, env=, env_clear=, cwd=, timeout_ms=, max_output=, kill_grace_ms=}
function process.run(opts)
  return run_checked("klua.process.run", 1, opts)
end

-- klua.process.shell(cmdline [, opts]): run{cmd="sh", args={"-c", cmdline}, ...opts}.
function process.shell(cmdline, opts)
  if type(cmdline) ~= "string" then argerr("klua.process.shell", 1, "expected a command line (string), got %s", type(cmdline)) end
  if cmdline:find("\0", 1, true) then argerr("klua.process.shell", 1, "the command line contains a NUL byte") end
  if opts ~= nil and type(opts) ~= "table" then argerr("klua.process.shell", 2, "options must be a table, got %s", type(opts)) end
  local o = {}
  for k, v in pairs(opts or {}) do
    if k == "cmd" or k == "args" then argerr("klua.process.shell", 2, "option '%s' is not taken (the command line is)", k) end
    o[k] = v
  end
  o.cmd, o.args = "sh", { "-c", cmdline }
  return run_checked("klua.process.shell", 2, o)
end

return process
