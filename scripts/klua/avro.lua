-- klua.avro: Avro 1.11 schemas and their binary encoding (docs/avro.md).
--
--   local s = assert(klua.avro.parse('{"type":"record","name":"Order","fields":[...]}'))
--   local bytes = assert(s:encode{ id = 1, ... })     -- nil, err (KLUA_SERIALIZATION, err.path)
--   local t = assert(s:decode(bytes))                  -- nil, err (KLUA_DESERIALIZATION)
--   s:canonical(), s:fingerprint()                     -- Parsing Canonical Form, CRC-64-AVRO
--
-- The schema is parsed into a node tree (avro/schema.lua describes it); the encoder and decoder
-- are Lua generated per schema on first use (avro/codegen.lua) over the primitives of
-- avro/runtime.lua. Schema resolution (klua.avro.resolver) and the JSON encoding (s:to_json,
-- s:from_json) live in avro/resolve.lua and avro/json.lua.
local schema = require("klua.avro.schema")
local codegen = require("klua.avro.codegen")
local R = require("klua.avro.runtime")

local type, pairs, tostring, setmetatable, getmetatable = type, pairs, tostring, setmetatable, getmetatable
local floor, concat, format = math.floor, table.concat, string.format

local M = {}

local function argerr(fn, n, fmt, ...)
  klua.errors.bad_argument(fn, n, fmt:format(...))
end

local Schema = {}
Schema.__index = Schema
M.Schema = Schema

local function is_schema(v) return type(v) == "table" and getmetatable(v) == Schema end
M.is_schema = is_schema

-- The failing value's path from the tracking variant's stack.
local function path_string()
  local PT = codegen.PT
  local parts = { "$" }
  for i = 1, PT.n do
    local seg = PT[i]
    if type(seg) == "number" then parts[#parts + 1] = "[" .. (seg - 1) .. "]" else parts[#parts + 1] = seg end
  end
  return concat(parts)
end

-- (klua.errors.new keeps only the fields it knows: context such as path is set afterwards.)
local function ser_error(path, msg)
  local e = klua.errors.new { name = "KLUA_SERIALIZATION", message = path .. ": " .. msg }
  e.path = path
  return e
end

local function deser_error(path, msg)
  local e = klua.errors.new { name = "KLUA_DESERIALIZATION", message = path .. ": " .. msg }
  e.path = path
  return e
end

-- The encode/decode methods, generated on first use and stored on the instance (s.encode), so a
-- call is one table lookup and the generated code.
local function make_encode(s)
  local root = codegen.encoder(s.node)
  local put_raw, finish = R.put_raw, R.finish
  local tracked
  local function failed(v, prefix)
    local msg = R.err
    tracked = tracked or codegen.encoder(s.node, true)
    codegen.PT.n = 0
    local pos = prefix and put_raw(0, prefix) or 0
    if tracked(v, pos) == nil then return nil, ser_error(path_string(), R.err) end
    return nil, ser_error("$", msg)
  end
  return function(self, v, prefix)
    local pos = 0
    if prefix ~= nil then
      if type(prefix) ~= "string" then argerr("avro schema:encode", 3, "prefix: expected a string, got %s", type(prefix)) end
      pos = put_raw(0, prefix)
    end
    pos = root(v, pos)
    if pos == nil then return failed(v, prefix) end
    return finish(pos)
  end
end

local function make_decode(s)
  local root = codegen.decoder(s.node)
  local set_input = R.set_input
  local tracked
  local function failed(bytes, offset)
    local msg = R.err
    tracked = tracked or codegen.decoder(s.node, true)
    codegen.PT.n = 0
    set_input(bytes, #bytes)
    local _, pos = tracked(offset)
    if pos == nil then return nil, deser_error(path_string(), R.err) end
    return nil, deser_error("$", msg)
  end
  return function(self, bytes, offset)
    if type(bytes) ~= "string" then argerr("avro schema:decode", 2, "expected a string, got %s", type(bytes)) end
    local n = #bytes
    if offset == nil then
      offset = 0
    elseif type(offset) ~= "number" or offset < 0 or offset > n or offset ~= floor(offset) then
      argerr("avro schema:decode", 3, "offset: expected a whole number from 0 to %d, got %s", n, tostring(offset))
    end
    set_input(bytes, n)
    local v, pos = root(offset)
    if pos == nil then return failed(bytes, offset) end
    if pos ~= n then
      return nil, deser_error("$", format("%d trailing bytes after the value (at byte %d of %d)", n - pos, pos, n))
    end
    return v
  end
end

local function lazy_encode(self, v, prefix)
  self.encode = make_encode(self)
  return self:encode(v, prefix)
end

local function lazy_decode(self, bytes, offset)
  self.decode = make_decode(self)
  return self:decode(bytes, offset)
end

local function new_schema(node, names)
  return setmetatable({ node = node, type = node.type, name = node.name, names = names,
                        encode = lazy_encode, decode = lazy_decode }, Schema)
end

-- klua.avro.parse(schema [, { named = { [fullname] = parsed schema or node } }]) -> s | nil, err
function M.parse(text, opts)
  if type(text) ~= "string" and type(text) ~= "table" then
    argerr("klua.avro.parse", 1, "expected a schema (JSON text or a table), got %s", type(text))
  end
  local named
  if opts ~= nil then
    if type(opts) ~= "table" then argerr("klua.avro.parse", 2, "expected an options table, got %s", type(opts)) end
    for k in pairs(opts) do
      if k ~= "named" then argerr("klua.avro.parse", 2, "unknown option '%s'", tostring(k)) end
    end
    if opts.named ~= nil then
      if type(opts.named) ~= "table" then argerr("klua.avro.parse", 2, "named: expected a table, got %s", type(opts.named)) end
      named = {}
      for k, v in pairs(opts.named) do
        if is_schema(v) then
          for name, node in pairs(v.names) do named[name] = node end
          if v.node.name then named[v.node.name] = v.node end
          named[k] = v.node
        elseif type(v) == "table" and type(v.type) == "string" then
          named[k] = v
        else
          argerr("klua.avro.parse", 2, "named[%s]: expected a parsed schema, got %s", tostring(k), type(v))
        end
      end
    end
  end
  local node, names, path = schema.parse(text, named)
  if not node then
    local e = klua.errors.new { name = "KLUA_SCHEMA", message = names }
    e.path = path
    return nil, e
  end
  return new_schema(node, names)
end

function Schema:canonical()
  local c = self._canonical
  if not c then
    c = schema.canonical(self.node)
    self._canonical = c
  end
  return c
end

function Schema:fingerprint()
  local f = self._fingerprint
  if not f then
    f = schema.fingerprint(self:canonical())
    self._fingerprint = f
  end
  return f
end

function Schema:__tostring()
  return "avro schema " .. (self.name or self.type)
end

-- Schema resolution and the Avro JSON encoding (avro/resolve.lua, avro/json.lua).
function M.resolver(writer, reader)
  return require("klua.avro.resolve").resolver(writer, reader)
end

function Schema:to_json(v)
  return require("klua.avro.json").to_json(self, v)
end

function Schema:from_json(text)
  return require("klua.avro.json").from_json(self, text)
end

function Schema:decode_json(bytes, offset)
  return require("klua.avro.json").decode_json(self, bytes, offset)
end

return M
