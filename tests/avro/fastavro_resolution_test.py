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


def same_val(a, b, path="$"):
    """Python values alike, as far as the Lua mapping can tell: a union value is the value itself
    (klua's side comes as (branch, value) from resolve_cases._native), bytes and strings are alike
    (a string's UTF-8; fastavro returns bytes defaults as str, so Latin-1 too), numbers compare
    as numbers (a float as its single-precision value)."""
    if isinstance(a, tuple):
        a = a[1]
    if isinstance(b, tuple):
        b = b[1]
    if isinstance(a, (str, bytes)) and isinstance(b, (str, bytes)):
        forms = lambda x: {x} if isinstance(x, bytes) else {x.encode("utf-8"), x.encode("latin-1", "replace")}
        return bool(forms(a) & forms(b)) or "%s: %r != %r" % (path, a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return "%s: keys %s != %s" % (path, sorted(a), sorted(b))
        for k in a:
            r = same_val(a[k], b[k], path + "." + k)
            if r is not True:
                return r
        return True
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return "%s: %d items != %d" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            r = same_val(x, y, "%s[%d]" % (path, i))
            if r is not True:
                return r
        return True
    return same(a, b, path)


def plain(schema):
    """The schema without logical types: fastavro would give dates and Decimals where klua's JSON
    encoding (and the binary value) has the underlying int, long or bytes."""
    if isinstance(schema, list):
        return [plain(b) for b in schema]
    if isinstance(schema, dict):
        return {k: plain(v) for k, v in schema.items() if k != "logicalType"}
    return schema


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
    broken = not_utf8 = encoder_string_branch = no_json = 0
    for c in cases:
        try:
            w = fastavro.parse_schema(plain(c["writer"]), named_schemas={})
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, w, c["native"])
            data = buf.getvalue()
        except Exception as e:  # a case fastavro cannot write (a generator gap): not klua's business
            broken += 1
            if c["id"].startswith("spec"):
                print("fastavro cannot write %s (%s): %r" % (c["id"], c["what"], e))
            continue
        try:
            wtext = fa_json(w, fastavro.schemaless_reader(io.BytesIO(data), w, None))
        except Exception:
            no_json += 1  # fastavro's json_writer fails on empty records and some recursive types
        else:
            # the JSON encoding of the writer's value
            ops.append({"op": "json", "id": c["id"] + "/json", "schema": json.dumps(c["writer"]),
                        "bytes": data.hex(), "json": wtext})
            expect[c["id"] + "/json"] = (c, w, data, wtext)
        # resolution
        try:
            r = fastavro.parse_schema(plain(c["reader"]), named_schemas={})
            res = ("ok", fastavro.schemaless_reader(io.BytesIO(data), w, r))
        except UnicodeDecodeError:
            # bytes read as a string that are not UTF-8: fastavro raises, Java and klua replace
            # them with U+FFFD; not a case fastavro can judge
            not_utf8 += 1
            continue
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
        mine = {o["id"]: o for o in (json.loads(x) for x in open(kout).read().split("\n") if x)}
    t2 = time.time()
    failures = []
    n_res = n_json = n_err = n_exact = n_lazy = 0
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
            # klua's bytes from fastavro's JSON (and from its own) hold fastavro's value; equal bytes
            # are not required: a map's entries have no order in Lua, and a value fitting two
            # branches (bytes and string) goes to the first
            v0 = fastavro.schemaless_reader(io.BytesIO(data), w, None)
            bad = None
            for what, hexed in (("from_json", m["from_json"]), ("round trip", m["round_trip"])):
                try:
                    d = same_val(fastavro.schemaless_reader(io.BytesIO(bytes.fromhex(hexed)), w, None), v0)
                except UnicodeDecodeError as e:
                    # s:encode puts a Lua string in a union's first string-or-bytes branch: bytes that
                    # are not UTF-8 land in a string branch listed before the bytes one (an encoder
                    # choice of avro/codegen.lua, reported there), which fastavro cannot read
                    if '"string"' in o["schema"] and '"bytes"' in o["schema"]:
                        encoder_string_branch += 1
                        d = True
                    else:
                        d = repr(e)
                except Exception as e:
                    d = repr(e)
                if d is not True:
                    bad = "klua's %s bytes %s: %s" % (what, hexed, d)
                    break
            fa_reads_itself = True
            try:
                next(iter(fastavro.json_reader(io.StringIO(wtext), w)))
            except Exception:
                fa_reads_itself = False  # fastavro's json_reader fails on some maps of records
            if bad is None and fa_reads_itself:
                try:
                    d = same_val(next(iter(fastavro.json_reader(io.StringIO(m["to_json"]), w))), v0)
                    if d is not True:
                        bad = "fastavro reads klua's %s as another value: %s" % (m["to_json"], d)
                except Exception as e:
                    bad = "fastavro cannot read klua's %s: %r" % (m["to_json"], e)
            if bad:
                failures.append(where + "\n  " + bad)
                continue
            n_exact += m["from_json"] == data.hex()
            n_json += 1
        else:
            c, res, data = expect[o["id"]]
            where = "%s (%s)\n  writer %s\n  reader %s\n  value  %s\n  bytes  %s" % (
                o["id"], c["what"], o["writer"], o["reader"], c["value"], o["bytes"])
            if res[0] == "error" and m["ok"] and m.get("unreadable") and "SchemaResolutionError" in res[1]:
                # fastavro refuses up front a pair with parts the reader cannot take (array items,
                # map values, a union branch); klua, like Java, fails when data reaches them
                n_lazy += 1
            elif (res[0] == "ok") != m["ok"]:
                failures.append(where + "\n  fastavro: %s\n  klua: %s" % (
                    res[1], m.get("result") or "%s: %s" % (m.get("stage"), m.get("error"))))
            elif m["ok"]:
                d = same_val(resolve_cases.native_of(m["result"], c["reader"]), res[1])
                if d is not True:
                    failures.append(where + "\n  fastavro: %r\n  klua:     %s\n  %s" % (res[1], m["result"], d))
                else:
                    n_res += 1
            else:
                n_err += 1
    print("%d cases: %d resolved alike, %d refused by both, %d refused up front by fastavro only (see the code), "
          "%d JSON encodings agree (%d byte for byte, %d values fastavro's json_writer cannot write); "
          "%d cases fastavro could not write, %d it could not read (bytes read as a string, not UTF-8); "
          "fastavro %.1fs, klua %.1fs" % (len(cases), n_res, n_err, n_lazy, n_json, n_exact, no_json, broken, not_utf8, t1 - t0, t2 - t1))
    if encoder_string_branch:
        print("NOTE: %d values of a union's bytes branch, not UTF-8, came back from s:encode in its string "
              "branch" % encoder_string_branch)
    for f in failures[:20]:
        print("MISMATCH " + f)
    if failures:
        print("%d mismatches (seed %d)" % (len(failures), seed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
