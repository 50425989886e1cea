-- klua.protobuf: Protobuf schemas compiled at run time (.proto text, or a FileDescriptorProto as Python's
-- ProtobufSerializer registers it), Lua tables to and from the binary encoding, proto3 JSON, and the
-- Confluent message-index array. The work is in bindings/protobuf.cpp (P); this file checks arguments,
-- makes the objects and turns the primitives' `nil, name, message, path` into klua errors.
local klua, protobuf, P = ...
local E = klua.errors
local ffi = require("ffi")
local type, pairs, setmetatable, rawget, tostring, floor = type, pairs, setmetatable, rawget, tostring, math.floor
local P_encode, P_decode = P.encode, P.decode

-- 64-bit integers: what P's encoder asks of a cdata value, and how its decoder makes one (|v| > 2^53).
local I64, U64 = tonumber(ffi.typeof("int64_t")), tonumber(ffi.typeof("uint64_t"))
local i64box, u64box = ffi.new("int64_t[1]"), ffi.new("uint64_t[1]")
P.init(klua.json and klua.json.null,
  function(v)
    local id = tonumber(ffi.typeof(v))
    return id == I64 and 1 or id == U64 and 2 or 0
  end,
  function(bytes, unsigned)
    if unsigned then ffi.copy(u64box, bytes, 8); return u64box[0] end
    ffi.copy(i64box, bytes, 8)
    return i64box[0]
  end)

local function err(name, message, path, extra)
  local e = E.new{ name = name, message = "protobuf: " .. message }
  e.path = path
  if extra then for k, v in pairs(extra) do e[k] = v end end
  return e
end

local function check_opts(fn, n, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then E.bad_argument(fn, n, "expected an options table, got " .. type(opts)) end
  for k in pairs(opts) do
    if not allowed[k] then E.bad_argument(fn, n, "unknown option " .. tostring(k)) end
  end
  return opts
end

local function check_offset(fn, n, offset)
  if offset ~= nil and (type(offset) ~= "number" or offset < 0 or offset ~= floor(offset)) then
    E.bad_argument(fn, n, "expected a byte offset (a whole number >= 0), got " .. tostring(offset))
  end
end

-- A schema's form: proto text, a FileDescriptorProto in base64 (what the registry hands back for a schema
-- Python registered), or one in binary. Text has spaces or punctuation base64 lacks; a binary descriptor
-- has control bytes text lacks.
local function classify(s)
  if s:find("[%z\1-\8\14-\31]") then return s, true end
  if #s > 0 and not s:find("[^%w+/=\r\n]") then
    local bin = klua.base64.decode(s)
    if bin then return bin, true end
  end
  return s, false
end

-- ---- message types -------------------------------------------------------------------------------

local U = {}  -- the key of an object's C handle
local Type = {}
Type.__index = Type

function Type:encode(t, prefix)
  if type(t) ~= "table" then E.bad_argument("m:encode", 2, "expected a table, got " .. type(t)) end
  if prefix ~= nil and type(prefix) ~= "string" then E.bad_argument("m:encode", 3, "expected a string prefix, got " .. type(prefix)) end
  local bytes, name, message, path = P_encode(self[U], t, prefix)
  if bytes then return bytes end
  return nil, err(name, message, path, { message_type = self.full_name })
end

function Type:decode(bytes, offset)
  if type(bytes) ~= "string" then E.bad_argument("m:decode", 2, "expected a string, got " .. type(bytes)) end
  if offset ~= nil then check_offset("m:decode", 3, offset) end
  local t, name, message = P_decode(self[U], bytes, offset)
  if t then return t end
  return nil, err(name, message, nil, { message_type = self.full_name })
end

local to_json_opts = { defaults = true, proto_names = true, enums_as_ints = true, pretty = true }
function Type:to_json(bytes, offset, opts)
  if type(bytes) ~= "string" then E.bad_argument("m:to_json", 2, "expected a string, got " .. type(bytes)) end
  check_offset("m:to_json", 3, offset)
  opts = check_opts("m:to_json", 4, opts, to_json_opts)
  local text, name, message = P.to_json(self[U], bytes, offset, opts.defaults, opts.proto_names, opts.enums_as_ints, opts.pretty)
  if text then return text end
  return nil, err(name, message, nil, { message_type = self.full_name })
end

local from_json_opts = { ignore_unknown = true }
function Type:from_json(text, prefix, opts)
  if type(text) ~= "string" then E.bad_argument("m:from_json", 2, "expected a string, got " .. type(text)) end
  if prefix ~= nil and type(prefix) ~= "string" then E.bad_argument("m:from_json", 3, "expected a string prefix, got " .. type(prefix)) end
  opts = check_opts("m:from_json", 4, opts, from_json_opts)
  local bytes, name, message = P.from_json(self[U], text, prefix, opts.ignore_unknown)
  if bytes then return bytes end
  return nil, err(name, message, nil, { message_type = self.full_name })
end

function Type:__tostring() return "protobuf message type " .. self.full_name end

-- ---- files ---------------------------------------------------------------------------------------

local File = {}
File.__index = File

