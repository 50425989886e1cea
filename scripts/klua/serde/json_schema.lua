-- The JSON Schema side of klua.serde (scripts/klua/serde.lua): the body is the value's JSON text
-- (klua.json), validated against the schema on encode (validate = true, the default) and on
-- decode when validate_on_decode = true. Decoding without validation needs no registry: the
-- frame's schema id is not looked up.
local type, tostring, pcall, sub = type, tostring, pcall, string.sub

local new_error = require("klua.serde.internal").new_error

local F = { name = "json_schema", label = "JSON Schema", schema_type = "JSON",
            options = { validate = true, validate_on_decode = true, references = true },
            record_what = "the schema's title" }

local function js() return klua.json_schema end

function F.check(S, opts, bad)
  for _, k in ipairs{ "validate", "validate_on_decode" } do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then bad("option '" .. k .. "' must be a boolean, got " .. type(opts[k])) end
  end
  if opts.references ~= nil and type(opts.references) ~= "table" then
    bad("option 'references' must be a table { [uri or name] = schema }, got " .. type(opts.references))
  end
  S.validate = opts.validate ~= false
  S.validate_on_decode = opts.validate_on_decode == true
  S.references = opts.references
end

local encode_json, decode_json = klua.json.encode, klua.json.decode

local function serialization_error(detail)
  return new_error{ name = "KLUA_SERIALIZATION", path = "$", message = detail }
end

local function codec(S, v, text)
  local validate = S.validate and v
  return {
    validator = v, text = text, record_name = v and v.title,
    encode = function(value, prefix)
      if validate then
        local ok, err = v:validate(value)
        if not ok then return nil, err end
      end
      local ok, body = pcall(encode_json, value)
      if not ok then
        return nil, serialization_error("the value cannot be written as JSON: " .. tostring(type(body) == "table" and body.message or body))
      end
      if prefix then return prefix .. body end
      return body
    end,
  }
end

function F.local_schema(S, opts)
  local schema = opts.schema
  local v, err = js().compile(schema, S.references and { references = S.references } or nil)
  if not v then return nil, err end
  local text = type(schema) == "string" and schema or encode_json(schema)
  local c = codec(S, v, text)
  c.decode = F.body_decoder(S.validate_on_decode and v)
  return c
end

function F.prefix(header) return header end

function F.registration(S, L)
  return { schema = L.text, schema_type = "JSON" }
end

-- decode(bytes, offset): the JSON after the offset, validated when v is given.
function F.body_decoder(v)
  return function(bytes, offset)
    local value, err = decode_json(offset > 0 and sub(bytes, offset + 1) or bytes)
    if err ~= nil then
      return nil, new_error{ name = "KLUA_DESERIALIZATION", path = "$", message = "not JSON: " .. tostring(err.message) }
    end
    if v then
      local ok, verr = v:validate(value)
      if not ok then
        return nil, new_error{ name = "KLUA_DESERIALIZATION", path = verr.path, keyword = verr.keyword,
          message = "the value does not match its schema: " .. tostring(verr.message) }
      end
    end
    return value
  end
end

local function compile(S, info, id)
  local refs
  if info.references and #info.references > 0 then
    local err
    refs, err = S.reg:references(info.references)
    if not refs then return nil, err end
  end
  local v, err = js().compile(info.schema, refs and { references = refs } or nil)
  if not v and type(err) == "table" then err.message = "schema id " .. tostring(id) .. ": " .. tostring(err.message) end
  return v, err
end

function F.codec_from_registry(S, info)
  local v, err = compile(S, info, info.id)
  if not v then return nil, err end
  return codec(S, v, info.schema)
end

function F.decoder(S, info, id)
  local v, err = compile(S, info, id)
  if not v then return nil, err end
  return F.body_decoder(v)
end

-- Without validation on decode, any schema id decodes the same way, with no registry call.
function F.any_id(S)
  if not S.validate_on_decode then return F.body_decoder(nil) end
end

return F
