-- Driver of tests/avro/fastavro_property_test.py: reads the cases (JSON lines: schema, value as
-- tagged JSON, fastavro's bytes as hex), decodes fastavro's bytes and compares with the value,
-- encodes the value, and writes one JSON line per case: { hex = klua's bytes, canonical =, fingerprint = }
-- or { error = why }.
local ffi = require("ffi")
local NULL = klua.json.null
local cases_path, out_path = ...
if not out_path then cases_path, out_path = arg[1], arg[2] end

local function unhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end
local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

local function long_of(s)
  if #s < 16 then return tonumber(s) end
  local neg = s:sub(1, 1) == "-"
  local x = 0LL
  for d in s:gmatch("%d") do x = x * 10 - tonumber(d) end  -- negative accumulation reaches -2^63
  if not neg then x = -x end
  if x >= -2 ^ 53 and x <= 2 ^ 53 then return tonumber(x) end
  return x
end

-- The tagged JSON value -> the Lua value klua encodes and decodes. infield: a record field (null is nil).
local function lua_of(node, j, infield)
  local t, lt = node.type, node.logical
  if t == "union" then
    if j == NULL or j == nil then error("untagged union value") end
    return lua_of(node.branches[j.b + 1], j.v, infield)
  elseif t == "null" then
    if infield then return nil end
    return NULL
  elseif t == "long" then
    return long_of(j)
  elseif (t == "bytes" or t == "fixed") and lt == nil then
    return unhex(j)
  elseif t == "array" then
    local out = {}
    for i, x in ipairs(j) do out[i] = lua_of(node.items, x, false) end
    return out
  elseif t == "map" then
    local out = {}
    for k, x in pairs(j) do out[k] = lua_of(node.values, x, false) end
    return out
  elseif t == "record" then
    local out = {}
    for _, f in ipairs(node.fields) do
      local x = j[f.name]
      if x ~= nil then
        out[f.name] = lua_of(f.type, x, true)
      elseif f.has_default then
        out[f.name] = "__default__"
      end
    end
    return out
  end
  return j
end

local function walk_fill(node, v, seen)
  local t = node.type
  if t == "record" and type(v) == "table" then
    for _, f in ipairs(node.fields) do
      if v[f.name] == "__default__" then v[f.name] = f.default end
      if v[f.name] ~= nil then v[f.name] = walk_fill(f.type, v[f.name]) end
    end
  elseif t == "array" and type(v) == "table" then
    for i = 1, #v do v[i] = walk_fill(node.items, v[i]) end
  elseif t == "map" and type(v) == "table" then
    for k, x in pairs(v) do v[k] = walk_fill(node.values, x) end
  elseif t == "union" then
    -- the branch is the first whose kind fits, as generated
    for _, b in ipairs(node.branches) do
      if (b.type == "record" or b.type == "array" or b.type == "map") and type(v) == "table" then
        return walk_fill(b, v)
      end
    end
  end
  return v
end

local function same(a, b, path)
  if type(a) == "cdata" or type(b) == "cdata" then
    if type(a) == "number" or type(b) == "number" then return false, path .. ": number vs cdata" end
    if a ~= b then return false, path .. ": " .. tostring(a) .. " ~= " .. tostring(b) end
    return true
  end
  if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) == "table" then
    for k, v in pairs(a) do
      local ok, why = same(v, b[k], path .. "." .. tostring(k))
      if not ok then return false, why end
    end
    for k in pairs(b) do
      if a[k] == nil then return false, path .. "." .. tostring(k) .. ": missing in decoded" end
    end
    return true
  end
  if a ~= b then return false, path .. ": " .. tostring(a) .. " ~= " .. tostring(b) end
  return true
end

local out = assert(io.open(out_path, "w"))
for line in io.lines(cases_path) do
  local c, jerr = klua.json.decode(line)
  if not c then error(tostring(jerr and jerr.message or jerr) .. ": " .. line:sub(1, 300)) end
  local res = {}
  local s, err = klua.avro.parse(c.schema)
  if not s then
    res.error = "parse: " .. tostring(err)
  else
    res.canonical, res.fingerprint = s:canonical(), s:fingerprint()
    local input = lua_of(s.node, c.value, true)
    local expect = walk_fill(s.node, lua_of(s.node, c.value, true))
    local got, derr = s:decode(unhex(c.hex))
    if derr then
      res.error = "decode: " .. tostring(derr)
    else
      local ok, why = same(got, expect, "$")
      if not ok then res.error = "decoded value differs at " .. why end
    end
    -- encode the value with the fields that were left out absent
    local function strip(node, v)
      if type(v) ~= "table" then return v end
      for k, x in pairs(v) do
        if x == "__default__" then v[k] = nil elseif type(x) == "table" then strip(node, x) end
      end
      return v
    end
    local b, eerr = s:encode(strip(s.node, input))
    if not res.error then
      if b then res.hex = hex(b) else res.error = "encode: " .. tostring(eerr) end
    end
  end
  out:write(klua.json.encode(res), "\n")
end
out:close()
