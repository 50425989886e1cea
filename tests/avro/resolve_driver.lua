-- The klua side of the Avro oracle tests (java_resolution_test.py, fastavro_resolution_test.py):
-- reads cases as JSON lines from the file `...` names and writes one result line per case to the
-- second file. One process runs the whole batch.
--   {"op": "resolve", "id", "writer": TEXT, "reader": TEXT, "bytes": HEX [, "value": AVRO JSON of the writer]}
--       (with value: also "value_mine"/"value_theirs", or "value_error"; see below)
--       -> {"id", "ok": true, "result": AVRO JSON of the reader} | {"id", "ok": false, "stage", "error", "name"}
--   {"op": "json", "id", "schema": TEXT, "bytes": HEX, "json": AVRO JSON TEXT}
--       -> {"id", "ok": true, "to_json": s:to_json(s:decode(bytes)), "from_json": HEX of s:encode(s:from_json(json)),
--           "round_trip": HEX of s:encode(s:from_json(to_json))}
local in_path, out_path = ...
local out = assert(io.open(out_path, "w"))

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end
local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function failed(res, stage, err)
  res.ok = false
  res.stage = stage
  res.error = tostring(err)
  res.name = type(err) == "table" and err.name or nil
  return res
end

local function run(c)
  local res = { id = c.id }
  if c.op == "resolve" then
    local w, err = klua.avro.parse(c.writer)
    if not w then return failed(res, "parse writer", err) end
    if c.value then
      -- the writer's value as the oracle read it (its Avro JSON), through from_json and encode: the
      -- same value as the oracle's bytes hold (compared as s:to_json texts of the two decodes)
      local v, e = w:from_json(c.value)
      local b
      if e then
        res.value_error = tostring(e)
      else
        b, e = w:encode(v)
        if not b then
          res.value_error = tostring(e)
        else
          local function text(bytes)
            local x, de = w:decode(bytes)
            if de then return "decode: " .. tostring(de) end
            return (assert(w:to_json(x)))
          end
          res.value_mine, res.value_theirs = text(b), text(unhex(c.bytes))
          local dj, djerr = w:decode_json(unhex(c.bytes))
          res.decode_json = dj or ("error: " .. tostring(djerr))
        end
      end
    end
    local r
    r, err = klua.avro.parse(c.reader)
    if not r then return failed(res, "parse reader", err) end
    local rv
    rv, err = klua.avro.resolver(w, r)
    if not rv then return failed(res, "resolver", err) end
    res.unreadable = #rv.unreadable
    local v
    v, err = rv:decode(unhex(c.bytes))
    if err then return failed(res, "decode", err) end
    local text
    text, err = r:to_json(v)
    if not text then return failed(res, "to_json", err) end
    res.ok, res.result = true, text
    return res
  end
  local s, err = klua.avro.parse(c.schema)
  if not s then return failed(res, "parse", err) end
  local v
  v, err = s:decode(unhex(c.bytes))
  if err then return failed(res, "decode", err) end
  local text
  text, err = s:to_json(v)
  if not text then return failed(res, "to_json", err) end
  res.to_json = text
  local v2
  v2, err = s:from_json(c.json)
  if err then return failed(res, "from_json", err) end
  local b
  b, err = s:encode(v2)
  if not b then return failed(res, "encode from_json", err) end
  res.from_json = hex(b)
  v2, err = s:from_json(text)
  if err then return failed(res, "from_json of to_json", err) end
  b, err = s:encode(v2)
  if not b then return failed(res, "encode round trip", err) end
  res.round_trip = hex(b)
  res.ok = true
  return res
end

for line in io.lines(in_path) do
  local c = assert(klua.json.decode(line))
  local ok, res = pcall(run, c)
  if not ok then res = { id = c.id, ok = false, stage = "raised", error = tostring(res) } end
  out:write(klua.json.encode(res), "\n")
end
out:close()
