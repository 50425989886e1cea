-- The Protobuf side of klua.serde (scripts/klua/serde.lua): klua.protobuf's message types as the
-- serde's codecs. The frame carries the message-index array after the schema id; imports are
-- registered as subjects of their own (the import path as the subject, as Confluent's serializers
-- do; google/protobuf/*.proto are known to every registry and skipped) and named as references.
local type, pairs, tostring, byte, concat = type, pairs, tostring, string.byte, table.concat

local new_error = require("klua.serde.internal").new_error

local F = { name = "protobuf", label = "Protobuf", schema_type = "PROTOBUF",
            options = { message = true, imports = true, name = true },
            record_what = "the message's full name" }

local function pb() return klua.protobuf end

function F.check(S, opts, bad)
  if opts.message ~= nil and type(opts.message) ~= "string" then
    bad("option 'message' must be a string (a message name), got " .. type(opts.message))
  end
  if opts.imports ~= nil and type(opts.imports) ~= "table" then
    bad("option 'imports' must be a table { [\"file.proto\"] = text }, got " .. type(opts.imports))
  end
  if opts.name ~= nil and type(opts.name) ~= "string" then
    bad("option 'name' must be a string (the .proto file's name), got " .. type(opts.name))
  end
  if opts.schema ~= nil and type(opts.schema) ~= "string" then
    bad("option 'schema' must be .proto text, got " .. type(opts.schema))
  end
  S.imports = opts.imports or {}
  S.message_name = opts.message
end

function F.local_schema(S, opts)
  local f, err = pb().compile(opts.schema, { name = opts.name or "schema.proto", imports = opts.imports })
  if not f then return nil, err end
  local name = opts.message or f.messages[1]
  if not name then
    return nil, new_error{ name = "KLUA_SCHEMA", message = "the .proto text defines no message" }
  end
  local m
  m, err = f:message(name)
  if not m then return nil, err end
  return {
    file = f, message = m, text = opts.schema, record_name = m.full_name,
    index_bytes = pb().message_indexes_bytes(m.index),
    encode = function(value, prefix) return m:encode(value, prefix) end,
    decode = function(bytes, offset) return m:decode(bytes, offset) end,
  }
end

function F.prefix(header, L) return header .. L.index_bytes end

-- The files a .proto text imports.
local function imports_of(text)
  local list = {}
  for name in text:gmatch('import%s+[%a]*%s*"([^"]+)"%s*;') do list[#list + 1] = name end
  return list
end

-- The references of a .proto text: each import (its own imports first) registered under its
-- path (or looked up, with auto_register = false) to learn its version.
local function references(S, text, seen)
  local refs = {}
  for _, name in ipairs(imports_of(text)) do
    if not name:find("^google/protobuf/") then
      local dep = S.imports[name]
      if dep == nil then
        return nil, new_error{ name = "KLUA_SCHEMA",
          message = "import \"" .. name .. "\" is not among the serde's imports" }
      end
      if seen[name] then
        refs[#refs + 1] = seen[name]
      else
        local dep_refs, err = references(S, dep, seen)
        if not dep_refs then return nil, err end
        local schema = { schema = dep, schema_type = "PROTOBUF", references = dep_refs }
        if S.auto_register then
          local id
          id, err = S.reg:register(name, schema, S.normalize and { normalize = true } or nil)
          if not id then return nil, err end
        end
        local r
        r, err = S.reg:lookup(name, schema, S.normalize and { normalize = true } or nil)
        if not r then return nil, err end
        local ref = { name = name, subject = name, version = r.version }
        seen[name] = ref
        refs[#refs + 1] = ref
      end
    end
  end
  return refs
end

function F.registration(S, L)
  local refs, err = references(S, L.text, {})
  if not refs then return nil, err end
  return { schema = L.text, schema_type = "PROTOBUF", references = refs }
end

-- A registry schema compiled: .proto text, or a FileDescriptorProto in base64 (what Python's
-- serializer registers): klua.protobuf.load takes either.
local function compile(S, info, id)
  local imports
  if info.references and #info.references > 0 then
    local err
    imports, err = S.reg:references(info.references)
    if not imports then return nil, err end
  end
  local f, err = pb().load(info.schema, { imports = imports })
  if not f then
    if type(err) == "table" then err.message = "schema id " .. tostring(id) .. ": " .. tostring(err.message) end
    return nil, err
  end
  return f
end

function F.codec_from_registry(S, info)
  local f, err = compile(S, info, info.id)
  if not f then return nil, err end
  -- with use_latest and no schema of its own, the serde's `message` picks the type in the registry's file
  local name = S.L and S.L.record_name or S.message_name or f.messages[1]
  local m
  m, err = f:message(name)
  if not m then return nil, err end
  return {
    file = f, message = m, text = info.schema, record_name = m.full_name,
    index_bytes = pb().message_indexes_bytes(m.index),
    encode = function(value, prefix) return m:encode(value, prefix) end,
  }
end

function F.decoder(S, info, id)
  local f, err = compile(S, info, id)
  if not f then return nil, err end
  local read_indexes = pb().read_message_indexes
  local first = f.messages[1] and f:message_at({ 0 })
  local types = {}  -- "1.0" -> message type
  return function(bytes, offset)
    if byte(bytes, offset + 1) == 0 and first then return first:decode(bytes, offset + 1) end
    local idx, next_offset = read_indexes(bytes, offset)
    if not idx then return nil, next_offset end
    local key = concat(idx, ".")
    local m = types[key]
    if not m then
      local e
      m, e = f:message_at(idx)
      if not m then
        return nil, new_error{ name = "KLUA_DESERIALIZATION", path = "$",
          message = "message index [" .. concat(idx, ", ") .. "] names no message of schema id " .. tostring(id)
            .. (e and (": " .. tostring(e.message or e)) or "") }
      end
      types[key] = m
    end
    return m:decode(bytes, next_offset)
  end
end

return F
