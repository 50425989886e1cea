#!/usr/bin/env python3
"""Byte-for-byte interop of klua's schema-registry serdes and CLI formats with Python confluent-kafka 2.16.1,
against the real registry and the real broker (tests/registry.cmake sets KLUA_SCHEMA_REGISTRY and KLUA_BROKERS).

Usage: python_interop_test.py KLUA SCRATCH_DIR [--only avro|protobuf|json]

For each of Avro, Protobuf (a message with a nested one: index 04 00 00; a reference to common.proto) and
JSON Schema:
  1. Python's SerializingProducer (AvroSerializer / ProtobufSerializer / JSONSerializer) writes records; klua
     reads them twice: `klua consume --value-format F --json` (the values as JSON, compared with what fastavro's
     Avro JSON writer / protobuf's json_format / json print for the same records), and a Lua script whose
     consumer has value_deserializer = klua.serde.F{} (the Lua values, compared field by field).
  2. A Lua script's producer with value_serializer = klua.serde.F{...} writes the same records; Python's
     DeserializingConsumer decodes them to equal values, and the raw Kafka values equal, byte for byte, what
     Python's serializer makes of the same record against the same subject (the same schema id).
  3. The CLI: `klua produce --value-format F --value-schema FILE` of JSON lines; Python decodes them to the
     records the lines came from.
The schemas and the expected values come from Python's libraries (fastavro, protobuf, json), not from klua.
"""
import base64
import faulthandler
import io
import json
import os
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import common  # noqa: E402

common.use_venv_python()

import fastavro  # noqa: E402
from confluent_kafka import Consumer, SerializingProducer, DeserializingConsumer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroSerializer, AvroDeserializer  # noqa: E402
from confluent_kafka.schema_registry.json_schema import JSONSerializer, JSONDeserializer  # noqa: E402
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer, ProtobufDeserializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory  # noqa: E402

# Every wait below is bounded; should one still hang, the stacks go to stderr before CTest's timeout (300 s).
faulthandler.dump_traceback_later(240, exit=True)

KLUA = os.path.realpath(sys.argv[1])
SCRATCH = os.path.realpath(sys.argv[2])
ONLY = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--only" else None
BROKERS = os.environ["KLUA_BROKERS"]
SR_URL = os.environ["KLUA_SCHEMA_REGISTRY"]
RUN = uuid.uuid4().hex[:8]
os.makedirs(SCRATCH, exist_ok=True)
checks = common.Checks("python_interop")
sr = SchemaRegistryClient({"url": SR_URL, "timeout": 30})
admin = AdminClient({"bootstrap.servers": BROKERS})
# The subject strategy klua's serdes default to. Python's default since 2.13, ASSOCIATED, first asks the
# Confluent-only /associations endpoint (Apicurio answers 404), one request more per serializer.
TOPIC_STRATEGY = {"subject.name.strategy.type": "TOPIC"}


def topic(name):
    t = f"interop-{name}-{RUN}"
    for f in admin.create_topics([NewTopic(t, 1, 1)], operation_timeout=30, request_timeout=30).values():
        f.result(timeout=60)
    return t


def klua(*args, stdin=None, check=True):
    env = dict(os.environ, KLUA_SCHEMA_REGISTRY=SR_URL, KLUA_BROKERS=BROKERS)
    p = subprocess.run([KLUA, *args], input=stdin.encode() if stdin is not None else None, capture_output=True,
                       env=env, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"klua {' '.join(args[:3])}... exit {p.returncode}: {p.stderr.decode()}")
    return p


def klua_script(name, source, *args):
    path = os.path.join(SCRATCH, name)
    with open(path, "w") as f:
        f.write(source)
    return klua("run", path, *args).stdout.decode()


def produce(t, serializer, records):
    p = SerializingProducer({"bootstrap.servers": BROKERS, "value.serializer": serializer})
    for r in records:
        p.produce(t, value=r)
    p.flush(30)


def consume_raw(t, n):
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "interop-" + uuid.uuid4().hex[:8],
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([t])
    out = []
    while len(out) < n:
        m = c.poll(30)
        if m is None:
            raise AssertionError(f"{t}: {len(out)} of {n} messages within 30 s")
        if m.error():
            raise AssertionError(str(m.error()))
        out.append(m.value())
    c.close()
    return out


