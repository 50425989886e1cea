-- The Avro side of klua.serde (scripts/klua/serde.lua): klua.avro's schemas as the serde's codecs.
-- A codec is {encode = function(value, prefix), decode = function(bytes, offset), record_name =};
-- decoders for registry ids resolve the writer's schema to the serde's reader schema when one is
-- given (klua.avro.resolver, once per id; skipped when both have the same canonical form).
local type, pairs, next, tostring = type, pairs, next, tostring

local F = { name = "avro", label = "Avro", schema_type = "AVRO", options = {},
            record_what = "a record, enum or fixed with its fullname" }

local function avro() return klua.avro end

function F.check() end

local function codec(s, text)
  return {
    schema = s, text = text,
    record_name = s.name,  -- named types only
    encode = function(value, prefix) return s:encode(value, prefix) end,
    decode = function(bytes, offset) return s:decode(bytes, offset) end,
  }
end

function F.local_schema(S, opts)
  local schema = opts.schema
  local s, err = avro().parse(schema)
  if not s then return nil, err end
  local text = type(schema) == "string" and schema or klua.json.encode(schema)
  return codec(s, text)
end

function F.prefix(header) return header end

function F.registration(S, L)
  return { schema = L.text, schema_type = "AVRO" }
end

-- The named types a registry schema's references define: their texts parsed in an order where
-- each finds the types it uses (references name other references).
local function named_types(S, refs)
  if refs == nil or next(refs) == nil then return nil end
  local texts, err = S.reg:references(refs)
  if not texts then return nil, err end
  local named, left = {}, {}
  for name, text in pairs(texts) do left[name] = text end
  while next(left) do
    local progress, last
    for name, text in pairs(left) do
      local s, e = avro().parse(text, { named = named })
      if s then
        if s.name then named[s.name] = s end
        left[name] = nil
        progress = true
      else
        last = e
      end
    end
    if not progress then return nil, last end
  end
  return named
end

local function parse_registry_schema(S, info, id)
  local named, err = named_types(S, info.references)
  if err then return nil, err end
  local s
  s, err = avro().parse(info.schema, named and { named = named } or nil)
  if not s then
    if type(err) == "table" and id then err.message = "schema id " .. id .. ": " .. tostring(err.message) end
    return nil, err
  end
  return s
end

function F.codec_from_registry(S, info)
  local s, err = parse_registry_schema(S, info, info.id)
  if not s then return nil, err end
  return codec(s, info.schema)
end

-- decoder(bytes, offset) for a registry id: the writer's schema, or resolved to the reader's.
function F.decoder(S, info, id)
  local w, err = parse_registry_schema(S, info, id)
  if not w then return nil, err end
  local reader = S.L and S.L.schema
  if reader and reader:fingerprint() ~= w:fingerprint() then
    local r
    r, err = avro().resolver(w, reader)
    if not r then
      if type(err) == "table" then err.message = "schema id " .. id .. " to the reader schema: " .. tostring(err.message) end
      return nil, err
    end
    return function(bytes, offset) return r:decode(bytes, offset) end
  end
  return function(bytes, offset) return w:decode(bytes, offset) end
end

return F
