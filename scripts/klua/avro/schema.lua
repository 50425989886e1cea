-- klua.avro.schema: parses an Avro 1.11 schema (JSON text or its decoded table) into a tree of plain
-- tables, the "node" tree that the encoder/decoder generators (avro/codegen.lua), the resolver
-- (avro/resolve.lua) and the JSON encoding (avro/json.lua) read.
--
-- The node tree (stable: other modules depend on it)
--   Every node has `type`, one of the Avro type names:
--   primitives  { type = "null"|"boolean"|"int"|"long"|"float"|"double"|"bytes"|"string",
--                 logical = nil | "date"|"time-millis"|"time-micros"|"timestamp-millis"|"timestamp-micros"|
--                           "local-timestamp-millis"|"local-timestamp-micros"|"uuid"|"decimal",
--                 precision = n, scale = n (decimal only; scale defaults to 0) }
--                 A fresh table per occurrence (never shared), so a logical type stays with its use.
--   record      { type = "record", name = fullname, namespace = ns or nil, aliases = { fullname, ... },
--                 doc = text or nil,
--                 fields = { { name =, type = node, default = value, has_default = bool,
--                              aliases = { name, ... }, order = "ascending"|"descending"|"ignore",
--                              doc = } ... },
--                 field_index = { [field name] = position in fields } }
--                 ("error" declarations parse as records with is_error = true)
--   enum        { type = "enum", name = fullname, namespace =, aliases = {...}, symbols = { "A", ... },
--                 symbol_index = { [symbol] = 0-based index }, default = symbol or nil }
--   array       { type = "array", items = node }
--   map         { type = "map", values = node }
--   union       { type = "union", branches = { node, ... } }   (never nested, no duplicate unnamed types)
--   fixed       { type = "fixed", name = fullname, namespace =, aliases = {...}, size = n,
--                 logical = nil | "decimal" (precision, scale) | "duration" (size 12) }
--   Named nodes (record, enum, fixed) are shared: every reference to a name is the same table, so a
--   recursive type is a cycle in the tree (walk it with a `seen` set). Aliases are stored as
--   fullnames (resolved against the type's namespace) for named types, plain names for fields.
--   An invalid logical type (wrong underlying type, bad precision/scale, unknown name) is dropped as
--   the spec says: `logical` stays nil and the node is its underlying type.
--   Field defaults are stored already decoded into the Lua mapping of docs/avro.md (what decode would
--   give): a null default is has_default = true with default = nil; bytes/fixed defaults are byte
--   strings (JSON code points 0-255); a union default belongs to the first branch; record defaults are
--   tables of field values; long defaults are numbers.
--   Extra attributes (unknown keys) are kept in node.props = { [key] = decoded JSON } on named types,
--   arrays, maps and primitives-with-attributes; canonical form drops them.
--
-- Errors are KLUA_SCHEMA, their message starting with the path of the offending part:
-- "Order.lines.items: unknown type \"strng\"" (record fullname, then field names; ".items",
-- ".values" for arrays and maps, "[i]" for a union's branch, 0-based).
local ffi = require("ffi")
local bit = require("bit")

local M = {}

local type, pairs, ipairs, tostring, tonumber, floor = type, pairs, ipairs, tostring, tonumber, math.floor
local concat, format, byte, char = table.concat, string.format, string.byte, string.char

local JSON_NULL = klua.json.null

M.PRIMITIVE = { null = true, boolean = true, int = true, long = true, float = true, double = true,
                bytes = true, string = true }
local PRIMITIVE = M.PRIMITIVE
local NAMED = { record = true, error = true, enum = true, fixed = true }

-- Raised inside the parser, caught by M.parse and returned as nil, err.
local SchemaError = {}
SchemaError.__index = SchemaError

local function fail(path, fmt, ...)
  local msg = fmt:format(...)
  if path ~= "" then msg = path .. ": " .. msg end
  error(setmetatable({ message = msg, path = path }, SchemaError), 0)
end

local function describe(j)
  if j == JSON_NULL then return "null" end
  if type(j) == "string" then return format("%q", j) end
  if type(j) == "table" then return klua.json.encode(j) end
  return tostring(j)
end

local function valid_name(s)
  return type(s) == "string" and s:find("^[A-Za-z_][A-Za-z0-9_]*$") ~= nil
end

local function check_fullname(path, s, what)
  if type(s) ~= "string" then fail(path, "%s must be a string, got %s", what, describe(s)) end
  for part in (s .. "."):gmatch("([^.]*)%.") do
    if not valid_name(part) then fail(path, "invalid %s %q (each part must match [A-Za-z_][A-Za-z0-9_]*)", what, s) end
  end
end

-- fullname, namespace of a name declared in namespace ns.
local function make_fullname(name, ns)
  if name:find(".", 1, true) then
    return name, name:match("^(.*)%.[^.]*$")
  end
  if ns and ns ~= "" then return ns .. "." .. name, ns end
  return name, nil
end

local function is_integer(v)
  return type(v) == "number" and v == floor(v) and v > -math.huge and v < math.huge
end

-- UTF-8 text whose code points are all <= 255 -> the bytes (the JSON form of bytes/fixed defaults).
local function latin1(path, s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = byte(s, i)
    if c < 0x80 then
      out[#out + 1] = char(c); i = i + 1
    elseif c >= 0xC2 and c <= 0xC3 and i < n then
      local c2 = byte(s, i + 1)
      out[#out + 1] = char((c - 0xC0) * 64 + (c2 - 0x80)); i = i + 2
    else
      fail(path, "default for bytes/fixed has a character above U+00FF")
    end
  end
  return concat(out)
end

-- The JSON default j for node -> the Lua value (see the header). Raises a SchemaError on mismatch.
local function convert_default(node, j, path, top)
  local t = node.type
  local isnull = j == nil or j == JSON_NULL
  if t == "null" then
    if not isnull then fail(path, "default %s does not match type null", describe(j)) end
    if top then return nil end
    return JSON_NULL
  elseif t == "boolean" then
    if type(j) ~= "boolean" then fail(path, "default %s does not match type boolean", describe(j)) end
    return j
  elseif t == "int" then
    if not is_integer(j) or j < -2147483648 or j > 2147483647 then
      fail(path, "default %s does not match type int", describe(j))
    end
    return j
  elseif t == "long" then
    if not is_integer(j) then fail(path, "default %s does not match type long", describe(j)) end
    return j
  elseif t == "float" or t == "double" then
    if type(j) == "number" then return j end
    if j == "NaN" then return 0 / 0 elseif j == "Infinity" then return math.huge elseif j == "-Infinity" then return -math.huge end
    fail(path, "default %s does not match type %s", describe(j), t)
  elseif t == "string" then
    if type(j) ~= "string" then fail(path, "default %s does not match type string", describe(j)) end
    return j
  elseif t == "bytes" or t == "fixed" then
    if type(j) ~= "string" then fail(path, "default %s does not match type %s", describe(j), t) end
    local b = latin1(path, j)
    if t == "fixed" and #b ~= node.size then
      fail(path, "default %s has %d bytes, fixed %s has %d", describe(j), #b, node.name, node.size)
    end
    return b
  elseif t == "enum" then
    if type(j) ~= "string" or not node.symbol_index[j] then
      fail(path, "default %s is not a symbol of enum %s", describe(j), node.name)
    end
    return j
  elseif t == "array" then
    if type(j) ~= "table" or j == JSON_NULL then fail(path, "default %s does not match type array", describe(j)) end
    local out = {}
    for i = 1, #j do out[i] = convert_default(node.items, j[i], path, false) end
    if #out == 0 then out = klua.json.array(out) end
    return out
  elseif t == "map" then
    if type(j) ~= "table" or j == JSON_NULL or (#j > 0) then fail(path, "default %s does not match type map", describe(j)) end
    local out = {}
    for k, v in pairs(j) do
      if type(k) ~= "string" then fail(path, "default %s does not match type map", describe(j)) end
      out[k] = convert_default(node.values, v, path, false)
    end
    return out
  elseif t == "record" then
    if type(j) ~= "table" or j == JSON_NULL or (#j > 0) then fail(path, "default %s does not match record %s", describe(j), node.name) end
    local out = {}
    for _, f in ipairs(node.fields) do
      local v = j[f.name]
      if v ~= nil then
        out[f.name] = convert_default(f.type, v, path, true)
      elseif f.has_default then
        out[f.name] = f.default
      else
        fail(path, "default %s lacks field %q of record %s (which has no default)", describe(j), f.name, node.name)
      end
    end
    return out
  elseif t == "union" then
    local first = node.branches[1]
    if not first then fail(path, "default %s for an empty union", describe(j)) end
    return convert_default(first, j, path, top)
  end
  fail(path, "cannot check a default for type %s", tostring(t))
end
M.convert_default = convert_default

-- Logical types: the spec says an invalid one is ignored (the node stays its underlying type).
local LOGICAL_ON = {
  date = "int", ["time-millis"] = "int",
  ["time-micros"] = "long", ["timestamp-millis"] = "long", ["timestamp-micros"] = "long",
  ["local-timestamp-millis"] = "long", ["local-timestamp-micros"] = "long",
  uuid = "string",
}

local function max_decimal_digits(size)
  -- floor(log10(2^(8*size - 1) - 1)): the digits a signed two's-complement number of `size` bytes holds.
  if size <= 0 then return 0 end
  return floor((8 * size - 1) * math.log10(2))
end

local function apply_logical(node, j)
  local lt = j.logicalType
  if type(lt) ~= "string" then return end
  local t = node.type
  if lt == "decimal" then
    if t ~= "bytes" and t ~= "fixed" then return end
    local p, s = j.precision, j.scale
    if s == nil then s = 0 end
    if not is_integer(p) or p <= 0 or not is_integer(s) or s < 0 or s > p then return end
    if t == "fixed" and p > max_decimal_digits(node.size) then return end
    node.logical, node.precision, node.scale = "decimal", p, s
  elseif lt == "duration" then
    if t == "fixed" and node.size == 12 then node.logical = "duration" end
  elseif LOGICAL_ON[lt] == t then
    node.logical = lt
  end
end

local KNOWN_KEYS = {
  type = true, name = true, namespace = true, aliases = true, doc = true, fields = true, symbols = true,
  items = true, values = true, size = true, default = true, logicalType = true, precision = true, scale = true,
}

local function props_of(j)
  local props
  for k, v in pairs(j) do
    if not KNOWN_KEYS[k] then
      props = props or {}
      props[k] = v
    end
  end
  return props
end

local parse_type

local function parse_aliases(path, j, ns)
  local a = j.aliases
  if a == nil or a == JSON_NULL then return {} end
  if type(a) ~= "table" then fail(path, "aliases must be an array of names") end
  local out = {}
  for i, name in ipairs(a) do
    check_fullname(path, name, "alias")
    out[i] = make_fullname(name, ns)
  end
  return out
end

local function define(ctx, path, node, j, ns)
  local name = j.name
  if name == nil or name == JSON_NULL then fail(path, "a %s needs a name", node.type) end
  check_fullname(path, name, "name")
  local jns = j.namespace
  if jns ~= nil and jns ~= JSON_NULL then
    if type(jns) ~= "string" then fail(path, "namespace must be a string") end
    if jns ~= "" then check_fullname(path, jns, "namespace") end
    if not name:find(".", 1, true) then ns = jns end
  end
  local full, space = make_fullname(name, ns)
  if PRIMITIVE[full] then fail(path, "%q cannot be redefined", full) end
  if ctx.names[full] then fail(path, "%q is defined twice", full) end
  node.name, node.namespace = full, space
  node.aliases = parse_aliases(path, j, space)
  if type(j.doc) == "string" then node.doc = j.doc end
  node.props = props_of(j)
  ctx.names[full] = node
  return full, space
end

local function lookup(ctx, path, name, ns)
  if PRIMITIVE[name] then return { type = name } end
  local node
  if name:find(".", 1, true) then
    node = ctx.names[name]
  else
    if ns and ns ~= "" then node = ctx.names[ns .. "." .. name] end
    node = node or ctx.names[name]
  end
  if not node then fail(path, "unknown type %q", name) end
  return node
end

local function parse_record(ctx, j, ns, path)
  local node = { type = "record", is_error = j.type == "error" or nil }
  local full, space = define(ctx, path, node, j, ns)
  path = full
  local fields = j.fields
  if type(fields) ~= "table" or fields == JSON_NULL then fail(path, "a record needs a fields array") end
  node.fields, node.field_index = {}, {}
  for i, jf in ipairs(fields) do
    if type(jf) ~= "table" or jf == JSON_NULL then fail(path, "field %d is not an object", i) end
    local fname = jf.name
    if not valid_name(fname) then fail(path, "field %d has an invalid name %s", i, describe(fname)) end
    local fpath = path .. "." .. fname
    if node.field_index[fname] then fail(fpath, "duplicate field name") end
    if jf.type == nil then fail(fpath, "a field needs a type") end
    local f = { name = fname, type = parse_type(ctx, jf.type, space, fpath) }
    local order = jf.order
    if order ~= nil then
      if order ~= "ascending" and order ~= "descending" and order ~= "ignore" then
        fail(fpath, "order must be ascending, descending or ignore, got %s", describe(order))
      end
      f.order = order
    else
      f.order = "ascending"
    end
    if type(jf.doc) == "string" then f.doc = jf.doc end
    f.aliases = {}
    if type(jf.aliases) == "table" then
      for k, a in ipairs(jf.aliases) do
        if not valid_name(a) then fail(fpath, "invalid field alias %s", describe(a)) end
        f.aliases[k] = a
      end
    end
    if jf.default ~= nil then
      f.has_default = true
      f.default = convert_default(f.type, jf.default, fpath, true)
    else
      f.has_default = false
    end
    node.fields[i] = f
    node.field_index[fname] = i
  end
  return node
end

local function parse_enum(ctx, j, ns, path)
  local node = { type = "enum" }
  local full = define(ctx, path, node, j, ns)
  path = full
  local syms = j.symbols
  if type(syms) ~= "table" or syms == JSON_NULL then fail(path, "an enum needs a symbols array") end
  node.symbols, node.symbol_index = {}, {}
  for i, s in ipairs(syms) do
    if not valid_name(s) then fail(path, "invalid enum symbol %s", describe(s)) end
    if node.symbol_index[s] then fail(path, "duplicate enum symbol %q", s) end
    node.symbols[i] = s
    node.symbol_index[s] = i - 1
  end
  if j.default ~= nil and j.default ~= JSON_NULL then
    if not node.symbol_index[j.default] then fail(path, "enum default %s is not a symbol", describe(j.default)) end
    node.default = j.default
  end
  return node
end

local function parse_fixed(ctx, j, ns, path)
  local node = { type = "fixed" }
  local full = define(ctx, path, node, j, ns)
  if not is_integer(j.size) or j.size < 0 then fail(full, "a fixed needs a size (a whole number >= 0)") end
  node.size = j.size
  apply_logical(node, j)
  return node
end

local function union_key(b)
  if NAMED[b.type] then return b.name end
  return b.type
end

local function parse_union(ctx, j, ns, path)
  local node = { type = "union", branches = {} }
  local seen = {}
  for i, jb in ipairs(j) do
    local bpath = path .. "[" .. (i - 1) .. "]"
    local b = parse_type(ctx, jb, ns, bpath)
    if b.type == "union" then fail(bpath, "a union cannot directly contain a union") end
    local key = union_key(b)
    if seen[key] then fail(bpath, "duplicate %s in union", key) end
    seen[key] = true
    node.branches[i] = b
  end
  return node
end

parse_type = function(ctx, j, ns, path)
  local tj = type(j)
  if tj == "string" then
    return lookup(ctx, path, j, ns)
  elseif tj == "table" and j ~= JSON_NULL then
    if j[1] ~= nil or (next(j) == nil) then
      return parse_union(ctx, j, ns, path)
    end
    local t = j.type
    if type(t) == "table" and t ~= JSON_NULL then
      -- {"type": {...}}: the inner schema (as Java and fastavro read it).
      return parse_type(ctx, t, ns, path)
    end
    if type(t) ~= "string" then fail(path, "missing or invalid \"type\" in %s", describe(j)) end
    if t == "record" or t == "error" then
      return parse_record(ctx, j, ns, path)
    elseif t == "enum" then
      return parse_enum(ctx, j, ns, path)
    elseif t == "fixed" then
      return parse_fixed(ctx, j, ns, path)
    elseif t == "array" then
      if j.items == nil then fail(path, "an array needs items") end
      local node = { type = "array", props = props_of(j) }
      node.items = parse_type(ctx, j.items, ns, path .. ".items")
      return node
    elseif t == "map" then
      if j.values == nil then fail(path, "a map needs values") end
      local node = { type = "map", props = props_of(j) }
      node.values = parse_type(ctx, j.values, ns, path .. ".values")
      return node
    elseif PRIMITIVE[t] then
      local node = { type = t, props = props_of(j) }
      apply_logical(node, j)
      return node
    else
      -- {"type": "Name"}: a reference to a named type.
      return lookup(ctx, path, t, ns)
    end
  end
  fail(path, "invalid schema %s", describe(j))
end

-- parse(schema [, named]) -> node, names | nil, message, path.
-- named: { [fullname] = node } defined elsewhere (registry references).
function M.parse(schema, named)
  local j = schema
  if type(schema) == "string" then
    local err
    j, err = klua.json.decode(schema)
    if j == JSON_NULL then
      j = "null"  -- the bare type name null
    elseif j == nil then
      -- A bare name such as `string` (not JSON) is accepted as the type name, as the Java parser does.
      if schema:find("^%s*[A-Za-z_][A-Za-z0-9_.]*%s*$") then
        j = schema:match("^%s*(.-)%s*$")
      else
        return nil, "schema is not JSON: " .. tostring(err and err.message or err), ""
      end
    end
  end
  local ctx = { names = {} }
  if named then
    for k, v in pairs(named) do ctx.names[k] = v end
  end
  local ok, res = pcall(parse_type, ctx, j, nil, "")
  if not ok then
    if getmetatable(res) == SchemaError then return nil, res.message, res.path end
    error(res, 0)
  end
  return res, ctx.names
end

-- Parsing Canonical Form ([PRIMITIVE] [FULLNAMES] [STRIP] [ORDER] [STRINGS] [INTEGERS] [WHITESPACE]).
local function canon(node, out, seen)
  local t = node.type
  if t == "union" then
    out[#out + 1] = "["
    for i, b in ipairs(node.branches) do
      if i > 1 then out[#out + 1] = "," end
      canon(b, out, seen)
    end
    out[#out + 1] = "]"
  elseif NAMED[t] then
    if seen[node] then
      out[#out + 1] = '"' .. node.name .. '"'
      return
    end
    seen[node] = true
    out[#out + 1] = '{"name":"' .. node.name .. '","type":"' .. t .. '"'
    if t == "record" then
      out[#out + 1] = ',"fields":['
      for i, f in ipairs(node.fields) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = '{"name":"' .. f.name .. '","type":'
        canon(f.type, out, seen)
        out[#out + 1] = "}"
      end
      out[#out + 1] = "]}"
    elseif t == "enum" then
      out[#out + 1] = ',"symbols":['
      for i, s in ipairs(node.symbols) do
        out[#out + 1] = (i > 1 and ',"' or '"') .. s .. '"'
      end
      out[#out + 1] = "]}"
    else
      out[#out + 1] = ',"size":' .. format("%d", node.size) .. "}"
    end
  elseif t == "array" then
    out[#out + 1] = '{"type":"array","items":'
    canon(node.items, out, seen)
    out[#out + 1] = "}"
  elseif t == "map" then
    out[#out + 1] = '{"type":"map","values":'
    canon(node.values, out, seen)
    out[#out + 1] = "}"
  else
    out[#out + 1] = '"' .. t .. '"'
  end
end

function M.canonical(node)
  local out = {}
  canon(node, out, {})
  return concat(out)
end

-- CRC-64-AVRO (the spec's Rabin fingerprint), as fastavro prints it: the 8 bytes little-endian, in hex.
local crc_table
local EMPTY64 = 0xc15d213aa4d7a795ULL
function M.fingerprint(text)
  if not crc_table then
    crc_table = ffi.new("uint64_t[256]")
    for i = 0, 255 do
      local fp = ffi.cast("uint64_t", i)
      for _ = 1, 8 do
        fp = bit.bxor(bit.rshift(fp, 1), bit.band(EMPTY64, -bit.band(fp, 1)))
      end
      crc_table[i] = fp
    end
  end
  local fp = EMPTY64
  for i = 1, #text do
    fp = bit.bxor(bit.rshift(fp, 8), crc_table[tonumber(bit.band(bit.bxor(fp, byte(text, i)), 0xff))])
  end
  local out = {}
  for i = 1, 8 do
    out[i] = format("%02x", tonumber(bit.band(fp, 0xff)))
    fp = bit.rshift(fp, 8)
  end
  return concat(out)
end

return M
