-- klua.http's client: options, defaults, argument checks, error wording and the response object,
-- on top of the primitives of bindings/http_client.cpp (P.new_client, P.perform).
local klua, http, P = ...
local E = klua.errors
local type, pairs, ipairs, tostring, tonumber, setmetatable, next = type, pairs, ipairs, tostring, tonumber, setmetatable, next
local format, byte, concat, sort = string.format, string.byte, table.concat, table.sort
local floor, huge = math.floor, math.huge

local DEFAULT_TIMEOUT_MS = 30000
local DEFAULT_CONNECT_TIMEOUT_MS = 10000
local DEFAULT_MAX_REDIRECTS = 5
local DEFAULT_MAX_RESPONSE_SIZE = 64 * 1024 * 1024
local DEFAULT_MAX_PER_HOST = 100

local function argerr(fn, n, fmt, ...)
  E.bad_argument(fn, n, fmt:format(...))
end

-- ---- URLs ----------------------------------------------------------------------------------

local function encode_component(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return format("%%%02X", byte(c)) end))
end

-- Query parameters whose values are secrets by their name (api_key=, access_token=, sig=): their
-- values are replaced in every URL an error or a response shows.
local function secret_param(name)
  name = name:lower()
  return name:find("token", 1, true) or name:find("secret", 1, true) or name:find("pass", 1, true)
      or name:find("key", 1, true) or name:find("sig", 1, true) or name:find("auth", 1, true)
      or name:find("credential", 1, true) or name:find("session", 1, true) or name == "pwd"
end

