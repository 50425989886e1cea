-- klua.registry against a real schema registry (Apicurio Registry 3.3.3's Confluent API, started by
-- tests/registry.cmake's fixture; KLUA_SCHEMA_REGISTRY names it), with Python's confluent-kafka
-- SchemaRegistryClient as a second client. Subjects carry a per-run suffix: other suites share the
-- registry. Run with: tools/with-registry build/klua test tests/registry/registry_test.lua
local E = klua.errors
local RUN = klua.uuid():sub(1, 8)
local function subj(name) return name .. "-" .. RUN end
local function sorted(t) table.sort(t); return t end

local PYTHON = dofile("tests/integration/helpers/python.lua")

local reg = assert(klua.registry())

local ORDER = [[{"type":"record","name":"Order","namespace":"t.reg","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"}]}]]
-- The same schema with other whitespace (and field order of the JSON object kept).
local ORDER_SPACED = [[{ "type" : "record", "name" : "Order", "namespace" : "t.reg",
  "fields" : [ { "name" : "id", "type" : "string" }, { "name" : "qty", "type" : "int" } ] }]]
-- qty's type changed: not backward compatible.
local ORDER_BAD = [[{"type":"record","name":"Order","namespace":"t.reg","fields":[{"name":"id","type":"string"},{"name":"qty","type":"string"}]}]]
-- A new optional field: backward compatible.
local ORDER_V2 = [[{"type":"record","name":"Order","namespace":"t.reg","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"},{"name":"note","type":["null","string"],"default":null}]}]]

-- Python's confluent-kafka client: cmd get ID | register SUBJECT SCHEMA.
local PY = [[
import json, os, sys
from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
c = SchemaRegistryClient({"url": os.environ["KLUA_SCHEMA_REGISTRY"]})
if sys.argv[1] == "get":
    s = c.get_schema(int(sys.argv[2]))
    print(json.dumps({"schema": s.schema_str, "schema_type": s.schema_type}))
else:
    print(json.dumps({"id": c.register_schema(sys.argv[2], Schema(sys.argv[3], "AVRO"))}))
]]
local function py(...)
  local res = assert(klua.process.run{ cmd = PYTHON, args = { "-c", PY, ... }, timeout_ms = 60000 })
  assert(res.status == 0, "python failed: " .. res.stderr)
  return assert(klua.json.decode(res.stdout))
end

test("register, lookup, schema_by_id, versions, subjects, get_version", function()
  local s = subj("orders-value")
  local id = assert(reg:register(s, ORDER))
  assert_true(type(id) == "number" and id >= 1)
  assert_eq(reg:register(s, ORDER), id)
  local by_id = assert(reg:schema_by_id(id))
  assert_eq(by_id.id, id)
  assert_eq(by_id.schema_type, "AVRO")
  assert_eq(klua.json.decode(by_id.schema), klua.json.decode(ORDER))
  local found = assert(reg:lookup(s, ORDER))
  assert_eq(found.subject, s)
  assert_eq(found.id, id)
  assert_eq(found.version, 1)
  assert_eq(assert(reg:versions(s)), { 1 })
  local subjects = assert(reg:subjects())
  local listed = false
  for _, x in ipairs(subjects) do listed = listed or x == s end
  assert_true(listed, "subjects() lists " .. s)
  local v = assert(reg:get_version(s, "latest"))
  assert_eq({ v.subject, v.id, v.version }, { s, id, 1 })
  assert_eq(assert(reg:get_version(s, 1)).id, id)
  -- the same schema under another subject: the same id
  assert_eq(reg:register(subj("orders2-value"), ORDER), id)
  -- a lookup of a schema the subject lacks
  local none, err = reg:lookup(s, ORDER_BAD)
  assert_eq(none, nil)
  assert_eq(err.name, E.KLUA_REGISTRY)
  assert_eq(err.status, 404)
  assert_true(err.error_code == 40403 or err.error_code == 40401, "error_code " .. tostring(err.error_code))
end)

test("an unknown id is 404 with error_code 40403; an unknown subject 40401", function()
  local v, err = reg:schema_by_id(987654321)
  assert_eq(v, nil)
  assert_eq(err.name, E.KLUA_REGISTRY)
  assert_eq(err.status, 404)
  assert_eq(err.error_code, 40403)
  assert_match(err.url, "/schemas/ids/987654321$")
  v, err = reg:versions(subj("never-registered"))
  assert_eq(v, nil)
  assert_eq(err.error_code, 40401)
end)

