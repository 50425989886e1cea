#!/usr/bin/env python3
"""The Python side of bench/avro.lua: the same 100k records (bench/avro_schema.json, built by the
same formula) through confluent-kafka's AvroSerializer/AvroDeserializer (an in-memory "mock://"
registry client, so no network: what remains is the serializer's own work, the 5-byte frame
included) and through fastavro's schemaless_writer/schemaless_reader. Process CPU time, median of
the runs, after one warm-up pass. Prints one JSON line.

    avro_python.py [--records N] [--runs R]
"""
import argparse
import io
import json
import os
import statistics
import time

import fastavro
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

STATUS = ["NEW", "PAID", "SHIPPED", "CANCELLED"]


def record(i):
    return {
        "id": 1000000000000 + i * 7919,
        "customer": f"customer-{i}",
        "price": i * 0.25 + 0.5,
        "paid": i % 2 == 0,
        "qty": i % 1000,
        "status": STATUS[i % 4],
        "note": f"note {i}" if i % 3 != 0 else None,
        "created": 1764498600000 + i,
        "scores": [i % 10, i % 7, i % 5],
        "attrs": {"region": f"eu-{i % 10}", "channel": "web"},
    }


def timed(fn):
    c0 = time.process_time()
    out = fn()
    return time.process_time() - c0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "avro_schema.json")) as f:
        schema_str = f.read()
    records = [record(i) for i in range(a.records)]

    sr = SchemaRegistryClient.new_client({"url": "mock://bench"})
    ser = AvroSerializer(sr, schema_str)
    de = AvroDeserializer(sr)
    ctx = SerializationContext("orders", MessageField.VALUE)
    parsed = fastavro.parse_schema(json.loads(schema_str))

    def ck_encode():
        return [ser(r, ctx) for r in records]

    def ck_decode(frames):
        return [de(b, ctx) for b in frames]

    def fa_encode():
        out = []
        for r in records:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, r)
            out.append(buf.getvalue())
        return out

    def fa_decode(bodies):
        return [fastavro.schemaless_reader(io.BytesIO(b), parsed, None) for b in bodies]

    frames = ck_encode()  # warm-up (registers the schema)
    bodies = fa_encode()
    assert ck_decode(frames)[-1]["customer"] == f"customer-{a.records - 1}"
    assert fa_decode(bodies)[-1]["customer"] == f"customer-{a.records - 1}"
    res = {"records": a.records, "bytes_fastavro": sum(map(len, bodies)),
           "bytes_confluent": sum(map(len, frames))}
    ck_e, ck_d, fa_e, fa_d = [], [], [], []
    for _ in range(a.runs):
        t, frames = timed(ck_encode)
        ck_e.append(t)
        ck_d.append(timed(lambda: ck_decode(frames))[0])
        t, bodies = timed(fa_encode)
        fa_e.append(t)
        fa_d.append(timed(lambda: fa_decode(bodies))[0])
    for name, runs in (("confluent_encode_s", ck_e), ("confluent_decode_s", ck_d),
                       ("fastavro_encode_s", fa_e), ("fastavro_decode_s", fa_d)):
        res[name] = statistics.median(runs)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