def consume_decoded(t, deserializer, n):
    c = DeserializingConsumer({"bootstrap.servers": BROKERS, "group.id": "interop-" + uuid.uuid4().hex[:8],
                               "auto.offset.reset": "earliest", "enable.auto.commit": False,
                               "value.deserializer": deserializer})
    c.subscribe([t])
    out = []
    while len(out) < n:
        m = c.poll(30)
        if m is None:
            raise AssertionError(f"{t}: {len(out)} of {n} messages within 30 s")
        out.append(m.value())
    c.close()
    return out


def cli_values(t, fmt):
    """klua consume --value-format fmt --json: the value of each line, parsed."""
    p = klua("consume", t, "--from", "beginning", "-e", "--json", "--value-format", fmt)
    return [json.loads(line)["value"] for line in p.stdout.decode().splitlines()]


def write(name, text):
    path = os.path.join(SCRATCH, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# ---------------------------------------------------------------------------------------------------------
# Avro
AVRO_SCHEMA = json.dumps({
    "type": "record", "name": "Order", "namespace": "shop.avro", "fields": [
        {"name": "id", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "total", "type": "double"},
        {"name": "big", "type": "long"},
        {"name": "paid", "type": "boolean"},
        {"name": "blob", "type": "bytes"},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {"name": "lines", "type": {"type": "array", "items": {
            "type": "record", "name": "Line", "fields": [{"name": "sku", "type": "string"},
                                                         {"name": "n", "type": "int"}]}}},
        {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 4}},
    ]})


def avro_records(n):
    out = []
    for i in range(n):
        out.append({
            "id": f"o-{i:04d}-é", "qty": (-1) ** i * i * 1000, "total": i * 1.25 + 0.1,
            "big": [0, -1, 2 ** 53, 2 ** 62 + i, -(2 ** 63), 2 ** 63 - 1][i % 6],
            "paid": i % 2 == 0, "blob": bytes([i % 256, 0, 255, 10]) * (i % 3),
            "status": ["NEW", "PAID", "SHIPPED"][i % 3], "note": None if i % 2 else f"note {i}",
            "tags": [f"t{k}" for k in range(i % 4)],
            # byte-for-byte comparisons need one order of map entries: at most one entry
            "attrs": {} if i % 2 else {"k": i * 7},
            "lines": [{"sku": f"s{k}", "n": k} for k in range(i % 3)],
            "code": bytes([65 + i % 26, 66, 67, i % 256]),
        })
    return out


def avro_json(records):
    """The records in the Avro JSON encoding, as fastavro writes it (one object per record)."""
    schema = fastavro.parse_schema(json.loads(AVRO_SCHEMA))
    buf = io.StringIO()
    fastavro.json_writer(buf, schema, records)
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


# A Lua value of the Avro schema as JSON the test can compare: bytes and fixed as base64, longs as decimal
# text (beyond 2^53 they are int64 cdata), absent (nil) union fields left out.
AVRO_LUA_TO_JSON = r"""
local function b64(s) return klua.base64.encode(s) end
local function long(v) return type(v) == "number" and ("%d"):format(v) or (tostring(v):gsub("U?LL$", "")) end
local function plain(v)
  return { id = v.id, qty = v.qty, total = v.total, big = long(v.big), paid = v.paid, blob = b64(v.blob),
           status = v.status, note = v.note, tags = klua.json.array(v.tags), attrs = klua.json.object(v.attrs),
           lines = klua.json.array(v.lines), code = b64(v.code) }
end
"""


def avro_plain(r):
    d = {"id": r["id"], "qty": r["qty"], "total": r["total"], "big": str(r["big"]), "paid": r["paid"],
         "blob": base64.b64encode(r["blob"]).decode(), "status": r["status"], "tags": r["tags"],
         "attrs": r["attrs"], "lines": r["lines"], "code": base64.b64encode(r["code"]).decode()}
    if r["note"] is not None:
        d["note"] = r["note"]
    return d


