-- klua.avro.json: the Avro JSON encoding (spec 1.11, "JSON Encoding"), both ways.
--
--   s:to_json(value) -> text | nil, err        (KLUA_SERIALIZATION with err.path)
--   s:from_json(text) -> value | nil, err      (KLUA_DESERIALIZATION with err.path; a bad JSON text too)
--
-- The value is in klua's Lua mapping (docs/avro.md); the text in the encoding Java's JsonEncoder,
-- fastavro's json_writer and kafka-avro-console-consumer print:
-- * null, boolean, int, long, float, double as JSON literals; longs exact, int64 cdata included
--   (klua.json cannot hold them: this module writes and reads its JSON text itself); float and
--   double NaN and infinities as the strings "NaN", "Infinity", "-Infinity" (Java's choice; the
--   bare words fastavro writes are read too); whole floats and doubles keep a ".0".
-- * bytes and fixed as strings of code points U+0000-U+00FF, one per byte; to_json escapes every
--   byte outside printable ASCII as \u00XX, so the output is ASCII.
-- * string as a JSON string (its UTF-8 bytes copied; control characters escaped).
-- * record as an object with every field in schema order; enum as its symbol; array; map as an
--   object with sorted keys.
-- * union: null as null, any other branch as {"NAME": value}, NAME the branch's type ("string",
--   "array", "map") or a named type's fullname. to_json picks the branch the binary encoder picks:
--   the first the value fits. from_json also takes a named type's unqualified name.
-- * logical types are written as their underlying type (a decimal as its two's complement bytes,
--   a duration as its 12 bytes, a date as its int), as the spec and Java do; from_json gives the
--   Lua mapping back (decimal strings, duration tables).
-- from_json is strict where a typo would lose data: a field the schema lacks is an error, a missing
-- field takes its default (an error without one), an int out of range or a byte above U+00FF is an
-- error.
local ffi = require("ffi")

local type, tostring, tonumber, pairs, ipairs, setmetatable, getmetatable, error, pcall, select =
  type, tostring, tonumber, pairs, ipairs, setmetatable, getmetatable, error, pcall, select
local byte, char, sub, find, format, gsub, rep = string.byte, string.char, string.sub, string.find,
  string.format, string.gsub, string.rep
local concat, sort = table.concat, table.sort
local floor, huge = math.floor, math.huge

local M = {}

-- ---- decimal <-> bytes (shared with the resolver) ----------------------------------------------
--   M.decimal_to_string(bytes, scale) -> "-12.50"                  (exact, any length)
--   M.decimal_to_bytes(value, scale [, size]) -> bytes | nil, why   (value a decimal string or a
--       number; size for fixed: sign-extended to size bytes)

local BASE = 10000000 -- digits are kept in base 1e7 (little-endian limbs): 256 * 1e7 stays exact

