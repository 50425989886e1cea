-- klua.serde on the embedded cluster, against a Confluent-API stand-in served by klua.http.serve
-- (tests/lua/helpers/registry_stub.lua): the frame, subject strategies, the caches (counted by the
-- stub's requests), errors naming topic/partition/offset and field path, KLUA_NO_REGISTRY, raw,
-- and the producer/consumer/worker options. tests/registry/serde_registry_test.lua does the same
-- against a real registry.
local stubs = dofile("tests/lua/helpers/registry_stub.lua")

local ORDER = [[{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"qty","type":"int"}]}]]
local ORDER2 = [[{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"qty","type":"int"},
  {"name":"note","type":"string","default":""}]}]]

local function order(i) return { id = i, item = "item-" .. i, qty = i % 7 } end

local stub, reg
local function fresh()
  if not stub then
    stub = stubs.start()
    reg = stubs.client(stub.url)
  end
  stub:reset_counts()
  return stub, reg
end

-- A client with caches of its own (klua.registry caches ids per client): the stub's counts then
-- show what the serde's own caches save.
local function own_client() return stubs.client(stub.url) end

test("frame: header and parse; errors say what the bytes look like and where", function()
  local frame = klua.serde.frame
  assert_eq(frame.header(1), "\0\0\0\0\1")
  assert_eq(frame.header(0x01020304), "\0\1\2\3\4")
  assert_eq(frame.header(4294967295), "\0\255\255\255\255")
  local id, off = frame.parse("\0\0\0\1\0xyz")
  assert_eq(id, 256)
  assert_eq(off, 5)
  assert_eq(frame.parse("\0\255\255\255\255"), 4294967295)
  local ctx = { topic = "orders", partition = 2, offset = 17 }
  local r, err = frame.parse("", ctx, "value")
  assert_nil(r)
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_match(err.message, "^orders %[2%] at offset 17, value: empty data")
  assert_eq(err.topic, "orders")
  assert_eq(err.partition, 2)
  assert_eq(err.offset, 17)
  assert_eq(err.field, "value")
  _, err = frame.parse('{"id":1}', ctx, "value")
  assert_match(err.message, "wrong magic byte 0x7B %(expected 0x00.*plain JSON")
  _, err = frame.parse("hello")
  assert_match(err.message, "^wrong magic byte 0x68 .*plain text")
  _, err = frame.parse("\1\0\0\0\1")
  assert_match(err.message, "wrong magic byte 0x01")
  assert_nil(err.message:find("text", 1, true))
  _, err = frame.parse("\0\0\1", ctx, "key")
  assert_match(err.message, "^orders %[2%] at offset 17, key: truncated frame header: 3 byte%(s%)")
  assert_raises(function() frame.header(-1) end, "schema id")
  assert_raises(function() frame.header(1.5) end, "schema id")
  assert_raises(function() frame.parse(5) end, "expected a string")
end)

test("avro, topic strategy: registers once, frames with the registry's id; decoding asks once per id", function()
  local stub, reg = fresh()
  stub:register("serde-other-value", { schema = '"string"' })  -- ids do not start at 1
  local enc, dec = klua.serde.avro{ registry = reg, schema = ORDER, topic = "orders" }
  local bytes
  for i = 1, 50 do bytes = assert(enc(order(i))) end
  assert_eq(stub:n("register"), 1)
  local id = stub.subjects["orders-value"][1].id
  assert_true(id > 1)
  assert_eq(bytes:sub(1, 5), klua.serde.frame.header(id))
  -- the body is the codec's own encoding of the value
  assert_eq(bytes:sub(6), assert(klua.avro.parse(ORDER):encode(order(50))))
  -- the key: subject orders-key, through ctx.field
  local kbytes = assert(enc(order(1), { topic = "orders", field = "key" }))
  assert_eq(stub:n("register"), 2)
  assert_true(stub.subjects["orders-key"] ~= nil)
  assert_eq(kbytes:sub(1, 5), klua.serde.frame.header(id))  -- the same schema: the same id
  -- ctx.topic wins over the option
  assert(enc(order(1), { topic = "payments" }))
  assert_true(stub.subjects["payments-value"] ~= nil)
  -- a serde of its own (its own caches): the writer schema is fetched once
  local _, dec2 = klua.serde.avro{ registry = own_client() }
  stub:reset_counts()
  for _ = 1, 50 do
    local v = assert(dec2(bytes))
    assert_eq(v.qty, order(50).qty)
    assert_eq(v.item, "item-50")
  end
  assert_eq(stub:n("schema_by_id"), 1)
  assert_eq(dec(kbytes).id, 1)
end)

