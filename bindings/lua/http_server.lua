-- klua.http.serve: options and routes checked at serve() time, the per-request dispatcher (routing,
-- the handler in its task, the answer checked and sent), srv:close() and srv:wait(). The primitives
-- (P.listen, P.respond, P.wait, P.close, P.state) are bindings/http_server.cpp's.
local klua, P = ...
local E = klua.errors
local json_encode, json_decode = klua.json.encode, klua.json.decode
local type, pairs, ipairs, tostring, error, setmetatable = type, pairs, ipairs, tostring, error, setmetatable
local pcall, xpcall, select = pcall, xpcall, select
local sort, concat = table.sort, table.concat
local find, sub, gsub, format, char, tonumber = string.find, string.sub, string.gsub, string.format, string.char, tonumber
local traceback = debug.traceback
local co_running = coroutine.running

local FN = "klua.http.serve"

local function argerr(n, fmt, ...)
  E.bad_argument(FN, n, fmt:format(...))
end

local DEFAULTS = {
  host = "127.0.0.1",
  port = 0,
  max_body_size = 1048576,
  max_header_size = 16384,
  request_timeout_ms = 10000,
  handler_timeout_ms = 30000,
  shutdown_timeout_ms = 10000,
}
local LIMITS = {  -- option -> {min, max}
  port = { 0, 65535 },
  max_body_size = { 0, 2 ^ 40 },
  max_header_size = { 1, 2 ^ 30 },
  request_timeout_ms = { 1, 2 ^ 40 },
  handler_timeout_ms = { 1, 2 ^ 40 },
  shutdown_timeout_ms = { 0, math.huge },
}

-- ---- routes ---------------------------------------------------------------------------------

local LIT, PARAM, WILD = 0, 1, 2

-- "/a/b/" -> {"a", "b", ""}; "/" -> {""}. Segments stay percent-encoded: a literal matches as written.
local function split_path(path)
  local segs, n, pos = {}, 0, 2
  while true do
    local slash = find(path, "/", pos, true)
    n = n + 1
    if not slash then
      segs[n] = sub(path, pos)
      return segs, n
    end
    segs[n] = sub(path, pos, slash - 1)
    pos = slash + 1
  end
end

local function unescape(s)
  if not find(s, "%", 1, true) then return s end
  return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

local function compile_route(key, fn)
  if type(key) ~= "string" then
    argerr(1, "routes: a key must be a string \"METHOD /path\", got %s", type(key))
  end
  local method, path = key:match("^(%S+) (/%S*)$")
  if not method then
    argerr(1, "routes: bad key %q (expected \"METHOD /path\", such as \"GET /groups/:id\")", key)
  end
  if method ~= "*" and not method:match("^[A-Z]+$") then
    argerr(1, "routes: bad method in %q (an upper-case method such as GET, or *)", key)
  end
  if type(fn) ~= "function" then
    argerr(1, "routes[%q] must be a function, got %s", key, type(fn))
  end
  local raw, n = split_path(path)
  local segs, names, rank = {}, {}, {}
  for i = 1, n do
    local s = raw[i]
    if sub(s, 1, 1) == ":" then
      local name = sub(s, 2)
      if not name:match("^[%a_][%w_]*$") then
        argerr(1, "routes: bad parameter %q in %q (a name of letters, digits and _)", s, key)
      end
      if names[name] then argerr(1, "routes: parameter :%s appears twice in %q", name, key) end
      names[name] = true
      segs[i] = { kind = PARAM, name = name }
      rank[i] = "1"
    elseif s == "*" then
      if i ~= n then argerr(1, "routes: * must be the last segment in %q", key) end
      segs[i] = { kind = WILD }
      rank[i] = "2"
    else
      if find(s, "*", 1, true) then argerr(1, "routes: * must be a whole segment in %q", key) end
      segs[i] = { kind = LIT, text = s }
      rank[i] = "0"
    end
  end
  return { key = key, method = method, path = path, segs = segs, n = n, fn = fn, rank = concat(rank),
           literal = not find(concat(rank), "[12]") }
end

