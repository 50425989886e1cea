-- klua.serde: serializers and deserializers in the Confluent wire format (a 5-byte frame: magic
-- byte 0x00, the schema id as 4 big-endian bytes, then the codec's bytes; Protobuf puts its
-- message-index array between) for Avro, Protobuf and JSON Schema, with the schema ids resolved
-- through a schema registry (klua.registry) and cached. docs/serde.md is the reference.
--
--   local enc, dec = klua.serde.avro{ schema = text, topic = "orders" }
--   local bytes = assert(enc(order))            -- registers once, then frames with the id
--   local order2 = assert(dec(bytes))           -- the writer schema fetched by id once, then cached
--
-- The work per message is small: enc looks its (field, topic) entry up in a table (the frame
-- header is cached there) and calls the codec with it as the prefix; dec reads the 5 header bytes,
-- looks the schema id up in a table and calls the codec at offset 5. Registry calls happen on a
-- cache miss only, once per subject or id even when several tasks miss together (they join one
-- task that asks), and they wait: the first use of a subject or an id must be inside a task.
local frame = require("klua.serde.frame")
local internal = require("klua.serde.internal")
local byte, type, tostring, pairs, pcall = string.byte, type, tostring, pairs, pcall
local where, derr, eerr = internal.where, internal.decode_error, internal.encode_error

local M = { frame = frame }

local FORMATS = {
  avro = require("klua.serde.avro"),
  protobuf = require("klua.serde.protobuf"),
  json_schema = require("klua.serde.json_schema"),
}

local COMMON = {
  registry = true, schema = true, topic = true, field = true, subject_strategy = true, subject = true,
  auto_register = true, use_latest = true, normalize = true, raw = true, latest_ttl_ms = true,
}
local STRATEGIES = { topic = true, record = true, topic_record = true }
local DEFAULT_LATEST_TTL_MS = 30000

---------------------------------------------------------------------------------------------
-- Errors

local new_error = internal.new_error

-- A copy of a (shared) error with the consumed message's place added: several tasks may get the
-- same error object from one registry call.
local function in_context(err, ctx, field, id)
  if type(err) ~= "table" then err = { name = "KLUA_DESERIALIZATION", message = tostring(err) } end
  local e = {}
  for k, v in pairs(err) do e[k] = v end
  local w = where(ctx, field)
  if w then e.message = w .. ": " .. tostring(err.message) end
  if ctx then e.topic, e.partition, e.offset = ctx.topic, ctx.partition, ctx.offset end
  e.field = field
  if id then e.schema_id = id end
  return new_error(e)
end

local function no_registry(detail, err)
  local msg = detail .. ": no schema registry is configured (the registry option, --schema-registry URL, "
    .. "schema.registry.url in the profile or KLUA_SCHEMA_REGISTRY)"
  if err and err.name ~= "KLUA_NO_REGISTRY" then return err end
  return new_error{ name = "KLUA_NO_REGISTRY", message = msg }
end

---------------------------------------------------------------------------------------------
-- The registry and single-flight calls

-- The serde's registry: the object given (or made from the URL given), or the configured one
-- (klua.registry(), asked again until one is configured). nil, err (KLUA_NO_REGISTRY) when none.
local function registry_of(S, detail)
  local r = S.reg
  if r then return r end
  local o = S.registry_opt
  if type(o) == "table" then
    r = o
  else
    local err
    r, err = klua.registry()
    if not r then return nil, no_registry(detail, err) end
  end
  S.reg = r
  return r
end

-- fn(S, key) run once for concurrent callers: the first starts a task that runs it, the others
-- join that task. fn fills the caches before it returns, so later calls do not come here.
local function single(S, key, fn, arg)
  local inflight = S.inflight
  local t = inflight[key]
  if not t then
    t = klua.spawn(function()
      local ok, r, e = pcall(fn, S, arg)
      inflight[key] = nil
      if ok then return r, e end
      return nil, r
    end)
    inflight[key] = t
  end
  return t:join()
