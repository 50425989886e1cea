-- The formats of `klua consume --value-format/--key-format` and `klua produce --value-format/--key-format`:
-- string (the bytes as they are), json (JSON text, checked), and the schema registry's three in the
-- Confluent wire format (a 0 byte, the schema id as 4 bytes big-endian, the body): avro, protobuf and
-- json-schema. Consume turns each key or value into one line of JSON text; produce turns one line of JSON
-- into the bytes to send. The registry is klua.registry() (--schema-registry URL, the profile's
-- schema.registry.url, KLUA_SCHEMA_REGISTRY); schemas are fetched once per id and compiled once.
local common = require("klua.cli.common")
local M = {}

M.NAMES = { "string", "json", "avro", "protobuf", "json-schema" }
local KNOWN = { string = true, json = true, avro = true, protobuf = true, ["json-schema"] = true }
local FRAMED = { avro = true, protobuf = true, ["json-schema"] = true }
local TYPE = { avro = "AVRO", protobuf = "PROTOBUF", ["json-schema"] = "JSON" }
M.FRAMED = FRAMED

-- Checks a --value-format/--key-format value (a usage error naming the option otherwise); returns the
-- format, or nil for string (nothing to do).
function M.check(usage, option, fmt)
  if fmt == nil or fmt == "string" then return nil end
  if not KNOWN[fmt] then
    common.usage_error(usage, ("%s must be one of %s, got '%s'"):format(option, table.concat(M.NAMES, ", "), fmt))
  end
  return fmt
end

-- The configured registry for a framed format, or a usage error (exit 2) when none is configured.
function M.registry(usage, option, fmt)
  local reg = klua.registry()
  if not reg then
    common.usage_error(usage, ("%s %s needs a schema registry: --schema-registry URL, the profile's " ..
      "schema.registry.url or KLUA_SCHEMA_REGISTRY"):format(option, fmt))
  end
  return reg
end

local function deser(message, fields)
  local e = { name = "KLUA_DESERIALIZATION", message = message }
  for k, v in pairs(fields or {}) do e[k] = v end
  return klua.errors.new(e)
end

-- A registry failure that every later message would meet too (the registry cannot be reached, refuses
-- the credentials, or fails): consume stops on it instead of reporting it per message.
function M.fatal(err)
  if not (type(err) == "table" and err.name == "KLUA_REGISTRY") then return false end
  local s = err.status
  return s == nil or s == 401 or s == 403 or s >= 500
end

-- JSON text for printing on one line: the text itself (so large integers keep every digit), its line
-- breaks made spaces (valid JSON has them only between tokens: a string holds them escaped); nil, err
-- when it is not JSON.
local function json_line(text, offset)
  if offset and offset > 0 then text = text:sub(offset + 1) end
  local v, err = klua.json.decode(text)
  if v == nil then return nil, err end
  text = text:gsub("^%s+", ""):gsub("%s+$", "")
  if text:find("[\r\n]") then text = text:gsub("[\r\n]", " ") end
  return text
end

-- Named types and imports a registered schema refers to: { [reference name] = schema text }.
local function references(reg, info)
  if not info.references or #info.references == 0 then return {} end
  return reg:references(info.references)
end

-- Avro named types of the references, parsed (a reference may use another: parsed in rounds).
local function avro_named(texts)
  local named, left = {}, {}
  for name, text in pairs(texts) do left[name] = text end
  while next(left) do
    local progress, last_err = false, nil
    for name, text in pairs(left) do
      local s, err = klua.avro.parse(text, { named = named })
      if s then
        named[s.name or name] = s
        left[name] = nil
        progress = true
      else
        last_err = err
      end
    end
    if not progress then return nil, last_err end
  end
  return named
end

