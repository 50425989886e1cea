#!/usr/bin/env python3
"""klua.protobuf against Python's protobuf library (upb) and confluent-kafka's Confluent helpers.

protoc (Debian's protobuf-compiler, an independent compiler of the same .proto files) gives Python its
FileDescriptorSet; Python makes random messages of every shape order.proto has and writes them with the
value in klua's Lua mapping (tests/protobuf/interop.lua reads them). Then, for every case:
  - klua's encoding of the value equals Python's SerializeToString(deterministic=True) byte for byte
    (both sort map entries by key), and a framed encoding is header + index bytes + the same body;
  - klua's decoding of Python's bytes (SerializeToString()) builds, in Python, a message equal to the
    original; klua's proto3 JSON parses (json_format.Parse) to the original, in both field-name styles;
  - klua's message indexes and their bytes equal confluent-kafka's _create_index_array and the bytes its
    SchemaId writes; klua's FileDescriptorProto equals protoc's (what ProtobufSerializer registers).
Usage: interop_test.py KLUA_BINARY SCRATCH_DIR
"""
import base64
import io
import json
import os
import random
import re
import struct
import subprocess
import sys

try:
    import confluent_kafka  # noqa: F401
    import google.protobuf  # noqa: F401
except ImportError:
    # The interpreter that has them: KLUA_PYTHON, else the virtualenv tools/dev makes.
    venv = os.environ.get("KLUA_PYTHON") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "klua/venv/bin/python")
    if os.path.exists(venv) and not os.environ.get("KLUA_PYTHON_REEXEC"):
        os.environ["KLUA_PYTHON_REEXEC"] = "1"
        os.execv(venv, [venv] + sys.argv)
    raise
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor as FD
from confluent_kafka.schema_registry.common.protobuf import _create_index_array
from confluent_kafka.schema_registry.common.serde import SchemaId

KLUA = os.path.realpath(sys.argv[1])
WORK = os.path.realpath(sys.argv[2])
HERE = os.path.dirname(os.path.realpath(__file__))
N = int(os.environ.get("KLUA_PROTOBUF_CASES", "400"))
os.makedirs(WORK, exist_ok=True)

desc_path = os.path.join(WORK, "order.desc")
subprocess.run(["protoc", "-I", HERE, "--include_imports", "--descriptor_set_out=" + desc_path, "order.proto"],
               check=True)
fds = descriptor_pb2.FileDescriptorSet()
with open(desc_path, "rb") as fh:
    fds.ParseFromString(fh.read())
pool = descriptor_pool.DescriptorPool()
for fdp in fds.file:
    pool.Add(fdp)
Order = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))
Scalars = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Scalars"))
INTS = {FD.CPPTYPE_INT32, FD.CPPTYPE_INT64, FD.CPPTYPE_UINT32, FD.CPPTYPE_UINT64}


def scalar(fd, v):
    if fd.cpp_type == FD.CPPTYPE_ENUM:
        return fd.enum_type.values_by_name[v].number if isinstance(v, str) else int(v)
    if fd.type == FD.TYPE_BYTES:
        return base64.b64decode(v["$b64"])
    if fd.cpp_type in INTS:
        return int(v)
    if fd.cpp_type in (FD.CPPTYPE_FLOAT, FD.CPPTYPE_DOUBLE):
        return float(v)
    return v


def build(msg, plain):
    """Sets msg from a value in klua's Lua mapping (64-bit integers may be decimal strings)."""
    for name, v in plain.items():
        fd = msg.DESCRIPTOR.fields_by_name[name]
        target = getattr(msg, name) if fd.message_type or fd.is_repeated else None
        if fd.message_type and fd.message_type.GetOptions().map_entry:
            kf, vf = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
            for k, x in (v.items() if isinstance(v, dict) else []):
                key = scalar(kf, k)
                if vf.message_type:
                    build(target[key], x)
                else:
                    target[key] = scalar(vf, x)
        elif fd.is_repeated:
            for x in v:
                if fd.message_type:
                    build(target.add(), x)
                else:
                    target.append(scalar(fd, x))
        elif fd.message_type:
            target.SetInParent()
            build(target, v)
        else:
            setattr(msg, name, scalar(fd, v))
    return msg


FLT_MAX = 3.4028234663852886e38


def multi_entry_map(msg):
    """True when msg has, at any depth, a map field with two or more entries."""
    for fd, v in msg.ListFields():
        if fd.message_type and fd.message_type.GetOptions().map_entry:
            if len(v) > 1:
                return True
            vals = list(v.values()) if fd.message_type.fields_by_name["value"].message_type else []
        elif fd.message_type:
            vals = list(v) if fd.is_repeated else [v]
        else:
            vals = []
        if any(multi_entry_map(m) for m in vals):
            return True
    return False


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def i64(r, lo, hi):
    """A 64-bit value: the limits, near 2^53, or anywhere; as a string when beyond 2^53 (as JSON keeps it)."""
    v = r.choice([lo, hi, 0, 2**53, 2**53 + 1, -(2**53) - 1 if lo < 0 else 2**53 + 3, r.randint(lo, hi), r.randint(-1000, 1000) if lo < 0 else r.randint(0, 1000)])
    return str(v) if abs(v) > 2**53 else v


