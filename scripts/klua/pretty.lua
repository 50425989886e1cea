-- klua.pretty: readable values for people (the REPL prints with it; scripts may too).
--   pretty.format(value [, opts]) -> string      pretty.print(...) prints each value
-- Nested tables are indented with a stable key order (array part first, then numbers, then
-- strings, sorted); a list of flat records (topics, groups, lag rows, messages) prints as an
-- aligned table; strings that are not printable UTF-8 (binary keys and values) are escaped;
-- long lists stop after opts.max_items with a count of the rest.
-- opts: max_items (50), max_depth (8), width (100: a table fitting in it prints on one line),
-- max_string (200: longer strings inside tables are cut, with their length).
-- Secrets are masked (klua.secrets): the value of a property-like key (dotted, such as
-- "sasl.password") that names a secret, and the value of a {key=, value=, source=} entry whose
-- key does (klua.config_entries()); a broker list loses a URL's user:password@. A script that
-- prints a configuration never shows a password.
local M = {}
local secrets = require("klua.secrets")

-- v as printed under the key k of table t: "********" for a secret.
local function masked(t, k, v)
  if v == nil or type(v) == "table" then return v end
  if type(k) == "string" and k:find(".", 1, true) then return secrets.shown(k, v) end
  -- a configuration entry {key=, value=, source=} (not a message, whose key is data)
  if k == "value" and type(rawget(t, "key")) == "string" and rawget(t, "source") ~= nil then
    return secrets.shown(rawget(t, "key"), v)
  end
  return v
end

local DEFAULTS = { max_items = 50, max_depth = 8, width = 100, max_string = 200 }

-- Record columns people look for first; the others follow in alphabetical order.
local FIRST_COLUMNS = { "name", "id", "topic", "partition", "group", "state", "offset", "committed",
  "low", "high", "end", "lag", "key", "value", "timestamp", "error" }
local COLUMN_RANK = {}
for i, k in ipairs(FIRST_COLUMNS) do COLUMN_RANK[k] = i end

local function check_opts(opts, fn, n)
  if opts == nil then return DEFAULTS end
  if type(opts) ~= "table" then klua.errors.bad_argument(fn, n, "opts must be a table, got " .. type(opts)) end
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do
    if DEFAULTS[k] == nil then klua.errors.bad_argument(fn, n, "unknown option " .. tostring(k)) end
    if type(v) ~= "number" or v < 1 then klua.errors.bad_argument(fn, n, "option " .. k .. " must be a positive number") end
    o[k] = v
  end
  return o
end

-- Length of a valid UTF-8 sequence starting at i, or nil.
local function utf8_len(s, i)
  local c = s:byte(i)
  local n = c >= 0xF0 and c <= 0xF4 and 4 or c >= 0xE0 and c <= 0xEF and 3 or c >= 0xC2 and c <= 0xDF and 2 or nil
  if not n then return nil end
  -- the second byte's range excludes overlong forms, surrogates and code points past U+10FFFF
  local lo, hi = 0x80, 0xBF
  if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F elseif c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
  for j = i + 1, i + n - 1 do
    local b = s:byte(j)
    if not b or b < lo or b > hi then return nil end
    lo, hi = 0x80, 0xBF
  end
  return n
end

-- True when s is UTF-8 text without control characters (tab and newline allowed when loose).
local function printable(s, loose)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    if c < 0x20 or c == 0x7F then
      if not (loose and (c == 9 or c == 10)) then return false end
      i = i + 1
    elseif c < 0x80 then
      i = i + 1
    else
      local l = utf8_len(s, i)
      if not l then return false end
      i = i + l
    end
  end
  return true
end

local ESCAPES = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\" }

