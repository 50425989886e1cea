-- Shared by the CLI one-liners: argument parsing, aligned tables, JSON lines, exits.
local M = {}

-- Parses args against spec = { ["--name"] = "flag" | "value", ["-n"] = "--name" (alias) }.
-- Returns options (keyed by long name without dashes) and positional arguments.
-- A bad option exits 2 with the usage text.
function M.parse(args, spec, usage)
  local opts, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^(%-%-[%w%-]+)=(.*)$")
    name = name or a
    if type(spec[name]) == "string" and spec[name]:sub(1, 1) == "-" then name = spec[name] end
    local kind = spec[name]
    if a == "-h" or a == "--help" then
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
      M.usage_error(usage, "unknown option " .. a)
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

function M.usage_error(usage, msg)
  io.stderr:write("klua: " .. msg .. "\n\n" .. usage)
  klua.exit(2)
end

-- Ends the command with a Kafka (or other runtime) error: exit 3 for Kafka errors, else 1.
-- The detail of a programmer error raised by the library (KLUA_INVALID_ARGUMENT "bad argument #1 to
-- 'klua.replay.run' (DETAIL)"), for a command's own message; nil for any other error.
function M.argument_detail(err)
  if not (klua.errors.is(err) and err.name == klua.errors.KLUA_INVALID_ARGUMENT) then return nil end
  return err.message:match("^bad argument #%d+ to '[^']*' %((.*)%)$") or err.message
end

function M.fail(err)
  io.stderr:write("klua: " .. tostring(err) .. "\n")
  klua.exit(type(err) == "table" and err.kafka and 3 or 1)
end

function M.number(usage, name, v)
  local n = tonumber(v)
  if not n then M.usage_error(usage, name .. " must be a number, got " .. tostring(v)) end
  return n
end

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
