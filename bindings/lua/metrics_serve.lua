-- klua.metrics.serve / routes: GET /metrics, /healthz and /readyz on klua.http.serve. Returns the
-- function that bindings/lua/metrics.lua calls to add serve and routes to each registry.
-- P.shutting_down is bindings/metrics.cpp's (a signal seen by the loop, or klua.exit).
local klua, P = ...
local type, pairs, ipairs, tostring, error, pcall = type, pairs, ipairs, tostring, error, pcall
local concat = table.concat

local READY_TIMEOUT_MS = 2000
local DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 9464

-- A JSON string (the reasons are ours or the checks' own text).
local function json_string(s) return klua.json.encode(s) end

-- Runs every check (and the script's ready function) in a task of its own, all within one 2 s
-- deadline: a check may wait (ask a broker, call a service); one that raises or does not answer in
-- time counts as not ready, with the reason. Returns the list of reasons (empty: ready).
local function run_checks(checks)
  local tasks = {}
  for i, c in ipairs(checks) do
    tasks[i] = klua.spawn(function() return pcall(c.fn) end)
  end
  local reasons = {}
  local deadline = klua.now() + READY_TIMEOUT_MS
  for i, t in ipairs(tasks) do
    local name = checks[i].name
    local left = deadline - klua.now()
    local ok, v, why = t:join{ timeout_ms = left > 1 and left or 1 }
    if ok == nil then
      t:cancel()
      if type(v) == "table" and v.name == klua.errors._TIMED_OUT then
        reasons[#reasons + 1] = name .. ": no answer within " .. READY_TIMEOUT_MS .. " ms"
      else
        reasons[#reasons + 1] = name .. ": " .. tostring(v)
      end
    elseif not ok then
      reasons[#reasons + 1] = name .. ": raised: " .. tostring(v)
    elseif v ~= true then
      reasons[#reasons + 1] = name .. ": " .. (why ~= nil and tostring(why) or "not ready")
    end
  end
  return reasons
end

return function(m, reg, is_default, warn_once, argerr)
  local CONTENT_TYPE = m.CONTENT_TYPE

  local function readyz(ready)
    local reasons
    if P.shutting_down() then
      reasons = { "shutting down" }
    else
      local checks = {}
      for i, c in ipairs(reg.checks) do checks[i] = c end
      if ready then checks[#checks + 1] = { name = "ready", fn = ready } end
      reasons = run_checks(checks)
      -- A signal may have come while the checks ran (and cancelled them): that is the answer.
      if P.shutting_down() then reasons = { "shutting down" } end
    end
    if #reasons == 0 then
      return { status = 200, headers = { ["Content-Type"] = "application/json" }, body = '{"ready":true}' }
    end
    local parts = {}
    for i, r in ipairs(reasons) do parts[i] = json_string(r) end
    return { status = 503, headers = { ["Content-Type"] = "application/json" },
             body = '{"ready":false,"reasons":[' .. concat(parts, ",") .. "]}" }
  end

  local function check_ready(fn, ready)
    if ready ~= nil and type(ready) ~= "function" then
      argerr(fn, 1, "option 'ready' must be a function, got %s", type(ready))
    end
  end

  -- Serving the default registry (serve, or routes merged into a server of the script's own) turns
  -- klua's built-in metrics on. The built-in client metrics (bindings/lua/client_metrics.lua), when
  -- that module is there: it registers its collector and checks (once), turns statistics on for
  -- clients made from now on, and names the live clients that have none.
  local function enable_builtins()
    require("klua.worker.metrics").enable() -- the klua_worker_* families (scripts/klua/worker/metrics.lua)
    local priv = debug.getregistry()["klua.private"]
    local cm = type(priv) == "table" and priv.client_metrics or nil
    if type(cm) == "table" and type(cm.enable) == "function" then
      local without = cm.enable()
      if type(without) == "table" and #without > 0 then
        local names = {}
        for i, c in ipairs(without) do names[i] = tostring(c) end
        warn_once(reg, "no statistics from " .. concat(names, ", ") .. ": broker round-trip time and state "
          .. "need --metrics or statistics.interval.ms set before the client is created")
      end
    end
  end

  function m.routes(opts)
    local FN = "klua.metrics.routes"
    if opts ~= nil and type(opts) ~= "table" then argerr(FN, 1, "options table expected, got %s", type(opts)) end
    opts = opts or {}
    for k in pairs(opts) do
      if k ~= "ready" then argerr(FN, 1, "unknown option '%s'", tostring(k)) end
    end
    local ready = opts.ready
    check_ready(FN, ready)
    if is_default then enable_builtins() end
    return {
      ["GET /metrics"] = function()
        return { headers = { ["Content-Type"] = CONTENT_TYPE }, body = m.expose() }
      end,
      -- Answered by the handler at once: the loop's own liveness (a blocked loop answers nothing).
      ["GET /healthz"] = function() return "ok" end,
      ["GET /readyz"] = function() return readyz(ready) end,
    }
  end

  function m.serve(opts)
    local FN = "klua.metrics.serve"
    if opts ~= nil and type(opts) ~= "table" then argerr(FN, 1, "options table expected, got %s", type(opts)) end
    opts = opts or {}
    for k in pairs(opts) do
      if k ~= "host" and k ~= "port" and k ~= "ready" then argerr(FN, 1, "unknown option '%s'", tostring(k)) end
    end
    local host, port = opts.host or DEFAULT_HOST, opts.port or DEFAULT_PORT
    if type(host) ~= "string" then argerr(FN, 1, "option 'host' must be a string, got %s", type(host)) end
    if type(port) ~= "number" or port < 0 or port > 65535 or port % 1 ~= 0 then
      argerr(FN, 1, "option 'port' must be a whole number from 0 to 65535, got %s", tostring(port))
    end
    check_ready(FN, opts.ready)
    local routes = m.routes{ ready = opts.ready }  -- turns the built-in metrics on (default registry)
    return klua.http.serve{ host = host, port = port, routes = routes }
  end
end