def text(r):
    alphabet = "abcxyz ÄéßЖ中文🎉\"\\\n\t"
    return "".join(r.choice(alphabet) for _ in range(r.randint(0, 12)))


def rand_scalars(r):
    v = {}
    pick = lambda: r.random() < 0.7  # noqa: E731
    if pick(): v["d"] = r.choice([0.0, -0.0, 1.5, -2.25, 5e-324, 1.7976931348623157e308, r.uniform(-1e9, 1e9), r.random()])
    if pick(): v["f"] = f32(r.choice([0.0, 1.5, -3.0, 3.4028234663852886e38, 1.401298464324817e-45, r.uniform(-1e6, 1e6)]))
    if pick(): v["i32"] = r.choice([-2**31, 2**31 - 1, 0, -1, r.randint(-2**31, 2**31 - 1)])
    if pick(): v["i64"] = i64(r, -2**63, 2**63 - 1)
    if pick(): v["u32"] = r.choice([0, 2**32 - 1, r.randint(0, 2**32 - 1)])
    if pick(): v["u64"] = i64(r, 0, 2**64 - 1)
    if pick(): v["s32"] = r.choice([-2**31, 2**31 - 1, -1, r.randint(-2**31, 2**31 - 1)])
    if pick(): v["s64"] = i64(r, -2**63, 2**63 - 1)
    if pick(): v["f32"] = r.choice([0, 2**32 - 1, r.randint(0, 2**32 - 1)])
    if pick(): v["f64"] = i64(r, 0, 2**64 - 1)
    if pick(): v["sf32"] = r.choice([-2**31, 2**31 - 1, r.randint(-2**31, 2**31 - 1)])
    if pick(): v["sf64"] = i64(r, -2**63, 2**63 - 1)
    if pick(): v["b"] = r.choice([True, False])
    if pick(): v["s"] = text(r)
    if pick(): v["by"] = {"$b64": base64.b64encode(bytes(r.randint(0, 255) for _ in range(r.randint(0, 10)))).decode()}
    if pick(): v["packed"] = [r.randint(-2**31, 2**31 - 1) for _ in range(r.randint(0, 5))]
    if pick(): v["packed_s64"] = [i64(r, -2**63, 2**63 - 1) for _ in range(r.randint(0, 4))]
    if pick(): v["packed_d"] = [r.uniform(-1e6, 1e6) for _ in range(r.randint(0, 4))]
    if pick(): v["names"] = [text(r) for _ in range(r.randint(0, 3))]
    return v


def rand_line(r):
    v = {}
    if r.random() < 0.8: v["sku"] = text(r)
    if r.random() < 0.8: v["qty"] = r.randint(-5, 100000)
    if r.random() < 0.8: v["price"] = r.choice([0.5, r.uniform(0, 1e4)])
    return v