-- A quoted string literal: printable UTF-8 kept, every other byte as \xHH.
function M.quote(s)
  if type(s) ~= "string" then klua.errors.bad_argument("klua.pretty.quote", 1, "expected a string, got " .. type(s)) end
  local out, i, n = {}, 1, #s
  while i <= n do
    local ch = s:sub(i, i)
    local c = ch:byte()
    if ESCAPES[ch] then
      out[#out + 1] = ESCAPES[ch]
      i = i + 1
    elseif c < 0x20 or c == 0x7F then
      out[#out + 1] = string.format("\\x%02X", c)
      i = i + 1
    elseif c < 0x80 then
      out[#out + 1] = ch
      i = i + 1
    else
      local l = utf8_len(s, i)
      if l then
        out[#out + 1] = s:sub(i, i + l - 1)
        i = i + l
      else
        out[#out + 1] = string.format("\\x%02X", c)
        i = i + 1
      end
    end
  end
  return '"' .. table.concat(out) .. '"'
end

local function scalar(v, o)
  local t = type(v)
  if t == "string" then
    if #v > o.max_string then
      return M.quote(v:sub(1, o.max_string)) .. string.format("...(%d bytes)", #v)
    end
    return M.quote(v)
  elseif t == "number" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 63 then return string.format("%d", v) end
    return string.format("%.17g", v)
  end
  return tostring(v)
end

local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or repeat return then true until while")
    :gmatch("%a+") do
  KEYWORDS[w] = true
end

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil and not KEYWORDS[k]
end

local function key_text(k, o)
  if is_identifier(k) then return k end
  return "[" .. scalar(k, o) .. "]"
end

-- Keys of t beyond its array part 1..n, in a stable order: numbers, then strings, then others.
local function other_keys(t, n)
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then keys[#keys + 1] = k end
  end
  local order = { number = 1, string = 2, boolean = 3 }
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return (order[ta] or 4) < (order[tb] or 4) end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

local function has_tostring(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__tostring") ~= nil
end

-- A flat record: a table of string keys with scalar values (or small lists such as headers).
local function record_columns(list, n)
  if n < 1 then return nil end
  local seen, cols = {}, {}
  for i = 1, n do
    local r = list[i]
    if type(r) ~= "table" or has_tostring(r) or r[1] ~= nil then return nil end
    for k, v in pairs(r) do
      if type(k) ~= "string" then return nil end
      if type(v) == "table" and not has_tostring(v) then
        if k ~= "headers" then return nil end  -- a message's headers fit in a cell
      end
      if not seen[k] then
        seen[k] = true
        cols[#cols + 1] = k
      end
    end
  end
  if #cols == 0 then return nil end
  table.sort(cols, function(a, b)
    local ra, rb = COLUMN_RANK[a] or 1000, COLUMN_RANK[b] or 1000
    if ra ~= rb then return ra < rb end
    return a < b
  end)
  return cols
end

local format

local function cell(v, o)
  if v == nil then return "-" end
  if type(v) == "string" then
    if printable(v) and v ~= "" and #v <= o.max_string and not v:find("^%s") and not v:find("%s$") then return v end
    return scalar(v, o)
  end
  if type(v) == "table" and not has_tostring(v) then
    local parts = {}
    for _, h in ipairs(v) do
      if type(h) == "table" then
        parts[#parts + 1] = tostring(h[1]) .. "=" .. (h[2] == nil and "" or cell(h[2], o))
      else
        parts[#parts + 1] = cell(h, o)
      end
    end
    return table.concat(parts, ",")
  end
  return scalar(v, o)
end

local function aligned(list, n, cols, o)
  local shown = math.min(n, o.max_items)
  local widths, rows, numeric = {}, {}, {}
  for c, k in ipairs(cols) do
    widths[c] = #k
    numeric[c] = true
  end
  for i = 1, shown do
    local row = {}
    for c, k in ipairs(cols) do
      local v = masked(list[i], k, list[i][k])
      row[c] = cell(v, o)
      if v ~= nil and type(v) ~= "number" then numeric[c] = false end
      if #row[c] > widths[c] then widths[c] = #row[c] end
    end
    rows[i] = row
  end
  local function line(values)
    local parts = {}
    for c = 1, #cols do
      local pad = string.rep(" ", widths[c] - #values[c])
      parts[c] = numeric[c] and pad .. values[c] or values[c] .. pad
    end
    return (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  local out = { line(cols) }
  for i = 1, shown do out[#out + 1] = line(rows[i]) end
  if n > shown then out[#out + 1] = string.format("... (%d more, %d in all)", n - shown, n) end
  return table.concat(out, "\n")
end

local function array_length(t)
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  return n
end

-- One-line form when it fits in the width, else one entry per line, indented.
local function format_table(t, o, depth, indent, visiting)
  if visiting[t] then return "<cycle>" end
  if depth > o.max_depth then return "{...}" end
  local n = array_length(t)
  local keys = other_keys(t, n)
  if n == 0 and #keys == 0 then return "{}" end
  visiting[t] = true
  local items = {}
  local shown = math.min(n, o.max_items)
  for i = 1, shown do items[#items + 1] = format(t[i], o, depth + 1, indent .. "  ", visiting) end
  if n > shown then items[#items + 1] = string.format("... (%d more, %d in all)", n - shown, n) end
  for i, k in ipairs(keys) do
    if i > o.max_items then
      items[#items + 1] = string.format("... (%d more keys)", #keys - o.max_items)
      break
    end
    items[#items + 1] = key_text(k, o) .. " = " .. format(masked(t, k, t[k]), o, depth + 1, indent .. "  ", visiting)
  end
  visiting[t] = nil
  local one = "{ " .. table.concat(items, ", ") .. " }"
  if #one + #indent <= o.width and not one:find("\n") then return one end
  if #keys == 0 and not one:find("\n") then
    -- a long list of scalars: as many per line as fit
    local lines, cur = {}, indent .. "  "
    for i, item in ipairs(items) do
      local piece = item .. (i < #items and "," or "")
      if #cur + #piece + 1 > o.width and cur:find("%S") then
        lines[#lines + 1] = cur
        cur = indent .. "  "
      end
      cur = cur .. (cur:find("%S") and " " or "") .. piece
    end
    lines[#lines + 1] = cur
    return "{\n" .. table.concat(lines, "\n") .. "\n" .. indent .. "}"
  end
  return "{\n" .. indent .. "  " .. table.concat(items, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
end

format = function(v, o, depth, indent, visiting)
  if type(v) ~= "table" or has_tostring(v) then return scalar(v, o) end
  -- a nested list of records (a lag result's partitions) is an aligned table too
  local n = array_length(v)
  if n >= 2 and not visiting[v] and #other_keys(v, n) == 0 then
    local cols = record_columns(v, n)
    if cols then
      local rows = aligned(v, n, cols, o)
      return "{\n" .. indent .. "  " .. rows:gsub("\n", "\n" .. indent .. "  ") .. "\n" .. indent .. "}"
    end
  end
  return format_table(v, o, depth, indent, visiting)
end

-- The text for value. At the top, printable strings are shown as they are, a list of flat
-- records as an aligned table.
function M.format(value, opts)
  local o = check_opts(opts, "klua.pretty.format", 2)
  if type(value) == "string" and printable(value, true) then return value end
  if type(value) == "table" and not has_tostring(value) then
    local n = array_length(value)
    if n > 0 and #other_keys(value, n) == 0 then
      local cols = record_columns(value, n)
      if cols then return aligned(value, n, cols, o) end
    end
  end
  return format(value, o, 1, "", {})
end

-- Prints each argument formatted (nil included), one after another.
function M.print(...)
  for i = 1, select("#", ...) do
    print(M.format((select(i, ...))))
  end
end

return M