def test_avro():
    records = avro_records(24)
    expected_json = avro_json(records)

    # 1. Python writes, klua reads (CLI and library)
    t1 = topic("avro-py")
    produce(t1, AvroSerializer(sr, AVRO_SCHEMA, conf=TOPIC_STRATEGY), records)
    checks.eq("avro: klua consume --value-format avro --json = fastavro's Avro JSON", cli_values(t1, "avro"),
              expected_json)
    out = klua_script("avro_read.lua", AVRO_LUA_TO_JSON + r"""
local t, n = ...
local _, dec = klua.serde.avro{}
local c = klua.consumer{ group = "interop-" .. klua.uuid():sub(1, 8), value_deserializer = dec }
assert(c:assign{ { topic = t, partition = 0, offset = "beginning" } })
for _ = 1, tonumber(n) do
  local m = assert(c:poll{ timeout_ms = 30000 })
  print(klua.json.encode(plain(m.value)))
end
c:close()
""", t1, str(len(records)))
    checks.eq("avro: klua.serde.avro decodes Python's records", [json.loads(l) for l in out.splitlines()],
              [avro_plain(r) for r in records])

    # 2. klua writes (library), Python reads; byte for byte against AvroSerializer
    t2 = topic("avro-klua")
    inp = write("avro_in.json", json.dumps([avro_plain(r) for r in records]))
    klua_script("avro_write.lua", r"""
local t, schema_file, input = ...
local function slurp(p) local f = assert(io.open(p)) local s = f:read("*a") f:close() return s end
local enc = klua.serde.avro{ schema = slurp(schema_file), topic = t }
local p = klua.producer{ value_serializer = enc }
for _, r in ipairs(assert(klua.json.decode(slurp(input)))) do
  r.blob, r.code = klua.base64.decode(r.blob), klua.base64.decode(r.code)
  r.big = loadstring("return " .. r.big .. "LL")()
  if r.big >= -2^53 and r.big <= 2^53 then r.big = tonumber(r.big) end
  assert(p:send{ topic = t, value = r })
end
assert(p:flush())
""", t2, write("order.avsc", AVRO_SCHEMA), inp)
    checks.eq("avro: Python's AvroDeserializer decodes klua's records",
              consume_decoded(t2, AvroDeserializer(sr), len(records)), records)
    raw = consume_raw(t2, len(records))
    ser = AvroSerializer(sr, AVRO_SCHEMA, conf=TOPIC_STRATEGY)
    want = [ser(r, SerializationContext(t2, MessageField.VALUE)) for r in records]
    checks.eq("avro: klua's bytes = AvroSerializer's bytes (same subject, same id)", raw, want)
    checks.eq("avro: the frame is 00 + the schema id", raw[0][:5],
              b"\0" + sr.get_latest_version(t2 + "-value").schema_id.to_bytes(4, "big"))

    # 3. the CLI writes Avro JSON lines, Python reads
    t3 = topic("avro-cli")
    lines = "\n".join(json.dumps(j) for j in expected_json) + "\n"
    klua("produce", t3, "--value-format", "avro", "--value-schema", os.path.join(SCRATCH, "order.avsc"), stdin=lines)
    checks.eq("avro: klua produce --value-format avro, read by AvroDeserializer",
              consume_decoded(t3, AvroDeserializer(sr), len(records)), records)
    checks.eq("avro: klua produce's bytes = AvroSerializer's", consume_raw(t3, len(records)),
              [ser(r, SerializationContext(t3, MessageField.VALUE)) for r in records])

    # keys too (-k SEP, --key-format), the value schema by id (--value-schema-id), and by default the
    # subject's latest version
    t4 = topic("avro-cli-key")
    sid = sr.get_latest_version(t3 + "-value").schema_id
    keyed = "".join(f'"k{i}"|{json.dumps(j)}\n' for i, j in enumerate(expected_json))
    klua("produce", t4, "-k", "|", "--key-format", "avro", "--key-schema", write("key.avsc", '"string"'),
         "--value-format", "avro", "--value-schema-id", str(sid), stdin=keyed)
    klua("produce", t4, "-k", "|", "--key-format", "avro", "--value-format", "avro", "--value-schema-id", str(sid),
         stdin=f'"last"|{json.dumps(expected_json[0])}\n')
    c = DeserializingConsumer({"bootstrap.servers": BROKERS, "group.id": "interop-" + uuid.uuid4().hex[:8],
                               "auto.offset.reset": "earliest", "key.deserializer": AvroDeserializer(sr),
                               "value.deserializer": AvroDeserializer(sr)})
    c.subscribe([t4])
    got = []
    while len(got) < len(records) + 1:
        m = c.poll(30)
        assert m is not None, "keyed records within 30 s"
        got.append((m.key(), m.value()))
    c.close()
    checks.eq("avro: keys and values of klua produce --key-format avro, read by AvroDeserializer", got,
              [(f"k{i}", r) for i, r in enumerate(records)] + [("last", records[0])])
    p = klua("consume", t4, "--from", "beginning", "-e", "--key-format", "avro", "--value-format", "avro",
             "-f", "%k\t%s\n")
    checks.eq("avro: klua consume --key-format avro --value-format avro -f '%k\\t%s\\n'",
              [tuple(json.loads(x) for x in line.split("\t")) for line in p.stdout.decode().splitlines()],
              [(f"k{i}", j) for i, j in enumerate(expected_json)] + [("last", expected_json[0])])