local function make_type(f, handle, index, full_name)
  local m = setmetatable({ [U] = handle, full_name = full_name, index = index, file = f,
                           name = full_name:match("([^.]+)$") }, Type)
  f._types[full_name] = m
  return m
end

function File:descriptor() return P.descriptor(self[U]) end
function File:__tostring() return "protobuf file " .. self.name end

local function make_file(handle)
  local name, package, syntax, messages = P.file_info(handle)
  local f = setmetatable({ [U] = handle, name = name, package = package, syntax = syntax, messages = messages,
                           _types = {} }, File)
  return f
end

-- f:message(name) resolves through the primitive, which also gives the full name of a relative one.
function File:message(name)
  if type(name) ~= "string" then E.bad_argument("f:message", 2, "expected a message name, got " .. type(name)) end
  local m = self._types[name]
  if m then return m end
  local handle, index, message = P.message(self[U], name)
  if not handle then return nil, err(index, message) end
  local full = P.type_name(handle)
  m = self._types[full]
  if not m then m = make_type(self, handle, index, full) end
  self._types[name] = m
  return m
end

function File:message_at(index)
  if type(index) ~= "table" or #index == 0 then
    E.bad_argument("f:message_at", 2, "expected a non-empty list of message indexes, got " .. type(index))
  end
  local handle, idx, message = P.message_at(self[U], index)
  if not handle then return nil, err(idx, message) end
  local full = P.type_name(handle)
  local m = self._types[full]
  if not m then m = make_type(self, handle, idx, full) end
  return m
end

local compile_opts = { name = true, imports = true }

local function sources(fn, opts)
  opts = check_opts(fn, 2, opts, compile_opts)
  if opts.name ~= nil and type(opts.name) ~= "string" then E.bad_argument(fn, 2, "opts.name: expected a string") end
  local imports, descriptors
  if opts.imports ~= nil then
    if type(opts.imports) ~= "table" then E.bad_argument(fn, 2, "opts.imports: expected a table of file name = text") end
    imports, descriptors = {}, {}
    for k, v in pairs(opts.imports) do
      if type(k) ~= "string" or type(v) ~= "string" then
        E.bad_argument(fn, 2, "opts.imports: expected file name = text (or a FileDescriptorProto), got "
          .. type(k) .. " = " .. type(v))
      end
      local text, is_descriptor = classify(v)
      imports[k], descriptors[k] = text, is_descriptor or nil
    end
  end
  return opts, imports, descriptors
end

local function compile(fn, source, is_descriptor, opts, default_name)
  local imports, descriptors
  opts, imports, descriptors = sources(fn, opts)
  local handle, name, message = P.compile(opts.name or default_name, source, is_descriptor, imports, descriptors)
  if not handle then return nil, err(name, message) end
  return make_file(handle)
end

function protobuf.compile(text, opts)
  if type(text) ~= "string" then E.bad_argument("klua.protobuf.compile", 1, "expected .proto text, got " .. type(text)) end
  return compile("klua.protobuf.compile", text, false, opts, "schema.proto")
end

-- The FileDescriptorProto's own name is kept unless opts.name is given (Python's deserializer renames it
-- the same way).
function protobuf.load_descriptor(bytes, opts)
  if type(bytes) ~= "string" then
    E.bad_argument("klua.protobuf.load_descriptor", 1, "expected a FileDescriptorProto (bytes or base64), got " .. type(bytes))
  end
  local bin, is_descriptor = classify(bytes)
  if not is_descriptor then bin = bytes end
  return compile("klua.protobuf.load_descriptor", bin, true, opts, P.descriptor_name(bin) or "schema.proto")
end

-- Either form: what a registry returns for a PROTOBUF schema.
function protobuf.load(schema, opts)
  if type(schema) ~= "string" then E.bad_argument("klua.protobuf.load", 1, "expected a schema string, got " .. type(schema)) end
  local s, is_descriptor = classify(schema)
  if is_descriptor then return compile("klua.protobuf.load", s, true, opts, P.descriptor_name(s) or "schema.proto") end
  return compile("klua.protobuf.load", schema, false, opts, "schema.proto")
end

-- ---- Confluent message indexes -------------------------------------------------------------------

function protobuf.read_message_indexes(bytes, offset)
  if type(bytes) ~= "string" then E.bad_argument("klua.protobuf.read_message_indexes", 1, "expected a string, got " .. type(bytes)) end
  check_offset("klua.protobuf.read_message_indexes", 2, offset)
  local list, next_offset, message = P.read_indexes(bytes, offset)
  if list then return list, next_offset end
  return nil, err(next_offset, message)
end

function protobuf.message_indexes_bytes(list)
  local fn = "klua.protobuf.message_indexes_bytes"
  if type(list) ~= "table" or #list == 0 then E.bad_argument(fn, 1, "expected a non-empty list of message indexes") end
  for i = 1, #list do
    local v = list[i]
    if type(v) ~= "number" or v < 0 or v ~= floor(v) or v > 2147483647 then
      E.bad_argument(fn, 1, "index " .. i .. ": expected a whole number >= 0, got " .. tostring(v))
    end
  end
  return P.index_bytes(list)
end
