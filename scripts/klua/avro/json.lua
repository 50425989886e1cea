-- klua.avro.json: the Avro JSON encoding (spec 1.11, "JSON Encoding"), both ways.
--
--   s:to_json(value) -> text | nil, err        (KLUA_SERIALIZATION with err.path)
--   s:from_json(text) -> value | nil, err      (KLUA_DESERIALIZATION with err.path; a bad JSON text too)
--   s:decode_json(bytes [, offset]) -> text | nil, err   (binary straight to JSON: the union branch
--                                                          that was written, no Lua value built)
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
--   object with sorted keys (decode_json: in the order of the bytes).
-- * union: null as null, any other branch as {"NAME": value}, NAME the branch's type ("string",
--   "array", "map") or a named type's fullname. to_json picks the branch the binary encoder picks:
--   the first the value fits (but a string that is not UTF-8 goes to a bytes branch when there is
--   one). from_json also takes a named type's unqualified name.
-- * string: bytes that are not UTF-8 are written as U+FFFD (klua.json.encode's "replace"), as Java.
-- * logical types are written as their underlying type (a decimal as its two's complement bytes,
--   a duration as its 12 bytes, a date as its int), as the spec and Java do; from_json gives the
--   Lua mapping back (decimal strings, duration tables).
-- from_json is strict where a typo would lose data: a field the schema lacks is an error, a missing
-- field takes its default (an error without one), an int out of range or a byte above U+00FF is an
-- error.
-- to_json and decode_json run code generated per schema with load(); the interpreting writer
-- (write) stays the reference, run again on a failure to name its path.
local ffi = require("ffi")

local type, tostring, tonumber, pairs, ipairs, setmetatable, getmetatable, error, pcall =
  type, tostring, tonumber, pairs, ipairs, setmetatable, getmetatable, error, pcall
local byte, char, sub, find, format, gsub, rep = string.byte, string.char, string.sub, string.find,
  string.format, string.gsub, string.rep
local concat, sort = table.concat, table.sort
local floor, huge = math.floor, math.huge

local M = {}

-- klua.errors.new keeps its known fields only: the path is set on the error afterwards.
local function new_error(name, message, path)
  local e = klua.errors.new{ name = name, message = message }
  if path then e.path = path end
  return e
end

-- ---- shared bits ----------------------------------------------------------------------------

local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local fbox = ffi.new("float[1]")
local function tofloat(v)
  fbox[0] = v
  return fbox[0]
end
local TWO53, TWO63 = 2 ^ 53, 2 ^ 63
local U63 = uint64_t(2) ^ 63

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

local function idx_path(path, i) return path .. "[" .. (i - 1) .. "]" end -- 0-based, as the encoder's paths
local function key_path(path, k) return path .. '["' .. k .. '"]' end -- a map's key
local function field_path(path, name) return path .. "." .. name end

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

-- ---- which union branch a value goes to: the binary encoder's choice (avro/codegen.lua) -------
-- By the value's Lua type: the first branch taking that type (a float branch is passed over when a
-- double follows, as fastavro does); among several branches taking tables, codegen's choose_table
-- (the validating record naming most of the value's keys, else the first validating map/array).

local codegen = require("klua.avro.codegen")
local R = require("klua.avro.runtime")
local choose_table = codegen.choose_table

local function takes(node, i, b, lt, v)
  local t, lg = b.type, b.logical
  if t == "null" then return lt == "null" end
  if t == "boolean" then return lt == "boolean" end
  if t == "int" then return lt == "number" and v % 1 == 0 and v >= -2147483648 and v <= 2147483647 end
  if t == "long" then
    return (lt == "number" and v % 1 == 0 and v >= -TWO63 and v < TWO63) or lt == "cdata"
  end
  if t == "float" or t == "double" then
    if t == "float" then
      for j = i + 1, #node.branches do
        if node.branches[j].type == "double" then return false end
      end
    end
    return lt == "number" or lt == "cdata"
  end
  if (t == "bytes" or t == "fixed") and lg == "decimal" then
    return lt == "number" or (lt == "string" and codegen.is_decimal(v))
  end
  if t == "string" or t == "bytes" then return lt == "string" end
  if t == "fixed" and lg == "duration" then return lt == "table" end
  if t == "fixed" then return lt == "string" and #v == b.size end
  if t == "enum" then return lt == "string" and b.symbol_index[v] ~= nil end
  return lt == "table" -- record, array, map
end

-- Is s well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF)?
local function valid_utf8(s)
  if not find(s, "[\128-\255]") then return true end
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1
    else
      local len, lo, hi = 0, 0x80, 0xBF
      if c >= 0xC2 and c <= 0xDF then len = 1
      elseif c == 0xE0 then len, lo = 2, 0xA0
      elseif c >= 0xE1 and c <= 0xEC or c == 0xEE or c == 0xEF then len = 2
      elseif c == 0xED then len, hi = 2, 0x9F
      elseif c == 0xF0 then len, lo = 3, 0x90
      elseif c >= 0xF1 and c <= 0xF3 then len = 3
      elseif c == 0xF4 then len, hi = 3, 0x8F
      else return false end
      local c2 = byte(s, i + 1)
      if not c2 or c2 < lo or c2 > hi then return false end
      for k = i + 2, i + len do
        local ck = byte(s, k)
        if not ck or ck < 0x80 or ck > 0xBF then return false end
      end
      i = i + len + 1
    end
  end
  return true