end

---------------------------------------------------------------------------------------------
-- Encoding

local function subject_of(S, topic, field)
  if S.subject then return S.subject end
  local strategy = S.strategy
  if strategy ~= "record" and topic == nil then
    return nil, new_error{ name = "KLUA_SERIALIZATION", field = field,
      message = "no topic for the " .. strategy .. " subject strategy: give ctx.topic (the producer does) "
        .. "or the serde's topic option" }
  end
  if strategy == "topic" then return topic .. "-" .. field end
  if strategy == "record" then return S.record_name end
  return topic .. "-" .. S.record_name
end

-- A registry failure while encoding, naming the subject.
local function subject_error(err, subject, what)
  if type(err) ~= "table" then return new_error{ name = "KLUA_REGISTRY", message = tostring(err) } end
  local e = {}
  for k, v in pairs(err) do e[k] = v end
  e.subject = subject
  e.message = "subject " .. subject .. ": " .. what .. ": " .. tostring(err.message)
  return new_error(e)
end

-- Builds the entry {prefix=, codec=, id=, expires=} of a subject: the schema registered (or
-- looked up) and its frame header, or with use_latest the subject's latest version.
local function fetch_subject(S, subject)
  local reg, fmt = S.reg, S.fmt
  local e
  if S.use_latest then
    local v, err = reg:get_version(subject, "latest")
    if not v then return nil, subject_error(err, subject, "its latest version (use_latest = true)") end
    local stype = v.schema_type or "AVRO"
    if stype ~= fmt.schema_type then
      return nil, new_error{ name = "KLUA_SCHEMA", subject = subject, schema_id = v.id,
        message = "subject " .. subject .. ": the latest version (id " .. tostring(v.id) .. ") is a " .. stype
          .. " schema, not " .. fmt.schema_type }
    end
    local codec = S.latest_codecs[v.id]
    if not codec then
      codec, err = fmt.codec_from_registry(S, v)
      if not codec then return nil, err end
      S.latest_codecs[v.id] = codec
    end
    e = { prefix = fmt.prefix(frame.header(v.id), codec), codec = codec, id = v.id,
          expires = klua.now() + S.latest_ttl_ms }
  else
    local L = S.L
    local schema, err = fmt.registration(S, L)
    if not schema then return nil, err end
    local id
    if S.auto_register then
      id, err = reg:register(subject, schema, S.normalize and { normalize = true } or nil)
      if not id then return nil, subject_error(err, subject, "registering the schema failed") end
    else
      local r
      r, err = reg:lookup(subject, schema, S.normalize and { normalize = true } or nil)
      if not r then
        return nil, subject_error(err, subject, "the schema is not registered under it (auto_register = false)")
      end
      id = r.id
    end
    e = { prefix = fmt.prefix(frame.header(id), L), codec = L, id = id }
  end
  S.by_subject[subject] = e
  return e
end

local function resolve(S, topic, field)
  local subject, err = subject_of(S, topic, field)
  if not subject then return nil, err end
  local e = S.by_subject[subject]
  if e == nil or (e.expires and e.expires <= klua.now()) then
    local reg
    reg, err = registry_of(S, "framed encoding (subject " .. subject .. ")")
    if not reg then
      err = in_context(err, nil, field)
      err.topic = topic
      return nil, err
    end
    e, err = single(S, "subject:" .. subject, fetch_subject, subject)
    if not e then return nil, err end
  end
  S.entries[field][topic or ""] = e
  return e
end

local function check_field(fn, field)
  if field ~= "value" and field ~= "key" then
    klua.errors.bad_argument(fn, 2, "field must be \"key\" or \"value\", got " .. tostring(field))
  end
end

