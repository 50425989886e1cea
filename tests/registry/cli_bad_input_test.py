#!/usr/bin/env python3
"""Bad input of the schema-registry formats against the real registry and broker (tests/registry.cmake sets
KLUA_SCHEMA_REGISTRY and KLUA_BROKERS): each case is a clear error naming the topic, partition and offset, or
the line and the field path, and consume/produce go on past the bad record.

Usage: cli_bad_input_test.py KLUA SCRATCH_DIR

  consume --value-format avro over a topic holding, in order: a good record, a truncated frame (3 bytes), a
    frame whose schema id the registry does not know (40403), plain JSON (a wrong magic byte), a frame whose
    body does not fit the schema, and a good record: the two good ones are printed, the four bad ones
    reported as TOPIC/0@OFFSET with what was wrong, exit 1.
  The library: a consumer with value_deserializer = klua.serde.avro{} polls nil, err for the same records,
    with err.topic/partition/offset and err.raw (the undecoded message).
  produce --value-format avro: a line with a field of the wrong type, one missing a field, one not JSON:
    each named by its line number and field path and not sent; the good lines are (counted by Python).
  produce --value-schema with a schema incompatible with the subject's (BACKWARD): exit 1, the registry's
    409, nothing sent.
"""
import faulthandler
import json
import os
import re
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import common  # noqa: E402

common.use_venv_python()

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroSerializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

# Should a wait hang (one registry request went unanswered here once), the stacks go to stderr before
# CTest's timeout (180 s).
faulthandler.dump_traceback_later(150, exit=True)

KLUA = os.path.realpath(sys.argv[1])
SCRATCH = os.path.realpath(sys.argv[2])
BROKERS = os.environ["KLUA_BROKERS"]
SR_URL = os.environ["KLUA_SCHEMA_REGISTRY"]
RUN = uuid.uuid4().hex[:8]
os.makedirs(SCRATCH, exist_ok=True)
checks = common.Checks("registry_cli_bad_input")
sr = SchemaRegistryClient({"url": SR_URL, "timeout": 30})
admin = AdminClient({"bootstrap.servers": BROKERS})