end

local function pick_branch(node, v)
  local lt = type(v)
  if v == nil or v == NULL then lt = "null" end
  if lt == "table" then
    local tl = {}
    for i, b in ipairs(node.branches) do
      if takes(node, i, b, lt, v) then tl[#tl + 1] = b end
    end
    if #tl == 1 then return tl[1] end
    local j = #tl > 1 and choose_table(tl, v) or 0
    return tl[j]
  end
  for i, b in ipairs(node.branches) do
    if takes(node, i, b, lt, v) then
      -- bytes that are not UTF-8 would lose data as a string (U+FFFD): a bytes branch takes them
      if b.type == "string" and not valid_utf8(v) then
        for _, bb in ipairs(node.branches) do
          if bb.type == "bytes" and not bb.logical then return bb end
        end
      end
      return b
    end
  end
end
M.pick_branch = pick_branch

local function fits_int(v, lo, hi)
  if type(v) == "number" then return v % 1 == 0 and v >= lo and v <= hi end
  if is_int64(v) then
    if ffi.istype(uint64_t, v) then return v <= uint64_t(hi) end
    return v >= lo and v <= hi
  end
  return false
end

-- ---- to_json --------------------------------------------------------------------------------

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
  ["\b"] = "\\b", ["\f"] = "\\f" }
local function esc_char(c) return ESC[c] or format("\\u%04x", byte(c)) end