local function make_encoder(S)
  local L = S.L
  if S.raw then
    local encode, default_topic, default_field = L.encode, S.topic, S.field
    return function(value, ctx, field)
      local bytes, err = encode(value)
      if bytes then return bytes end
      if ctx ~= nil then field = field or ctx.field end
      return nil, eerr(err, ctx and ctx.topic or default_topic, field or default_field)
    end
  end
  if not L and not S.use_latest then
    return function()
      klua.errors.misuse("enc", "this serde has no schema to encode with (give schema, or use_latest = true)")
    end
  end
  local entries, default_topic, default_field, ttl = S.entries, S.topic, S.field, S.use_latest
  local now = klua.now
  return function(value, ctx, field)
    local topic = default_topic
    if ctx ~= nil then
      topic = ctx.topic or default_topic
      field = field or ctx.field
    end
    field = field or default_field
    local per = entries[field]
    if per == nil then check_field("enc", field) end
    local e = per[topic or ""]
    if e == nil or (ttl and e.expires <= now()) then
      local err
      e, err = resolve(S, topic, field)
      if not e then return nil, err end
    end
    local bytes, err = e.codec.encode(value, e.prefix)
    if bytes then return bytes end
    return nil, eerr(err, topic, field)
  end
end

---------------------------------------------------------------------------------------------
-- Decoding

local function fetch_id(S, id)
  local info, err = S.reg:schema_by_id(id)
  if not info then
    if type(err) == "table" and (err.error_code == 40403 or err.status == 404) then
      return nil, new_error{ name = "KLUA_DESERIALIZATION", schema_id = id, status = err.status,
        error_code = err.error_code, url = err.url,
        message = "unknown schema id " .. id .. " (the registry answered " .. tostring(err.message) .. ")" }
    end
    return nil, err
  end
  local fmt = S.fmt
  local stype = info.schema_type or "AVRO"
  if stype ~= fmt.schema_type then
    return nil, new_error{ name = "KLUA_DESERIALIZATION", schema_id = id,
      message = "schema id " .. id .. " is a " .. stype .. " schema; this is a " .. fmt.label .. " deserializer" }
  end
  local W
  W, err = fmt.decoder(S, info, id)
  if not W then return nil, err end
  S.by_id[id] = W
  return W
end

local function load_id(S, id, ctx, field)
  local reg, err = registry_of(S, "the data is framed with schema id " .. id)
  if not reg then return nil, in_context(err, ctx, field, id) end
  local W
  W, err = single(S, "id:" .. id, fetch_id, id)
  if not W then return nil, in_context(err, ctx, field, id) end
  return W
end

local function make_decoder(S)
  local default_field = S.field
  local fmt = S.fmt
  if S.raw then
    local decode = S.L.decode
    return function(bytes, ctx, field)
      if type(bytes) ~= "string" then
        klua.errors.bad_argument("dec", 1, "expected a string, got " .. type(bytes))
      end
      local v, err = decode(bytes, 0)
      if err == nil then return v end
      if ctx ~= nil then field = field or ctx.field end
      return nil, in_context(err, ctx, field or default_field)
    end
  end
  local by_id = S.by_id
  local any = fmt.any_id and fmt.any_id(S)  -- a decoder that needs no schema (JSON without validation)
  return function(bytes, ctx, field)
    if type(bytes) ~= "string" then
      klua.errors.bad_argument("dec", 1, "expected a string, got " .. type(bytes))
    end
    local b0, b1, b2, b3, b4 = byte(bytes, 1, 5)
    if b0 ~= 0 or b4 == nil then
      if ctx ~= nil then field = field or ctx.field end
      local _, err = frame.parse(bytes, ctx, field or default_field)
      return nil, err
    end
    local id = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
    local W = any or by_id[id]
    if W == nil then
      if ctx ~= nil then field = field or ctx.field end
      local err
      W, err = load_id(S, id, ctx, field or default_field)
      if not W then return nil, err end
    end
    local v, err = W(bytes, 5)
    if err == nil then return v end
    if ctx ~= nil then field = field or ctx.field end
    return nil, in_context(err, ctx, field or default_field, id)
  end
end

---------------------------------------------------------------------------------------------
-- The constructors

