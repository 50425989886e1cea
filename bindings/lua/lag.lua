-- klua.lag: the shared admin handle and the watcher, on top of admin:lag (bindings/lag.cpp opens it).
local klua = ...
local type, pairs, ipairs, next, error, tostring = type, pairs, ipairs, next, error, tostring
local shared

-- Programmer errors: KLUA_INVALID_ARGUMENT at the caller's line (klua.errors.bad_argument).
local function argerr(fn, n, fmt, ...)
  klua.errors.bad_argument(fn, n, fmt:format(...))
end

local function split(opts, allowed, fn, n)
  if opts == nil then return nil, {} end
  if type(opts) ~= "table" then argerr(fn, n, "options must be a table, got %s", type(opts)) end
  local a, rest = nil, {}
  for k, v in pairs(opts) do
    if k == "admin" then a = v
    elseif allowed[k] then rest[k] = v
    else argerr(fn, n, "unknown option '%s'", tostring(k)) end
  end
  return a, rest
end

local function admin(a)
  if a ~= nil then return a end
  if not shared then shared = klua.admin() end
  return shared
end

local lag = {}

-- The topics are checked here, so that a bad list names this function and its argument (#2 of
-- klua.lag, option 'topics' of klua.lag.watch), not admin:lag's #3.
local function check_topics(fn, n, topics, what)
  if topics == nil or type(topics) == "string" then return end
  if type(topics) ~= "table" then argerr(fn, n, "%sexpected a list of topic names, got %s", what, type(topics)) end
  for i, t in ipairs(topics) do
    if type(t) ~= "string" then argerr(fn, n, "%stopic name %d must be a string, got %s", what, i, type(t)) end
  end
  if #topics == 0 and next(topics) ~= nil then argerr(fn, n, "%sexpected a list of topic names", what) end
end

local function snapshot(group, topics, opts, fn, n)
  fn = fn or "klua.lag"
  if type(group) ~= "string" or group == "" then argerr(fn, 1, "the group id must be a non-empty string") end
  if fn == "klua.lag" then check_topics(fn, 2, topics, "") else check_topics(fn, n, topics, "option 'topics': ") end
  local a, rest = split(opts, { timeout_ms = true }, fn, n or 3)
  return admin(a):lag(group, topics, rest)
end

-- Rates between two snapshots: messages/s consumed (committed offsets) and produced (high watermarks).
local function rates(prev, snap)
  local dt = (snap.time - prev.time) / 1000
  if dt <= 0 then return nil end
  local before = {}
  for _, p in ipairs(prev.partitions) do before[p.topic .. "\0" .. p.partition] = p end
  local consumed, produced = 0, 0
  for _, p in ipairs(snap.partitions) do
    local b = before[p.topic .. "\0" .. p.partition]
    if b then
      if p.committed and b.committed then consumed = consumed + (p.committed - b.committed) end
      if p.high and b.high then produced = produced + (p.high - b.high) end
    end
  end
  return { consumed_per_s = consumed / dt, produced_per_s = produced / dt, seconds = dt }
end

-- lag.watch(group, {interval=ms, topics=, timeout_ms=, admin=}, fn): calls fn(snapshot, rates) every
-- interval (rates nil on the first call), or fn(nil, err) when a snapshot fails; stops when fn returns
-- false. Yields between snapshots; cancel the task to stop it from outside.
function lag.watch(group, opts, fn)
  if type(opts) == "function" and fn == nil then opts, fn = {}, opts end
  if type(fn) ~= "function" then argerr("klua.lag.watch", 3, "expected a function, got %s", type(fn)) end
  opts = opts or {}
  if type(opts) ~= "table" then argerr("klua.lag.watch", 2, "options must be a table, got %s", type(opts)) end
  local interval, topics = opts.interval or 5000, opts.topics
  if type(interval) ~= "number" or interval <= 0 then argerr("klua.lag.watch", 2, "option 'interval' must be a positive number of ms") end
  local pass = {}
  for k, v in pairs(opts) do
    if k ~= "interval" and k ~= "topics" then pass[k] = v end
  end
  local prev
  while true do
    local snap, err = snapshot(group, topics, pass, "klua.lag.watch", 2)
    local again
    if snap then
      again = fn(snap, prev and rates(prev, snap) or nil)
      prev = snap
    else
      again = fn(nil, err)
    end
    if again == false then return true end
    klua.sleep(interval)
  end
end

return setmetatable(lag, { __call = function(_, group, topics, opts) return snapshot(group, topics, opts) end })