test("subject strategies: record, topic_record, explicit subject; record needs a named schema", function()
  local stub, reg = fresh()
  local enc = klua.serde.avro{ registry = reg, schema = ORDER, subject_strategy = "record" }
  assert(enc(order(1)))  -- no topic needed
  assert_true(stub.subjects["shop.Order"] ~= nil)
  enc = klua.serde.avro{ registry = reg, schema = ORDER, subject_strategy = "topic_record" }
  assert(enc(order(1), { topic = "tr" }))
  assert_true(stub.subjects["tr-shop.Order"] ~= nil)
  -- normalize goes to the registry with register and lookup
  stub:reset_counts()
  assert(klua.serde.avro{ registry = reg, schema = ORDER, topic = "norm", normalize = true }(order(1)))
  assert(klua.serde.avro{ registry = own_client(), schema = ORDER, topic = "norm", normalize = true, auto_register = false }(order(1)))
  assert_eq(stub.requests, { "register /subjects/norm-value/versions?normalize", "lookup /subjects/norm-value?normalize" })
  enc = klua.serde.avro{ registry = reg, schema = ORDER, subject = "explicit-subject" }
  assert(enc(order(1), { topic = "ignored" }))
  assert_true(stub.subjects["explicit-subject"] ~= nil)
  assert_nil(stub.subjects["ignored-value"])
  assert_raises(function() klua.serde.avro{ registry = reg, schema = '"string"', subject_strategy = "record" } end,
                "record subject strategy needs a schema with a name")
  -- the topic strategy without a topic
  enc = klua.serde.avro{ registry = reg, schema = ORDER }
  local r, err = enc(order(1))
  assert_nil(r)
  assert_error(err, "KLUA_SERIALIZATION")
  assert_match(err.message, "no topic for the topic subject strategy")
end)

test("options are checked at construction, naming the option", function()
  local function raises(opts, pattern)
    local ok, err = pcall(klua.serde.avro, opts)
    assert_false(ok)
    assert_error(err, "KLUA_INVALID_ARGUMENT")
    assert_match(err.message, "^bad argument #1 to 'klua.serde.avro' %(")
    assert_match(err.message, pattern)
  end
  raises({ schema = ORDER, colour = 1 }, "unknown option 'colour'")
  raises({ schema = ORDER, field = "body" }, "option 'field' must be \"key\" or \"value\"")
  raises({ schema = ORDER, subject_strategy = "topic_name" }, "subject_strategy")
  raises({ schema = ORDER, auto_register = "yes" }, "option 'auto_register' must be a boolean")
  raises({ schema = 5 }, "option 'schema' must be a string or a table")
  raises({ registry = 5 }, "option 'registry'")
  raises({ registry = "ftp://registry" }, "option 'registry': .*http:// or https://")
  raises({ raw = true }, "option 'schema' is required with raw = true")
  raises({ schema = ORDER, raw = true, use_latest = true }, "do not go together")
  assert_raises(function() klua.serde.avro(5) end, "expected an options table")
  -- a schema that does not parse is a runtime failure: nil, err (KLUA_SCHEMA)
  local enc, err = klua.serde.avro{ schema = '{"type":"record"' }
  assert_nil(enc)
  assert_error(err, "KLUA_SCHEMA")
end)

