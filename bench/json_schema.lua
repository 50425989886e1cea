-- The cost of klua.json_schema's validation per message: a 10-field object (strings, integers, a
-- number, a boolean, an enum, a pattern, a nested object, an array of 3 objects) against a draft-7
-- schema with required, additionalProperties false, bounds and formats off, as the JSON Schema serde
-- validates every value it encodes.
--
--   klua run bench/json_schema.lua [--iterations 1000000] [--runs 5]
--
-- Prints CPU ns per validation (median of the runs) for: valid (the value as klua.json.decode gives it,
-- marked tables), valid_unmarked (the same value built as plain Lua tables), invalid (the last item's
-- qty below its minimum: the failure record and the err with its path and message), and
-- decode+validate (klua.json.decode of the value's JSON, then validation) beside decode alone.
local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { iterations = "positive", runs = "positive" }, { iterations = 1000000, runs = 5 })
local json = klua.json
-- CPU time of the process (no Kafka handle runs here, so it is this thread's): steadier than the
-- wall clock on a shared machine.
local function now() return os.clock() * 1000 end

local v = assert(klua.json_schema.compile [[{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Order",
  "type": "object",
  "additionalProperties": false,
  "required": ["id", "customer", "amount", "currency", "qty", "paid", "status", "created", "address", "lines"],
  "properties": {
    "id": { "type": "string", "pattern": "^o-[0-9]+$" },
    "customer": { "type": "string", "minLength": 1, "maxLength": 64 },
    "amount": { "type": "number", "minimum": 0 },
    "currency": { "type": "string", "enum": ["EUR", "USD", "GBP"] },
    "qty": { "type": "integer", "minimum": 1, "maximum": 1000 },
    "paid": { "type": "boolean" },
    "status": { "enum": ["new", "paid", "shipped"] },
    "created": { "type": "integer" },
    "address": { "type": "object", "required": ["city"],
                 "properties": { "city": { "type": "string" }, "zip": { "type": "string" } } },
    "lines": { "type": "array", "maxItems": 100, "items": { "$ref": "#/definitions/line" } }
  },
  "definitions": {
    "line": { "type": "object", "required": ["sku", "qty"],
              "properties": { "sku": { "type": "string" }, "qty": { "type": "integer", "minimum": 1 } } }
  }
}]])

local text = '{"id":"o-12345","customer":"Ada Lovelace","amount":129.5,"currency":"EUR","qty":3,"paid":true,' ..
             '"status":"paid","created":1733400000000,"address":{"city":"London","zip":"N1"},' ..
             '"lines":[{"sku":"a-1","qty":1},{"sku":"b-2","qty":2},{"sku":"c-3","qty":3}]}'
local marked = assert(json.decode(text))
local unmarked = { id = "o-12345", customer = "Ada Lovelace", amount = 129.5, currency = "EUR", qty = 3, paid = true,
                   status = "paid", created = 1733400000000, address = { city = "London", zip = "N1" },
                   lines = { { sku = "a-1", qty = 1 }, { sku = "b-2", qty = 2 }, { sku = "c-3", qty = 3 } } }
local bad = assert(json.decode((text:gsub('"qty":3}', '"qty":0}'))))
assert(v:validate(marked) == true and v:validate(unmarked) == true)
local _, err = v:validate(bad)
assert(err and err.path == "$.lines[2].qty", tostring(err))

local N = o.iterations
local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

local function measure(name, fn, n)
  n = n or N
  local runs = {}
  fn(math.min(n, 10000)) -- warm up the traces
  for r = 1, o.runs do
    local t0 = now()
    fn(n)
    runs[r] = (now() - t0) * 1e6 / n
  end
  local m = median(runs)
  print(("%-18s %8.0f ns/validation (median of %d runs of %d)"):format(name, m, o.runs, n))
  return m
end

measure("valid", function(n)
  for _ = 1, n do
    if v:validate(marked) ~= true then error("invalid") end
  end
end)
measure("valid_unmarked", function(n)
  for _ = 1, n do
    if v:validate(unmarked) ~= true then error("invalid") end
  end
end)
measure("invalid", function(n)
  for _ = 1, n do
    local ok = v:validate(bad)
    if ok then error("valid") end
  end
end, math.max(1, math.floor(N / 10)))
local decode = json.decode
local d = measure("decode", function(n)
  for _ = 1, n do decode(text) end
end, math.max(1, math.floor(N / 5)))
local dv = measure("decode+validate", function(n)
  for _ = 1, n do
    if v:validate(decode(text)) ~= true then error("invalid") end
  end
end, math.max(1, math.floor(N / 5)))
print(("validation adds %.0f%% to decoding"):format((dv - d) / d * 100))
