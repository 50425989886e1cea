-- Shared by the CLI one-liners: argument parsing, aligned tables, JSON lines, exits.
local M = {}

-- The command being run (set by M.run): { name =, cluster =, embedded = }.
M.command = nil

-- The text of an error for a one-line message: a klua error as NAME: message, without the
-- position of the bundled script that raised it.
function M.error_text(err)
  local s
  if klua.errors.is(err) then
    s = tostring(err)
    if err.where then s = s:sub(1, #err.where + 2) == err.where .. ": " and s:sub(#err.where + 3) or s end
  elseif type(err) == "table" then
    s = require("klua.pretty").format(err)
  else
    s = tostring(err)
  end
  return (s:gsub("^[^\n:]*%.lua:%d+: ", ""))
end

-- Runs a bundled command: `klua NAME args...` runs require(module).main(args...). cluster: the
-- command talks to a Kafka cluster, so with no broker configured (and no --embedded: embedded)
-- its first client is refused (M.require_cluster), after its own usage errors and --help. A
-- user's mistake ends it with one line and no traceback: a bad argument or a bad configuration
-- property exits 2, a Kafka error 3.
function M.run(name, module, cluster, embedded, ...)
  M.command = { name = name, cluster = cluster, embedded = embedded }
  if cluster and not embedded then M.guard_clients() end
  local mod = require(module)
  local tb
  local ok, err = xpcall(mod.main, function(e)
    tb = debug.traceback("", 2)
    return e
  end, ...)
  if ok then return end
  if klua.errors.is(err) then
    if err.name == klua.errors.KLUA_CANCELLED then error(err, 0) end  -- a signal: the runtime's exit code
    local text = M.error_text(err)
    if err.name == klua.errors.KLUA_INVALID_ARGUMENT then
      local detail = M.argument_detail(err)
      if detail and detail ~= err.message then text = detail end
      io.stderr:write("klua: ", name, ": ", (text:gsub("^KLUA_INVALID_ARGUMENT: ", "")), "\n")
      klua.exit(2)
    end
    io.stderr:write("klua: ", name, ": ", text, "\n")
    klua.exit(M.exit_code(err))
  end
  -- Not a user's mistake: a fault of the command itself, worth its traceback.
  io.stderr:write("klua: ", name, ": internal error: ", type(err) == "string" and err or M.error_text(err), tb or "", "\n")
  klua.exit(1)
end

local function names_brokers(conf)
  return type(conf) == "table" and (conf.brokers or conf["bootstrap.servers"] or conf["metadata.broker.list"]) ~= nil
end

-- Ends a command that talks to a cluster when nothing names one: the embedded cluster is for
-- scripts and the REPL; a one-liner's data would silently go into it and vanish. conf: the
-- options of the client about to be created (its own brokers count: replay --source-brokers).
function M.require_cluster(conf)
  local cmd = M.command
  if not (cmd and cmd.cluster) or cmd.embedded or names_brokers(conf) then return end
  local c = klua.config()
  if c["bootstrap.servers"] or c["metadata.broker.list"] then return end
  io.stderr:write("klua: ", cmd.name, " talks to a Kafka cluster and none is configured: name one with ",
                  "-b HOST:PORT, KLUA_BROKERS or a profile (--profile NAME), or use --embedded for the ",
                  "embedded mock cluster (its data goes when klua exits)\n")
  klua.exit(2)
end

-- The client constructors check M.require_cluster first (every command's clients, including
-- klua.lag's shared admin, klua.replay's and klua.provision's, come from these three).
function M.guard_clients()
  for _, ctor in ipairs({ "producer", "consumer", "admin" }) do
    local create = rawget(klua, ctor)
    rawset(klua, ctor, function(conf, ...)
      M.require_cluster(conf)
      return create(conf, ...)
    end)
  end
end

-- Parses args against spec = { ["--name"] = "flag" | "value" | "list", ["-n"] = "--name" (alias) }.
-- Returns options (keyed by long name without dashes) and positional arguments ("--" ends the
-- options). npos, when
-- given, is the most positional arguments the command takes (a number, or math.huge): more is
-- a usage error naming the first extra one. A bad option exits 2 with one line.
function M.parse(args, spec, usage, npos)
  local opts, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^(%-%-[%w%-]+)=(.*)$")
    name = name or a
    if type(spec[name]) == "string" and spec[name]:sub(1, 1) == "-" then name = spec[name] end
    local kind = spec[name]
    if a == "--" then  -- the rest are positional, even those starting with '-'
      for k = i + 1, #args do pos[#pos + 1] = args[k] end
      break
    elseif a == "-h" or a == "--help" then
      io.stdout:write(usage)
      klua.exit(0)
    elseif kind == "flag" then
      opts[name:gsub("^%-+", ""):gsub("%-", "_")] = true
    elseif kind == "value" or kind == "list" then
      local v = inline
      if v == nil then
        i = i + 1
        v = args[i]
      end
      if v == nil then M.usage_error(usage, name .. " needs a value") end
      local key = name:gsub("^%-+", ""):gsub("%-", "_")
      if kind == "list" then
        opts[key] = opts[key] or {}
        table.insert(opts[key], v)
      else
        opts[key] = v
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      local names = {}
      for k in pairs(spec) do
        if type(k) == "string" then names[#names + 1] = k end
      end
      local near = M.nearest(a, names)
      M.usage_error(usage, "unknown option " .. a .. (near and " (did you mean " .. near .. "?)" or ""))
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  if npos and #pos > npos then
    M.usage_error(usage, ("unexpected argument '%s' to %s"):format(pos[npos + 1], M.command_name(usage)))
  end
  return opts, pos
end

-- The edit distance of two strings (insertions, deletions, substitutions).
function M.edit_distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a:byte(i) == b:byte(j) and 0 or 1))
    end
    prev = cur
  end
  return prev[#b]
end

-- The nearest of candidates to word, when near enough to be a typo of it; else nil.
function M.nearest(word, candidates)
  local best, best_d = nil, math.max(2, math.floor(#word / 3)) + 1
  for _, c in ipairs(candidates) do
    local d = M.edit_distance(word, c)
    if d < best_d then best, best_d = c, d end
  end
  return best
end

-- The command a usage text is about ("usage: klua lag GROUP ..." -> "lag").
function M.command_name(usage)
  return M.command and M.command.name or (usage or ""):match("usage: klua ([%w_-]+)") or "klua"
end

-- A usage error: one line naming the mistake and where the help is, exit 2.
function M.usage_error(usage, msg)
  local name = M.command_name(usage)
  io.stderr:write("klua: ", msg, " (see klua ", name == "klua" and "" or name .. " ", "--help)\n")
  klua.exit(2)
end

-- Ends the command with a Kafka (or other runtime) error: exit 3 for Kafka errors, else 1.
-- The detail of a programmer error raised by the library (KLUA_INVALID_ARGUMENT "bad argument #1 to
-- 'klua.replay.run' (DETAIL)"), for a command's own message; nil for any other error.
function M.argument_detail(err)
  if not (klua.errors.is(err) and err.name == klua.errors.KLUA_INVALID_ARGUMENT) then return nil end
  return err.message:match("^bad argument #%d+ to '[^']*' %((.*)%)$") or err.message
end

-- A one-liner's exit code for an error: 3 when the cluster answered with an error or could not
-- serve the request (a Kafka error, or an operation the embedded mock cluster does not serve),
-- else 1.
function M.exit_code(err)
  if type(err) ~= "table" then return 1 end
  if err.kafka or err.name == "KLUA_EMBEDDED_UNSUPPORTED" then return 3 end
  return 1
end

function M.fail(err)
  io.stderr:write("klua: " .. M.error_text(err) .. "\n")
  klua.exit(M.exit_code(err))
end

-- A number argument written in decimal (no hex, no inf or nan, no trailing text); nil when v is not one.
local function decimal(v)
  if type(v) ~= "string" or not v:match("^[+-]?%d*%.?%d+$") and not v:match("^[+-]?%d+%.?%d*[eE][+-]?%d+$")
     and not v:match("^[+-]?%d+%.$") then
    return nil
  end
  local n = tonumber(v)
  if n ~= n or n == math.huge or n == -math.huge then return nil end
  return n
end

-- A number option: decimal and finite, within [min, max] when given (nil: unbounded); a usage
-- error naming the option and the value otherwise.
function M.number(usage, name, v, min, max)
  local n = decimal(v)
  if not n or (min and n < min) or (max and n > max) then
    local range = min and max and (" from " .. min .. " to " .. max) or min and (" >= " .. min) or ""
    M.usage_error(usage, ("%s must be a number%s, got '%s'"):format(name, range, tostring(v)))
  end
  return n
end

-- A whole-number option (a count, a partition, an offset) within [min, max] (max defaults to
-- 2^53, beyond which doubles skip whole numbers; a partition's max is 2^31-1).
function M.integer(usage, name, v, min, max)
  local n = decimal(v)
  max = max or 2 ^ 53
  if not n or n ~= math.floor(n) or (min and n < min) or math.abs(n) > max then
    local range = min and (" from " .. min .. " to " .. string.format("%d", max)) or ""
    M.usage_error(usage, ("%s must be a whole number%s, got '%s'"):format(name, range, tostring(v)))
  end
  return n
end

M.MAX_PARTITION = 2 ^ 31 - 1

-- Prints rows (a list of tables) as aligned columns.
function M.print_table(rows, columns)
  local widths = {}
  for i, c in ipairs(columns) do widths[i] = #c.title end
  local cells = {}
  for r, row in ipairs(rows) do
    cells[r] = {}
    for i, c in ipairs(columns) do
      local v = row[c.key]
      local s = v == nil and "-" or tostring(v)
      cells[r][i] = s
      if #s > widths[i] then widths[i] = #s end
    end
  end
  local function line(values)
    local parts = {}
    for i, c in ipairs(columns) do
      local v = values[i]
      parts[i] = c.right and string.rep(" ", widths[i] - #v) .. v or v .. string.rep(" ", widths[i] - #v)
    end
    print((table.concat(parts, "  "):gsub("%s+$", "")))
  end
  local titles = {}
  for i, c in ipairs(columns) do titles[i] = c.title end
  line(titles)
  for _, row in ipairs(cells) do line(row) end
end

function M.json_line(value)
  print(klua.json.encode(value))
end

-- Parses a TIME option (--from, --to, --time, --to-datetime): epoch ms, ISO-8601 (UTC or with an
-- offset), a date, now, or relative (-2h, 15m: that long ago). Returns epoch ms or nil, message.
-- The parser is the library's (klua.timespec), which admin:reset_group_offsets uses too.
function M.parse_time(s)
  return klua.timespec.time(s)
end

-- Parses a DURATION option (--by-duration, --since): 1h, 30m, 1d, 1h30m, PT1H30M, ms. Returns ms or
-- nil, message.
function M.parse_duration(s)
  return klua.timespec.duration(s)
end

return M