local function build(kind, opts)
  local fn = "klua.serde." .. kind
  local fmt = FORMATS[kind]
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then klua.errors.bad_argument(fn, 1, "expected an options table, got " .. type(opts)) end
  local function bad(detail) klua.errors.bad_argument(fn, 1, detail) end
  for k in pairs(opts) do
    if not COMMON[k] and not fmt.options[k] then
      local names = {}
      for n in pairs(COMMON) do names[#names + 1] = n end
      for n in pairs(fmt.options) do names[#names + 1] = n end
      table.sort(names)
      bad("unknown option '" .. tostring(k) .. "' (options: " .. table.concat(names, ", ") .. ")")
    end
  end
  local function opt_type(k, t)
    local v = opts[k]
    if v ~= nil and type(v) ~= t then bad("option '" .. k .. "' must be a " .. t .. ", got " .. type(v)) end
    return v
  end
  local reg = opts.registry
  if reg ~= nil and type(reg) ~= "string" and type(reg) ~= "table" then
    bad("option 'registry' must be a klua.registry, a URL string or nil, got " .. type(reg))
  end
  if opts.schema ~= nil and type(opts.schema) ~= "string" and type(opts.schema) ~= "table" then
    bad("option 'schema' must be a string or a table, got " .. type(opts.schema))
  end
  local field = opt_type("field", "string") or "value"
  if field ~= "key" and field ~= "value" then bad("option 'field' must be \"key\" or \"value\", got \"" .. field .. "\"") end
  local strategy = opt_type("subject_strategy", "string") or "topic"
  if not STRATEGIES[strategy] then
    bad("option 'subject_strategy' must be \"topic\", \"record\" or \"topic_record\", got \"" .. strategy .. "\"")
  end
  for _, k in ipairs{ "auto_register", "use_latest", "normalize", "raw" } do opt_type(k, "boolean") end
  local ttl = opt_type("latest_ttl_ms", "number")
  if ttl ~= nil and not (ttl >= 0) then bad("option 'latest_ttl_ms' must be a number >= 0") end
  if type(reg) == "string" then
    local ok, r = pcall(klua.registry, { url = reg })
    if not ok then bad("option 'registry': " .. tostring(type(r) == "table" and r.message or r)) end
    reg = r
  end
  local S = {
    fmt = fmt, registry_opt = reg, topic = opt_type("topic", "string"), field = field,
    subject = opt_type("subject", "string"), strategy = strategy,
    auto_register = opts.auto_register ~= false, use_latest = opts.use_latest == true,
    normalize = opts.normalize == true, raw = opts.raw == true, latest_ttl_ms = ttl or DEFAULT_LATEST_TTL_MS,
    entries = { key = {}, value = {} }, by_subject = {}, by_id = {}, latest_codecs = {}, inflight = {},
  }
  fmt.check(S, opts, bad)
  if S.raw and S.use_latest then bad("options 'raw' and 'use_latest' do not go together (raw uses no registry)") end
  if opts.schema ~= nil then
    local L, err = fmt.local_schema(S, opts)
    if not L then return nil, err end
    S.L = L
    S.record_name = L.record_name
  elseif S.raw then
    bad("option 'schema' is required with raw = true (bare " .. fmt.label .. " carries no schema id)")
  end
  if strategy ~= "topic" and not S.subject and not S.record_name and (S.L or S.use_latest) then
    bad("the " .. strategy .. " subject strategy needs a schema with a name ("
      .. fmt.record_what .. "), or an explicit subject")
  end
  return make_encoder(S), make_decoder(S)
end

function M.avro(opts) return build("avro", opts) end
function M.protobuf(opts) return build("protobuf", opts) end
function M.json_schema(opts) return build("json_schema", opts) end

-- Test hooks, off the public module (the REPL completes its names).
do
  local reg = debug.getregistry()
  reg["klua.private"] = reg["klua.private"] or {}
  reg["klua.private"].serde = { where = where, decode_error = derr }
end

return M