test("auto_register = false looks the schema up and fails clearly while it is not registered", function()
  local stub, reg = fresh()
  local enc = klua.serde.avro{ registry = reg, schema = ORDER, topic = "lookup", auto_register = false }
  local r, err = enc(order(1))
  assert_nil(r)
  assert_error(err, "KLUA_REGISTRY")
  assert_match(err.message, "subject lookup%-value: the schema is not registered under it %(auto_register = false%)")
  assert_eq(err.subject, "lookup-value")
  assert_eq(err.error_code, 40401)
  assert_eq(stub:n("register"), 0)
  local id = stub:register("lookup-value", { schema = ORDER })
  for i = 1, 10 do assert_eq(assert(enc(order(i))):sub(1, 5), klua.serde.frame.header(id)) end
  assert_eq(stub:n("lookup"), 2)  -- the failure is not cached; the success is
  assert_eq(stub:n("register"), 0)
end)

test("use_latest encodes with the subject's latest version, cached for latest_ttl_ms", function()
  local stub, reg = fresh()
  stub:register("latest-value", { schema = ORDER })
  local id2 = stub:register("latest-value", { schema = ORDER2 })
  local enc = klua.serde.avro{ registry = reg, topic = "latest", use_latest = true }
  local v = order(3)
  v.note = "n"
  for _ = 1, 10 do assert_eq(assert(enc(v)):sub(1, 5), klua.serde.frame.header(id2)) end
  assert_eq(stub:n("get_version"), 1)
  assert_eq(stub:n("register"), 0)
  local enc0 = klua.serde.avro{ registry = reg, topic = "latest", use_latest = true, latest_ttl_ms = 0 }
  for _ = 1, 5 do assert(enc0(v)) end
  assert_eq(stub:n("get_version"), 6)
  -- the encoded value fits the latest schema: decodes with it
  local _, dec = klua.serde.avro{ registry = reg }
  assert_eq(assert(dec(assert(enc(v)))).note, "n")
end)

test("several tasks missing the same subject or id at once make one registry call", function()
  local stub, reg = fresh()
  local enc = klua.serde.avro{ registry = reg, schema = ORDER, topic = "herd" }
  local tasks = {}
  for i = 1, 8 do tasks[i] = klua.spawn(function() return assert(enc(order(i))) end) end
  local bytes
  for i = 1, 8 do bytes = tasks[i]:join() end
  assert_eq(stub:n("register"), 1)
  local _, dec = klua.serde.avro{ registry = own_client() }
  for i = 1, 8 do tasks[i] = klua.spawn(function() return assert(dec(bytes)) end) end
  for i = 1, 8 do assert_eq(tasks[i]:join().id, 8) end
  assert_eq(stub:n("schema_by_id"), 1)
end)

test("errors: unknown schema id, a value that does not fit, an incompatible schema, a registry error", function()
  local stub, reg = fresh()
  local enc, dec = klua.serde.avro{ registry = reg, schema = ORDER, topic = "errs" }
  local ctx = { topic = "errs", partition = 1, offset = 42 }
  local r, err = dec("\0\0\0\3\231rest", ctx)
  assert_nil(r)
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_match(err.message, "^errs %[1%] at offset 42, value: unknown schema id 999")
  assert_eq(err.schema_id, 999)
  assert_eq(err.offset, 42)
  r, err = dec('{"id":1}', ctx, "key")
  assert_match(err.message, "^errs %[1%] at offset 42, key: wrong magic byte 0x7B")
  -- a value that does not fit its schema: the field path
  r, err = enc({ id = "x", item = "a", qty = 1 })
  assert_nil(r)
  assert_error(err, "KLUA_SERIALIZATION")
  assert_eq(err.path, "$.id")
  assert_eq(err.topic, "errs")
  assert_eq(err.field, "value")
  assert_match(err.message, "^errs, value: ")
  -- an incompatible schema at registration: the registry's 409, naming the subject
  stub.incompatible = { ["incompat-value"] = true }
  local enc2 = klua.serde.avro{ registry = reg, schema = ORDER, topic = "incompat" }
  r, err = enc2(order(1))
  stub.incompatible = nil
  assert_nil(r)
  assert_error(err, "KLUA_REGISTRY")
  assert_eq(err.status, 409)
  assert_match(err.message, "subject incompat%-value: registering the schema failed: .*incompatible")
  -- a registry that fails while fetching an id: its error, with where
  local bytes = assert(enc(order(1)))
  local _, dec2 = klua.serde.avro{ registry = own_client() }
  stub.fail_next = { status = 500, error_code = 50001, message = "storage unavailable" }
  r, err = dec2(bytes, ctx)
  assert_nil(r)
  assert_eq(err.name, "KLUA_REGISTRY")
  assert_eq(err.status, 500)
  assert_match(err.message, "^errs %[1%] at offset 42, value: ")
  assert_eq(dec2(bytes).id, 1)  -- not cached: the next call asks again
end)

