-- klua.worker.internal: what every worker mode shares (per-message, per-key, retry-topic, batch,
-- exactly-once): an error's readable text and type, the retry backoff, the dead-letter record
-- (headers or envelope form) and the handler call that captures a traceback. Internal: the
-- public names are on klua.worker (exception_message).
local M = {}

local function is_cancel(e) return type(e) == "table" and e.name == "KLUA_CANCELLED" end
M.is_cancel = is_cancel

-- A KLUA_WORKER error (the worker stops with it) with extra fields (topic, partition, cause).
function M.werr(message, fields)
  local e = klua.errors.new{ name = "KLUA_WORKER", message = message }
  for k, v in pairs(fields or {}) do e[k] = v end
  return e
end

-- true when the current task was cancelled (its waits raise KLUA_CANCELLED)
function M.self_cancelled()
  local ok, e = pcall(klua.sleep, 0)
  return not ok and is_cancel(e)
end

-- "topic [partition] at offset N", a message's coordinates in errors.
function M.where(m) return string.format("%s [%d] at offset %d", m.topic, m.partition, m.offset) end

-- An error's readable text for a dead-letter header or a failure message: a table's `message`,
-- else its __tostring (one that raises is not trusted), else its pretty form; never
-- "table: 0x...".
function M.exception_message(e)
  if type(e) ~= "table" then return tostring(e) end
  if type(e.message) == "string" then return e.message end
  local mt = getmetatable(e)
  if type(mt) == "table" and mt.__tostring then
    local ok, text = pcall(tostring, e)
    if ok and type(text) == "string" then return text end
    -- Its __tostring raised: print its fields without the metatable (the pretty printer would
    -- call the same __tostring).
    local fields = {}
    for k, v in next, e do fields[k] = v end
    e = fields
  end
  local ok, text = pcall(require("klua.pretty").format, e)
  return ok and text or "(an error value that cannot be printed)"
end

-- A klua error's name, a table's `type`/`name`, else "error".
function M.exception_type(e)
  if type(e) == "table" then return tostring(e.name or e.type or "table") end
  return "error"
end

-- The wait before attempt n+1 after n failed attempts: min(max_ms, base_ms * 2^(n-1)) * (1 +- jitter).
function M.backoff(retry, n)
  local d = math.min(retry.max_ms, retry.base_ms * 2 ^ (n - 1))
  d = d * (1 + retry.jitter * (2 * math.random() - 1))
  return math.max(0, d)
end

-- Calls handler(...) under xpcall. Returns true on success; false, err, stack (a traceback
-- string when it raised) on failure. A handler fails when it raises, or returns nil/false plus
-- an error.
local stack -- set by the message handler just before xpcall returns (no yield in between)
local function traceback(e)
  if is_cancel(e) then stack = nil else stack = debug.traceback(M.exception_message(e), 2) end
  return e
end
function M.call(handler, a, b)
  local ok, r1, r2 = xpcall(handler, traceback, a, b)
  if ok then
    if (r1 ~= nil and r1 ~= false) or r2 == nil then return true end
    return false, r2, nil
  end
  return false, r1, stack
end

local function coords(msg)
  return msg.topic, tostring(msg.partition), string.format("%d", msg.offset)
end

-- The x- headers of a dead-lettered message (msg carries the original coordinates).
-- info: {reason=, attempts=}.
function M.dead_letter_headers(msg, err, info)
  local topic, partition, offset = coords(msg)
  local h = {
    { "x-dead-letter-reason", info.reason }, { "x-exception-type", M.exception_type(err) },
    { "x-exception-message", M.exception_message(err) }, { "x-original-topic", topic },
    { "x-original-partition", partition }, { "x-original-offset", offset },
    { "x-attempts", tostring(info.attempts) }, { "x-failed-at", string.format("%d", klua.time()) },
  }
  if type(err) == "table" and err.code ~= nil then
    table.insert(h, 3, { "x-exception-code", tostring(err.code) })
  end
  return h
end

-- The dead-letter record for msg: dl = {topic=, format="headers"|"envelope"}; info = {reason=,
-- attempts=, stack=, group=, client_id=}. "headers": the original key, value and headers byte
-- for byte plus the x- headers; "envelope": the value is klua.envelope.dead_letter(msg, err,
-- info) (JSON), the key the original one, the headers the x- ones.
function M.dead_letter_record(dl, msg, err, info)
  local extra = M.dead_letter_headers(msg, err, info)
  if dl.format == "envelope" then
    return { topic = dl.topic, key = msg.key, value = require("klua.envelope").dead_letter(msg, err, info),
             headers = extra }
  end
  local headers = {}
  for i, h in ipairs(msg.headers or {}) do headers[i] = { h[1], h[2] } end
  for _, h in ipairs(extra) do headers[#headers + 1] = h end
  return { topic = dl.topic, key = msg.key, value = msg.value, headers = headers }
end

-- The summary at the worker's end: its line in text, its counters as fields in JSON.
function M.say_summary(self, text)
  local c = self:counters()
  local message = "worker " .. self.group .. " stopped: " .. text:gsub("^klua%.worker [^:]*: ", "")
  debug.getregistry()["klua.private"].log.diagnostic("info", message,
    { logger = "klua.worker", worker = self.group, consumed = c.consumed, processed = c.processed, retried = c.retried,
      dead_lettered = c.dead_lettered, deduplicated = c.deduplicated, failed = c.failed, elapsed_ms = c.elapsed_ms }, text)
end

return M
