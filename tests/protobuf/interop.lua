-- The klua half of tests/protobuf/interop_test.py: reads the cases Python wrote (JSON lines), and for each
-- writes what klua makes of it: its encoding of the value, its decoding of Python's bytes and its proto3
-- JSON. Python compares. Usage: klua run interop.lua PROTO_DIR CASES OUT
local dir, cases_path, out_path = ...
local pb, json, b64 = klua.protobuf, klua.json, klua.base64

local function read(p)
  local fh = assert(io.open(p, "rb"))
  local s = fh:read("*a")
  fh:close()
  return s
end
local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function unhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

local f = assert(pb.compile(read(dir .. "/order.proto"),
  { name = "order.proto", imports = { ["common.proto"] = read(dir .. "/common.proto") } }))

-- Python's plain form -> klua's Lua mapping: bytes arrive as {"$b64": ...}; 64-bit integers as decimal
-- strings, which klua takes as they are.
local function from_plain(v)
  if type(v) ~= "table" then return v end
  if v["$b64"] then return assert(b64.decode(v["$b64"])) end
  local t = {}
  for k, x in pairs(v) do t[k] = from_plain(x) end
  return t
end

-- klua's decoded table -> the plain form (cdata as decimal strings, bytes fields as base64, maps as
-- objects with string keys).
local MAPS = { counts = true, by_pos = true, fields = true }
local function to_plain(v, key)
  local tv = type(v)
  if tv == "cdata" then return (tostring(v):gsub("U?LL$", "")) end
  if tv == "number" and v == 0 and 1 / v < 0 then return "-0" end  -- klua.json writes -0.0 as 0
  if tv == "string" and key == "by" then return { ["$b64"] = b64.encode(v) } end
  if tv ~= "table" then return v end
  if MAPS[key] then
    local o = json.object({})
    for k, x in pairs(v) do o[tostring(k)] = to_plain(x) end
    return o
  end
  if #v > 0 or next(v) == nil then
    local a = json.array({})
    for i = 1, #v do a[i] = to_plain(v[i], key) end
    return a
  end
  local o = json.object({})
  for k, x in pairs(v) do o[k] = to_plain(x, k) end
  return o
end

local out = assert(io.open(out_path, "wb"))
for _, name in ipairs(f.messages) do
  local m = f:message(name)
  out:write(json.encode({ type = name, index = m.index, index_hex = hex(pb.message_indexes_bytes(m.index)) }), "\n")
end
out:write(json.encode({ descriptor = b64.encode(f:descriptor()) }), "\n")
for line in io.lines(cases_path) do
  local case = assert(json.decode(line))
  local m = assert(f:message(case.type))
  local encoded, err = m:encode(from_plain(case.value))
  local bytes = unhex(case.python_hex)
  local decoded, derr = m:decode(bytes)
  local framed = m:encode(from_plain(case.value), "\0\0\0\0\1" .. pb.message_indexes_bytes(m.index))
  out:write(json.encode({
    i = case.i,
    encoded = encoded and hex(encoded) or tostring(err),
    framed = framed and hex(framed) or json.null,
    decoded = decoded and to_plain(decoded) or tostring(derr),
    json = m:to_json(bytes) or json.null,
    json_names = m:to_json("HDR" .. bytes, 3, { proto_names = true, defaults = true }) or json.null,
  }), "\n")
end
out:close()
