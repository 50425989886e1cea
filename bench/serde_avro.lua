-- klua.serde.avro's framed encode and decode of the records of bench/avro.lua (bench/avro_schema.json,
-- the same formula as bench/avro_python.py), beside the bare codec: what the serde adds per message
-- (the subject/id lookup, the 5-byte frame, the id lookup on decode). The registry is an object in
-- memory (as the Python side's "mock://" client), so no network is timed. CPU time (os.clock),
-- median of the runs after a warm-up pass. The framed bytes are the codec's plus 5 per record.
--
--   klua run bench/serde_avro.lua [--records N] [--runs R] [--json 1]
local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { records = "positive", runs = "positive", json = "count" },
                           { records = 100000, runs = 5, json = 0 })
local dir = arg[0]:match("^(.*)/") or "."
local f = assert(io.open(dir .. "/avro_schema.json"))
local text = f:read("*a")
f:close()
local s = assert(klua.avro.parse(text))
local registry = {  -- the calls klua.serde makes, answered from memory
  register = function() return 1 end,
  schema_by_id = function(_, id) return { id = id, schema = text, schema_type = "AVRO" } end,
}
local enc, dec = klua.serde.avro{ registry = registry, schema = text, topic = "bench" }

local STATUS = { "NEW", "PAID", "SHIPPED", "CANCELLED" }
local function record(i)
  return {
    id = 1000000000000 + i * 7919, customer = "customer-" .. i, price = i * 0.25 + 0.5, paid = i % 2 == 0,
    qty = i % 1000, status = STATUS[i % 4 + 1], note = i % 3 ~= 0 and ("note " .. i) or nil,
    created = 1764498600000 + i, scores = { i % 10, i % 7, i % 5 },
    attrs = { region = "eu-" .. (i % 10), channel = "web" },
  }
end

local n = o.records
local records, framed, bare = {}, {}, {}
for i = 1, n do records[i] = record(i - 1) end

local function median(t)
  table.sort(t)
  local k = #t
  return k % 2 == 1 and t[(k + 1) / 2] or (t[k / 2] + t[k / 2 + 1]) / 2
end
local function timed(fn)
  local c0 = os.clock()
  fn()
  return os.clock() - c0
end
local passes = {
  serde_encode = function() for i = 1, n do framed[i] = enc(records[i]) end end,
  serde_decode = function() local v for i = 1, n do v = dec(framed[i]) end assert(v.qty == (n - 1) % 1000) end,
  codec_encode = function() for i = 1, n do bare[i] = s:encode(records[i]) end end,
  codec_decode = function() local v for i = 1, n do v = s:decode(bare[i]) end assert(v.qty == (n - 1) % 1000) end,
}
local order = { "serde_encode", "serde_decode", "codec_encode", "codec_decode" }
for _, k in ipairs(order) do passes[k]() end  -- warm-up; checks
local total_framed, total_bare = 0, 0
for i = 1, n do
  assert(framed[i]:sub(6) == bare[i], "record " .. i .. ": the frame's body is not the codec's bytes")
  total_framed, total_bare = total_framed + #framed[i], total_bare + #bare[i]
end
local times = {}
for _, k in ipairs(order) do times[k] = {} end
-- The position of a pass in a run changes its time (what the previous pass left to collect):
-- odd runs go through the passes in order, even runs backwards.
for r = 1, o.runs do
  for j = 1, #order do
    local k = order[r % 2 == 1 and j or #order + 1 - j]
    times[k][r] = timed(passes[k])
  end
end
local res = { records = n, bytes = total_bare, framed_bytes = total_framed }
for _, k in ipairs(order) do
  local t = median(times[k])
  res[k .. "_s"], res[k .. "_ns"] = t, t * 1e9 / n
end
if o.json > 0 then
  print(klua.json.encode(res))
else
  print(string.format("klua.serde.avro, %d records: encode %.0f ns (codec %.0f), decode %.0f ns (codec %.0f) a record; "
                      .. "CPU time, median of %d", n, res.serde_encode_ns, res.codec_encode_ns, res.serde_decode_ns,
                      res.codec_decode_ns, o.runs))
end
