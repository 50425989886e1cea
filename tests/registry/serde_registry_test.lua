-- klua.serde against a real schema registry (Apicurio's Confluent API, KLUA_SCHEMA_REGISTRY from
-- tests/registry.cmake), with Kafka on the embedded cluster: the three formats registered and
-- decoded by id, Protobuf references, auto_register = false, use_latest, an unknown id, an
-- incompatible schema refused at registration, and producer/consumer options end to end.
-- Subjects are fresh per run (the registry is shared by tests running in parallel).
local run = klua.testkit.fresh("serde")

local ORDER = [[{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"qty","type":"int"}]}]]
local ORDER_NOTE = [[{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"qty","type":"int"},
  {"name":"note","type":"string","default":"-"}]}]]
local ORDER_BAD = [[{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"qty","type":"int"},
  {"name":"priority","type":"int"}]}]]

local function order(i) return { id = i, item = "item-" .. i, qty = i } end

test("the configured registry: Avro registered under TOPIC-value, framed with its id, decoded by id", function()
  local reg = assert(klua.registry())
  local topic = run .. "-orders"
  local enc, dec = klua.serde.avro{ schema = ORDER, topic = topic }
  local bytes = assert(enc(order(1)))
  local v = assert(reg:get_version(topic .. "-value", "latest"))
  assert_eq(bytes:sub(1, 5), klua.serde.frame.header(v.id))
  assert_eq(bytes:sub(6), assert(klua.avro.parse(ORDER):encode(order(1))))
  assert_eq(dec(bytes).item, "item-1")
  -- a reader schema with a new field and its default
  local _, rdec = klua.serde.avro{ schema = ORDER_NOTE }
  local r = assert(rdec(bytes))
  assert_eq(r.note, "-")
  assert_eq(r.qty, 1)
  -- the key, record and topic_record strategies
  local kenc = klua.serde.avro{ schema = '"string"', topic = topic, field = "key" }
  assert(kenc("k"))
  assert(reg:get_version(topic .. "-key", "latest"))
  assert(klua.serde.avro{ schema = ORDER, subject_strategy = "topic_record" }(order(2), { topic = topic }))
  assert(reg:get_version(topic .. "-shop.Order", "latest"))
end)

test("auto_register = false, use_latest, an unknown id, an incompatible schema", function()
  local reg = assert(klua.registry())
  local topic = run .. "-lookup"
  local enc = klua.serde.avro{ schema = ORDER, topic = topic, auto_register = false }
  local r, err = enc(order(1))
  assert_nil(r)
  assert_error(err, "KLUA_REGISTRY")
  assert_eq(err.status, 404)
  assert_match(err.message, "not registered under it")
  local id = assert(reg:register(topic .. "-value", ORDER))
  assert_eq(assert(enc(order(1))):sub(1, 5), klua.serde.frame.header(id))
  -- use_latest: the subject's newest version
  assert(reg:set_config("NONE", topic .. "-value"))
  local id2 = assert(reg:register(topic .. "-value", ORDER_NOTE))
  local lenc = klua.serde.avro{ topic = topic, use_latest = true }
  local v = order(3)
  v.note = "n"
  local bytes = assert(lenc(v))
  assert_eq(bytes:sub(1, 5), klua.serde.frame.header(id2))
  local _, dec = klua.serde.avro{}
  assert_eq(dec(bytes).note, "n")
  -- an id the registry does not know
  r, err = dec(klua.serde.frame.header(2147483000) .. "\2", { topic = topic, partition = 0, offset = 8 })
  assert_nil(r)
  assert_error(err, "KLUA_DESERIALIZATION")
  assert_match(err.message, "at offset 8, value: unknown schema id 2147483000")
  -- BACKWARD: a new field without a default is refused at registration
  local strict = run .. "-strict"
  assert(reg:set_config("BACKWARD", strict .. "-value"))
  assert(klua.serde.avro{ schema = ORDER, topic = strict }(order(1)))
  r, err = klua.serde.avro{ schema = ORDER_BAD, topic = strict }(order(1))
  assert_nil(r)
  assert_error(err, "KLUA_REGISTRY")
  assert_eq(err.status, 409)
  assert_match(err.message, "subject " .. strict:gsub("%-", "%%-") .. "%-value: registering the schema failed")
end)

test("Protobuf with an import (a reference) and JSON Schema against the registry", function()
  local reg = assert(klua.registry())
  local common = run .. "/common.proto"
  local COMMON = 'syntax = "proto3"; package common; message Money { string currency = 1; int64 units = 2; }'
  local PB = 'syntax = "proto3"; package shop; import "' .. common .. '";\n'
    .. "message Order { int64 id = 1; common.Money total = 2; repeated Line lines = 3;\n"
    .. "  message Line { string sku = 1; int32 qty = 2; } }\n"
  local topic = run .. "-pb"
  local enc = klua.serde.protobuf{ schema = PB, imports = { [common] = COMMON }, topic = topic }
  local bytes = assert(enc({ id = 5, total = { currency = "EUR", units = 3 }, lines = { { sku = "a", qty = 1 } } }))
  local v = assert(reg:get_version(topic .. "-value", "latest"))
  assert_eq(v.schema_type, "PROTOBUF")
  assert_eq(v.references[1].name, common)
  assert_eq(bytes:sub(1, 6), klua.serde.frame.header(v.id) .. "\0")
  local _, dec = klua.serde.protobuf{}
  local o = assert(dec(bytes))
  assert_eq(o.total.currency, "EUR")
  assert_eq(o.lines[1].sku, "a")
  local lb = assert(klua.serde.protobuf{ schema = PB, imports = { [common] = COMMON }, message = "shop.Order.Line",
                                         topic = run .. "-pb-line" }({ sku = "b", qty = 2 }))
  assert_eq(lb:sub(6, 8), "\4\0\0")
  assert_eq(dec(lb).qty, 2)

  local jtopic = run .. "-json"
  local schema = { title = "Payment", type = "object", required = { "id" },
                   properties = { id = { type = "string" }, amount = { type = "number" } } }
  local jenc, jdec = klua.serde.json_schema{ schema = schema, topic = jtopic, validate_on_decode = true }
  local jb = assert(jenc({ id = "p", amount = 2 }))
  local jv = assert(reg:get_version(jtopic .. "-value", "latest"))
  assert_eq(jv.schema_type, "JSON")
  assert_eq(jb:sub(1, 5), klua.serde.frame.header(jv.id))
  assert_eq(jdec(jb).amount, 2)
  local r, err = jdec(klua.serde.frame.header(jv.id) .. '{"amount":1}')
  assert_nil(r)
  assert_error(err, "KLUA_DESERIALIZATION")
end)

test("producer and consumer options with the configured registry", function()
  local topic = klua.testkit.topic(run .. "-pc")
  local enc, dec = klua.serde.avro{ schema = ORDER }
  local p = klua.producer{ value_serializer = enc }
  for i = 1, 20 do assert(p:send{ topic = topic, value = order(i) }) end
  assert(p:flush())
  local c = klua.consumer{ group = klua.testkit.group("serde"), topics = { topic }, ["auto.offset.reset"] = "earliest",
                           value_deserializer = dec }
  local sum = 0
  for m in c:messages{ until_end = true } do sum = sum + m.value.qty end
  assert_eq(sum, 210)
  c:close()
  p:close()
end)
