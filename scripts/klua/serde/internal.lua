-- The serdes' shared pieces (not public: klua.serde.frame and klua.serde are): where a failed
-- encode or decode happened, and its error.
local tostring, pairs = tostring, pairs

local M = {}

-- klua.errors.new keeps the fields it knows (name, message, code, topic, partition, op...): the
-- others (offset, field, path, schema_id, subject, status, error_code...) are set on the error.
function M.new_error(fields)
  local e = klua.errors.new(fields)
  for k, v in pairs(fields) do
    if e[k] == nil then e[k] = v end
  end
  return e
end

-- Where a failed decode happened, for messages: "orders [2] at offset 17, value". ctx may be a
-- consumed message (its fields are read, nothing else) or nil.
function M.where(ctx, field)
  local topic = ctx and ctx.topic
  local s
  if topic then
    s = tostring(topic)
    local p, o = ctx.partition, ctx.offset
    if p ~= nil then s = s .. " [" .. tostring(p) .. "]" end
    if o ~= nil then s = s .. " at offset " .. tostring(o) end
  end
  if field then s = s and (s .. ", " .. field) or field end
  return s
end

-- A KLUA_DESERIALIZATION error naming where (ctx's topic, partition, offset and the field).
function M.decode_error(detail, ctx, field, extra)
  local w = M.where(ctx, field)
  local e = {
    name = "KLUA_DESERIALIZATION",
    message = w and (w .. ": " .. detail) or detail,
    field = field,
  }
  if ctx then e.topic, e.partition, e.offset = ctx.topic, ctx.partition, ctx.offset end
  if extra then for k, v in pairs(extra) do e[k] = v end end
  return M.new_error(e)
end


-- A KLUA_SERIALIZATION error for a value the codec refused (err from the codec, with err.path),
-- naming the topic and field; the codec's own fields are kept.
function M.encode_error(err, topic, field)
  local w = M.where(topic and { topic = topic } or nil, field)
  if type(err) ~= "table" then
    return M.new_error{ name = "KLUA_SERIALIZATION", message = (w and (w .. ": ") or "") .. tostring(err),
                            topic = topic, field = field }
  end
  if err.path == nil and type(err.message) == "string" then err.path = err.message:match("^(%$[^:]*):") end
  if w then err.message = w .. ": " .. tostring(err.message) end
  err.topic, err.field = topic, field
  return err
end

return M