-- The URL without its credentials: no user:password@, and secret-looking query values replaced.
local function redact(url)
  if not url:find("[@?]") then return url end
  url = url:gsub("^(%a[%w+.-]*://)[^/?#]*@", "%1")
  local base, query, frag = url:match("^([^?#]*)%??([^#]*)(#?.*)$")
  if not base or query == "" then return url end
  local parts = {}
  for item in query:gmatch("[^&]+") do
    local name = item:match("^([^=]*)=")
    if name and secret_param(name) then item = name .. "=REDACTED" end
    parts[#parts + 1] = item
  end
  return base .. "?" .. concat(parts, "&") .. frag
end

-- query = {name = value | {values...}} -> "a=1&b=x%20y" (names sorted: the URL is the same every run).
local function encode_query(q, fn, n)
  if type(q) ~= "table" then argerr(fn, n, "option 'query' must be a table, got %s", type(q)) end
  local names = {}
  for k in pairs(q) do
    if type(k) ~= "string" then argerr(fn, n, "option 'query': names must be strings, got %s", type(k)) end
    names[#names + 1] = k
  end
  sort(names)
  local out = {}
  local function add(k, v)
    local tv = type(v)
    if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
      argerr(fn, n, "option 'query': the value of '%s' must be a string, number or boolean, got %s", k, tv)
    end
    out[#out + 1] = encode_component(k) .. "=" .. encode_component(v)
  end
  for _, k in ipairs(names) do
    local v = q[k]
    if type(v) == "table" then
      for _, item in ipairs(v) do add(k, item) end
    else
      add(k, v)
    end
  end
  return concat(out, "&")
end

local function append_query(url, query)
  if query == "" then return url end
  local base, frag = url:match("^([^#]*)(#?.*)$")
  if base:find("?", 1, true) then
    if base:sub(-1) == "?" or base:sub(-1) == "&" then return base .. query .. frag end
    return base .. "&" .. query .. frag
  end
  return base .. "?" .. query .. frag
end

-- ---- headers -------------------------------------------------------------------------------

local function check_header(fn, n, name, value)
  if type(name) ~= "string" or not name:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
    argerr(fn, n, "option 'headers': %s is not a header name", type(name) == "string" and format("%q", name) or type(name))
  end
  local tv = type(value)
  if tv == "number" then value = tostring(value)
  elseif tv ~= "string" then argerr(fn, n, "option 'headers': the value of '%s' must be a string, got %s", name, tv) end
  if value:find("[\r\n%z]") then argerr(fn, n, "option 'headers': the value of '%s' contains a line break or NUL", name) end
  return name, value
end

-- headers = {Name = value} or {{name, value}, ...} -> list of {name, value}, checked.
local function header_list(h, fn, n)
  if h == nil then return {} end
  if type(h) ~= "table" then argerr(fn, n, "option 'headers' must be a table, got %s", type(h)) end
  local out = {}
  if h[1] ~= nil then
    for i, pair in ipairs(h) do
      if type(pair) ~= "table" then argerr(fn, n, "option 'headers': item %d must be a {name, value} pair", i) end
      out[#out + 1] = { check_header(fn, n, pair[1], pair[2]) }
    end
  else
    local names = {}
    for k in pairs(h) do names[#names + 1] = k end
    sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(names) do out[#out + 1] = { check_header(fn, n, k, h[k]) } end
  end
  return out
end

-- Later lists override earlier ones by name (case-insensitive); the order of first appearance is kept.
local function merge_headers(base, over)
  if #base == 0 then return over end
  local replaced = {}
  for _, p in ipairs(over) do replaced[p[1]:lower()] = true end
  local out = {}
  for _, p in ipairs(base) do
    if not replaced[p[1]:lower()] then out[#out + 1] = p end
  end
  for _, p in ipairs(over) do out[#out + 1] = p end
  return out
end

-- ---- options -------------------------------------------------------------------------------

local OPTIONS = {
  method = "string", url = "string", query = "table", headers = "table", body = "string", json = true,
  timeout_ms = "number", connect_timeout_ms = "number", max_redirects = "number", max_response_size = "number",
  verify = "boolean", ca_file = "string", ca_path = "string", cert_file = "string", key_file = "string",
  key_password = "string", user = "string", password = "string", bearer = "string", proxy = "string",
  no_proxy = "string",
}
-- Only in klua.http.client{}: they belong to the client, not to one request.
local CLIENT_OPTIONS = { base_url = "string", max_per_host = "number" }

local function check_options(opts, fn, n, allowed_extra)
  if type(opts) ~= "table" then argerr(fn, n, "options table expected, got %s", type(opts)) end
  for k, v in pairs(opts) do
    local want = OPTIONS[k] or (allowed_extra and allowed_extra[k])
    if not want then argerr(fn, n, "unknown option '%s'", tostring(k)) end
    -- (the value of a secret option is never shown, only its type)
    if want ~= true and type(v) ~= want then argerr(fn, n, "option '%s' must be a %s, got %s", k, want, type(v)) end
  end
  local function nonneg(k, integer)
    local v = opts[k]
    if v ~= nil and (not (v >= 0) or (integer and v ~= huge and v ~= floor(v))) then
      argerr(fn, n, "option '%s' must be a %snumber >= 0, got %s", k, integer and "whole " or "", tostring(v))
    end
  end
  nonneg("timeout_ms")
  nonneg("connect_timeout_ms")
  nonneg("max_redirects", true)
  nonneg("max_response_size", true)
  if opts.max_response_size == 0 then argerr(fn, n, "option 'max_response_size' must be > 0") end
  if opts.body ~= nil and opts.json ~= nil then argerr(fn, n, "options 'body' and 'json' are exclusive: give one") end
  if opts.bearer ~= nil and opts.user ~= nil then argerr(fn, n, "options 'user' and 'bearer' are exclusive: give one") end
  if opts.password ~= nil and opts.user == nil then argerr(fn, n, "option 'password' needs 'user'") end
  if opts.method ~= nil and not opts.method:match("^[%a][%w%-_]*$") then
    argerr(fn, n, "option 'method' must be an HTTP method name such as \"GET\", got %q", opts.method)
  end
end

local function join_url(base, url)
  if base == nil or url:match("^%a[%w+.-]*://") then return url end
  if url == "" then return base end
  return (base:gsub("/+$", "")) .. "/" .. (url:gsub("^/+", ""))
end

-- ---- the response --------------------------------------------------------------------------

local Response = {}
Response.__index = Response

-- res:json() -> value | nil, err (the body decoded; KLUA_JSON for a body that is not JSON).
function Response:json()
  return klua.json.decode(self.body)
end

-- ---- requests ------------------------------------------------------------------------------

-- Builds the primitive's spec from the client's defaults and the request's options.
local function build_spec(client, opts, fn, n, url_arg)
  local spec = {}
  for k, v in pairs(opts) do spec[k] = v end  -- (keys checked by check_options)
  for k, v in pairs(client.defaults) do
    if spec[k] == nil then spec[k] = v end
  end
  -- The request's own auth replaces the client's as a whole (user with its password).
  if opts.user ~= nil or opts.bearer ~= nil then
    spec.user, spec.password, spec.bearer = opts.user, opts.password, opts.bearer
  end
  local url = spec.url
  if type(url) ~= "string" or url == "" then argerr(fn, n, "option 'url' is required (a string)") end
  url = join_url(client.base_url, url)
  if not url:lower():match("^https?://[^/?#]") then
    argerr(fn, url_arg or n, "%s must be an http:// or https:// URL, got %q", url_arg and "the URL" or "option 'url'", redact(url))
  end
  if opts.query ~= nil then url = append_query(url, encode_query(opts.query, fn, n)) end
  local bad = P.check_url(url)
  if bad then
    argerr(fn, url_arg or n, "%s is malformed (%s): %q", url_arg and "the URL" or "option 'url'", bad, redact(url))
  end
  spec.url = url
  spec.method = (spec.method or (spec.body ~= nil or spec.json ~= nil) and "POST" or "GET"):upper()
  local headers = merge_headers(client.headers, header_list(opts.headers, fn, n))
  local lines, has = {}, {}
  for i, p in ipairs(headers) do
    has[p[1]:lower()] = true
    -- "Name;" is curl's way to send an empty value ("Name:" would remove a header of curl's own).
    lines[i] = p[2] == "" and p[1] .. ";" or p[1] .. ": " .. p[2]
  end
  if spec.json ~= nil then
    spec.body = klua.json.encode(spec.json)
    spec.json = nil
    if not has["content-type"] then lines[#lines + 1] = "Content-Type: application/json" end
  elseif spec.body ~= nil and not has["content-type"] then
    lines[#lines + 1] = "Content-Type:"  -- no type rather than curl's default, which claims a form
  end
  -- curl asks large bodies for "100 Continue" first and waits up to a second for servers that
  -- never answer it: send the body at once.
  if spec.body ~= nil and not has["expect"] then lines[#lines + 1] = "Expect:" end
  spec.headers = lines
  if spec.timeout_ms == nil then spec.timeout_ms = DEFAULT_TIMEOUT_MS end
  if spec.connect_timeout_ms == nil then spec.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS end
  if spec.max_redirects == nil then spec.max_redirects = DEFAULT_MAX_REDIRECTS end
  if spec.max_response_size == nil then spec.max_response_size = DEFAULT_MAX_RESPONSE_SIZE end
  if spec.connect_timeout_ms > spec.timeout_ms then spec.connect_timeout_ms = spec.timeout_ms end
  return spec
end

-- The client's curl multi handle, made at its first request.
local function handle_of(client)
  if client._closed then
    error(E.new{ name = E.KLUA_CLOSED, message = "the HTTP client is closed (client:close())" }, 0)
  end
  local h = client._handle
  if not h then
    h = P.new_client(client.max_per_host)
    client._handle = h
  end
  return h
end

local function perform(client, opts, fn, n, url_arg)
  check_options(opts, fn, n)
  local spec = build_spec(client, opts, fn, n, url_arg)
  local res, err = P.perform(handle_of(client), spec)
  if res then
    res.url = redact(res.url)
    return setmetatable(res, Response)
  end
  local shown = redact(spec.url)
  if err.name == E._TIMED_OUT then
    if err.curl_code == nil then  -- the wait's own timeout (curl's connect timeout has its own words)
      err.message = format("timed out after %s ms", tostring(spec.timeout_ms))
      err.timeout_ms = spec.timeout_ms
    else
      err.timeout_ms = spec.connect_timeout_ms
    end
  end
  err.message = format("%s %s: %s", spec.method, shown, err.message)
  err.url = shown
  err.method = spec.method
  err.op = fn
  return nil, err
end

local Client = {}
Client.__index = Client


local function request(self, opts, fn)
  if type(opts) ~= "table" then argerr(fn, 1, "options table expected, got %s", type(opts)) end
  return perform(self, opts, fn, 1)
end

local function get(self, url, opts, fn)
  if type(url) ~= "string" then argerr(fn, 1, "URL string expected, got %s", type(url)) end
  if opts ~= nil and type(opts) ~= "table" then argerr(fn, 2, "options table expected, got %s", type(opts)) end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.url ~= nil then argerr(fn, 2, "option 'url' is the first argument") end
  o.url = url
  o.method = o.method or "GET"
  return perform(self, o, fn, 2, 1)
end

local function post(self, url, body, opts, fn)
  if type(url) ~= "string" then argerr(fn, 1, "URL string expected, got %s", type(url)) end
  if type(body) ~= "string" and type(body) ~= "table" then
    argerr(fn, 2, "body expected (a string, or a table sent as JSON), got %s", type(body))
  end
  if opts ~= nil and type(opts) ~= "table" then argerr(fn, 3, "options table expected, got %s", type(opts)) end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.url ~= nil or o.body ~= nil or o.json ~= nil then argerr(fn, 3, "options 'url', 'body' and 'json' are arguments here") end
  o.url = url
  if type(body) == "table" then o.json = body else o.body = body end
  o.method = o.method or "POST"
  return perform(self, o, fn, 3, 1)
end

function Client:request(opts) return request(self, opts, "client:request") end
function Client:get(url, opts) return get(self, url, opts, "client:get") end
function Client:post(url, body, opts) return post(self, url, body, opts, "client:post") end

-- client:close(): idempotent; requests still waiting return nil, KLUA_CLOSED, later ones raise.
function Client:close()
  self._closed = true
  if self._handle then P.close(self._handle) end
end

local function new_client(defaults, fn)
  defaults = defaults or {}
  check_options(defaults, fn, 1, CLIENT_OPTIONS)
  local d = {}
  for k, v in pairs(defaults) do d[k] = v end
  local mph = d.max_per_host or DEFAULT_MAX_PER_HOST
  if mph ~= floor(mph) or mph < 1 or mph > 1e6 then argerr(fn, 1, "option 'max_per_host' must be a whole number from 1, got %s", tostring(mph)) end
  if d.base_url ~= nil and not d.base_url:lower():match("^https?://[^/?#]") then
    argerr(fn, 1, "option 'base_url' must be an http:// or https:// URL")
  end
  if d.url ~= nil or d.query ~= nil or d.body ~= nil or d.json ~= nil then
    argerr(fn, 1, "options 'url', 'query', 'body' and 'json' belong to a request, not to a client")
  end
  local self = setmetatable({ defaults = d, base_url = d.base_url, max_per_host = mph }, Client)
  self.headers = header_list(d.headers, fn, 1)
  d.base_url, d.max_per_host, d.headers = nil, nil, nil
  return self
end

local shared  -- the client of klua.http.request/get/post, made at the first call

local function default_client()
  if not shared then shared = new_client({}, "klua.http.request") end
  return shared
end

function http.request(opts) return request(default_client(), opts, "klua.http.request") end
function http.get(url, opts) return get(default_client(), url, opts, "klua.http.get") end
function http.post(url, body, opts) return post(default_client(), url, body, opts, "klua.http.post") end
function http.client(defaults)
  if defaults ~= nil and type(defaults) ~= "table" then
    argerr("klua.http.client", 1, "options table expected, got %s", type(defaults))
  end
  return new_client(defaults, "klua.http.client")
end
-- For tests and diagnostics: the URL as errors show it, and curl's version and features.
http._redact = redact
http._curl = P.info
