-- klua.avro's encode and decode of 100k records of 10 fields (bench/avro_schema.json: long, string,
-- double, boolean, int, enum, nullable string, timestamp-millis, array of int, map of string), the
-- records built by the same formula as bench/avro_python.py's, so both sides code the same bytes
-- (the total is printed and compared by bench/lib/avro.py). Timed in process CPU time (os.clock;
-- single-threaded here), median of the runs; one warm-up pass first (the generated code is
-- compiled at first use and the JIT needs a few thousand iterations).
--
--   klua run bench/avro.lua [--records N] [--runs R] [--json 1]
local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { records = "positive", runs = "positive", json = "count" },
                           { records = 100000, runs = 5, json = 0 })
local dir = arg[0]:match("^(.*)/") or "."
local f = assert(io.open(dir .. "/avro_schema.json"))
local s = assert(klua.avro.parse(f:read("*a")))
f:close()

local STATUS = { "NEW", "PAID", "SHIPPED", "CANCELLED" }
local function record(i)
  return {
    id = 1000000000000 + i * 7919,
    customer = "customer-" .. i,
    price = i * 0.25 + 0.5,
    paid = i % 2 == 0,
    qty = i % 1000,
    status = STATUS[i % 4 + 1],
    note = i % 3 ~= 0 and ("note " .. i) or nil,
    created = 1764498600000 + i,
    scores = { i % 10, i % 7, i % 5 },
    attrs = { region = "eu-" .. (i % 10), channel = "web" },
  }
end

local n = o.records
local records = {}
for i = 1, n do records[i] = record(i - 1) end
local encoded = {}

local function median(t)
  table.sort(t)
  local k = #t
  return k % 2 == 1 and t[(k + 1) / 2] or (t[k / 2] + t[k / 2 + 1]) / 2
end

-- Each timed phase starts from a full collection, so that neither pays for the other's garbage
-- (without it, a cheaper encode moved the collector's passes over the 200k live records and
-- strings into the decode phase: decode looked 1.6x slower when only encode had changed).
local function encode_all()
  collectgarbage("collect")
  local c0 = os.clock()
  for i = 1, n do encoded[i] = s:encode(records[i]) end
  return os.clock() - c0
end

local function decode_all()
  collectgarbage("collect")
  local c0 = os.clock()
  local last
  for i = 1, n do last = s:decode(encoded[i]) end
  assert(last and last.customer == "customer-" .. (n - 1))
  return os.clock() - c0
end

-- Correctness first: every record encodes, and decodes back to itself.
encode_all()
local total = 0
for i = 1, n do
  assert(encoded[i], "record " .. i .. " did not encode")
  total = total + #encoded[i]
end
decode_all()

local enc, dec = {}, {}
for r = 1, o.runs do
  enc[r] = encode_all()
  dec[r] = decode_all()
end
local e, d = median(enc), median(dec)
local res = { records = n, bytes = total, encode_s = e, decode_s = d, encode_per_s = n / e, decode_per_s = n / d,
              encode_ns = e * 1e9 / n, decode_ns = d * 1e9 / n }
if o.json > 0 then
  print(klua.json.encode(res))
else
  print(string.format("klua.avro, %d records (%d bytes): encode %.0f ns (%.0f/s), decode %.0f ns (%.0f/s), CPU time, median of %d",
                      n, total, res.encode_ns, res.encode_per_s, res.decode_ns, res.decode_per_s, o.runs))
end
