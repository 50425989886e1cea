-- c:messages{timeout_ms=, until_end=} (bindings/consumer.cpp loads it with klua.now, error,
-- pairs, ipairs, the fast path, klua.errors.bad_argument and the consumer's private primitives,
-- which are not on its metatable): an iterator over messages; raises on errors so that a for
-- loop never ends silently. It ends after timeout_ms without a message (when given), or, with
-- until_end, once every assigned partition reached the end offset taken when the assignment
-- was first seen (the last stable offset under read_committed).
local now, error, pairs, ipairs, fast, bad_argument, private = ...
local type, tostring = type, tostring
local end_offsets, held = private.end_offsets, private.held
return function(c, opts)
  if opts ~= nil and type(opts) ~= "table" then
    bad_argument("c:messages", 2, "options table {timeout_ms=, until_end=} expected, got " .. type(opts))
  end
  opts = opts or {}
  for k, v in pairs(opts) do
    if k ~= "timeout_ms" and k ~= "until_end" then
      bad_argument("c:messages", 2, "unknown option '" .. tostring(k) .. "' (allowed: timeout_ms, until_end)")
    end
    if k == "timeout_ms" and type(v) ~= "number" then
      bad_argument("c:messages", 2, "timeout_ms must be a number, got " .. type(v))
    end
  end
  local timeout, until_end = opts.timeout_ms, opts.until_end
  local ends
  local function at_end()
    if not ends then
      local assigned = c:assignment()
      if #assigned == 0 then return false end
      local e, err = end_offsets(c)
      if not e then error(err, 0) end
      ends = e
    end
    local pos = c:position()
    local by = {}
    for _, p in ipairs(pos) do by[p.topic .. "\0" .. p.partition] = p.offset end
    for _, e in ipairs(ends) do
      if e["end"] > e.low and held(c, e.topic, e.partition) == 0 then
        local p = by[e.topic .. "\0" .. e.partition]
        if p == nil or p < e["end"] then return false end
      elseif held(c, e.topic, e.partition) > 0 then
        return false
      end
    end
    return true
  end
  return function()
    if not until_end then
      local msg = fast(c)  -- a buffered message: no clock, no wait
      if msg then return msg end
    end
    local deadline = timeout and (now() + timeout)
    while true do
      if until_end and at_end() then return nil end
      local wait = until_end and 200 or (timeout and math.max(0, deadline - now())) or 1000
      local msg, err = c:poll(wait)
      if msg then return msg end
      if err then error(err, 0) end
      if deadline and now() >= deadline then return nil end
    end
  end
end