test("compatibility per subject: BACKWARD refuses an incompatible schema (409), NONE accepts it", function()
  local s = subj("compat-value")
  assert(reg:register(s, ORDER))
  assert_eq(reg:set_config("BACKWARD", s), "BACKWARD")
  assert_eq(reg:get_config(s), "BACKWARD")
  local ok, messages = reg:check_compatibility(s, ORDER_BAD)
  assert_eq(ok, false)
  assert_true(type(messages) == "table")
  assert_eq(reg:check_compatibility(s, ORDER_V2), true)
  local id, err = reg:register(s, ORDER_BAD)
  assert_eq(id, nil)
  assert_eq(err.status, 409)
  assert_eq(err.error_code, 409)
  assert_match(err.registry_message, "ncompatible")
  assert_true(reg:register(s, ORDER_V2) ~= nil)
  assert_eq(assert(reg:versions(s)), { 1, 2 })
  -- NONE set on the subject: anything goes (Apicurio answers false under a NONE it only inherits)
  assert_eq(reg:set_config("NONE", s), "NONE")
  assert_eq(reg:check_compatibility(s, ORDER_BAD), true)
  assert_true(reg:register(s, ORDER_BAD) ~= nil)
  -- the global level is readable (not changed here: other suites share the registry)
  assert_true(type(reg:get_config()) == "string")
  -- Apicurio's quirk (docs/registry.md): under the default NONE a subject only inherits, the check
  -- answers false (Confluent's: true), while the registration goes through
  local q = subj("inherited-none-value")
  assert(reg:register(q, ORDER))
  assert_eq(reg:get_config(q), "NONE")
  assert_eq(reg:check_compatibility(q, ORDER_BAD), false)
  assert_true(reg:register(q, ORDER_BAD) ~= nil)
end)

test("references: an Avro named type from another subject, a protobuf import", function()
  local money_s, order_s = subj("money"), subj("order-ref-value")
  local MONEY = [[{"type":"record","name":"Money","namespace":"t.reg","fields":[{"name":"cents","type":"long"},{"name":"currency","type":"string"}]}]]
  assert(reg:register(money_s, MONEY))
  local ORDER_REF = [[{"type":"record","name":"PricedOrder","namespace":"t.reg","fields":[{"name":"id","type":"string"},{"name":"price","type":"t.reg.Money"}]}]]
  local refs = { { name = "t.reg.Money", subject = money_s, version = 1 } }
  local id = assert(reg:register(order_s, { schema = ORDER_REF, references = refs }))
  local got = assert(reg:schema_by_id(id))
  assert_eq(got.references, refs)
  local texts = assert(reg:references(got.references))
  assert_eq(klua.json.decode(texts["t.reg.Money"]), klua.json.decode(MONEY))

  local common_s, po_s = subj("common-proto"), subj("porder-value")
  local COMMON = 'syntax = "proto3";\npackage t.reg;\n\nmessage Money {\n  int64 cents = 1;\n  string currency = 2;\n}\n'
  local PORDER = 'syntax = "proto3";\npackage t.reg;\n\nimport "common.proto";\n\nmessage POrder {\n  string id = 1;\n  t.reg.Money price = 2;\n}\n'
  assert(reg:register(common_s, { schema = COMMON, schema_type = "PROTOBUF" }))
  local pid = assert(reg:register(po_s, { schema = PORDER, schema_type = "PROTOBUF",
                                          references = { { name = "common.proto", subject = common_s, version = 1 } } }))
  local p = assert(reg:schema_by_id(pid))
  assert_eq(p.schema_type, "PROTOBUF")
  assert_match(p.schema, "import \"common.proto\"")
  local ptexts = assert(reg:references(p.references))
  assert_match(ptexts["common.proto"], "message Money")
end)

test("soft and hard delete of subjects and versions", function()
  local s = subj("delete-value")
  assert(reg:register(s, ORDER))
  assert(reg:set_config("NONE", s))
  assert(reg:register(s, ORDER_V2))
  assert_eq(reg:delete_version(s, 2), 2)
  assert_eq(assert(reg:versions(s)), { 1 })
  assert_eq(sorted(assert(reg:versions(s, { deleted = true }))), { 1, 2 })
  assert_eq(reg:delete_version(s, 2, { permanent = true }), 2)
  assert_eq(sorted(assert(reg:versions(s, { deleted = true }))), { 1 })
  assert_eq(assert(reg:delete_subject(s)), { 1 })
  local function listed(deleted)
    for _, x in ipairs(assert(reg:subjects{ deleted = deleted })) do if x == s then return true end end
    return false
  end
  assert_false(listed(false))
  assert_true(listed(true))
  -- registering again after a soft delete is not a cache hit: the registry answers
  assert_eq(assert(reg:delete_subject(s, { permanent = true })), { 1 })
  assert_false(listed(true))
  local v, err = reg:versions(s)
  assert_eq(v, nil)
  assert_eq(err.error_code, 40401)
end)

test("the same schema with other whitespace: the same id in its subject, a new one in another", function()
  -- Apicurio 3.3.3 measured: with apicurio.ccompat.use-canonical-hash on or off (the option of
  -- tools/schema-registry), a subject finds its own version whatever the whitespace, and another
  -- subject stores the text as new content with a new id (Confluent's server gives the same id).
  local s = subj("canon-value")
  local id = assert(reg:register(s, ORDER))
  local fresh = klua.registry{ url = reg.url }  -- no cache: the registry answers
  assert_eq(fresh:register(s, ORDER_SPACED), id)
  assert_eq(assert(fresh:lookup(s, ORDER_SPACED)).version, 1)
  assert_eq(assert(reg:versions(s)), { 1 })
  local other = assert(fresh:register(subj("canon2-value"), ORDER_SPACED))
  assert_true(other ~= id, "another subject: a new id")
  assert_eq(fresh:register(subj("canon3-value"), ORDER), id)  -- the very text: the same id
end)

test("Python's SchemaRegistryClient reads what klua registers, and klua what it registers", function()
  local s = subj("py-value")
  local id = assert(reg:register(s, ORDER))
  local got = py("get", tostring(id))
  assert_eq(got.schema_type, "AVRO")
  assert_eq(klua.json.decode(got.schema), klua.json.decode(ORDER))
  local PY_SCHEMA = [[{"type":"record","name":"FromPython","namespace":"t.reg","fields":[{"name":"n","type":"long"}]}]]
  local pid = py("register", subj("from-py-value"), PY_SCHEMA).id
  local mine = assert(reg:schema_by_id(pid))
  assert_eq(klua.json.decode(mine.schema), klua.json.decode(PY_SCHEMA))
  assert_eq(assert(reg:lookup(subj("from-py-value"), PY_SCHEMA)).id, pid)
end)