-- The decimal digits of a non-negative big-endian byte string (no sign).
local function magnitude_digits(bytes, first, last)
  local limbs = { 0 }
  for i = first, last do
    local carry = byte(bytes, i)
    for j = 1, #limbs do
      local v = limbs[j] * 256 + carry
      carry = floor(v / BASE)
      limbs[j] = v - carry * BASE
    end
    while carry > 0 do
      local q = floor(carry / BASE)
      limbs[#limbs + 1] = carry - q * BASE
      carry = q
    end
  end
  local parts = { tostring(limbs[#limbs]) }
  for j = #limbs - 1, 1, -1 do parts[#parts + 1] = format("%07d", limbs[j]) end
  return concat(parts)
end

function M.decimal_to_string(bytes, scale)
  local n = #bytes
  local digits, neg
  if n == 0 then
    digits = "0"
  elseif byte(bytes, 1) < 128 then
    if n <= 6 then -- fits a double exactly: the common case, no limbs
      local v = 0
      for i = 1, n do v = v * 256 + byte(bytes, i) end
      digits = format("%.0f", v)
    else
      digits = magnitude_digits(bytes, 1, n)
    end
  else
    neg = true
    -- two's complement: invert, then add one
    local inv = {}
    for i = 1, n do inv[i] = 255 - byte(bytes, i) end
    local i = n
    while i >= 1 do
      if inv[i] == 255 then
        inv[i] = 0
        i = i - 1
      else
        inv[i] = inv[i] + 1
        break
      end
    end
    local mag = char(unpack(inv))
    if i < 1 then mag = "\1" .. mag end -- cannot happen for n >= 1 (the minimum has a carry-free top)
    digits = magnitude_digits(mag, 1, #mag)
  end
  scale = scale or 0
  if scale > 0 then
    if #digits <= scale then digits = string.rep("0", scale - #digits + 1) .. digits end
    digits = sub(digits, 1, #digits - scale) .. "." .. sub(digits, #digits - scale + 1)
  end
  if neg then digits = "-" .. digits end
  return digits
end

-- "-12.5" at scale 2 -> sign, "1250" (the unscaled magnitude's digits) | nil, why
local function unscaled(value, scale)
  local s = value
  if type(value) == "number" then
    if value ~= value or value == math.huge or value == -math.huge then return nil, "not a finite number" end
    s = format("%." .. scale .. "f", value)
  elseif type(value) ~= "string" then
    return nil, "expected a decimal string or a number, got " .. type(value)
  end
  local sign, int, frac = s:match("^%s*([+-]?)(%d*)%.?(%d*)%s*$")
  if not sign or (int == "" and frac == "") then return nil, "not a decimal number: " .. format("%q", s) end
  if #frac > scale then
    local extra = sub(frac, scale + 1)
    if extra:find("[1-9]") then
      return nil, format("%s has more than %d digits after the point (the schema's scale)", s, scale)
    end
    frac = sub(frac, 1, scale)
  end
  local digits = (int .. frac .. string.rep("0", scale - #frac)):gsub("^0+", "")
  return sign == "-", digits
end

-- Two's complement big-endian bytes of a signed decimal digit string.
function M.decimal_to_bytes(value, scale, size)
  local neg, digits = unscaled(value, scale or 0)
  if neg == nil then return nil, digits end
  -- digits -> base-256 magnitude by repeated division
  local d = {}
  for i = 1, #digits do d[i] = byte(digits, i) - 48 end
  local out = {}
  while #d > 0 do
    local rem, q = 0, {}
    for i = 1, #d do
      local v = rem * 10 + d[i]
      local qd = floor(v / 256)
      rem = v - qd * 256
      if #q > 0 or qd > 0 then q[#q + 1] = qd end
    end
    out[#out + 1] = rem
    d = q
  end
  -- out: little-endian magnitude
  if neg and #out > 0 then
    local carry = 1
    for i = 1, #out do
      local v = 255 - out[i] + carry
      if v > 255 then v, carry = v - 256, 1 else carry = 0 end
      out[i] = v
    end
    if out[#out] < 128 then out[#out + 1] = 255 end
  elseif #out == 0 or out[#out] >= 128 then
    out[#out + 1] = 0
  end
  local be = {}
  for i = #out, 1, -1 do be[#be + 1] = out[i] end
  if neg and #digits == 0 then neg = false end
  if size then
    if #be > size then return nil, format("%s needs %d bytes, more than the fixed size %d", tostring(value), #be, size) end
    local pad = neg and 255 or 0
    while #be < size do table.insert(be, 1, pad) end
  end
  local parts = {}
  for i = 1, #be, 4096 do parts[#parts + 1] = char(unpack(be, i, math.min(i + 4095, #be))) end
  return concat(parts)
end

-- ---- shared bits ----------------------------------------------------------------------------

local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local fbox = ffi.new("float[1]")
local function tofloat(v)
  fbox[0] = v
  return fbox[0]
end
local TWO53, TWO63 = 2 ^ 53, 2 ^ 63

local NULL -- klua.json.null
local function null() NULL = NULL or klua.json.null return NULL end

local function node_of(s, fn)
  if type(s) == "table" then
    if type(s.node) == "table" then return s.node end
    if type(s.type) == "string" then return s end -- a node itself
  end
  klua.errors.bad_argument(fn, 1, "expected a parsed Avro schema (klua.avro.parse)")
end

local Fail = {}
local function fail(path, msg) error(setmetatable({ path = path, msg = msg }, Fail), 0) end

local function show(v)
  local t = type(v)
  if t == "string" then
    if #v > 40 then v = sub(v, 1, 37) .. "..." end
    return "string " .. format("%q", v):gsub("\\\n", "\\n")
  end
  if t == "number" or t == "boolean" then return t .. " " .. tostring(v) end
  if v == NULL then return "null" end
  if t == "cdata" then return "cdata " .. tostring(v) end
  return t
end

local function idx_path(path, i) return path .. "[" .. i .. "]" end
local function key_path(path, k)
  if find(k, "^[%a_][%w_]*$") then return path .. "." .. k end
  return path .. "[" .. format("%q", k) .. "]"
end

-- The name a union branch goes by in the JSON encoding.
local function branch_name(node)
  local t = node.type
  if t == "record" or t == "enum" or t == "fixed" then return node.name end
  return t
end
M.branch_name = branch_name

-- Is v (Lua mapping) a whole number or an int64/uint64 in [lo, hi]?
local function is_int64(v)
  return type(v) == "cdata" and (ffi.istype(int64_t, v) or ffi.istype(uint64_t, v))
end

-- ---- does a Lua value fit a node? (the binary encoder's union rule: the first branch that fits) --

local fits
local function fits_int(v, lo, hi)
  if type(v) == "number" then return v % 1 == 0 and v >= lo and v <= hi end
  if is_int64(v) then
    if ffi.istype(uint64_t, v) then return v <= uint64_t(hi) end
    return v >= lo and v <= hi
  end
  return false
end

local function is_decimal_value(v)
  if type(v) == "number" then return v == v and v ~= huge and v ~= -huge end
  return type(v) == "string" and find(v, "^%s*[+-]?%d*%.?%d*%s*$") ~= nil and find(v, "%d") ~= nil
end

function fits(node, v, seen)
  local t = node.type
  if t == "null" then return v == nil or v == NULL end
  if t == "boolean" then return type(v) == "boolean" end
  if t == "int" then return fits_int(v, -2147483648, 2147483647) end
  if t == "long" then
    if type(v) == "number" then return v % 1 == 0 and v >= -TWO63 and v < TWO63 end
    return is_int64(v) and (not ffi.istype(uint64_t, v) or v < uint64_t(2) ^ 63)
  end
  if t == "float" or t == "double" then return type(v) == "number" or is_int64(v) end
  if t == "string" then return type(v) == "string" end
  if t == "bytes" then
    if node.logical == "decimal" then return is_decimal_value(v) end
    return type(v) == "string"
  end
  if t == "fixed" then
    if node.logical == "decimal" then return is_decimal_value(v) end
    if node.logical == "duration" then return type(v) == "table" and v ~= NULL end
    return type(v) == "string" and #v == node.size
  end
  if t == "enum" then return type(v) == "string" and node.symbol_index[v] ~= nil end
  if type(v) ~= "table" or v == NULL then return false end
  if t == "array" then
    local n = #v
    for k in pairs(v) do
      if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return false end
    end
    for i = 1, n do
      if not fits(node.items, v[i], seen) then return false end
    end
    return true
  end
  if t == "map" then
    for k, x in pairs(v) do
      if type(k) ~= "string" or not fits(node.values, x, seen) then return false end
    end
    return true
  end
  if t == "record" then
    for _, f in ipairs(node.fields) do
      local x = v[f.name]
      if x == nil then
        if not (f.has_default or fits(f.type, nil, seen)) then return false end
      elseif not fits(f.type, x, seen) then
        return false
      end
    end
    return true
  end
  if t == "union" then
    for _, b in ipairs(node.branches) do
      if fits(b, v, seen) then return true end
    end
    return false
  end
  return false
end

local function pick_branch(node, v)
  for _, b in ipairs(node.branches) do
    if fits(b, v) then return b end
  end
end
M.pick_branch = pick_branch

-- ---- to_json --------------------------------------------------------------------------------

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
  ["\b"] = "\\b", ["\f"] = "\\f" }
local function esc_char(c) return ESC[c] or format("\\u%04x", byte(c)) end

local function quote_string(s)
  if find(s, '[%z\1-\31"\\]') then s = gsub(s, '[%z\1-\31"\\]', esc_char) end
  return '"' .. s .. '"'
end
local function quote_bytes(s)
  if find(s, '[%z\1-\31"\\\127-\255]') then s = gsub(s, '[%z\1-\31"\\\127-\255]', esc_char) end
  return '"' .. s .. '"'
end

local function int_text(v)
  if type(v) == "number" then return format("%.0f", v) end
  return (gsub(tostring(v), "[LU]+$", ""))
end

local function real_text(v, single)
  if type(v) ~= "number" then v = tonumber(v) end
  if v ~= v then return '"NaN"' end
  if v == huge then return '"Infinity"' end
  if v == -huge then return '"-Infinity"' end
  local s
  if single then
    local f = tofloat(v)
    for prec = 6, 9 do
      s = format("%." .. prec .. "g", f)
      if tofloat(tonumber(s)) == f then break end
    end
  else
    for prec = 15, 17 do
      s = format("%." .. prec .. "g", v)
      if tonumber(s) == v then break end
    end
  end
  if not find(s, "[.eEn]") then s = s .. ".0" end
  return s
end

local function le32(v)
  return char(v % 256, floor(v / 256) % 256, floor(v / 65536) % 256, floor(v / 16777216) % 256)
end

local write
local function expect(path, what, v) fail(path, "expected " .. what .. ", got " .. show(v)) end

function write(buf, node, v, path)
  local t = node.type
  if t == "union" then
    local b = pick_branch(node, v)
    if not b then
      local names = {}
      for i, x in ipairs(node.branches) do names[i] = branch_name(x) end
      expect(path, "a value of the union [" .. concat(names, ", ") .. "]", v)
    end
    if b.type == "null" then
      buf[#buf + 1] = "null"
    else
      buf[#buf + 1] = "{" .. quote_string(branch_name(b)) .. ":"
      write(buf, b, v, path)
      buf[#buf + 1] = "}"
    end
  elseif t == "null" then
    if v ~= nil and v ~= NULL then expect(path, "null", v) end
    buf[#buf + 1] = "null"
  elseif t == "boolean" then
    if type(v) ~= "boolean" then expect(path, "a boolean", v) end
    buf[#buf + 1] = v and "true" or "false"
  elseif t == "int" then
    if not fits_int(v, -2147483648, 2147483647) then expect(path, "an int (a whole number of 32 bits)", v) end
    buf[#buf + 1] = int_text(v)
  elseif t == "long" then
    if not fits(node, v) then expect(path, "a long (a whole number of 64 bits or int64 cdata)", v) end
    buf[#buf + 1] = int_text(v)
  elseif t == "float" or t == "double" then
    if type(v) ~= "number" and not is_int64(v) then expect(path, "a number", v) end
    buf[#buf + 1] = real_text(v, t == "float")
  elseif t == "string" then
    if type(v) ~= "string" then expect(path, "a string", v) end
    buf[#buf + 1] = quote_string(v)
  elseif t == "bytes" or t == "fixed" then
    local s = v
    if node.logical == "decimal" then
      local why
      s, why = M.decimal_to_bytes(v, node.scale or 0, t == "fixed" and node.size or nil)
      if not s then fail(path, "expected a decimal (a string such as \"-12.50\" or a number): " .. why) end
    elseif node.logical == "duration" then
      if type(v) ~= "table" then expect(path, "a duration {months=, days=, milliseconds=}", v) end
      local parts = {}
      for i, k in ipairs({ "months", "days", "milliseconds" }) do
        local x = v[k] or 0
        if type(x) ~= "number" or x % 1 ~= 0 or x < 0 or x > 4294967295 then
          expect(key_path(path, k), "a whole number from 0 to 2^32-1", x)
        end
        parts[i] = le32(x)
      end
      s = concat(parts)
    elseif type(v) ~= "string" then
      expect(path, t == "fixed" and ("a string of " .. node.size .. " bytes") or "a string of bytes", v)
    end
    if t == "fixed" and #s ~= node.size then
      fail(path, "expected " .. node.size .. " bytes (fixed " .. node.name .. "), got " .. #s)
    end
    buf[#buf + 1] = quote_bytes(s)
  elseif t == "enum" then
    if type(v) ~= "string" or node.symbol_index[v] == nil then
      expect(path, "a symbol of the enum " .. node.name, v)
    end
    buf[#buf + 1] = quote_string(v)
  elseif t == "array" then
    if type(v) ~= "table" or v == NULL then expect(path, "an array (a sequence table)", v) end
    buf[#buf + 1] = "["
    for i = 1, #v do
      if i > 1 then buf[#buf + 1] = "," end
      write(buf, node.items, v[i], idx_path(path, i))
    end
    buf[#buf + 1] = "]"
  elseif t == "map" then
    if type(v) ~= "table" or v == NULL then expect(path, "a map (a table of string keys)", v) end
    local keys = {}
    for k in pairs(v) do
      if type(k) ~= "string" then fail(path, "expected a map (a table of string keys), got a " .. type(k) .. " key") end
      keys[#keys + 1] = k
    end
    sort(keys)
    buf[#buf + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then buf[#buf + 1] = "," end
      buf[#buf + 1] = quote_string(k) .. ":"
      write(buf, node.values, v[k], key_path(path, k))
    end
    buf[#buf + 1] = "}"
  elseif t == "record" then
    if type(v) ~= "table" or v == NULL then expect(path, "a record " .. node.name .. " (a table)", v) end
    buf[#buf + 1] = "{"
    for i, f in ipairs(node.fields) do
      if i > 1 then buf[#buf + 1] = "," end
      buf[#buf + 1] = quote_string(f.name) .. ":"
      local x = v[f.name]
      if x == nil and f.has_default and not fits(f.type, nil) then x = f.default end
      write(buf, f.type, x, key_path(path, f.name))
    end
    buf[#buf + 1] = "}"
  else
    fail(path, "unknown Avro type " .. tostring(t))
  end
end

function M.to_json(s, value)
  local node = node_of(s, "s:to_json")
  null()
  local buf = {}
  local ok, e = pcall(write, buf, node, value, "$")
  if ok then return concat(buf) end
  if getmetatable(e) ~= Fail then error(e, 0) end
  return nil, klua.errors.new{ name = "KLUA_SERIALIZATION", message = "cannot write Avro JSON: " .. e.path .. ": " .. e.msg,
    path = e.path }
end

-- ---- a JSON reader keeping integers exact ---------------------------------------------------

local JNULL = setmetatable({}, { __tostring = function() return "null" end })
local OBJ = { __name = "object" }
local ARR = { __name = "array" }
local BIG = { __name = "integer" } -- an integer literal beyond 2^53: { text = "..." }

local parse_value
local function perr(i, msg) error(setmetatable({ path = "", msg = msg .. " at byte " .. i }, Fail), 0) end

local function skip_ws(s, i)
  local _, e = find(s, "^[ \t\r\n]*", i)
  return e + 1
end

local function utf8_char(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64) end
  return char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64, 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end

local function parse_string(s, i) -- s[i] is the opening quote
  local parts = {}
  local j = i + 1
  while true do
    local a, b = find(s, '^[^"\\%z\1-\31]*', j)
    if b >= a then parts[#parts + 1] = sub(s, a, b) end
    j = b + 1
    local c = byte(s, j)
    if c == 34 then return concat(parts), j + 1 end
    if c == nil then perr(j, "unterminated string") end
    if c < 32 then perr(j, "control character in a string") end
    -- backslash
    local e = byte(s, j + 1)
    if e == 117 then -- \uXXXX
      local hex = sub(s, j + 2, j + 5)
      if not find(hex, "^%x%x%x%x$") then perr(j, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      j = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF and sub(s, j, j + 1) == "\\u" then
        local lo = tonumber(sub(s, j + 2, j + 5), 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
          j = j + 6
        end
      end
      parts[#parts + 1] = utf8_char(cp)
    else
      local m = ({ [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n", [114] = "\r",
        [116] = "\t" })[e]
      if not m then perr(j, "bad escape") end
      parts[#parts + 1] = m
      j = j + 2
    end
  end
end

local function parse_number(s, i)
  local a, b = find(s, "^-?%d+", i)
  if not a then
    for _, w in ipairs({ "NaN", "Infinity", "-Infinity" }) do
      if sub(s, i, i + #w - 1) == w then return (w == "NaN" and 0 / 0 or w == "Infinity" and huge or -huge), i + #w end
    end
    perr(i, "expected a value")
  end
  local int_only = true
  local _, e = find(s, "^%.%d+", b + 1)
  if e then b, int_only = e, false end
  _, e = find(s, "^[eE][-+]?%d+", b + 1)
  if e then b, int_only = e, false end
  local text = sub(s, a, b)
  local v = tonumber(text)
  if int_only and (v > TWO53 or v < -TWO53) then return setmetatable({ text = text }, BIG), b + 1 end
  return v, b + 1
end

function parse_value(s, i, depth)
  if depth > 512 then perr(i, "nesting deeper than 512") end
  i = skip_ws(s, i)
  local c = byte(s, i)
  if c == 34 then return parse_string(s, i) end
  if c == 123 then -- {
    local t = setmetatable({}, OBJ)
    local n = 0
    i = skip_ws(s, i + 1)
    if byte(s, i) == 125 then return t, i + 1 end
    while true do
      i = skip_ws(s, i)
      if byte(s, i) ~= 34 then perr(i, "expected a member name") end
      local k
      k, i = parse_string(s, i)
      i = skip_ws(s, i)
      if byte(s, i) ~= 58 then perr(i, "expected ':'") end
      local v
      v, i = parse_value(s, i + 1, depth + 1)
      if t[k] == nil then
        n = n + 1
      end
      t[k] = v
      i = skip_ws(s, i)
      c = byte(s, i)
      if c == 125 then return t, i + 1 end
      if c ~= 44 then perr(i, "expected ',' or '}'") end
      i = i + 1
    end
  end
  if c == 91 then -- [
    local t = setmetatable({}, ARR)
    i = skip_ws(s, i + 1)
    if byte(s, i) == 93 then return t, i + 1 end
    while true do
      local v
      v, i = parse_value(s, i, depth + 1)
      t[#t + 1] = v
      i = skip_ws(s, i)
      c = byte(s, i)
      if c == 93 then return t, i + 1 end
      if c ~= 44 then perr(i, "expected ',' or ']'") end
      i = i + 1
    end
  end
  if c == 116 and sub(s, i, i + 3) == "true" then return true, i + 4 end
  if c == 102 and sub(s, i, i + 4) == "false" then return false, i + 5 end
  if c == 110 and sub(s, i, i + 3) == "null" then return JNULL, i + 4 end
  if c == nil then perr(i, "unexpected end of text") end
  return parse_number(s, i)
end

local function parse_json(s)
  local v, i = parse_value(s, 1, 0)
  i = skip_ws(s, i)
  if i <= #s then perr(i, "unexpected text after the value") end
  return v
end

-- ---- from_json: parsed JSON -> the Lua mapping -------------------------------------------------

local function jshow(j)
  if j == JNULL then return "null" end
  local mt = getmetatable(j)
  if mt == OBJ then return "an object" end
  if mt == ARR then return "an array" end
  if mt == BIG then return "the number " .. j.text end
  if type(j) == "string" then return "a string" end
  return "the " .. type(j) .. " " .. tostring(j)
end
local function jexpect(path, what, j) fail(path, "expected " .. what .. ", got " .. jshow(j)) end

-- A JSON string of code points U+0000-U+00FF -> bytes.
local function to_bytes(s, path)
  if not find(s, "[\128-\255]") then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = byte(s, i)
    if c < 128 then
      out[#out + 1] = c
      i = i + 1
    elseif c >= 0xC2 and c <= 0xC3 and i < n then
      out[#out + 1] = (c - 0xC0) * 64 + (byte(s, i + 1) - 0x80)
      i = i + 2
    else
      fail(path, "expected bytes (a string of code points U+0000-U+00FF), got a character above U+00FF")
    end
  end
  local parts = {}
  for k = 1, #out, 4096 do parts[#parts + 1] = char(unpack(out, k, math.min(k + 4095, #out))) end
  return concat(parts)
end

local function parse_int64(text, path)
  local neg = sub(text, 1, 1) == "-"
  local digits = neg and sub(text, 2) or text
  local v = uint64_t(0)
  for k = 1, #digits do
    local d = byte(digits, k) - 48
    if v > (uint64_t(0xFFFFFFFFFFFFFFFFULL) - d) / 10 then fail(path, "expected a long, got " .. text .. " (beyond 64 bits)") end
    v = v * 10 + d
  end
  if neg then
    if v > uint64_t(2) ^ 63 then fail(path, "expected a long, got " .. text .. " (beyond 64 bits)") end
    return int64_t(-v)
  end
  if v >= uint64_t(2) ^ 63 then fail(path, "expected a long, got " .. text .. " (beyond 64 bits)") end
  return int64_t(v)
end

local function real(j, path, what)
  if type(j) == "number" then return j end
  if getmetatable(j) == BIG then return tonumber(j.text) end
  if j == "NaN" then return 0 / 0 end
  if j == "Infinity" then return huge end
  if j == "-Infinity" then return -huge end
  jexpect(path, what, j)
end

local function le32_at(s, k)
  local a, b, c, d = byte(s, k, k + 3)
  return a + b * 256 + c * 65536 + d * 16777216
end

local convert
local function container_value(node, j, path)
  local v = convert(node, j, path)
  if v == nil then return NULL end
  return v
end

function convert(node, j, path)
  local t = node.type
  if t == "union" then
    if j == JNULL then
      for _, b in ipairs(node.branches) do
        if b.type == "null" then return nil end
      end
      jexpect(path, "a non-null value of the union (a {\"TYPE\": value} object)", j)
    end
    if getmetatable(j) ~= OBJ then
      jexpect(path, "a union value as {\"TYPE\": value} (the Avro JSON encoding)", j)
    end
    local key, count
    count = 0
    for k in pairs(j) do
      key = k
      count = count + 1
    end
    if count ~= 1 then jexpect(path, "a union value as {\"TYPE\": value}, an object of one member", j) end
    for _, b in ipairs(node.branches) do
      local bn = branch_name(b)
      if bn == key or ((b.type == "record" or b.type == "enum" or b.type == "fixed") and (bn:match("([^.]+)$")) == key) then
        return convert(b, j[key], path)
      end
    end
    local names = {}
    for i, b in ipairs(node.branches) do names[i] = branch_name(b) end
    fail(path, format("%q is not a branch of the union [%s]", key, concat(names, ", ")))
  elseif t == "null" then
    if j ~= JNULL then jexpect(path, "null", j) end
    return nil
  elseif t == "boolean" then
    if type(j) ~= "boolean" then jexpect(path, "a boolean", j) end
    return j
  elseif t == "int" then
    if type(j) ~= "number" or j % 1 ~= 0 or j < -2147483648 or j > 2147483647 then
      jexpect(path, "an int (a whole number of 32 bits)", j)
    end
    return j
  elseif t == "long" then
    if type(j) == "number" then
      if j % 1 ~= 0 or j < -TWO63 or j >= TWO63 then jexpect(path, "a long (a whole number of 64 bits)", j) end
      if j > TWO53 or j < -TWO53 then return int64_t(j) end
      return j
    end
    if getmetatable(j) == BIG then return parse_int64(j.text, path) end
    jexpect(path, "a long (a whole number)", j)
  elseif t == "float" or t == "double" then
    return real(j, path, "a number")
  elseif t == "string" then
    if type(j) ~= "string" then jexpect(path, "a string", j) end
    return j
  elseif t == "bytes" or t == "fixed" then
    if type(j) ~= "string" then jexpect(path, "a string of bytes (code points U+0000-U+00FF)", j) end
    local b = to_bytes(j, path)
    if t == "fixed" and #b ~= node.size then
      fail(path, "expected " .. node.size .. " bytes (fixed " .. node.name .. "), got " .. #b)
    end
    if node.logical == "decimal" then return M.decimal_to_string(b, node.scale or 0) end
    if node.logical == "duration" then
      return { months = le32_at(b, 1), days = le32_at(b, 5), milliseconds = le32_at(b, 9) }
    end
    return b
  elseif t == "enum" then
    if type(j) ~= "string" or node.symbol_index[j] == nil then jexpect(path, "a symbol of the enum " .. node.name, j) end
    return j
  elseif t == "array" then
    if getmetatable(j) ~= ARR then jexpect(path, "an array", j) end
    local out = {}
    for i = 1, #j do out[i] = container_value(node.items, j[i], idx_path(path, i)) end
    if #j == 0 then klua.json.array(out) end
    return out
  elseif t == "map" then
    if getmetatable(j) ~= OBJ then jexpect(path, "an object (a map)", j) end
    local out = {}
    for k, x in pairs(j) do out[k] = container_value(node.values, x, key_path(path, k)) end
    return out
  elseif t == "record" then
    if getmetatable(j) ~= OBJ then jexpect(path, "an object (record " .. node.name .. ")", j) end
    local out = {}
    for _, f in ipairs(node.fields) do
      local x = j[f.name]
      if x ~= nil then
        out[f.name] = convert(f.type, x, key_path(path, f.name))
      elseif f.has_default then
        local d = f.default
        if type(d) == "table" then
          local function copy(v)
            if type(v) ~= "table" or v == NULL then return v end
            local c = {}
            for k, y in pairs(v) do c[k] = copy(y) end
            return setmetatable(c, getmetatable(v))
          end
          d = copy(d)
        end
        out[f.name] = d
      else
        fail(key_path(path, f.name), "missing (the field has no default)")
      end
    end
    for k in pairs(j) do
      if node.field_index[k] == nil then
        fail(key_path(path, k), "the record " .. node.name .. " has no such field")
      end
    end
    return out
  end
  fail(path, "unknown Avro type " .. tostring(t))
end

function M.from_json(s, text)
  local node = node_of(s, "s:from_json")
  if type(text) ~= "string" then klua.errors.bad_argument("s:from_json", 2, "expected JSON text, got " .. type(text)) end
  null()
  local ok, j = pcall(parse_json, text)
  if not ok then
    if getmetatable(j) ~= Fail then error(j, 0) end
    return nil, klua.errors.new{ name = "KLUA_DESERIALIZATION", message = "cannot read Avro JSON: bad JSON: " .. j.msg }
  end
  local v
  ok, v = pcall(convert, node, j, "$")
  if ok then return v end
  if getmetatable(v) ~= Fail then error(v, 0) end
  return nil, klua.errors.new{ name = "KLUA_DESERIALIZATION", message = "cannot read Avro JSON: " .. v.path .. ": " .. v.msg,
    path = v.path }
end

return M
