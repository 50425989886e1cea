-- klua.serde.frame: the Confluent wire format's 5-byte header, magic byte 0x00 then the schema id
-- as a 4-byte big-endian number (Protobuf adds its message-index array after it, see
-- klua.protobuf.read_message_indexes). Offsets are 0-based, as the codecs take them.
local byte, char, floor, type, tostring = string.byte, string.char, math.floor, type, tostring
local fmt = string.format

local internal = require("klua.serde.internal")
local derr = internal.decode_error

local M = {}

-- Why bytes are not a frame: what the first byte says they might be instead.
local function not_a_frame(b)
  local head = fmt("wrong magic byte 0x%02X (expected 0x00)", b)
  if b == 0x7B or b == 0x5B then
    return head .. ": it starts with '" .. char(b) .. "', the data may be plain JSON, not the Confluent wire format"
  elseif b >= 0x20 and b < 0x7F or b == 0x09 or b == 0x0A or b == 0x0D then
    return head .. ": a printable character, the data may be plain text, not the Confluent wire format"
  end
  return head .. ": not the Confluent wire format"
end

-- parse(bytes [, ctx [, field]]) -> schema_id, body_offset (0-based: 5) | nil, err
function M.parse(bytes, ctx, field)
  if type(bytes) ~= "string" then
    klua.errors.bad_argument("klua.serde.frame.parse", 1, "expected a string, got " .. type(bytes))
  end
  local b0, b1, b2, b3, b4 = byte(bytes, 1, 5)
  if b0 == 0 and b4 then return ((b1 * 256 + b2) * 256 + b3) * 256 + b4, 5 end
  if b0 == nil then
    return nil, derr("empty data: no Confluent frame (magic byte 0x00 and a 4-byte schema id expected)", ctx, field)
  end
  if b0 ~= 0 then return nil, derr(not_a_frame(b0), ctx, field) end
  return nil, derr(fmt("truncated frame header: %d byte(s), the magic byte and a 4-byte schema id need 5", #bytes),
                      ctx, field)
end

-- header(id) -> the 5 bytes
function M.header(id)
  if type(id) ~= "number" or id < 0 or id > 4294967295 or id ~= floor(id) then
    klua.errors.bad_argument("klua.serde.frame.header", 1, "expected a schema id (a whole number 0..2^32-1), got " .. tostring(id))
  end
  return char(0, floor(id / 16777216) % 256, floor(id / 65536) % 256, floor(id / 256) % 256, id % 256)
end

return M
