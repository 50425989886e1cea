-- klua.registry: a client of the Confluent Schema Registry API (Confluent's own server, Apicurio's
-- /apis/ccompat/v7, Karapace, Redpanda's), on klua.http (kept-alive connections, timeouts, TLS).
--
--   local reg = klua.registry{ url = "http://127.0.0.1:8081", user = "u", password = "p" }
--   local reg, err = klua.registry()     -- the configured one (schema.registry.url...), shared
--   local id = assert(reg:register("orders-value", avro_schema_text))
--   local s = assert(reg:schema_by_id(id))   -- { id=, schema=, schema_type=, references= }
--
-- Every call yields only its task and returns nil, err (KLUA_REGISTRY: err.status, err.error_code,
-- err.message, err.url without credentials) on failure. Schema ids never change: schema_by_id is
-- cached for the process; register and lookup cache (subject, schema) -> their answer. The tables
-- returned from caches are shared: do not modify them.
local M = {}

local E = klua.errors
local json = klua.json
local private_log = debug.getregistry()["klua.private"].log  -- add_secret: masked in every log record
local type, pairs, ipairs, tostring, tonumber, setmetatable = type, pairs, ipairs, tostring, tonumber, setmetatable
local format, byte, concat, floor = string.format, string.byte, table.concat, math.floor

local CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
local ACCEPT = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json"
local DEFAULT_TIMEOUT_MS = 10000
local SCHEMA_TYPES = { AVRO = true, PROTOBUF = true, JSON = true }
local LEVELS = { NONE = true, BACKWARD = true, BACKWARD_TRANSITIVE = true, FORWARD = true, FORWARD_TRANSITIVE = true,
                 FULL = true, FULL_TRANSITIVE = true }

local function argerr(fn, n, fmt, ...)
  E.bad_argument(fn, n, fmt:format(...))
end

-- Path segments: everything but the unreserved characters percent-encoded (a subject may hold '/').
local function seg(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return format("%%%02X", byte(c)) end))
end

-- ---- errors ----------------------------------------------------------------------------------

