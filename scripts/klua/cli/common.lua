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

-- Parses a time for --from/--to: epoch ms, ISO-8601 (UTC or with an offset), or relative
-- (-2h, -15m, -30s, -1d). Returns epoch ms or nil, message.
function M.parse_time(s)
  if s:match("^%d+$") then return tonumber(s) end
  local n, unit = s:match("^%-(%d+)([smhd])$")
  if n then
    local mult = { s = 1000, m = 60000, h = 3600000, d = 86400000 }
    return klua.time() - tonumber(n) * mult[unit]
  end
  local y, mo, d, h, mi, sec, frac, tz = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):?(%d*)%.?(%d*)(.*)$")
  if not y then
    y, mo, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
    h, mi, sec, frac, tz = "0", "0", "0", "", "Z"
  end
  if not y then return nil, "expected epoch ms, ISO-8601 (2024-05-01T12:00:00Z) or relative (-2h)" end
  -- days from civil (UTC), after Howard Hinnant's algorithm
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (mo + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  local ms = ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + (tonumber(sec) or 0) * 1000
  if frac ~= "" then ms = ms + math.floor(tonumber("0." .. frac) * 1000 + 0.5) end
  if tz == "" or tz == "Z" then return ms end
  local sign, th, tm = tz:match("^([+-])(%d%d):?(%d%d)$")
  if not sign then return nil, "bad time zone " .. tz end
  local off = (tonumber(th) * 60 + tonumber(tm)) * 60000
  return sign == "+" and ms - off or ms + off
end

return M