SCHEMA = json.dumps({"type": "record", "name": "Item", "namespace": "bad.input",
                     "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]})


def topic(name):
    t = f"badinput-{name}-{RUN}"
    for f in admin.create_topics([NewTopic(t, 1, 1)]).values():
        f.result()
    return t


def klua(*args, stdin=None):
    env = dict(os.environ, KLUA_SCHEMA_REGISTRY=SR_URL, KLUA_BROKERS=BROKERS)
    p = subprocess.run([KLUA, *args], input=(stdin or "").encode(), capture_output=True, env=env, timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def count(t):
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bad-" + uuid.uuid4().hex[:8]})
    lo, hi = c.get_watermark_offsets(__import__("confluent_kafka").TopicPartition(t, 0), timeout=30)
    c.close()
    return hi - lo


# ----------------------------------------------------------------------------- consume: bad frames
t = topic("frames")
ser = AvroSerializer(sr, SCHEMA, conf={"subject.name.strategy.type": "TOPIC"})  # no /associations lookup (Confluent-only)
good1 = ser({"id": "a", "qty": 1}, SerializationContext(t, MessageField.VALUE))
good2 = ser({"id": "b", "qty": 2}, SerializationContext(t, MessageField.VALUE))
sid = int.from_bytes(good1[1:5], "big")
p = Producer({"bootstrap.servers": BROKERS})
values = (good1, b"\x00\x00\x00",                      # 1: truncated frame
          b"\x00" + (999999).to_bytes(4, "big") + b"\x02a\x02",  # 2: an id the registry does not know
          b'{"id": "c", "qty": 3}',                    # 3: plain JSON: magic byte '{'
          good1[:5] + b"\x0a",                         # 4: the body ends inside the string "id" (length 5)
          good2)
for v in values:
    p.produce(t, value=v)
p.flush(30)

rc, out, err = klua("consume", t, "--from", "beginning", "-e", "--value-format", "avro")
checks.eq("consume: the good records are printed (Avro JSON)", [json.loads(l) for l in out.splitlines()],
          [{"id": "a", "qty": 1}, {"id": "b", "qty": 2}])
checks.eq("consume: exit 1 when a message could not be decoded", rc, 1)
for off, pattern in ((1, r"KLUA_DESERIALIZATION.*(truncated|short|5 bytes)"),
                     (2, r"(999999.*40403|40403.*999999)"),
                     (3, r"KLUA_DESERIALIZATION.*magic byte"),
                     (4, r"KLUA_DESERIALIZATION")):
    line = next((l for l in err.splitlines() if l.startswith(f"klua: {t}/0@{off}: value: ")), None)
    checks.true(f"consume: offset {off} reported with topic/partition@offset and the reason", line is not None and
                re.search(pattern, line) is not None, f"(pattern {pattern!r}; stderr: {err!r})")
checks.true("consume: the count of skipped messages", "4 message(s) could not be decoded" in err, err)

# A registry that cannot be reached fails every message alike: consume ends at the first, exit 1, once.
env_dead = ["--schema-registry", "http://127.0.0.1:9/apis/ccompat/v7"]
rc, out, err = klua("consume", t, "--from", "beginning", "-e", "--value-format", "avro", *env_dead)
checks.true("consume: an unreachable registry ends the command at once with one KLUA_REGISTRY line naming its URL",
            rc == 1 and out == "" and err.count("KLUA_REGISTRY") == 1 and "127.0.0.1:9/apis/ccompat/v7" in err, err)

# The same records through the library: poll returns nil, err naming the topic, partition, offset.
script = os.path.join(SCRATCH, "bad_poll.lua")
with open(script, "w") as f:
    f.write(r"""
local t = ...
local _, dec = klua.serde.avro{}
local c = klua.consumer{ group = "bad-" .. klua.uuid():sub(1, 8), value_deserializer = dec }
assert(c:assign{ { topic = t, partition = 0, offset = "beginning" } })
for _ = 1, 6 do
  local m, err = c:poll{ timeout_ms = 30000 }
  if m then print("ok " .. m.offset .. " " .. m.value.id)
  else print(("err %s %s %s %s %s"):format(err.name, err.topic, err.partition, err.offset,
                                          err.raw and #err.raw.value or "-")) end
end
c:close()
""")
rc, out, err = klua("run", script, t)
checks.eq("library: poll returns the good records and nil, err (name topic partition offset raw size) for the bad",
          out.splitlines(), ["ok 0 a", f"err KLUA_DESERIALIZATION {t} 0 1 {len(values[1])}",
                             f"err KLUA_DESERIALIZATION {t} 0 2 {len(values[2])}",
                             f"err KLUA_DESERIALIZATION {t} 0 3 {len(values[3])}",
                             f"err KLUA_DESERIALIZATION {t} 0 4 {len(values[4])}", "ok 5 b"])

# ----------------------------------------------------------------------------- produce: bad lines
t = topic("lines")
schema_file = os.path.join(SCRATCH, "item.avsc")
with open(schema_file, "w") as f:
    f.write(SCHEMA)
lines = ['{"id": "a", "qty": 1}',
         '{"id": "b", "qty": "two"}',       # 2: qty is a string
         '{"id": "c"}',                     # 3: qty missing
         '{"id": "d", "qty": 4',            # 4: not JSON
         '{"id": "e", "qty": 5}']
rc, out, err = klua("produce", t, "--value-format", "avro", "--value-schema", schema_file, stdin="\n".join(lines) + "\n")
checks.eq("produce: exit 1 when a line was not sent", rc, 1)
for n, pattern in ((2, r"qty"), (3, r"qty"), (4, r"KLUA_JSON|JSON|json")):
    line = next((l for l in err.splitlines() if l.startswith(f"klua: line {n}: value: ")), None)
    checks.true(f"produce: line {n} named with its field path", line is not None and re.search(pattern, line),
                f"(stderr: {err!r})")
checks.true("produce: the others are delivered", "2 message(s) delivered" in err and "3 line(s) not sent" in err, err)
checks.eq("produce: the broker holds the two good lines", count(t), 2)

# JSON Schema and Protobuf lines: the validator's and the proto3 JSON reader's field paths.
t = topic("js-lines")
js_file = os.path.join(SCRATCH, "item.schema.json")
with open(js_file, "w") as f:
    f.write(json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "title": "Item", "type": "object",
                        "properties": {"id": {"type": "string"}, "qty": {"type": "integer", "minimum": 1},
                                       "tags": {"type": "array", "items": {"type": "string"}}},
                        "required": ["id", "qty"]}))
rc, out, err = klua("produce", t, "--value-format", "json-schema", "--value-schema", js_file,
                    stdin='{"id":"a","qty":1}\n{"id":"b","qty":0}\n{"qty":2}\n{"id":"c","qty":3,"tags":["x",4]}\n')
checks.eq("produce json-schema: exit 1", rc, 1)
for n, pattern in ((2, r"\$\.qty.*minimum|minimum.*\$\.qty"), (3, r"required|id"), (4, r"\$\.tags\[1\]")):
    line = next((l for l in err.splitlines() if l.startswith(f"klua: line {n}: value: ")), None)
    checks.true(f"produce json-schema: line {n} named with its path/keyword", line is not None and
                re.search(pattern, line), f"(stderr: {err!r})")
checks.eq("produce json-schema: the good line is on the broker", count(t), 1)

t = topic("pb-lines")
proto_file = os.path.join(SCRATCH, "item.proto")
with open(proto_file, "w") as f:
    f.write('syntax = "proto3";\npackage bad;\nmessage Item {\n  string id = 1;\n  int32 qty = 2;\n'
            '  message Sub { int64 n = 1; }\n  Sub sub = 3;\n}\n')
rc, out, err = klua("produce", t, "--value-format", "protobuf", "--value-schema", proto_file, "--value-message", "bad.Item",
                    stdin='{"id":"a","qty":1}\n{"id":"b","qty":"many"}\n{"id":"c","nosuch":1}\n{"id":"d","sub":{"n":"x"}}\n')
checks.eq("produce protobuf: exit 1", rc, 1)
for n, pattern in ((2, r"qty"), (3, r"nosuch"), (4, r"sub.*n|n.*sub")):
    line = next((l for l in err.splitlines() if l.startswith(f"klua: line {n}: value: ")), None)
    checks.true(f"produce protobuf: line {n} named with its field", line is not None and re.search(pattern, line),
                f"(stderr: {err!r})")
checks.eq("produce protobuf: the good line is on the broker", count(t), 1)
rc, out, err = klua("produce", t, "--value-format", "protobuf", "--value-schema", proto_file, "--value-message", "Nope",
                    stdin='{}\n')
checks.true("produce protobuf: an unknown --value-message is a usage error naming the file's messages",
            rc == 2 and "bad.Item" in err and "Nope" in err, err)

# ----------------------------------------------------------------------------- produce: incompatible schema
t = topic("compat")
subject = t + "-value"
sr.register_schema(subject, Schema(SCHEMA, "AVRO"))
sr.set_compatibility(subject, "BACKWARD")
incompatible = os.path.join(SCRATCH, "item2.avsc")
with open(incompatible, "w") as f:  # a new required field without a default: not BACKWARD compatible
    f.write(json.dumps({"type": "record", "name": "Item", "namespace": "bad.input",
                        "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"},
                                   {"name": "price", "type": "double"}]}))
rc, out, err = klua("produce", t, "--value-format", "avro", "--value-schema", incompatible, stdin='{"id":"x","qty":1,"price":2.5}\n')
checks.eq("produce: an incompatible schema exits 1", rc, 1)
checks.true("produce: the error is the registry's (KLUA_REGISTRY, 409) naming the subject or the registry's message",
            re.search(r"KLUA_REGISTRY.*409|409.*KLUA_REGISTRY", err) is not None, err)
checks.eq("produce: nothing sent", count(t), 0)

checks.finish()