-- KLUA_REGISTRY for an answer that is an error (status, the registry's error_code and message) or
-- for a request that got no answer (cause: the klua.http error).
local function registry_error(self, method, path, status, error_code, message, cause)
  local url = self.url .. path
  local text
  if status then
    text = format("schema registry: %s %s: HTTP %d%s: %s", method, url, status,
                  error_code and format(" (error_code %s)", tostring(error_code)) or "", message or "")
  else
    text = "schema registry: " .. (message or format("%s %s: no answer", method, url))  -- klua.http's names both
  end
  local retriable = (status == nil and cause and cause.retriable) or (status ~= nil and (status >= 500 or status == 429))
  local e = E.new{ name = E.KLUA_REGISTRY, message = text, retriable = retriable or false, op = "registry" }
  e.status, e.error_code, e.url, e.method = status, error_code, url, method
  e.registry_message = message
  if cause then e.cause = cause.name end
  return e
end

-- ---- the client ------------------------------------------------------------------------------

local Registry = {}
Registry.__index = Registry
Registry.__tostring = function(self) return "klua.registry(" .. self.url .. ")" end

-- klua_schema_registry_requests_total{outcome="ok"|"error"} (klua.metrics' default registry),
-- made at the first request.
local counted
local function count(outcome)
  if not counted then
    local family = debug.getregistry()["klua.private"].metrics.register("counter", {
      name = "klua_schema_registry_requests_total", labels = { "outcome" },
      help = "Requests klua.registry sent to a schema registry, by outcome (error: no answer or an error status)" })
    counted = { ok = family:labels("ok"), error = family:labels("error") }
  end
  counted[outcome]:inc()
end

-- One request; the decoded JSON answer, or nil, err.
local function call(self, method, path, body, query)
  local spec = { method = method, url = path, query = query }
  if body ~= nil then
    spec.body = json.encode(body)
    spec.headers = { ["Content-Type"] = CONTENT_TYPE }
  end
  local res, err = self.http:request(spec)
  if not res then
    count("error")
    return nil, registry_error(self, method, path, nil, nil, err.message, err)
  end
  local status = res.status
  if status >= 200 and status < 300 then
    if res.body == "" then count("ok"); return true end
    local v, jerr = json.decode(res.body)
    if jerr then
      count("error")
      return nil, registry_error(self, method, path, status, nil, "the answer is not JSON: " .. jerr.message)
    end
    count("ok")
    return v
  end
  count("error")
  local v = json.decode(res.body)
  local code, message
  if type(v) == "table" then
    code, message = tonumber(v.error_code), v.message
    if type(message) ~= "string" then message = nil end
  end
  if not message then
    local b = res.body or ""
    message = #b > 200 and b:sub(1, 200) .. "..." or (b ~= "" and b or "(empty body)")
  end
  return nil, registry_error(self, method, path, status, code, message)
end

local function check_subject(fn, n, subject)
  if type(subject) ~= "string" or subject == "" then
    argerr(fn, n, "expected a subject name (a non-empty string), got %s", type(subject) == "string" and '""' or type(subject))
  end
end

local function check_version(fn, n, v, allow_latest)
  if allow_latest and v == "latest" then return end
  if type(v) ~= "number" or v < 1 or floor(v) ~= v then
    argerr(fn, n, "expected a version (a whole number >= 1%s), got %s", allow_latest and ' or "latest"' or "",
           type(v) == "number" and tostring(v) or type(v))
  end
end

local function check_opts(fn, n, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerr(fn, n, "expected an options table, got %s", type(opts)) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for a in pairs(allowed) do names[#names + 1] = a end
      table.sort(names)
      argerr(fn, n, "unknown option '%s' (options: %s)", tostring(k), concat(names, ", "))
    end
  end
  return opts
end

-- A schema argument: a string (Avro text) or { schema =, schema_type =, references = }. Returns
-- the request body and a cache key.
local function schema_body(fn, n, schema)
  local text, stype, refs
  if type(schema) == "string" then
    text, stype = schema, "AVRO"
  elseif type(schema) == "table" then
    for k in pairs(schema) do
      if k ~= "schema" and k ~= "schema_type" and k ~= "references" and k ~= "id" and k ~= "subject" and k ~= "version" then
        argerr(fn, n, "unknown schema field '%s' (fields: schema, schema_type, references)", tostring(k))
      end
    end
    text, stype, refs = schema.schema, schema.schema_type or "AVRO", schema.references
    if type(text) ~= "string" then argerr(fn, n, "field 'schema' must be the schema's text, got %s", type(text)) end
    if not SCHEMA_TYPES[stype] then
      argerr(fn, n, "field 'schema_type' must be \"AVRO\", \"PROTOBUF\" or \"JSON\", got %s", tostring(stype))
    end
  else
    argerr(fn, n, "expected a schema (its text, or { schema =, schema_type =, references = }), got %s", type(schema))
  end
  local body = { schema = text }
  -- Confluent's clients leave schemaType out for Avro, the API's default.
  if stype ~= "AVRO" then body.schemaType = stype end
  local key = stype .. "\0" .. text
  if refs ~= nil then
    if type(refs) ~= "table" then argerr(fn, n, "field 'references' must be a list, got %s", type(refs)) end
    if #refs > 0 then
      local list, parts = {}, {}
      for i, r in ipairs(refs) do
        if type(r) ~= "table" or type(r.name) ~= "string" or type(r.subject) ~= "string" or type(r.version) ~= "number" then
          argerr(fn, n, "references[%d] must be { name = string, subject = string, version = number }", i)
        end
        list[i] = { name = r.name, subject = r.subject, version = r.version }
        parts[i] = r.name .. "\0" .. r.subject .. "\0" .. r.version
      end
      body.references = list
      key = key .. "\0" .. concat(parts, "\1")
    end
  end
  return body, key
end

local function references_of(list)
  local out = {}
  if type(list) == "table" then
    for i, r in ipairs(list) do out[i] = { name = r.name, subject = r.subject, version = tonumber(r.version) } end
  end
  return out
end

-- The API's schema answers in klua's shape.
local function schema_result(v, id, subject)
  return {
    subject = v.subject or subject,
    id = tonumber(v.id) or id,
    version = tonumber(v.version),
    schema = v.schema,
    schema_type = v.schemaType or "AVRO",
    references = references_of(v.references),
  }
end

-- reg:subjects([{deleted = true}]) -> { "orders-value", ... }
function Registry:subjects(opts)
  opts = check_opts("registry:subjects", 2, opts, { deleted = true })
  return call(self, "GET", "/subjects", nil, opts.deleted and { deleted = "true" } or nil)
end

-- reg:versions(subject [, {deleted = true}]) -> { 1, 2 }
function Registry:versions(subject, opts)
  check_subject("registry:versions", 2, subject)
  opts = check_opts("registry:versions", 3, opts, { deleted = true })
  return call(self, "GET", "/subjects/" .. seg(subject) .. "/versions", nil, opts.deleted and { deleted = "true" } or nil)
end

-- reg:register(subject, schema [, {normalize = true}]) -> id
function Registry:register(subject, schema, opts)
  check_subject("registry:register", 2, subject)
  local body, key = schema_body("registry:register", 3, schema)
  opts = check_opts("registry:register", 4, opts, { normalize = true })
  key = subject .. "\0" .. (opts.normalize and "n" or "") .. key
  local hit = self.registered[key]
  if hit then return hit end
  local v, err = call(self, "POST", "/subjects/" .. seg(subject) .. "/versions", body,
                      opts.normalize and { normalize = "true" } or nil)
  if not v then return nil, err end
  local id = tonumber(type(v) == "table" and v.id)
  if not id then return nil, registry_error(self, "POST", "/subjects/" .. seg(subject) .. "/versions", 200, nil, "no id in the answer") end
  self.registered[key] = id
  return id
end

-- reg:lookup(subject, schema [, {normalize = true, deleted = true}]) -> { subject=, id=, version=, schema=, schema_type=, references= }
function Registry:lookup(subject, schema, opts)
  check_subject("registry:lookup", 2, subject)
  local body, key = schema_body("registry:lookup", 3, schema)
  opts = check_opts("registry:lookup", 4, opts, { normalize = true, deleted = true })
  key = subject .. "\0" .. (opts.normalize and "n" or "") .. (opts.deleted and "d" or "") .. key
  local hit = self.looked_up[key]
  if hit then return hit end
  local query
  if opts.normalize or opts.deleted then
    query = { normalize = opts.normalize and "true" or nil, deleted = opts.deleted and "true" or nil }
  end
  local v, err = call(self, "POST", "/subjects/" .. seg(subject), body, query)
  if not v then return nil, err end
  local r = schema_result(v, nil, subject)
  if r.schema == nil then r.schema = body.schema end
  self.looked_up[key] = r
  return r
end

local function fetch_by_id(self, id)
  local v, err = call(self, "GET", "/schemas/ids/" .. format("%d", id))
  self.pending[id] = nil
  if not v then return nil, err end
  local r = schema_result(v, id)
  r.id, r.subject, r.version = id, nil, nil
  self.by_id[id] = r
  return r
end

-- reg:schema_by_id(id) -> { id=, schema=, schema_type=, references= }  (cached: ids never change).
-- Tasks asking for the same id at once share one request (they join the task making it).
function Registry:schema_by_id(id)
  if type(id) ~= "number" or id < 0 or floor(id) ~= id then
    argerr("registry:schema_by_id", 2, "expected a schema id (a whole number), got %s",
           type(id) == "number" and tostring(id) or type(id))
  end
  local hit = self.by_id[id]
  if hit then return hit end
  local t = self.pending[id]
  if not t then
    t = klua.spawn(fetch_by_id, self, id)
    self.pending[id] = t
  end
  return t:join()
end

-- reg:get_version(subject, version | "latest") -> { subject=, id=, version=, schema=, schema_type=, references= }
function Registry:get_version(subject, version)
  check_subject("registry:get_version", 2, subject)
  if version == nil then version = "latest" end
  check_version("registry:get_version", 3, version, true)
  local v, err = call(self, "GET", "/subjects/" .. seg(subject) .. "/versions/" .. seg(version))
  if not v then return nil, err end
  return schema_result(v, nil, subject)
end

-- reg:check_compatibility(subject, schema [, version = "latest"]) -> true | false, messages
function Registry:check_compatibility(subject, schema, version)
  check_subject("registry:check_compatibility", 2, subject)
  local body = schema_body("registry:check_compatibility", 3, schema)
  if version == nil then version = "latest" end
  check_version("registry:check_compatibility", 4, version, true)
  local v, err = call(self, "POST", "/compatibility/subjects/" .. seg(subject) .. "/versions/" .. seg(version), body,
                      { verbose = "true" })
  if not v then return nil, err end
  if type(v) ~= "table" then
    return nil, registry_error(self, "POST", "/compatibility/subjects/" .. seg(subject), 200, nil, "unexpected answer")
  end
  local messages = {}
  if type(v.messages) == "table" then
    for i, m in ipairs(v.messages) do messages[i] = type(m) == "string" and m or json.encode(m) end
  end
  return v.is_compatible == true, messages
end

-- reg:get_config([subject]) -> level (the subject's, else the global one)
function Registry:get_config(subject)
  if subject ~= nil then check_subject("registry:get_config", 2, subject) end
  local path = subject and "/config/" .. seg(subject) or "/config"
  local v, err = call(self, "GET", path, nil, subject and { defaultToGlobal = "true" } or nil)
  if not v then return nil, err end
  return type(v) == "table" and (v.compatibilityLevel or v.compatibility) or nil
end

-- reg:set_config(level [, subject]) -> level
function Registry:set_config(level, subject)
  if not LEVELS[level] then
    argerr("registry:set_config", 2, "expected a compatibility level (NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, "
           .. "FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE), got %s", tostring(level))
  end
  if subject ~= nil then check_subject("registry:set_config", 3, subject) end
  local path = subject and "/config/" .. seg(subject) or "/config"
  local v, err = call(self, "PUT", path, { compatibility = level })
  if not v then return nil, err end
  return type(v) == "table" and (v.compatibility or v.compatibilityLevel) or level
end

-- Forgets what the caches know of a subject (after a delete: registering again gives a new version).
local function forget_subject(self, subject)
  local prefix = subject .. "\0"
  for _, cache in ipairs{ self.registered, self.looked_up } do
    for k in pairs(cache) do
      if k:sub(1, #prefix) == prefix then cache[k] = nil end
    end
  end
end

-- reg:delete_subject(subject [, {permanent = true}]) -> versions. permanent: the soft delete the
-- API requires first, then the hard one (a subject already soft-deleted goes straight to it).
function Registry:delete_subject(subject, opts)
  check_subject("registry:delete_subject", 2, subject)
  opts = check_opts("registry:delete_subject", 3, opts, { permanent = true })
  local path = "/subjects/" .. seg(subject)
  forget_subject(self, subject)
  local v, err = call(self, "DELETE", path)
  if not opts.permanent then return v, err end
  -- 40404: already soft-deleted.
  if not v and err.error_code ~= 40404 then return nil, err end
  local hv, herr = call(self, "DELETE", path, nil, { permanent = "true" })
  if not hv then return nil, herr end
  return hv
end

-- reg:delete_version(subject, version | "latest" [, {permanent = true}]) -> version
function Registry:delete_version(subject, version, opts)
  check_subject("registry:delete_version", 2, subject)
  check_version("registry:delete_version", 3, version, true)
  opts = check_opts("registry:delete_version", 4, opts, { permanent = true })
  local path = "/subjects/" .. seg(subject) .. "/versions/" .. seg(version)
  forget_subject(self, subject)
  local v, err = call(self, "DELETE", path)
  if not opts.permanent then return tonumber(v) or v, err end
  if not v and err.error_code ~= 40406 then return nil, err end
  local hv, herr = call(self, "DELETE", path, nil, { permanent = "true" })
  if not hv then return nil, herr end
  return tonumber(hv) or hv
end

-- reg:references(refs) -> { [ref name] = schema text, ... }: every schema the references name,
-- and the ones those name in turn (protobuf imports, Avro named types from other subjects).
function Registry:references(refs)
  if type(refs) ~= "table" then argerr("registry:references", 2, "expected a list of references, got %s", type(refs)) end
  local out = {}
  local function walk(list)
    for i, r in ipairs(list) do
      if type(r) ~= "table" or type(r.name) ~= "string" or type(r.subject) ~= "string" then
        argerr("registry:references", 2, "references[%d] must be { name = string, subject = string, version = number }", i)
      end
      if out[r.name] == nil then
        local s, err = self:get_version(r.subject, r.version or "latest")
        if not s then return nil, err end
        out[r.name] = s.schema
        local ok, werr = walk(s.references)
        if not ok then return nil, werr end
      end
    end
    return true
  end
  local ok, err = walk(refs)
  if not ok then return nil, err end
  return out
end

-- ---- construction ----------------------------------------------------------------------------

local NEW_OPTIONS = { url = "string", user = "string", password = "string", bearer = "string", ca = "string",
                      timeout_ms = "number" }

local function new(opts, fn)
  if type(opts) == "string" then opts = { url = opts } end
  if type(opts) ~= "table" then argerr(fn, 1, "expected an options table { url = ... } or a URL, got %s", type(opts)) end
  for k, v in pairs(opts) do
    local t = NEW_OPTIONS[k]
    if not t then argerr(fn, 1, "unknown option '%s' (options: url, user, password, bearer, ca, timeout_ms)", tostring(k)) end
    if type(v) ~= t then argerr(fn, 1, "option '%s' must be a %s, got %s", k, t, type(v)) end
  end
  local url = opts.url
  if url == nil then argerr(fn, 1, "option 'url' is required") end
  if not url:lower():match("^https?://[^/?#]") then argerr(fn, 1, "option 'url' must be an http:// or https:// URL") end
  local user, password = opts.user, opts.password
  -- user:password@ in the URL is basic auth; the URL klua shows has none.
  local scheme, info, rest = url:match("^(%a[%w+.-]*://)([^/?#]*)@(.*)$")
  if scheme then
    url = scheme .. rest
    local u, p = info:match("^([^:]*):(.*)$")
    user = user or u or info
    password = password or p
    if user then user = user:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end) end
    if password then password = password:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end) end
  end
  url = url:gsub("/+$", "")
  if opts.bearer and user then argerr(fn, 1, "basic auth (user, password) and bearer are exclusive: give one") end
  if password and not user then argerr(fn, 1, "option 'password' needs 'user'") end
  local timeout = opts.timeout_ms or DEFAULT_TIMEOUT_MS
  if timeout <= 0 then argerr(fn, 1, "option 'timeout_ms' must be > 0, got %s", tostring(timeout)) end
  for _, v in ipairs{ password, opts.bearer } do
    if v and #v >= 4 then private_log.add_secret(v) end
  end
  local http = klua.http.client{
    base_url = url, user = user, password = user and (password or "") or nil, bearer = opts.bearer,
    ca_file = opts.ca, timeout_ms = timeout, connect_timeout_ms = math.min(timeout, 10000),
    headers = { Accept = ACCEPT },
  }
  return setmetatable({ url = url, http = http, by_id = {}, pending = {}, registered = {}, looked_up = {} }, Registry)
end

M.new = function(opts) return new(opts, "klua.registry") end

-- The configured registry: schema.registry.url (--schema-registry, -X, -F, the profile,
-- KLUA_SCHEMA_REGISTRY, klua.set_config) and its credentials; one object per configuration, so
-- that its caches are shared by everything that asks.
local shared, shared_key

local function configured()
  local cfg = klua.config()
  local url = cfg["schema.registry.url"]
  if url == nil or url == "" then
    return nil, E.new{ name = E.KLUA_NO_REGISTRY, op = "registry",
                       message = "no schema registry is configured: give --schema-registry URL, KLUA_SCHEMA_REGISTRY, "
                         .. "or schema.registry.url (-X, -F, a profile, klua.set_config)" }
  end
  local info = cfg["schema.registry.basic.auth.user.info"]
  local token = cfg["schema.registry.bearer.auth.token"]
  local ca = cfg["schema.registry.ssl.ca.location"]
  local key = concat({ url, info or "", token or "", ca or "" }, "\0")
  if shared and shared_key == key then return shared end
  local opts = { url = url, ca = ca ~= "" and ca or nil }
  if info and info ~= "" then
    local u, p = info:match("^([^:]*):(.*)$")
    opts.user, opts.password = u or info, p or ""
  elseif token and token ~= "" then
    opts.bearer = token
  end
  shared, shared_key = new(opts, "klua.registry"), key
  return shared
end

setmetatable(M, {
  -- klua.registry{...} -> a new client; klua.registry() -> the configured one, or nil, err.
  __call = function(_, opts)
    if opts == nil then return configured() end
    return new(opts, "klua.registry")
  end,
})

M.CONTENT_TYPE = CONTENT_TYPE
M.Registry = Registry

return M