test("no registry configured: framed encode fails with KLUA_NO_REGISTRY, decode names the frame's id", function()
  local enc, dec = klua.serde.avro{ schema = ORDER, topic = "noreg" }
  local r, err = enc(order(1))
  assert_nil(r)
  assert_error(err, "KLUA_NO_REGISTRY")
  assert_match(err.message, "no schema registry is configured")
  r, err = dec("\0\0\0\0\7body", { topic = "noreg", partition = 0, offset = 5 })
  assert_nil(r)
  assert_error(err, "KLUA_NO_REGISTRY")
  assert_match(err.message, "^noreg %[0%] at offset 5, value: the data is framed with schema id 7")
  assert_eq(err.schema_id, 7)
end)

test("raw = true: bare codec bytes, no frame, no registry", function()
  local stub, reg = fresh()
  local enc, dec = klua.serde.avro{ registry = reg, schema = ORDER, raw = true }
  local bytes = assert(enc(order(4)))
  assert_eq(bytes, assert(klua.avro.parse(ORDER):encode(order(4))))
  assert_eq(dec(bytes).item, "item-4")
  local noreg_enc, noreg_dec = klua.serde.avro{ schema = ORDER, raw = true }
  assert_eq(noreg_dec(assert(noreg_enc(order(5)))).qty, order(5).qty)
  local r, err = enc({ id = 1 })
  assert_nil(r)
  assert_error(err, "KLUA_SERIALIZATION")
  assert_eq(stub:n("register") + stub:n("lookup") + stub:n("schema_by_id"), 0)
  -- a registry URL string: a client of its own
  local uenc = klua.serde.avro{ registry = stub.url, schema = ORDER, topic = "by-url" }
  assert(uenc(order(1)))
  assert_true(stub.subjects["by-url-value"] ~= nil)
end)

test("a reader schema: the writer's data in the reader's shape (resolved once per id)", function()
  local stub, reg = fresh()
  local enc = klua.serde.avro{ registry = reg, schema = ORDER, topic = "reader" }
  local bytes = assert(enc(order(2)))
  local _, dec = klua.serde.avro{ registry = own_client(), schema = ORDER2 }
  local v = assert(dec(bytes))
  assert_eq(v.note, "")
  assert_eq(v.item, "item-2")
  assert_eq(stub:n("schema_by_id"), 1)
end)

test("json_schema: validates on encode, decodes without the registry unless validate_on_decode", function()
  local stub, reg = fresh()
  local schema = { title = "Payment", type = "object", required = { "id", "amount" },
                   properties = { id = { type = "string" }, amount = { type = "number" } } }
  local enc, dec = klua.serde.json_schema{ registry = reg, schema = schema, topic = "payments-json" }
  local bytes = assert(enc({ id = "p1", amount = 12.5 }))
  local id = stub.subjects["payments-json-value"][1].id
  assert_eq(bytes, klua.serde.frame.header(id) .. klua.json.encode({ id = "p1", amount = 12.5 }))
  assert_eq(stub.ids[id].schemaType, "JSON")
  local r, err = enc({ id = "p2" })
  assert_nil(r)
  assert_error(err, "KLUA_SERIALIZATION")
  assert_eq(err.path, "$")
  assert_eq(err.keyword, "required")
  assert_match(err.message, "amount")
  assert_eq(err.topic, "payments-json")
  stub:reset_counts()
  assert_eq(dec(bytes).amount, 12.5)
  assert_eq(stub:n("schema_by_id"), 0)
  local _, vdec = klua.serde.json_schema{ registry = own_client(), validate_on_decode = true }
  assert_eq(vdec(bytes).id, "p1")
  r, err = vdec(klua.serde.frame.header(id) .. '{"id":"p3"}', { topic = "payments-json", partition = 0, offset = 9 })
  assert_nil(r)
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_match(err.message, "^payments%-json %[0%] at offset 9, value: ")
  assert_eq(stub:n("schema_by_id"), 1)
  -- record strategy: the schema's title
  local renc = klua.serde.json_schema{ registry = reg, schema = schema, subject_strategy = "record" }
  assert(renc({ id = "p4", amount = 1 }))
  assert_true(stub.subjects["Payment"] ~= nil)
end)

