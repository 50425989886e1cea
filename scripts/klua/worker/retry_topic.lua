-- klua.worker.retry_topic (internal): the records of retry-topic mode (retry = {topic = ...}).
-- A failed attempt goes to the retry topic as the original key, value and headers byte for byte
-- plus x-retry-attempt (the attempt number the retry will be), x-retry-not-before (epoch ms),
-- x-original-topic, x-original-partition and x-original-offset; the worker reads the retry topic
-- too and hands each record back to its original topic's handler as the original message
-- (original coordinates, original headers), once its time has come.
local M = {}

local OURS = { ["x-retry-attempt"] = true, ["x-retry-not-before"] = true, ["x-original-topic"] = true,
               ["x-original-partition"] = true, ["x-original-offset"] = true }

-- The record sending msg (an original message, or a view from M.view) back for attempt `attempt`
-- at epoch ms `not_before`.
function M.record(topic, msg, attempt, not_before)
  local headers = {}
  for i, h in ipairs(msg.headers or {}) do headers[i] = { h[1], h[2] } end
  local n = #headers
  headers[n + 1] = { "x-retry-attempt", tostring(attempt) }
  headers[n + 2] = { "x-retry-not-before", string.format("%d", not_before) }
  headers[n + 3] = { "x-original-topic", msg.topic }
  headers[n + 4] = { "x-original-partition", tostring(msg.partition) }
  headers[n + 5] = { "x-original-offset", string.format("%d", msg.offset) }
  return { topic = topic, key = msg.key, value = msg.value, headers = headers }
end

-- When a retry record is due (epoch ms), or nil for a record that is not one of ours.
function M.not_before(rec)
  return tonumber(rec:header("x-retry-not-before"))
end

-- The original message a retry record carries (same metatable: msg:header works), and the
-- attempt it is; nil for a record without our headers (it is handled as it is, attempt 1).
function M.view(rec)
  local topic = rec:header("x-original-topic")
  local partition = tonumber(rec:header("x-original-partition"))
  local offset = tonumber(rec:header("x-original-offset"))
  local attempt = tonumber(rec:header("x-retry-attempt"))
  if not (topic and partition and offset and attempt) then return nil end
  local headers = {}
  for _, h in ipairs(rec.headers) do
    if not OURS[h[1]] then headers[#headers + 1] = h end
  end
  return setmetatable({ topic = topic, partition = partition, offset = offset, key = rec.key, value = rec.value,
                        headers = headers, timestamp = rec.timestamp, timestamp_type = rec.timestamp_type },
                      getmetatable(rec)), attempt
end

return M