# ---------------------------------------------------------------------------------------------------------
# Protobuf
COMMON_PROTO = """syntax = "proto3";
package common;

message Money {
  string currency = 1;
  int64 units = 2;
  int32 nanos = 3;
}
"""
ORDER_PROTO = """syntax = "proto3";
package shop;

import "common.proto";

message Order {
  message Line {
    string sku = 1;
    int32 qty = 2;
    common.Money price = 3;
  }
  string id = 1;
  repeated Line lines = 2;
  Status status = 3;
  bytes blob = 4;
  int64 big = 5;
  double total = 6;
  bool paid = 7;
}

enum Status {
  NEW = 0;
  PAID = 1;
  SHIPPED = 2;
}
"""


def protobuf_classes():
    """The message classes, from protoc's descriptor set (not from klua)."""
    d = os.path.join(SCRATCH, "proto")
    os.makedirs(d, exist_ok=True)
    for name, text in (("common.proto", COMMON_PROTO), ("order.proto", ORDER_PROTO)):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    out = os.path.join(d, "set.pb")
    subprocess.run(["protoc", "-I", d, "--include_imports", "--descriptor_set_out=" + out, "order.proto"], check=True)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(out, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    order = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))
    line = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order.Line"))
    return order, line, d


def test_protobuf():
    Order, Line, proto_dir = protobuf_classes()
    lines = [Line(sku=f"s{i}", qty=i * 3 - 5, price={"currency": "EUR", "units": i * 2 ** 40, "nanos": i})
             for i in range(12)]
    orders = [Order(id=f"o-{i}", lines=lines[:i % 4], status=i % 3, blob=bytes([i, 0, 255]) * (i % 2),
                    big=[0, -1, 2 ** 62 + i, -(2 ** 63)][i % 4], total=i * 0.5 + 0.25, paid=i % 2 == 1)
              for i in range(12)]

    def as_json(msgs):
        return [json_format.MessageToDict(m) for m in msgs]

    # 1. Python writes (the nested message: index 04 00 00; the top-level one: 00), klua reads
    for what, t, msgs, cls, index in (("Order", topic("pb-order-py"), orders, Order, b"\x00"),
                                      ("Order.Line", topic("pb-line-py"), lines, Line, b"\x04\x00\x00")):
        produce(t, ProtobufSerializer(cls, sr, {"use.deprecated.format": False, **TOPIC_STRATEGY}), msgs)
        raw = consume_raw(t, len(msgs))
        checks.eq(f"protobuf {what}: Python's message index", raw[0][5:5 + len(index)], index)
        checks.eq(f"protobuf {what}: klua consume --value-format protobuf = json_format's JSON",
                  cli_values(t, "protobuf"), as_json(msgs))
        out = klua_script("pb_read.lua", r"""
local t, n = ...
local _, dec = klua.serde.protobuf{}
local c = klua.consumer{ group = "interop-" .. klua.uuid():sub(1, 8), value_deserializer = dec }
assert(c:assign{ { topic = t, partition = 0, offset = "beginning" } })
for _ = 1, tonumber(n) do
  local m = assert(c:poll{ timeout_ms = 30000 })
  print((m.value.sku or m.value.id) .. " " .. (m.value.price and tostring(m.value.price.units):gsub("U?LL$", "") or
        tostring(m.value.big):gsub("U?LL$", "")))
end
c:close()
""", t, str(len(msgs)))
        want = [f"{m.sku} {m.price.units}" if what == "Order.Line" else f"{m.id} {m.big}" for m in msgs]
        checks.eq(f"protobuf {what}: klua.serde.protobuf decodes Python's messages", out.splitlines(), want)

    # 2. klua writes (library), Python reads; byte for byte with ProtobufSerializer on the same subject
    for what, msgs, cls in (("shop.Order", orders, Order), ("shop.Order.Line", lines, Line)):
        t = topic("pb-klua-" + what.split(".")[-1].lower())
        inp = write("pb_in.jsonl", "\n".join(json_format.MessageToJson(m, indent=None) for m in msgs) + "\n")
        klua_script("pb_write.lua", r"""
local t, dir, message, input = ...
local function slurp(p) local f = assert(io.open(p)) local s = f:read("*a") f:close() return s end
local enc = klua.serde.protobuf{ schema = slurp(dir .. "/order.proto"), message = message, topic = t,
                                 imports = { ["common.proto"] = slurp(dir .. "/common.proto") } }
local f = assert(klua.protobuf.compile(slurp(dir .. "/order.proto"),
                 { name = "order.proto", imports = { ["common.proto"] = slurp(dir .. "/common.proto") } }))
local m = assert(f:message(message))
local p = klua.producer{ value_serializer = enc }
for line in io.lines(input) do
  -- the table the script would build: decoded from the message's own bytes
  local bytes = assert(m:from_json(line))
  assert(p:send{ topic = t, value = assert(m:decode(bytes)) })
end
assert(p:flush())
""", t, proto_dir, what, inp)
        checks.eq(f"protobuf {what}: ProtobufDeserializer decodes klua's messages",
                  consume_decoded(t, ProtobufDeserializer(cls, {"use.deprecated.format": False}), len(msgs)), msgs)

        # Byte for byte with the same schema id. Python's serializer asks for the subject's schema as a
        # serialized descriptor (?format=serialized), which Apicurio does not convert a .proto text into:
        # so Python registers first (its base64 FileDescriptorProto, common.proto as a reference), and
        # klua's serde encodes with that registered schema (use_latest).
        t = topic("pb-bytes-" + what.split(".")[-1].lower())
        ser = ProtobufSerializer(cls, sr, {"use.deprecated.format": False, **TOPIC_STRATEGY})
        want = [ser(m, SerializationContext(t, MessageField.VALUE)) for m in msgs]
        klua_script("pb_write_latest.lua", r"""
local t, dir, message, input = ...
local function slurp(p) local f = assert(io.open(p)) local s = f:read("*a") f:close() return s end
-- the schema text says which message; the registered schema (use_latest) gives the id
local enc = klua.serde.protobuf{ use_latest = true, auto_register = false, message = message, topic = t,
                                 schema = slurp(dir .. "/order.proto"),
                                 imports = { ["common.proto"] = slurp(dir .. "/common.proto") } }
local reg = assert(klua.registry())
local latest = assert(reg:get_version(t .. "-value", "latest"))
local f = assert(klua.protobuf.load(latest.schema, { imports = assert(reg:references(latest.references)) }))
local m = assert(f:message(message))
local p = klua.producer{ value_serializer = enc }
for line in io.lines(input) do assert(p:send{ topic = t, value = assert(m:decode(assert(m:from_json(line)))) }) end
assert(p:flush())
""", t, proto_dir, what, inp)
        checks.eq(f"protobuf {what}: klua's bytes = ProtobufSerializer's (the same schema id)",
                  consume_raw(t, len(msgs)), want)

    # 3. the CLI: proto3 JSON lines, the import registered as its own subject
    t = topic("pb-cli")
    klua("produce", t, "--value-format", "protobuf", "--value-schema", os.path.join(proto_dir, "order.proto"),
         "--value-message", "shop.Order.Line",
         stdin="\n".join(json_format.MessageToJson(m, indent=None) for m in lines) + "\n")
    checks.eq("protobuf: klua produce --value-format protobuf, read by ProtobufDeserializer",
              consume_decoded(t, ProtobufDeserializer(Line, {"use.deprecated.format": False}), len(lines)), lines)
    latest = sr.get_latest_version("common.proto").schema
    checks.eq("protobuf: the CLI registered the import as the subject common.proto (its text)",
              (latest.schema_type, latest.schema_str.strip()), ("PROTOBUF", COMMON_PROTO.strip()))
    checks.eq("protobuf: the value subject references it",
              [(r.name, r.subject) for r in sr.get_latest_version(t + "-value").schema.references],
              [("common.proto", "common.proto")])