-- A string with bytes above 127 goes through klua.json.encode, which checks the UTF-8 and writes
-- U+FFFD for each invalid sequence (bytes read as a string may be anything; the output stays JSON,
-- as Java's, which decodes them with replacement too).
local REPLACE = { invalid_utf8 = "replace" }
local function quote_string(s)
  if not find(s, '[%z\1-\31"\\\128-\255]') then return '"' .. s .. '"' end
  if find(s, "[\128-\255]") then return klua.json.encode(s, REPLACE) end
  return '"' .. gsub(s, '[%z\1-\31"\\]', esc_char) .. '"'
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
    s = tostring(v) -- %.14g: most doubles read back from it
    if tonumber(s) ~= v then
      for prec = 15, 17 do
        s = format("%." .. prec .. "g", v)
        if tonumber(s) == v then break end
      end
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
    if not (fits_int(v, -TWO63, TWO63 - 1) or (is_int64(v) and not (ffi.istype(uint64_t, v) and v >= U63))) then expect(path, "a long (a whole number of 64 bits or int64 cdata)", v) end
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
      s, why = R.decimal_bytes(v, node.scale or 0, node.precision)
      if not s then fail(path, why) end
      if t == "fixed" then
        if #s > node.size then fail(path, "decimal " .. tostring(v) .. " does not fit fixed " .. node.name) end
        s = rep(byte(s, 1) >= 128 and "\255" or "\0", node.size - #s) .. s
      end
    elseif node.logical == "duration" then
      if type(v) ~= "table" then expect(path, "a duration {months=, days=, milliseconds=}", v) end
      local parts = {}
      for i, k in ipairs({ "months", "days", "milliseconds" }) do
        local x = v[k] or 0
        if type(x) ~= "number" or x % 1 ~= 0 or x < 0 or x > 4294967295 then
          expect(field_path(path, k), "a whole number from 0 to 2^32-1", x)
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
      if x == nil and f.has_default and f.default ~= nil and f.default ~= NULL then -- as the encoder does
        x = M.mapped_default(f.type, f.default)
      end
      write(buf, f.type, x, field_path(path, f.name))
    end
    buf[#buf + 1] = "}"
  else
    fail(path, "unknown Avro type " .. tostring(t))
  end
end

-- ---- to_json, generated per schema --------------------------------------------------------
-- The writer above is the reference (and names the path of a failure); for speed, to_json runs a
-- writer generated per schema with load(): one function per record, the rest inline, constants
-- ('"name":', quoted enum symbols) precomputed. On any mismatch it stops, and the reference
-- writer runs again to say where and why.

local CG = {}
CG.__index = CG

function CG:const(v)
  local i = v == v and self.kidx[v] -- NaN cannot be a table key
  if not i then
    i = #self.K + 1
    self.K[i] = v
    if v == v then self.kidx[v] = i end
  end
  return "K[" .. i .. "]"
end

function CG:var()
  self.nv = self.nv + 1
  return "x" .. self.nv
end

local function emit(code, s) code[#code + 1] = s end
local function put(code, expr) code[#code + 1] = "n = n + 1; buf[n] = " .. expr .. "\n" end

function CG:gen(code, node, v)
  local t = node.type
  if t == "union" then
    local b = self:var()
    emit(code, "do local " .. b .. " = PICK(" .. self:const(node) .. ", " .. v .. ")\n")
    for i, br in ipairs(node.branches) do
      emit(code, (i == 1 and "if " or "elseif ") .. b .. " == " .. self:const(br) .. " then\n")
      if br.type == "null" then
        put(code, '"null"')
      else
        put(code, self:const("{" .. quote_string(branch_name(br)) .. ":"))
        self:gen(code, br, v)
        put(code, '"}"')
      end
    end
    emit(code, (#node.branches > 0 and "else " or "") .. "FAIL()" .. (#node.branches > 0 and " end" or "") .. " end\n")
  elseif t == "null" then
    emit(code, "if " .. v .. " ~= nil and " .. v .. " ~= NULL then FAIL() end\n")
    put(code, '"null"')
  elseif t == "boolean" then
    emit(code, "if " .. v .. " == true then n = n + 1; buf[n] = \"true\" elseif " .. v
      .. " == false then n = n + 1; buf[n] = \"false\" else FAIL() end\n")
  elseif t == "int" or t == "long" then
    local lo, hi = t == "int" and "-2147483648" or "-9007199254740992", t == "int" and "2147483647" or "9007199254740992"
    -- whole numbers within 1e14 print exactly with tostring; the rest through the checked helper
    emit(code, "if type(" .. v .. ") == \"number\" and " .. v .. " % 1 == 0 and " .. v .. " >= -1e14 and " .. v
      .. " <= 1e14 and " .. v .. " >= " .. lo .. " and " .. v .. " <= " .. hi .. " then n = n + 1; buf[n] = tostring(" .. v
      .. ") else n = n + 1; buf[n] = " .. (t == "int" and "INTTEXT" or "LONGTEXT") .. "(" .. v .. ") end\n")
  elseif t == "float" or t == "double" then
    emit(code, "if type(" .. v .. ") ~= \"number\" and not is_int64(" .. v .. ") then FAIL() end\n")
    put(code, "real_text(" .. v .. ", " .. tostring(t == "float") .. ")")
  elseif t == "string" then
    emit(code, "if type(" .. v .. ") ~= \"string\" then FAIL() end\n")
    put(code, "quote_string(" .. v .. ")")
  elseif t == "bytes" or t == "fixed" then
    if node.logical then
      put(code, "SLOW(" .. self:const(node) .. ", " .. v .. ")")
    else
      local cond = "type(" .. v .. ") ~= \"string\""
      if t == "fixed" then cond = cond .. " or #" .. v .. " ~= " .. node.size end
      emit(code, "if " .. cond .. " then FAIL() end\n")
      put(code, "quote_bytes(" .. v .. ")")
    end
  elseif t == "enum" then
    local q = {}
    for _, sym in ipairs(node.symbols) do q[sym] = quote_string(sym) end
    local x = self:var()
    emit(code, "do local " .. x .. " = " .. self:const(q) .. "[" .. v .. "]\nif not " .. x .. " then FAIL() end\n")
    put(code, x)
    emit(code, "end\n")
  elseif t == "array" then
    local i = self:var()
    emit(code, "if type(" .. v .. ") ~= \"table\" or " .. v .. " == NULL then FAIL() end\n")
    put(code, '"["')
    emit(code, "for " .. i .. " = 1, #" .. v .. " do\nif " .. i .. " > 1 then n = n + 1; buf[n] = \",\" end\n")
    local item = self:var()
    emit(code, "local " .. item .. " = " .. v .. "[" .. i .. "]\n")
    self:gen(code, node.items, item)
    emit(code, "end\n")
    put(code, '"]"')
  elseif t == "map" then
    local keys, i, k = self:var(), self:var(), self:var()
    emit(code, "if type(" .. v .. ") ~= \"table\" or " .. v .. " == NULL then FAIL() end\n")
    emit(code, "do local " .. keys .. " = SORTED(" .. v .. ")\n")
    put(code, '"{"')
    emit(code, "for " .. i .. " = 1, #" .. keys .. " do\nlocal " .. k .. " = " .. keys .. "[" .. i .. "]\n"
      .. "n = n + 1; buf[n] = (" .. i .. " > 1 and \",\" or \"\") .. quote_string(" .. k .. ") .. \":\"\n")
    local val = self:var()
    emit(code, "local " .. val .. " = " .. v .. "[" .. k .. "]\n")
    self:gen(code, node.values, val)
    emit(code, "end\nend\n")
    put(code, '"}"')
  elseif t == "record" then
    emit(code, "n = " .. self:record_fn(node) .. "(" .. v .. ", buf, n)\n")
  else
    emit(code, "FAIL()\n")
  end
end

function CG:record_fn(node)
  local idx = self.fidx[node]
  if idx then return "F[" .. idx .. "]" end
  idx = #self.funcs + 1
  self.fidx[node] = idx
  self.funcs[idx] = false -- reserved: recursive references call it
  local code = { "F[" .. idx .. "] = function(v, buf, n)\nif type(v) ~= \"table\" or v == NULL then FAIL() end\n" }
  for i, f in ipairs(node.fields) do
    local x = self:var()
    emit(code, "do local " .. x .. " = v[" .. self:const(f.name) .. "]\n")
    if f.has_default and f.default ~= nil and f.default ~= NULL then
      emit(code, "if " .. x .. " == nil then " .. x .. " = " .. self:const(M.mapped_default(f.type, f.default)) .. " end\n")
    end
    put(code, self:const((i == 1 and "{" or ",") .. quote_string(f.name) .. ":"))
    self:gen(code, f.type, x)
    emit(code, "end\n")
  end
  put(code, #node.fields == 0 and '"{}"' or '"}"')
  emit(code, "return n\nend\n")
  self.funcs[idx] = concat(code)
  return "F[" .. idx .. "]"
end

local function sorted_keys(t)
  local keys, n = {}, 0
  for k in pairs(t) do
    if type(k) ~= "string" then fail("", "a key that is not a string") end
    n = n + 1
    keys[n] = k
  end
  sort(keys)
  return keys
end

local function fast_fail() error(Fail, 0) end

-- A logical bytes/fixed value through the reference writer (decimal, duration: rare and costly anyway).
local function slow(node, v)
  local b = {}
  write(b, node, v, "$")
  return concat(b)
end
local function int_text_checked(v)
  if not fits_int(v, -2147483648, 2147483647) then fast_fail() end
  return int_text(v)
end
local function long_text_checked(v)
  if not (fits_int(v, -TWO63, TWO63 - 1) or (is_int64(v) and not (ffi.istype(uint64_t, v) and v >= U63))) then fast_fail() end
  return int_text(v)
end

local function compile_writer(node)
  local g = setmetatable({ K = {}, kidx = {}, funcs = {}, fidx = {}, nv = 0 }, CG)
  local top = {}
  g:gen(top, node, "v")
  local src = { "local K, F, NULL, PICK, FAIL, SLOW, INTTEXT, LONGTEXT, SORTED, quote_string, quote_bytes, real_text, "
    .. "is_int64, type, tostring = ...\n" }
  for _, f in ipairs(g.funcs) do src[#src + 1] = f end
  src[#src + 1] = "return function(v, buf)\nlocal n = 0\n" .. concat(top) .. "return n\nend\n"
  local chunk = assert(load(concat(src), "=klua.avro to_json"))
  return chunk(g.K, {}, NULL, pick_branch, fast_fail, slow, int_text_checked, long_text_checked, sorted_keys,
    quote_string, quote_bytes, real_text, is_int64, type, tostring)
end

local writers = setmetatable({}, { __mode = "k" }) -- [node] = generated writer
local wbuf = {}

function M.to_json(s, value)
  local node = node_of(s, "s:to_json")
  null()
  local w = writers[node]
  if not w then
    w = compile_writer(node)
    writers[node] = w
  end
  local ok, n = pcall(w, value, wbuf)
  if ok then
    local text = concat(wbuf, "", 1, n)
    for i = 1, n do wbuf[i] = nil end
    return text
  end
  for i = #wbuf, 1, -1 do wbuf[i] = nil end
  if n ~= Fail and getmetatable(n) ~= Fail then
    if type(n) == "string" and find(n, "stack overflow", 1, true) then
      return nil, new_error("KLUA_SERIALIZATION", "cannot write Avro JSON: $: the value nests too deep "
        .. "(a table that contains itself?)", "$")
    end
    error(n, 0)
  end
  -- the reference writer names the path
  local buf = {}
  local e
  ok, e = pcall(write, buf, node, value, "$")
  if ok then -- the generated writer refused what the reference takes: trust the reference
    return concat(buf)
  end
  if getmetatable(e) ~= Fail then error(e, 0) end
  return nil, new_error("KLUA_SERIALIZATION", "cannot write Avro JSON: " .. e.path .. ": " .. e.msg, e.path)
end

-- ---- decode_json: binary straight to Avro JSON text ----------------------------------------------
-- For printing what a topic holds (klua consume): the text comes from the bytes, so a union names
-- the branch that was written (a Lua value cannot tell int from long, string from bytes) and no
-- Lua value is built. Generated per schema over avro/resolve.lua's readers; on a failure s:decode
-- runs to give the error its path. Maps keep the order of the wire.

local DJ = setmetatable({}, { __index = CG })
DJ.__index = DJ

local function long_text(v)
  if type(v) == "number" and v >= -1e14 and v <= 1e14 then return tostring(v) end
  return int_text(v)
end

function DJ:gen(code, node)
  local t = node.type
  if t == "union" then
    local b = self:var()
    emit(code, "do local " .. b .. "; " .. b .. ", pos = rlong(p, pos, n)\n")
    for i, br in ipairs(node.branches) do
      emit(code, (i == 1 and "if " or "elseif ") .. b .. " == " .. (i - 1) .. " then\n")
      if br.type == "null" then
        put(code, '"null"')
      else
        put(code, self:const("{" .. quote_string(branch_name(br)) .. ":"))
        self:gen(code, br)
        put(code, '"}"')
      end
    end
    emit(code, (#node.branches > 0 and "else " or "") .. "fail(\"bad union index \" .. tostring(" .. b
      .. "))" .. (#node.branches > 0 and " end" or "") .. " end\n")
  elseif t == "null" then
    put(code, '"null"')
  elseif t == "boolean" then
    local x = self:var()
    emit(code, "do local " .. x .. "; " .. x .. ", pos = rbool(p, pos, n)\n")
    put(code, x .. ' and "true" or "false"')
    emit(code, "end\n")
  elseif t == "int" or t == "long" or t == "float" or t == "double" or t == "string" or t == "bytes" then
    local x = self:var()
    local rd = ({ int = "rint", long = "rlong", float = "rfloat", double = "rdouble", string = "rstr", bytes = "rstr" })[t]
    local fmt = ({ int = "tostring", long = "long_text", string = "quote_string", bytes = "quote_bytes" })[t]
    emit(code, "do local " .. x .. "; " .. x .. ", pos = " .. rd .. "(p, pos, n)\n")
    if t == "float" or t == "double" then
      put(code, "real_text(" .. x .. ", " .. tostring(t == "float") .. ")")
    else
      put(code, fmt .. "(" .. x .. ")")
    end
    emit(code, "end\n")
  elseif t == "fixed" then
    local x = self:var()
    emit(code, "do local " .. x .. "; " .. x .. ", pos = rfixed(p, pos, n, " .. node.size .. ")\n")
    put(code, "quote_bytes(" .. x .. ")")
    emit(code, "end\n")
  elseif t == "enum" then
    local q = {}
    for i, sym in ipairs(node.symbols) do q[i - 1] = quote_string(sym) end
    local x = self:var()
    emit(code, "do local " .. x .. "; " .. x .. ", pos = rlong(p, pos, n)\n")
    emit(code, "local q = " .. self:const(q) .. "[" .. x .. "]\nif not q then fail(\"bad enum index \" .. tostring("
      .. x .. ")) end\n")
    put(code, "q")
    emit(code, "end\n")
  elseif t == "array" or t == "map" then
    local c, first = self:var(), self:var()
    local inner = t == "array" and node.items or node.values
    local minsize = require("klua.avro.resolve").rt.min_size(inner) + (t == "map" and 1 or 0)
    put(code, t == "array" and '"["' or '"{"')
    emit(code, "do local " .. first .. " = true\nwhile true do\nlocal " .. c .. "; " .. c .. ", pos = rcount(p, pos, n, "
      .. minsize .. ")\nif " .. c .. " == 0 then break end\nfor _ = 1, " .. c .. " do\n"
      .. "if " .. first .. " then " .. first .. " = false else n = n + 1; buf[n] = \",\" end\n")
    if t == "map" then
      local k = self:var()
      emit(code, "local " .. k .. "; " .. k .. ", pos = rstr(p, pos, n)\n")
      put(code, "quote_string(" .. k .. ") .. \":\"")
    end
    self:gen(code, inner)
    emit(code, "end\nend\nend\n")
    put(code, t == "array" and '"]"' or '"}"')
  elseif t == "record" then
    emit(code, "pos, bn = " .. self:record_fn(node) .. "(p, pos, n, buf, bn)\n")
  else
    emit(code, "fail(\"unknown type\")\n")
  end
end

-- The generated code names the input's end `n` for the readers and the buffer's count `bn`; put()
-- above writes "n = n + 1; buf[n]": the generator emits with the names swapped back at the end.
function DJ:record_fn(node)
  local idx = self.fidx[node]
  if idx then return "F[" .. idx .. "]" end
  idx = #self.funcs + 1
  self.fidx[node] = idx
  self.funcs[idx] = false
  local code = { "F[" .. idx .. "] = function(p, pos, n, buf, bn)\n"
    .. "local d = DEPTH.n + 1\nif d > 500 then fail(\"records nested deeper than 500\") end\nDEPTH.n = d\n" }
  for i, f in ipairs(node.fields) do
    put(code, self:const((i == 1 and "{" or ",") .. quote_string(f.name) .. ":"))
    self:gen(code, f.type)
  end
  put(code, #node.fields == 0 and '"{}"' or '"}"')
  emit(code, "DEPTH.n = d - 1\nreturn pos, bn\nend\n")
  self.funcs[idx] = concat(code)
  return "F[" .. idx .. "]"
end

local function fix_names(text)
  -- put() counts in `n`; in the decoder `n` is the input's end and `bn` the buffer's count
  return (gsub(text, "n = n %+ 1; buf%[n%]", "bn = bn + 1; buf[bn]"))
end

local function compile_decode_json(node)
  local rt = require("klua.avro.resolve").rt
  local g = setmetatable({ K = {}, kidx = {}, funcs = {}, fidx = {}, nv = 0 }, DJ)
  local top = {}
  g:gen(top, node)
  local src = { "local K, F, DEPTH, fail, rlong, rint, rstr, rbool, rfloat, rdouble, rfixed, rcount, "
    .. "quote_string, quote_bytes, real_text, long_text, tostring = ...\n" }
  for _, f in ipairs(g.funcs) do src[#src + 1] = fix_names(f) end
  src[#src + 1] = "return function(p, pos, n, buf)\nlocal bn = 0\n" .. fix_names(concat(top)) .. "return pos, bn\nend\n"
  local chunk = assert(load(concat(src), "=klua.avro decode_json"))
  return chunk(g.K, {}, rt.DEPTH, rt.fail, rt.rlong, rt.rint, rt.rstr, rt.rbool, rt.rfloat, rt.rdouble, rt.rfixed,
    rt.rcount, quote_string, quote_bytes, real_text, long_text, tostring)
end

local djs = setmetatable({}, { __mode = "k" }) -- [node] = generated binary-to-JSON decoder

function M.decode_json(s, bytes, offset)
  local node = node_of(s, "s:decode_json")
  if type(bytes) ~= "string" then klua.errors.bad_argument("s:decode_json", 2, "expected a string, got " .. type(bytes)) end
  local len = #bytes
  offset = offset or 0
  if type(offset) ~= "number" or offset < 0 or offset > len or offset % 1 ~= 0 then
    klua.errors.bad_argument("s:decode_json", 3, "offset: expected a whole number from 0 to " .. len .. ", got "
      .. tostring(offset))
  end
  null()
  local dj = djs[node]
  if not dj then
    dj = compile_decode_json(node)
    djs[node] = dj
  end
  local rt = require("klua.avro.resolve").rt
  rt.DEPTH.n = 0
  local ok, pos, bn = pcall(dj, ffi.cast(rt.u8p, bytes), offset, len, wbuf)
  if ok and pos == len then
    local text = concat(wbuf, "", 1, bn)
    for i = 1, bn do wbuf[i] = nil end
    return text
  end
  for i = #wbuf, 1, -1 do wbuf[i] = nil end
  if not ok and getmetatable(pos) ~= rt.Fail then error(pos, 0) end
  -- s:decode names the path (and says the same about trailing bytes)
  if type(s.decode) == "function" then
    local _, err = s:decode(bytes, offset)
    if err then return nil, err end
  end
  return nil, new_error("KLUA_DESERIALIZATION", "$: cannot decode Avro data")
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
  -- 16 digits and more may be beyond 2^53, where the double is not the integer: kept as text
  if int_only and b - a >= 15 then return setmetatable({ text = text }, BIG), b + 1 end
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
    elseif c >= 0xC2 and c <= 0xC3 and i < n and byte(s, i + 1) >= 0x80 and byte(s, i + 1) <= 0xBF then
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

local function deepcopy(v)
  if type(v) ~= "table" or v == NULL then return v end
  local c = {}
  for k, y in pairs(v) do c[k] = deepcopy(y) end
  return setmetatable(c, getmetatable(v))
end

-- A field's default in the Lua mapping. avro/schema.lua stores a decimal's or a duration's default
-- as its bytes (the JSON default's code points); decode gives a decimal string and a duration
-- table, so do defaults here (a value already in that form is kept).
function M.mapped_default(node, d)
  if node.type == "union" then node = node.branches[1] or node end
  if type(d) ~= "string" then return d end
  if node.logical == "decimal" and (node.type == "bytes" or node.type == "fixed") then
    local scale = node.scale or 0
    local pat = scale > 0 and ("^%-?%d+%." .. rep("%d", scale) .. "$") or "^%-?%d+$"
    if find(d, pat) then return d end
    return R.decimal_string(d, scale)
  elseif node.logical == "duration" and node.type == "fixed" and #d == 12 then
    return { months = le32_at(d, 1), days = le32_at(d, 5), milliseconds = le32_at(d, 9) }
  end
  return d
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
    if getmetatable(j) == BIG then
      local v = parse_int64(j.text, path)
      if v >= -TWO53 and v <= TWO53 then return tonumber(v) end
      return v
    end
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
    if node.logical == "decimal" then return R.decimal_string(b, node.scale or 0) end
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
    return klua.json.array(out) -- marked, as s:decode's arrays
  elseif t == "map" then
    if getmetatable(j) ~= OBJ then jexpect(path, "an object (a map)", j) end
    local out = {}
    for k, x in pairs(j) do out[k] = container_value(node.values, x, key_path(path, k)) end
    return out
  elseif t == "record" then
    if getmetatable(j) ~= OBJ then jexpect(path, "an object (record " .. node.name .. ")", j) end
    -- a member the record lacks first: a typo names itself rather than the field it misses
    for k in pairs(j) do
      if node.field_index[k] == nil then
        fail(field_path(path, k), "the record " .. node.name .. " has no such field")
      end
    end
    local out = {}
    for _, f in ipairs(node.fields) do
      local x = j[f.name]
      if x ~= nil then
        out[f.name] = convert(f.type, x, field_path(path, f.name))
      elseif f.has_default then
        local d = M.mapped_default(f.type, f.default)
        if type(d) == "table" then d = deepcopy(d) end
        if d ~= NULL then out[f.name] = d end
      else
        fail(field_path(path, f.name), "missing (the field has no default)")
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
    return nil, new_error("KLUA_DESERIALIZATION", "cannot read Avro JSON: bad JSON: " .. j.msg)
  end
  local v
  ok, v = pcall(convert, node, j, "$")
  if ok then return v end
  if getmetatable(v) ~= Fail then error(v, 0) end
  return nil, new_error("KLUA_DESERIALIZATION", "cannot read Avro JSON: " .. v.path .. ": " .. v.msg, v.path)
end

return M