test("protobuf: the message index in the frame, imports registered as references, decoded by id", function()
  local stub, reg = fresh()
  local COMMON = 'syntax = "proto3"; package common; message Money { string currency = 1; int64 units = 2; }'
  local ORDERPB = [[syntax = "proto3"; package shop;
import "common.proto";
import "google/protobuf/timestamp.proto";
message Order { int64 id = 1; repeated Line lines = 2; common.Money total = 3; google.protobuf.Timestamp at = 4;
  message Line { string sku = 1; int32 qty = 2; } }
message Refund { int64 order_id = 1; }]]
  local imports = { ["common.proto"] = COMMON }
  local enc = klua.serde.protobuf{ registry = reg, schema = ORDERPB, imports = imports, topic = "pb-orders" }
  local value = { id = 7, lines = { { sku = "tea", qty = 2 } }, total = { currency = "EUR", units = 12 },
                  at = { seconds = 1700000000, nanos = 5 } }
  local bytes = assert(enc(value))
  local id = stub.subjects["pb-orders-value"][1].id
  assert_eq(bytes:sub(1, 6), klua.serde.frame.header(id) .. "\0")  -- index [0]: one 0 byte
  local m = assert(assert(klua.protobuf.compile(ORDERPB, { imports = imports })):message("shop.Order"))
  assert_eq(bytes:sub(7), assert(m:encode(value)))
  -- the import: a subject of its own, named as a reference; the well-known import is not
  assert_eq(stub.ids[id].schemaType, "PROTOBUF")
  local refs = stub.ids[id].references
  assert_eq(#refs, 1)
  assert_eq(refs[1].name, "common.proto")
  assert_eq(refs[1].subject, "common.proto")
  assert_eq(refs[1].version, 1)
  -- decoded by id with a client of its own: the references fetched and compiled once
  local _, dec = klua.serde.protobuf{ registry = own_client() }
  local v = assert(dec(bytes))
  assert_eq(v.lines[1].qty, 2)
  assert_eq(v.total.currency, "EUR")
  assert_eq(v.at.nanos, 5)
  -- a nested message: index [0, 0] is 04 00 00; the second top-level one: [1] is 02 02
  local lenc = klua.serde.protobuf{ registry = reg, schema = ORDERPB, imports = imports, message = "shop.Order.Line",
                                    subject_strategy = "record" }
  local lb = assert(lenc({ sku = "x", qty = 3 }))
  assert_eq(lb:sub(6, 8), "\4\0\0")
  assert_true(stub.subjects["shop.Order.Line"] ~= nil)
  local renc = klua.serde.protobuf{ registry = reg, schema = ORDERPB, imports = imports, message = "Refund", topic = "pb-refunds" }
  local rb = assert(renc({ order_id = 9 }))
  assert_eq(rb:sub(6, 7), "\2\2")
  stub:reset_counts()
  assert_eq(dec(lb).qty, 3)
  assert_eq(dec(rb).order_id, 9)
  assert_eq(stub:n("schema_by_id"), 0)  -- the same schema id: compiled once, every message type of it
  -- use_latest without a schema of its own: `message` picks the type in the registry's file
  local latest_refund = klua.serde.protobuf{ registry = reg, topic = "pb-orders", use_latest = true, message = "shop.Refund" }
  local lr = assert(latest_refund({ order_id = 11 }))
  assert_eq(lr:sub(1, 7), klua.serde.frame.header(id) .. "\2\2")
  assert_eq(dec(lr).order_id, 11)
  -- a value that does not fit: the field path
  local r, err = enc({ id = "seven" })
  assert_nil(r)
  assert_error(err, "KLUA_SERIALIZATION")
  assert_eq(err.path, "$.id")
  assert_eq(err.topic, "pb-orders")
  -- an index naming no message
  r, err = dec(klua.serde.frame.header(id) .. "\2\20" .. "x", { topic = "pb-orders", partition = 0, offset = 3 })
  assert_nil(r)
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_match(err.message, "^pb%-orders %[0%] at offset 3, value: ")
end)

test("random bytes never make dec raise: a value or nil, err with a klua error name (Avro, Protobuf, JSON)", function()
  local _, reg = fresh()
  local seed = os.time()
  math.randomseed(seed)
  local aenc, adec = klua.serde.avro{ registry = reg, schema = ORDER, topic = "fuzz" }
  local penc, pdec = klua.serde.protobuf{ registry = reg, topic = "fuzz-pb", schema =
    'syntax = "proto3"; message A { int64 id = 1; string s = 2; repeated B b = 3; message B { int32 q = 1; } }' }
  local jenc, jdec = klua.serde.json_schema{ registry = reg, topic = "fuzz-json", schema = { type = "object" },
                                             validate_on_decode = true }
  local good = { assert(aenc(order(3))), assert(penc({ id = 5, s = "x", b = { { q = 1 } } })), assert(jenc({ a = 1 })) }
  local decs = { adec, pdec, jdec }
  local names = { KLUA_DESERIALIZATION = true, KLUA_REGISTRY = true }
  local char, random = string.char, math.random
  local function bytes(n)
    local t = {}
    for i = 1, n do t[i] = char(random(0, 255)) end
    return table.concat(t)
  end
  local decoded, failed = 0, 0
  for i = 1, 3000 do
    local k = i % 3 + 1
    local g = good[k]
    local input
    local r = random(1, 4)
    if r == 1 then input = g:sub(1, random(0, #g))                         -- truncated
    elseif r == 2 then input = g:sub(1, 5) .. bytes(random(0, 24))          -- a known id, a random body
    elseif r == 3 then                                                      -- one byte changed
      local at = random(1, #g)
      input = g:sub(1, at - 1) .. char(random(0, 255)) .. g:sub(at + 1)
    else input = bytes(random(0, 12)) end                                   -- anything
    local ok, v, err = pcall(decs[k], input, { topic = "fuzz", partition = 0, offset = i })
    if not ok then error("seed " .. seed .. ", input " .. klua.pretty.quote(input) .. ": dec raised " .. tostring(v)) end
    if err == nil then
      decoded = decoded + 1
    else
      failed = failed + 1
      assert_true(klua.errors.is(err) and names[err.name], "seed " .. seed .. ": " .. tostring(err))
      assert_eq(err.offset, i)
    end
  end
  assert_true(decoded > 100 and failed > 100, decoded .. " decoded, " .. failed .. " refused")
end)

---------------------------------------------------------------------------------------------
-- Producer and consumer options

local function consume_all(c, n, timeout_ms)
  local got, errs = {}, {}
  local deadline = klua.now() + (timeout_ms or 15000)
  while #got + #errs < n and klua.now() < deadline do
    local m, err = c:poll(200)
    if m then got[#got + 1] = m elseif err then errs[#errs + 1] = err end
  end
  return got, errs
end

test("producer and consumer options: keys and values (de)serialized, headers in ctx, failures named", function()
  local stub, reg = fresh()
  local topic = klua.testkit.topic("serde")
  local enc, dec = klua.serde.avro{ registry = reg, schema = ORDER }
  local kenc, kdec = klua.serde.avro{ registry = reg, schema = '"string"', field = "key" }
  local seen_headers, seen_field
  local function venc(v, ctx, field)
    seen_headers, seen_field = ctx.headers, field
    return enc(v, ctx, field)
  end
  local p = klua.producer{ value_serializer = venc, key_serializer = kenc }
  local msg = { topic = topic, partition = 0, key = "k1", value = order(1), headers = { { "trace", "t1" } } }
  assert(p:produce(msg))
  assert_eq(type(msg.value), "table")  -- the script's table is not changed
  assert_eq(seen_headers[1][2], "t1")
  assert_eq(seen_field, "value")
  assert(p:send{ topic = topic, partition = 0, key = "k2", value = order(2) })
  local results = assert(p:produce_batch{ { topic = topic, partition = 0, key = "k3", value = order(3) },
                                          { topic = topic, partition = 0, key = "k4" } })  -- a tombstone
  assert_nil(results[1].error)
  assert_nil(results[2].error)
  -- a value that does not fit: nil, err naming the topic and the field path; a batch sends nothing
  local r, err = p:produce{ topic = topic, value = { id = "x" } }
  assert_nil(r)
  assert_error(err, "KLUA_SERIALIZATION")
  assert_eq(err.topic, topic)
  assert_eq(err.path, "$.id")
  r, err = p:send{ topic = topic, value = { id = "x" } }
  assert_nil(r)
  assert_error(err, "KLUA_SERIALIZATION")
  r, err = p:produce_batch{ { topic = topic, partition = 0, value = order(9) }, { topic = topic, value = { qty = 1 } } }
  assert_nil(r)
  assert_eq(err.index, 2)
  assert(p:flush())
  assert_true(stub.subjects[topic .. "-value"] ~= nil)
  assert_true(stub.subjects[topic .. "-key"] ~= nil)
  -- bytes that are not a frame, from a plain producer
  local plain = klua.producer()
  assert(plain:produce{ topic = topic, partition = 0, value = "not a frame" })  -- no key: the key deserializer is not called
  assert(p:produce{ topic = topic, partition = 0, key = "k6", value = order(6) })

  local c = klua.consumer{ group = klua.testkit.group("serde"), topics = { topic }, ["auto.offset.reset"] = "earliest",
                           value_deserializer = dec, key_deserializer = kdec }
  local got, errs = consume_all(c, 6)
  assert_eq(#got, 5)
  assert_eq(#errs, 1)
  assert_eq(got[1].key, "k1")
  assert_eq(got[1].value.item, "item-1")
  assert_eq(got[1]:header("trace"), "t1")
  assert_eq(got[2].value.qty, order(2).qty)
  assert_eq(got[4].key, "k4")
  assert_nil(got[4].value)  -- the tombstone stays nil
  assert_eq(got[5].key, "k6")
  local e = errs[1]
  assert_error(e, "KLUA_DESERIALIZATION")
  assert_eq(e.topic, topic)
  assert_eq(e.partition, 0)
  assert_eq(e.offset, 4)
  assert_eq(e.field, "value")
  assert_eq(e.raw.value, "not a frame")
  assert_eq(e.raw.offset, 4)
  assert_match(e.message, "at offset 4, value: wrong magic byte 0x6E .*plain text")
  assert(c:store(e.raw))  -- the raw message can be stored to skip it
  c:close()
  p:close()
  plain:close()
end)

test("consumer: poll_batch and messages() hand out deserialized messages; a failure ends a batch", function()
  local _, reg = fresh()
  local topic = klua.testkit.topic("serde-batch")
  local enc, dec = klua.serde.avro{ registry = reg, schema = ORDER }
  local p = klua.producer{ value_serializer = enc }
  for i = 1, 5 do assert(p:send{ topic = topic, partition = 0, value = order(i) }) end
  assert(p:flush())
  local plain = klua.producer()
  assert(plain:produce{ topic = topic, partition = 0, value = "\0\0\0" })
  assert(p:produce{ topic = topic, partition = 0, value = order(7) })
  local c = klua.consumer{ group = klua.testkit.group("serde-batch"), ["auto.offset.reset"] = "earliest",
                           value_deserializer = dec }
  assert(c:assign{ { topic = topic, partition = 0, offset = "beginning" } })
  local all, err = {}, nil
  local deadline = klua.now() + 15000
  while #all < 5 and klua.now() < deadline do
    local batch, e = c:poll_batch(100, { timeout_ms = 200 })
    if e then err = e break end
    for _, m in ipairs(batch) do all[#all + 1] = m end
  end
  if not err then
    local e
    _, e = c:poll_batch(100, { timeout_ms = 5000 })
    err = e
  end
  assert_eq(#all, 5)
  for i, m in ipairs(all) do assert_eq(m.value.id, i) end
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_match(err.message, "truncated frame header")
  assert_eq(err.offset, 5)
  local rest = assert(c:poll_batch(10, { timeout_ms = 5000 }))
  assert_eq(rest[1].value.id, 7)
  -- messages(): a failure raises from the loop
  assert(c:seek(topic, 0, 0))
  local n = 0
  local ok, e = pcall(function() for m in c:messages{ until_end = true } do n = n + 1; assert_eq(m.value.id, n) end end)
  assert_false(ok)
  assert_error(e, "KLUA_DESERIALIZATION")
  assert_eq(n, 5)
  c:close()
  p:close()
  plain:close()
end)

test("a transactional producer serializes too", function()
  local _, reg = fresh()
  local topic = klua.testkit.topic("serde-txn")
  local enc, dec = klua.serde.avro{ registry = reg, schema = ORDER }
  local p = klua.producer{ ["transactional.id"] = klua.testkit.fresh("serde-txn"), value_serializer = enc }
  assert(p:init_transactions())
  assert(p:transaction(function()
    assert(p:send{ topic = topic, value = order(1) })
    assert(p:produce{ topic = topic, value = order(2) })
    local r, err = p:send{ topic = topic, value = { id = false } }
    assert(r == nil and err.name == "KLUA_SERIALIZATION")
    return true
  end))
  local got = klua.testkit.read(topic)
  assert_eq(#got, 2)
  assert_eq(assert(dec(got[1].value)).id + assert(dec(got[2].value)).id, 3)
  p:close()
end)

test("options refused: a serializer that is not a function, named", function()
  assert_raises(function() klua.producer{ value_serializer = "avro" } end, "option 'value_serializer' must be a function")
  assert_raises(function() klua.consumer{ group = "g", key_deserializer = 5 } end, "option 'key_deserializer' must be a function")
end)

test("worker: undecodable bytes are dead-lettered at once, never retried; a registry failure is retried", function()
  local _, reg = fresh()
  local topic = klua.testkit.topic("serde-worker")
  local dlq = klua.testkit.topic("serde-worker-dlq")
  local enc, dec = klua.serde.avro{ registry = reg, schema = ORDER }
  local p = klua.producer{ value_serializer = enc }
  local plain = klua.producer()
  assert(p:produce{ topic = topic, partition = 0, value = order(1) })
  assert(plain:produce{ topic = topic, partition = 0, value = "garbage" })
  assert(p:produce{ topic = topic, partition = 0, value = order(3) })
  local handled, calls = {}, 0
  local down = 1  -- the registry fails once: the first message is retried, then handled
  local function flaky(bytes, msg, field)
    if down > 0 then
      down = down - 1
      return nil, klua.errors.new{ name = "KLUA_REGISTRY", message = "schema registry: no answer" }
    end
    return dec(bytes, msg, field)
  end
  local w
  w = klua.worker{
    group = klua.testkit.group("serde-worker"), topics = { topic }, dead_letter = dlq, quiet = true,
    consumer = { value_deserializer = flaky },
    handlers = function(msg)
      calls = calls + 1
      handled[#handled + 1] = msg.value.id
      if msg.value.id == 3 then w:stop() end  -- the last one: the dead letter before it is sent, the drain confirms it
    end,
    retry = { max = 3, base_ms = 1 },
  }
  local counters = assert(w:run())
  local dead = assert(klua.testkit.expect_message(dlq, function() return true end, { timeout_ms = 15000 }))
  assert_eq(#handled, 2)
  assert_eq(handled[1], 1)
  assert_eq(handled[2], 3)
  assert_eq(calls, 2)
  assert_eq(counters.retried, 1)  -- the registry failure; the garbage was not retried
  assert_eq(counters.dead_lettered, 1)
  assert_eq(dead.value, "garbage")
  assert_eq(dead:header("x-dead-letter-reason"), "deserialization-failed")
  assert_eq(dead:header("x-original-offset"), "1")
  assert_match(dead:header("x-exception-type"), "KLUA_DESERIALIZATION")
  p:close()
  plain:close()
end)