-- A Protobuf schema as the registry holds it: .proto text, or a base64 FileDescriptorProto (what
-- Python's ProtobufSerializer registers); klua.protobuf.load tells them apart. name: the file's name
-- for text (a descriptor names itself).
local function protobuf_file(text, imports, name)
  return klua.protobuf.load(text, { name = name, imports = imports })
end

-- Compiles the schema of a registry answer for fmt: an object with decode_json(bytes, offset) -> text.
local function compile(reg, fmt, info, id)
  local want = TYPE[fmt]
  local got = info.schema_type or "AVRO"
  if got ~= want then
    return nil, deser(("schema id %d is a %s schema, not %s"):format(id, got, want), { schema_id = id })
  end
  local texts, err = references(reg, info)
  if not texts then return nil, err end
  if fmt == "avro" then
    local named, nerr = avro_named(texts)
    if not named then return nil, nerr end
    local s, serr = klua.avro.parse(info.schema, { named = named })
    if not s then return nil, serr end
    -- binary straight to the Avro JSON encoding: the union branch that was written, map entries in
    -- the order of the bytes (what kafka-avro-console-consumer prints), and no Lua value built
    return { decode_json = function(bytes, offset) return s:decode_json(bytes, offset) end }
  elseif fmt == "protobuf" then
    local f, ferr = protobuf_file(info.schema, texts, nil)
    if not f then return nil, ferr end
    local read_indexes = klua.protobuf.read_message_indexes
    local by_index = {}
    return {
      decode_json = function(bytes, offset)
        local index, at = read_indexes(bytes, offset)
        if not index then return nil, at end
        local key = table.concat(index, ".")
        local m = by_index[key]
        if not m then
          local merr
          m, merr = f:message_at(index)
          if not m then return nil, merr end
          by_index[key] = m
        end
        return m:to_json(bytes, at)
      end }
  else  -- json-schema: the body is the JSON text; the schema is fetched to check the id exists
    return { decode_json = json_line }
  end
end

-- decoder(fmt, reg) -> decode(bytes) -> one line of JSON text | nil, err (KLUA_DESERIALIZATION, or
-- KLUA_REGISTRY from the registry: M.fatal tells whether the next message would fail the same way).
function M.decoder(fmt, reg)
  if fmt == "json" then return json_line end
  local parse = klua.serde.frame.parse
  local by_id = {}  -- schema id -> compiled, or { err = } (an unknown id is asked once)
  return function(bytes)
    local id, offset = parse(bytes)
    if not id then return nil, offset end
    local c = by_id[id]
    if c == nil then
      local info, err = reg:schema_by_id(id)
      if info then c, err = compile(reg, fmt, info, id) end
      if not c then
        if M.fatal(err) then return nil, err end
        if type(err) == "table" and err.name == "KLUA_REGISTRY" then  -- 40403: the id is not the registry's
          err = deser(("schema id %d: %s"):format(id, common.error_text(err)),
                      { schema_id = id, status = err.status, error_code = err.error_code })
        end
        c = { err = err }
      end
      by_id[id] = c
    end
    if c.err then return nil, c.err end
    return c.decode_json(bytes, offset)
  end
end

---------------------------------------------------------------------------------------------------------
-- Produce: the schema the lines are written with, resolved before the first line is read.

local function read_file(usage, option, path)
  local f, err = io.open(path, "rb")
  if not f then common.usage_error(usage, ("%s %s: %s"):format(option, path, (err:gsub("^[^:]*: ", "")))) end
  local text = f:read("*a")
  f:close()
  return text
end

-- The imports of a .proto text that are not Google's well-known types.
local function proto_imports(text)
  local out = {}
  for name in text:gmatch('import%s+[%a]*%s*"([^"]+)"%s*;') do
    if not name:find("^google/protobuf/") then out[#out + 1] = name end
  end
  return out
end

-- Registers a .proto file's imports (found beside it, recursively) as subjects named after their
-- import path, as Confluent's serializers do; returns the references and the imports' texts.
local function register_imports(usage, option, reg, dir, text, seen, texts)
  local refs = {}
  for _, name in ipairs(proto_imports(text)) do
    local itext = texts[name] or read_file(usage, option .. " import", dir .. "/" .. name)
    texts[name] = itext
    if not seen[name] then
      seen[name] = true
      local irefs = register_imports(usage, option, reg, dir, itext, seen, texts)
      local schema = { schema = itext, schema_type = "PROTOBUF", references = irefs }
      local id, err = reg:register(name, schema)
      if not id then return common.fail(err) end
      local found, lerr = reg:lookup(name, schema)
      if not found then return common.fail(lerr) end
      seen[name] = { name = name, subject = name, version = found.version }
    end
    refs[#refs + 1] = seen[name]
  end
  return refs
end

-- encoder{ fmt=, reg=, topic=, field= "key"|"value", schema_file=, schema_id=, message=, usage=,
-- option= "--value" } -> encode(line) -> bytes | nil, err (KLUA_SERIALIZATION with err.path, or
-- KLUA_JSON for a line that is not JSON), and a description of the schema used ("schema id 7 of
-- subject orders-value"). Registry and schema failures end the command before any line is read.
function M.encoder(o)
  local fmt, usage, opt = o.fmt, o.usage, o.option
  if fmt == "json" then
    return function(line)
      local v, err = klua.json.decode(line)
      if v == nil then return nil, err end
      return line
    end
  end
  local reg = o.reg
  local subject = o.topic .. "-" .. o.field
  local text, id, info, refs, texts
  if o.schema_file then
    text = read_file(usage, opt .. "-schema", o.schema_file)
    texts = {}
    if fmt == "protobuf" then
      refs = register_imports(usage, opt .. "-schema", reg, o.schema_file:match("^(.*)/[^/]*$") or ".", text, {}, texts)
    end
  elseif o.schema_id then
    local err
    info, err = reg:schema_by_id(o.schema_id)
    if not info then common.fail(err) end
  else
    local err
    info, err = reg:get_version(subject, "latest")
    if not info then common.fail(err) end
  end
  if info then
    text, id = info.schema, info.id or o.schema_id
    local err
    texts, err = references(reg, info)
    if not texts then common.fail(err) end
  end
  if info and (info.schema_type or "AVRO") ~= TYPE[fmt] then
    common.usage_error(usage, ("%s-format %s: the schema (id %d) is %s"):format(opt, fmt, id, info.schema_type or "AVRO"))
  end

  -- Compiled before registering, so that a schema with a mistake is named as such, not as the
  -- registry's 422.
  local where = o.schema_file or ("schema id " .. tostring(id))
  local function bad_schema(err)
    io.stderr:write(("klua: %s-schema %s: %s\n"):format(opt, where, common.error_text(err)))
    klua.exit(2)
  end
  local encode
  local frame_header = klua.serde.frame.header
  if fmt == "avro" then
    local named, nerr = avro_named(texts)
    if not named then bad_schema(nerr) end
    local s, err = klua.avro.parse(text, { named = named })
    if not s then bad_schema(err) end
    encode = function(line, prefix)
      local v, jerr = s:from_json(line)
      if v == nil and jerr then return nil, jerr end
      return s:encode(v, prefix)
    end
  elseif fmt == "protobuf" then
    local f, err = protobuf_file(text, texts, o.schema_file and o.schema_file:match("[^/]*$") or "schema.proto")
    if not f then bad_schema(err) end
    local m
    if o.message then
      m, err = f:message(o.message)
      if not m then
        common.usage_error(usage, ("%s-message %s: no such message in %s (it has %s)"):format(opt, o.message, where,
          table.concat(f.messages, ", ")))
      end
    else
      m = f:message_at({ 0 })
    end
    local indexes = klua.protobuf.message_indexes_bytes(m.index)
    encode = function(line, prefix) return m:from_json(line, prefix .. indexes) end
  else
    local v, err = klua.json_schema.compile(text, { references = texts })
    if not v then bad_schema(err) end
    encode = function(line, prefix)
      local value, jerr = klua.json.decode(line)
      if value == nil then return nil, jerr end
      local ok, verr = v:validate(value)
      if not ok then return nil, verr end
      return prefix .. line
    end
  end

  if o.schema_file then
    local err
    id, err = reg:register(subject, { schema = text, schema_type = TYPE[fmt], references = refs })
    if not id then common.fail(err) end
  end
  local prefix = frame_header(id)
  return function(line) return encode(line, prefix) end, ("schema id %d (subject %s)"):format(id, subject)
end

return M