-- Routes in the order they are tried: the most specific path first (at the first segment that
-- differs, a literal before a :param before *), then methods before *.
local function compile_routes(routes)
  if type(routes) ~= "table" then argerr(1, "option 'routes' must be a table, got %s", type(routes)) end
  local list = {}
  for k, fn in pairs(routes) do list[#list + 1] = compile_route(k, fn) end
  sort(list, function(a, b)
    if a.rank ~= b.rank then return a.rank < b.rank end
    if (a.method == "*") ~= (b.method == "*") then return b.method == "*" end
    return a.key < b.key
  end)
  -- The routes without :params or *, by method and path: such a route of the request's own method is
  -- the first the scan below would find (no route is more specific), so a hit skips the scan.
  local exact = {}
  for _, r in ipairs(list) do
    if r.literal and r.method ~= "*" then
      exact[r.method] = exact[r.method] or {}
      exact[r.method][r.path] = r
    end
  end
  list.exact = exact
  return list
end

local function match(route, segs, n)
  local params
  local rsegs = route.segs
  for i = 1, route.n do
    local s = rsegs[i]
    if s.kind == WILD then
      params = params or {}
      params["*"] = unescape(concat(segs, "/", i, n))
      return params
    end
    local v = segs[i]
    if v == nil then return nil end
    if s.kind == LIT then
      if v ~= s.text then return nil end
    else
      if v == "" then return nil end
      params = params or {}
      params[s.name] = unescape(v)
    end
  end
  if n ~= route.n then return nil end
  return params or {}
end

-- The route for method and raw path, its params; or nil and the methods the path allows (405).
local function route_for(list, method, raw_path)
  local by_path = list.exact[method]
  local hit = by_path and by_path[raw_path]
  if hit then return hit, nil end  -- no params: req.params is made on first use
  local segs, n = split_path(raw_path)
  local allowed, head_route, head_params
  for i = 1, #list do
    local r = list[i]
    local params = match(r, segs, n)
    if params then
      local m = r.method
      if m == method or m == "*" then return r, params end
      if method == "HEAD" and m == "GET" and not head_route then head_route, head_params = r, params end
      allowed = allowed or {}
      allowed[m] = true
    end
  end
  if head_route then return head_route, head_params end
  return nil, allowed
end

-- ---- answers --------------------------------------------------------------------------------

local RES_KEYS = { status = true, headers = true, body = true, json = true }
local MANAGED = { ["content-length"] = true, ["transfer-encoding"] = true, connection = true, date = true, server = true }
local TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"

local function add_header(out, name, value)
  if type(name) ~= "string" or not name:match(TOKEN) then
    return format("a header name must be a token, got %s", type(name) == "string" and format("%q", name) or type(name))
  end
  if MANAGED[name:lower()] then return format("header %q is set by the server", name) end
  local tv = type(value)
  if tv == "number" then value = tostring(value)
  elseif tv ~= "string" then return format("header %q: the value must be a string or a number, got %s", name, tv) end
  if find(value, "[\r\n%z]") then return format("header %q: the value holds CR, LF or NUL", name) end
  out[#out + 1] = name
  out[#out + 1] = value
end

-- The handler's return value -> status, flat headers, body; or nil and what is wrong with it.
local function build(res)
  if res == nil then return 204, {}, "" end
  local t = type(res)
  if t == "string" then return 200, { "Content-Type", "text/plain; charset=utf-8" }, res end
  if t ~= "table" then
    return nil, format("the handler returned a %s (expected a table {status=, headers=, body= | json=}, a string or nil)", t)
  end
  for k in pairs(res) do
    if not RES_KEYS[k] then
      return nil, format("the handler's answer has an unknown field %s (allowed: status, headers, body, json)",
        type(k) == "string" and format("%q", k) or tostring(k))
    end
  end
  local status = res.status
  if status == nil then status = 200 end
  if type(status) ~= "number" or status % 1 ~= 0 or status < 200 or status > 599 then
    return nil, format("the handler's status must be a whole number from 200 to 599, got %s", tostring(status))
  end
  local headers, has_ctype = {}, false
  if res.headers ~= nil then
    if type(res.headers) ~= "table" then return nil, format("headers must be a table, got %s", type(res.headers)) end
    for name, value in pairs(res.headers) do
      if type(value) == "table" then  -- repeated header: {"a=1", "b=2"}
        for _, v in ipairs(value) do
          local problem = add_header(headers, name, v)
          if problem then return nil, problem end
        end
      else
        local problem = add_header(headers, name, value)
        if problem then return nil, problem end
      end
      if type(name) == "string" and name:lower() == "content-type" then has_ctype = true end
    end
  end
  local body = res.body
  if res.json ~= nil then
    if body ~= nil then return nil, "the handler's answer has both body and json" end
    local ok, text = pcall(json_encode, res.json)
    if not ok then return nil, "json: " .. tostring(text) end
    body = text
    if not has_ctype then headers[#headers + 1] = "Content-Type"; headers[#headers + 1] = "application/json" end
  elseif body == nil then
    body = ""
  elseif type(body) ~= "string" then
    return nil, format("body must be a string, got %s", type(body))
  elseif body ~= "" and not has_ctype then
    headers[#headers + 1] = "Content-Type"
    headers[#headers + 1] = "text/plain; charset=utf-8"
  end
  if (status == 204 or status == 304) and body ~= "" then
    return nil, format("a %d answer has no body", status)
  end
  return status, headers, body
end

local say = debug.getregistry()["klua.private"].log.say
local function log(fmt, ...)
  say("warn", "klua.http", "klua.http", fmt:format(...))
end

local Request = {}
-- req.query and req.params are made on first use when empty (no query string: the C side sets
-- query only when there is one; a route without :params): most requests never look, and an empty
-- table each is garbage.
Request.__index = function(req, k)
  if k == "query" or k == "params" then
    local t = {}
    rawset(req, k, t)
    return t
  end
  return Request[k]
end

-- req:json(): the body decoded, or nil, err (KLUA_JSON).
function Request:json()
  return json_decode(self.body)
end

local TEXT = { "Content-Type", "text/plain; charset=utf-8" }

-- The handler coroutines running now, by coroutine -> their server's handle (srv:close() from a
-- handler of its own server does not wait for itself).
local running = setmetatable({}, { __mode = "k" })

local function on_error(e)
  if type(e) == "table" and e.name == E.KLUA_CANCELLED then return e end
  return { raised = e, traceback = traceback(tostring(e), 2) }
end

-- The dispatcher, and the function that gives it the server's handle (P.listen makes the handle
-- and takes the dispatcher: the handle comes second, as an upvalue).
local function make_dispatch(list)
  local handle
  return function(id, req, raw_path)
    setmetatable(req, Request)
    local method = req.method
    local route, params = route_for(list, method, raw_path)
    if not route then
      if params then
        local allow = {}
        for m in pairs(params) do allow[#allow + 1] = m end
        if params.GET and not params.HEAD then allow[#allow + 1] = "HEAD" end
        sort(allow)
        P.respond(handle, id, 405, { "Allow", concat(allow, ", "), TEXT[1], TEXT[2] }, "Method Not Allowed\n")
      else
        P.respond(handle, id, 404, TEXT, "Not Found\n")
      end
      return
    end
    if params then req.params = params end
    local co = co_running()
    running[co] = handle
    local ok, res = xpcall(route.fn, on_error, req)
    running[co] = nil
    if not ok then
      if type(res) == "table" and res.name == E.KLUA_CANCELLED then
        -- The request ended (the client left, handler_timeout_ms, the close's bound): nothing to answer.
        P.respond(handle, id, 503, TEXT, "Service Unavailable\n")
        return
      end
      log("%s %s (route %q): the handler raised: %s; answered 500", method, raw_path, route.key, res.traceback)
      P.respond(handle, id, 500, TEXT, "Internal Server Error\n")
      return
    end
    local status, headers, body = build(res)
    if not status then
      log("%s %s (route %q): bad answer: %s; answered 500", method, raw_path, route.key, headers)
      P.respond(handle, id, 500, TEXT, "Internal Server Error\n")
      return
    end
    P.respond(handle, id, status, headers, body)
  end, function(h) handle = h end
end

-- ---- the server object ------------------------------------------------------------------------

local Server = {}
Server.__index = Server

local function method_opts(fn, opts, default)
  if opts == nil then return default end
  if type(opts) ~= "table" then E.bad_argument(fn, 2, "options table {timeout_ms=} expected, got " .. type(opts)) end
  local t = default
  for k, v in pairs(opts) do
    if k ~= "timeout_ms" then E.bad_argument(fn, 2, format("unknown option '%s' (allowed: timeout_ms)", tostring(k))) end
    if type(v) ~= "number" or not (v >= 0) then
      E.bad_argument(fn, 2, "timeout_ms must be a number >= 0 (math.huge waits without a limit)")
    end
    t = v
  end
  return t
end

-- srv:close([{timeout_ms=}]): stops accepting, lets the requests in flight answer within timeout_ms
-- (default: the server's shutdown_timeout_ms), answers 503 for the rest, and returns once closed.
-- Called from one of the server's own handlers, it starts the close and returns at once.
function Server:close(opts)
  if getmetatable(self) ~= Server then E.bad_argument("srv:close", 1, "expected a server (call it as srv:close())") end
  local timeout = method_opts("srv:close", opts, self._shutdown_timeout_ms)
  local state = P.close(self._handle, timeout)
  if state == "closed" or running[co_running()] == self._handle then return true end
  return P.wait(self._handle, -1, false)
end

-- srv:wait([{timeout_ms=}]): yields until the server is closed (srv:close, SIGINT/SIGTERM); true, or
-- nil, err (_TIMED_OUT).
function Server:wait(opts)
  if getmetatable(self) ~= Server then E.bad_argument("srv:wait", 1, "expected a server (call it as srv:wait())") end
  local timeout = method_opts("srv:wait", opts, -1)
  if timeout == math.huge then timeout = -1 end
  return P.wait(self._handle, timeout, false)
end

function Server:__tostring()
  return format("klua.http.server(%s, %s)", self.url, P.state(self._handle))
end

local function serve(opts)
  if type(opts) ~= "table" then argerr(1, "options table expected, got %s", type(opts)) end
  local cfg = {}
  for k, v in pairs(opts) do
    if k == "routes" then
      -- compiled below
    elseif k == "host" then
      if type(v) ~= "string" or v == "" then argerr(1, "option 'host' must be an IP address string, got %s", type(v)) end
    elseif DEFAULTS[k] ~= nil then
      local lim = LIMITS[k]
      if type(v) ~= "number" or not (v >= lim[1] and v <= lim[2]) or (v % 1 ~= 0 and v ~= math.huge) then
        argerr(1, "option '%s' must be a whole number from %s to %s, got %s", k, lim[1],
          lim[2] == math.huge and "math.huge" or format("%.0f", lim[2]), tostring(v))
      end
    else
      argerr(1, "unknown option '%s'", tostring(k))
    end
    cfg[k] = v
  end
  if opts.routes == nil then argerr(1, "option 'routes' is required: {[\"GET /path\"] = function(req) ... end}") end
  local list = compile_routes(opts.routes)
  for k, v in pairs(DEFAULTS) do
    if cfg[k] == nil then cfg[k] = v end
  end
  if cfg.host == "localhost" then cfg.host = "127.0.0.1" end
  cfg.routes = nil

  local dispatch, set_handle = make_dispatch(list)
  local handle, port = P.listen(cfg, dispatch)
  if not handle then
    return nil, E.new { name = "KLUA_HTTP_LISTEN", message = port, op = FN }
  end
  set_handle(handle)

  local url_host = cfg.host
  if url_host == "0.0.0.0" then url_host = "127.0.0.1"
  elseif url_host == "::" then url_host = "[::1]"
  elseif find(url_host, ":", 1, true) then url_host = "[" .. url_host .. "]" end
  local srv = setmetatable({
    host = cfg.host,
    port = port,
    url = "http://" .. url_host .. ":" .. port,
    _handle = handle,
    _shutdown_timeout_ms = cfg.shutdown_timeout_ms,
  }, Server)
  -- The keeper: a task waiting until the server closes keeps the script running; cancelled by
  -- SIGINT/SIGTERM, its wait's end starts the graceful close (bindings/http_server.cpp).
  klua.spawn(function() pcall(P.wait, handle, -1, true) end)
  return srv
end

return serve
