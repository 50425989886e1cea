#!/usr/bin/env python3
"""klua's Avro schema resolution and Avro JSON encoding against fastavro, a second oracle.

Usage: fastavro_resolution_test.py KLUA_BIN [--seed N] [--count N]

Resolution: fastavro writes each generated case's value with the writer schema (schemaless_writer)
and reads it with schemaless_reader(writer, reader); klua decodes the same bytes with
klua.avro.resolver(writer, reader). Both fail, or both give the same value (compared in the Avro JSON
encoding: fastavro's json_writer against klua's s:to_json).

JSON encoding, for every writer schema and value: klua's s:to_json(s:decode(bytes)) equals
fastavro's json_writer text (as JSON values), fastavro's json_reader reads klua's text back to the
value, and klua's s:encode(s:from_json(fastavro's text)) gives fastavro's bytes byte for byte.
One `klua run` handles the whole batch.
"""
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time

try:
    import fastavro
except ImportError:
    venv = os.environ.get("KLUA_PYTHON") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "klua/venv/bin/python")
    if os.path.exists(venv) and not os.environ.get("KLUA_PYTHON_REEXEC"):
        os.environ["KLUA_PYTHON_REEXEC"] = "1"
        os.execv(venv, [venv] + sys.argv)
    print("SKIP: no fastavro")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import resolve_cases  # noqa: E402
from java_resolution_test import same  # noqa: E402


def fa_json(schema, value):
    out = io.StringIO()
    fastavro.json_writer(out, schema, [value])
    return out.getvalue().strip()


def main():
    klua = os.path.realpath(sys.argv[1])
    seed = int(os.environ.get("KLUA_SEED") or random.randrange(1 << 30))
    count = 400
    args = sys.argv[2:]
    while args:
        if args[0] == "--seed":
            seed = int(args[1])
        elif args[0] == "--count":
            count = int(args[1])
        args = args[2:]
    print("seed %d (rerun with --seed %d or KLUA_SEED=%d)" % (seed, seed, seed))
    cases = resolve_cases.generated(seed, count)
    for c in resolve_cases.spec_cases():
        c["native"] = resolve_cases.native_of(c["value"], c["writer"])
        cases.append(c)
    t0 = time.time()
    ops, expect = [], {}
    broken = 0
    for c in cases:
        try:
            w = fastavro.parse_schema(c["writer"], named_schemas={})
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, w, c["native"])
            data = buf.getvalue()
            wtext = fa_json(w, fastavro.schemaless_reader(io.BytesIO(data), w, None))
        except Exception as e:  # a case fastavro cannot write (a generator gap): not klua's business
            broken += 1
            if c["id"].startswith("spec"):
                print("fastavro cannot write %s (%s): %r" % (c["id"], c["what"], e))
            continue
        # the JSON encoding of the writer's value
        ops.append({"op": "json", "id": c["id"] + "/json", "schema": json.dumps(c["writer"]), "bytes": data.hex(),
                    "json": wtext})
        expect[c["id"] + "/json"] = (c, w, data, wtext)
        # resolution
        try:
            r = fastavro.parse_schema(c["reader"], named_schemas={})
            got = fastavro.schemaless_reader(io.BytesIO(data), w, r)
            res = ("ok", fa_json(r, got))
        except Exception as e:
            res = ("error", repr(e))
        ops.append({"op": "resolve", "id": c["id"], "writer": json.dumps(c["writer"]),
                    "reader": json.dumps(c["reader"]), "bytes": data.hex()})
        expect[c["id"]] = (c, res, data)
    t1 = time.time()
    with tempfile.TemporaryDirectory(prefix="klua-avro-fastavro-") as tmp:
        kin, kout = os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl")
        with open(kin, "w") as f:
            for o in ops:
                f.write(json.dumps(o) + "\n")
        p = subprocess.run([klua, "run", os.path.join(HERE, "resolve_driver.lua"), kin, kout],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                           env=dict(os.environ, KLUA_BROKERS=""))
        if p.returncode != 0:
            print(p.stdout[-3000:])
            return 1
        mine = {o["id"]: o for o in map(json.loads, open(kout).read().splitlines())}
    t2 = time.time()
    failures = []
    n_res = n_json = n_err = 0
    for o in ops:
        m = mine[o["id"]]
        if o["op"] == "json":
            c, w, data, wtext = expect[o["id"]]
            where = "%s (%s)\n  schema %s\n  value  %s\n  bytes  %s" % (o["id"], c["what"], o["schema"], wtext, o["bytes"])
            if not m["ok"]:
                failures.append(where + "\n  klua: %s: %s" % (m["stage"], m["error"]))
                continue
            d = same(json.loads(wtext), json.loads(m["to_json"]))
            if d is not True:
                failures.append(where + "\n  klua to_json: %s\n  %s" % (m["to_json"], d))
                continue
            if m["from_json"] != data.hex() or m["round_trip"] != data.hex():
                failures.append(where + "\n  klua from_json bytes %s, round trip %s" % (m["from_json"], m["round_trip"]))
                continue
            try:
                back = fastavro.json_reader(io.StringIO(m["to_json"]), w)
                v1 = next(iter(back))
                v0 = fastavro.schemaless_reader(io.BytesIO(data), w, None)
                d = same(json.loads(fa_json(w, v0)), json.loads(fa_json(w, v1)))
                if d is not True:
                    failures.append(where + "\n  fastavro reads klua's %s as another value: %s" % (m["to_json"], d))
                    continue
            except Exception as e:
                failures.append(where + "\n  fastavro cannot read klua's %s: %r" % (m["to_json"], e))
                continue
            n_json += 1
        else:
            c, res, data = expect[o["id"]]
            where = "%s (%s)\n  writer %s\n  reader %s\n  value  %s\n  bytes  %s" % (
                o["id"], c["what"], o["writer"], o["reader"], c["value"], o["bytes"])
            if (res[0] == "ok") != m["ok"]:
                failures.append(where + "\n  fastavro: %s\n  klua: %s" % (
                    res[1], m.get("result") or "%s: %s" % (m.get("stage"), m.get("error"))))
            elif m["ok"]:
                d = same(json.loads(res[1]), json.loads(m["result"]))
                if d is not True:
                    failures.append(where + "\n  fastavro: %s\n  klua:     %s\n  %s" % (res[1], m["result"], d))
                else:
                    n_res += 1
            else:
                n_err += 1
    print("%d cases: %d resolved alike, %d refused by both, %d JSON encodings agree; %d cases fastavro "
          "could not write; fastavro %.1fs, klua %.1fs" % (len(cases), n_res, n_err, n_json, broken, t1 - t0, t2 - t1))
    for f in failures[:20]:
        print("MISMATCH " + f)
    if failures:
        print("%d mismatches (seed %d)" % (len(failures), seed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