# ---------------------------------------------------------------------------------------------------------
# JSON Schema
JSON_SCHEMA = json.dumps({
    "$schema": "http://json-schema.org/draft-07/schema#", "title": "Order", "type": "object",
    "properties": {"id": {"type": "string"}, "qty": {"type": "integer", "minimum": 1},
                   "tags": {"type": "array", "items": {"type": "string"}}, "total": {"type": "number"},
                   "note": {"type": ["string", "null"]}},
    "required": ["id", "qty"]})


def json_records(n):
    # keys in sorted order: klua.json writes sorted keys, Python's JSONSerializer keeps the dict's order
    return [dict(sorted({"id": f"o-{i}-ü", "qty": i + 1, "tags": [f"t{k}" for k in range(i % 3)],
                         "total": i * 1.5 + 0.25, "note": None if i % 2 else f"n{i}"}.items()))
            for i in range(15)]


def test_json():
    records = json_records(15)
    t1 = topic("js-py")
    produce(t1, JSONSerializer(JSON_SCHEMA, sr, conf=TOPIC_STRATEGY), records)
    checks.eq("json-schema: klua consume --value-format json-schema = the records", cli_values(t1, "json-schema"),
              records)
    out = klua_script("js_read.lua", r"""
local t, n = ...
local _, dec = klua.serde.json_schema{}
local c = klua.consumer{ group = "interop-" .. klua.uuid():sub(1, 8), value_deserializer = dec }
assert(c:assign{ { topic = t, partition = 0, offset = "beginning" } })
for _ = 1, tonumber(n) do print(klua.json.encode(assert(c:poll{ timeout_ms = 30000 }).value)) end
c:close()
""", t1, str(len(records)))
    checks.eq("json-schema: klua.serde.json_schema decodes Python's records", [json.loads(l) for l in out.splitlines()],
              records)

    t2 = topic("js-klua")
    klua_script("js_write.lua", r"""
local t, schema_file, input = ...
local function slurp(p) local f = assert(io.open(p)) local s = f:read("*a") f:close() return s end
local p = klua.producer{ value_serializer = klua.serde.json_schema{ schema = slurp(schema_file), topic = t } }
for _, r in ipairs(assert(klua.json.decode(slurp(input)))) do assert(p:send{ topic = t, value = r }) end
assert(p:flush())
""", t2, write("order.schema.json", JSON_SCHEMA), write("js_in.json", json.dumps(records)))
    checks.eq("json-schema: JSONDeserializer decodes klua's records",
              consume_decoded(t2, JSONDeserializer(JSON_SCHEMA), len(records)), records)
    ser = JSONSerializer(JSON_SCHEMA, sr, conf=TOPIC_STRATEGY)
    checks.eq("json-schema: klua's bytes = JSONSerializer's (same subject, same id)", consume_raw(t2, len(records)),
              [ser(r, SerializationContext(t2, MessageField.VALUE)) for r in records])

    t3 = topic("js-cli")
    klua("produce", t3, "--value-format", "json-schema", "--value-schema", os.path.join(SCRATCH, "order.schema.json"),
         stdin="\n".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in records) + "\n")
    checks.eq("json-schema: klua produce --value-format json-schema, read by JSONDeserializer",
              consume_decoded(t3, JSONDeserializer(JSON_SCHEMA), len(records)), records)
    checks.eq("json-schema: klua produce's bytes = JSONSerializer's", consume_raw(t3, len(records)),
              [ser(r, SerializationContext(t3, MessageField.VALUE)) for r in records])


for name, fn in (("avro", test_avro), ("protobuf", test_protobuf), ("json", test_json)):
    if ONLY and ONLY != name:
        continue
    print(f"{name} ...", flush=True)
    try:
        fn()
    except Exception as e:  # one format's failure does not hide the others'
        checks.true(f"{name}: ran to the end", False, f"{type(e).__name__}: {e}")
checks.finish()