def rand_order(r):
    v = {}
    if r.random() < 0.8: v["id"] = text(r)
    if r.random() < 0.7: v["lines"] = [rand_line(r) for _ in range(r.randint(0, 4))]
    if r.random() < 0.7: v["status"] = r.choice(["UNKNOWN", "NEW", "SHIPPED"])
    if r.random() < 0.5: v["counts"] = {text(r): i64(r, -2**63, 2**63 - 1) for _ in range(r.randint(0, 4))}
    oneof = r.random()
    if oneof < 0.3: v["card"] = text(r)
    elif oneof < 0.6: v["voucher"] = i64(r, -2**63, 2**63 - 1)
    if r.random() < 0.5: v["created"] = {"seconds": r.randint(-62135596800, 253402300799), "nanos": r.randint(0, 999999999)}
    if r.random() < 0.5: v["total"] = {"currency": r.choice(["EUR", "USD", ""]), "units": i64(r, -2**63, 2**63 - 1), "nanos": r.randint(-999999999, 999999999)}
    if r.random() < 0.4: v["note"] = r.choice(["", text(r)])
    if r.random() < 0.4: v["big"] = {"value": i64(r, -2**63, 2**63 - 1)}
    if r.random() < 0.4:
        kinds = [{"string_value": text(r)}, {"number_value": r.uniform(-1e6, 1e6)}, {"bool_value": True},
                 {"null_value": "NULL_VALUE"}, {"list_value": {"values": [{"number_value": 1.0}, {"string_value": "x"}]}},
                 {"struct_value": {"fields": {"inner": {"bool_value": False}}}}]
        v["extra"] = {"fields": {text(r): r.choice(kinds) for _ in range(r.randint(0, 3))}}
    if r.random() < 0.4: v["ttl"] = {"seconds": r.randint(-315576000000, 315576000000) // 1000, "nanos": 0}
    if r.random() < 0.4: v["by_pos"] = {str(r.randint(-2**31, 2**31 - 1)): rand_line(r) for _ in range(r.randint(0, 3))}
    if r.random() < 0.4: v["history"] = [r.choice(["UNKNOWN", "NEW", "SHIPPED"]) for _ in range(r.randint(0, 4))]
    return v


r = random.Random(int(os.environ.get("KLUA_PROTOBUF_SEED", "4")))
cases = []
cases_path = os.path.join(WORK, "cases.jsonl")
with open(cases_path, "w") as fh:
    for i in range(N):
        typ, cls, value = ("shop.Scalars", Scalars, rand_scalars(r)) if i % 2 else ("shop.Order", Order, rand_order(r))
        msg = build(cls(), value)
        cases.append((typ, cls, value, msg))
        fh.write(json.dumps({"i": i, "type": typ, "value": value, "python_hex": msg.SerializeToString().hex()}) + "\n")

out_path = os.path.join(WORK, "klua.jsonl")
subprocess.run([KLUA, "run", os.path.join(HERE, "interop.lua"), HERE, cases_path, out_path], check=True, timeout=120)
with open(out_path) as fh:
    lines = [json.loads(x) for x in fh]

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        if len(failures) <= 15:
            print("FAIL:", what, file=sys.stderr)


# Message indexes and their bytes, against confluent-kafka's own helpers.
index_lines = [x for x in lines if "type" in x]
for x in index_lines:
    desc = pool.FindMessageTypeByName(x["type"])
    expected = _create_index_array(desc)
    buf = io.BytesIO()
    SchemaId._encode_varints(buf, expected, zigzag=True)
    check(x["index"] == expected, f"index of {x['type']}: klua {x['index']}, confluent-kafka {expected}")
    check(x["index_hex"] == buf.getvalue().hex(), f"index bytes of {x['type']}: klua {x['index_hex']}, confluent-kafka {buf.getvalue().hex()}")
check([x["type"] for x in index_lines] == ["shop.Order", "shop.Order.Line", "shop.Scalars"], "f.messages")
line_hex = [x for x in index_lines if x["type"] == "shop.Order.Line"][0]["index_hex"]
check(line_hex == "040000", "the nested Order.Line's index bytes are 04 00 00")

# klua's FileDescriptorProto against protoc's (json_name is protoc's addition to a descriptor set).
klua_fdp = descriptor_pb2.FileDescriptorProto()
klua_fdp.ParseFromString(base64.b64decode([x for x in lines if "descriptor" in x][0]["descriptor"]))
protoc_fdp = [f for f in fds.file if f.name == "order.proto"][0]
for m in protoc_fdp.message_type:
    for part in [m] + list(m.nested_type):
        for fld in part.field:
            fld.ClearField("json_name")
check(klua_fdp == protoc_fdp, "klua's FileDescriptorProto equals protoc's")

results = [x for x in lines if "i" in x]
check(len(results) == N, f"{len(results)} results for {N} cases")
for x in results:
    typ, cls, value, msg = cases[x["i"]]
    want = msg.SerializeToString(deterministic=True).hex()
    if multi_entry_map(msg):
        # Deterministic map order is each library's own (upb and libprotobuf sort integer keys differently):
        # the bytes parse to the same message.
        klua_msg = cls()
        klua_msg.ParseFromString(bytes.fromhex(x["encoded"]))
        check(klua_msg == msg, f"case {x['i']} ({typ}) encode (with maps): klua {x['encoded']}\n   python {want}")
        want = x["encoded"]
    else:
        check(x["encoded"] == want, f"case {x['i']} ({typ}) encode: klua {x['encoded']}\n   python {want}\n   value {value}")
    prefix = "0000000001" + x["framed"][10:10 + len(x["framed"]) - 10 - len(want)]
    check(x["framed"] == prefix + want and x["framed"].startswith("0000000001"), f"case {x['i']} framed {x['framed']}")
    if isinstance(x["decoded"], str):
        check(False, f"case {x['i']} decode failed: {x['decoded']}")
        continue
    back = build(cls(), x["decoded"])
    check(back == msg, f"case {x['i']} ({typ}) decode: klua's table {x['decoded']}\n   python {value}")
    for key in ("json", "json_names"):
        if value.get("f") == FLT_MAX:
            # libprotobuf prints FLT_MAX with 9 digits (3.40282347e+38), a hair above it as a double, which
            # Python's parser refuses ("Float value too large") and libprotobuf's own reads back.
            continue
        # Python's json module reads -0 (how libprotobuf writes a negative zero) as the integer 0.
        text = re.sub(r'(?<=[:\[,])-0(?=[,\]}])', '-0.0', x[key]) if x[key] else None
        parsed = json_format.Parse(text, cls(), descriptor_pool=pool) if text else None
        check(parsed == msg, f"case {x['i']} ({typ}) {key}: {x[key]}\n   python {json_format.MessageToJson(msg, descriptor_pool=pool)}")

print(f"{N} cases, {len(index_lines)} message types: {len(failures)} failures")
print(f"{N + len(index_lines) + 1 - len(set(failures))} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
