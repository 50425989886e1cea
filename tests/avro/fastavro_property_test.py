#!/usr/bin/env python3
"""klua.avro against fastavro (and Apache avro for the canonical form), over random schemas and
values (a property test).

For each case: a random schema (every type, logical types, named types referenced again, namespaces,
recursion, defaults) and a random value; fastavro.schemaless_writer's bytes are the oracle. One
`klua run` process (tests/avro/fastavro_property.lua) reads every case and checks
  - klua's Parsing Canonical Form equals fastavro's and Apache avro's (the Python library), and its
    CRC-64-AVRO fingerprint fastavro's (which the test checks against Apache avro's),
  - klua's decode of fastavro's bytes equals the value, and
  - klua's encode of the value equals fastavro's bytes byte for byte; where the value holds a map
    with several keys (Lua tables have no order), fastavro's reader of klua's bytes must give what
    it gives for its own bytes instead.
Values travel as JSON with bytes as hex, longs as decimal strings and union values tagged with their
branch, so nothing is lost between Python and Lua.

Usage: fastavro_property_test.py KLUA [--cases N] [--seed S]   (seed printed; set it to replay)
"""
import argparse
import decimal
import io
import json
import math
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import uuid
import warnings

try:
    import avro.schema
    import fastavro
    import fastavro.read
    import fastavro.schema
except ImportError:  # not the test venv: re-run under $KLUA_PYTHON (tools/dev sets it), else skip
    venv = os.environ.get("KLUA_PYTHON") or os.path.expanduser("~/.cache/klua/venv/bin/python")
    if os.path.exists(venv) and not os.environ.get("KLUA_PYTHON_REEXEC"):
        os.environ["KLUA_PYTHON_REEXEC"] = "1"
        os.execv(venv, [venv] + sys.argv)
    print("fastavro or avro is not installed: skipped")
    sys.exit(77)

PRIMITIVE_OBJECT = re.compile(r'\{"type":"(null|boolean|int|long|float|double|bytes|string)"\}')
HERE = os.path.dirname(os.path.abspath(__file__))
SYMBOL_POOL = ["A", "B", "C", "D", "E_1", "_f", "g2", "Hh"]
FIELD_POOL = ["a", "b", "c", "id", "name", "qty", "end", "nil", "x_1", "Y"]


class Gen:
    def __init__(self, rng):
        self.rng = rng
        self.n = 0
        self.named = {}  # fullname -> schema dict
        self.done = []  # fullnames whose definition is complete (safe to reference)

    def name(self, prefix):
        self.n += 1
        return f"{prefix}{self.n}"

    # ---- schemas -------------------------------------------------------------------------------
    def primitive(self):
        r = self.rng
        t = r.choice(["null", "boolean", "int", "long", "float", "double", "bytes", "string"])
        if r.random() < 0.25:
            lt = r.choice(["date", "time-millis", "time-micros", "timestamp-millis", "timestamp-micros",
                           "local-timestamp-millis", "local-timestamp-micros", "uuid", "decimal"])
            if lt in ("date", "time-millis"):
                return {"type": "int", "logicalType": lt}
            if lt == "uuid":
                return {"type": "string", "logicalType": "uuid"}
            if lt == "decimal":
                p = r.randint(1, 30)
                return {"type": "bytes", "logicalType": "decimal", "precision": p, "scale": r.randint(0, p)}
            return {"type": "long", "logicalType": lt}
        return t

    def schema(self, depth, ns=None, no_union=False, no_null=False):
        r = self.rng
        kinds = ["prim"] * 5
        if depth < 3:
            kinds += ["record", "record", "array", "map", "enum", "fixed"] + ([] if no_union else ["union", "union"])
        # A name in the null namespace cannot be referenced from inside a namespace (fastavro has no
        # fallback to it; Java and klua do).
        refs = [n for n in self.done if "." in n or not ns]
        if refs and r.random() < 0.15:
            kinds.append("ref")
        k = r.choice(kinds)
        if k == "prim":
            s = self.primitive()
            if no_null and s == "null":
                return "int"
            return s
        if k == "ref":
            return r.choice(refs)
        if k == "enum":
            syms = r.sample(SYMBOL_POOL, r.randint(1, 5))
            s = {"type": "enum", "name": self.name("E"), "symbols": syms}
            if r.random() < 0.3:
                s["default"] = r.choice(syms)
            return self.define(s, ns)
        if k == "fixed":
            if r.random() < 0.15:
                return self.define({"type": "fixed", "name": self.name("Du"), "size": 12, "logicalType": "duration"}, ns)
            size = r.randint(1, 8)
            s = {"type": "fixed", "name": self.name("F"), "size": size}
            if r.random() < 0.25:
                maxp = math.floor(math.log10(2 ** (8 * size - 1) - 1))
                if maxp >= 1:
                    p = r.randint(1, maxp)
                    s.update({"logicalType": "decimal", "precision": p, "scale": r.randint(0, p)})
            return self.define(s, ns)
        if k == "array":
            return {"type": "array", "items": self.schema(depth + 1, ns)}
        if k == "map":
            return {"type": "map", "values": self.schema(depth + 1, ns)}
        if k == "union":
            return self.union(depth, ns)
        return self.record(depth, ns)

    def define(self, s, ns):
        r = self.rng
        if r.random() < 0.3:
            s["namespace"] = r.choice(["n1", "n1.sub", "x.y"])
        full_ns = s.get("namespace", ns)
        full = f"{full_ns}.{s['name']}" if full_ns else s["name"]
        self.named[full] = s
        if s["type"] != "record":
            self.done.append(full)
        return s

    def union(self, depth, ns):
        # One branch per Lua kind, so that the value's kind names its branch for klua as for fastavro.
        r = self.rng
        classes = r.sample(["null", "boolean", "number", "string", "table"], r.randint(1, 3))
        if "table" in classes and "string" in classes:  # decide the string branch first (see below)
            classes.remove("table")
            classes.append("table")
        branches = []
        for c in classes:
            if c == "null":
                branches.append("null")
            elif c == "boolean":
                branches.append("boolean")
            elif c == "number":
                branches.append(r.choice(["int", "long", "float", "double", {"type": "long", "logicalType": "timestamp-millis"}]))
            elif c == "string":
                branches.append(r.choice(["string", "bytes", "enum", "fixed"]))
                if branches[-1] == "enum":
                    branches[-1] = self.define({"type": "enum", "name": self.name("E"), "symbols": r.sample(SYMBOL_POOL, 3)}, ns)
                elif branches[-1] == "fixed":
                    branches[-1] = self.define({"type": "fixed", "name": self.name("F"), "size": r.randint(1, 6)}, ns)
            else:
                t = r.choice(["record", "array", "map"])
                if t == "array" and any(b == "bytes" or isinstance(b, dict) and b["type"] == "fixed" for b in branches):
                    t = "map"  # fastavro takes Python bytes for an array (a Sequence of ints)
                if t == "record":
                    branches.append(self.record(depth + 1, ns))
                elif t == "array":
                    branches.append({"type": "array", "items": self.schema(depth + 1, ns, no_union=True)})
                else:
                    branches.append({"type": "map", "values": self.schema(depth + 1, ns, no_union=True)})
        return branches

    def record(self, depth, ns):
        r = self.rng
        s = {"type": "record", "name": self.name("R"), "fields": []}
        s = self.define(s, ns)
        inner_ns = s.get("namespace", ns)
        full = f"{inner_ns}.{s['name']}" if inner_ns else s["name"]
        for fname in r.sample(FIELD_POOL, r.randint(0, 5)):
            if r.random() < 0.1 and depth < 3:
                ft = ["null", full]  # recursion
            else:
                ft = self.schema(depth + 1, inner_ns)
            f = {"name": fname, "type": ft}
            if r.random() < 0.3:
                d = self.default_for(ft)
                if d is not NO_DEFAULT:
                    f["default"] = d
            s["fields"].append(f)
        self.done.append(full)
        return s

    def resolve(self, s):
        if isinstance(s, str) and s in self.named:
            return self.named[s]
        return s

    def default_for(self, t):
        r = self.rng
        t = self.resolve(t)
        if isinstance(t, list):
            return None if t and t[0] == "null" else NO_DEFAULT
        tt = t if isinstance(t, str) else t["type"]
        if isinstance(t, dict) and t.get("logicalType") in ("decimal", "duration", "uuid"):
            return NO_DEFAULT
        if tt == "null":
            return None
        if tt == "boolean":
            return r.random() < 0.5
        if tt in ("int", "long"):
            return r.randint(-1000, 1000)
        if tt in ("float", "double"):
            return r.choice([0.5, -2.0, 100.25])
        if tt == "string":
            return r.choice(["", "dflt", "é"])
        if tt == "enum":
            return t["symbols"][0]
        if tt == "array" and t["items"] in ("int", "string"):
            return [] if t["items"] == "string" else [1, 2]
        return NO_DEFAULT

    # ---- values: (python value for fastavro, tagged JSON for klua) --------------------------------
    def value(self, t, depth=0):
        r = self.rng
        t = self.resolve(t)
        if isinstance(t, list):
            i = r.randrange(len(t))
            if depth > 4:
                for j, b in enumerate(t):
                    if b == "null":
                        i = j
            py, tag = self.value(t[i], depth + 1)
            return py, {"b": i, "v": tag}
        if isinstance(t, str):
            tt, lt = t, None
        else:
            tt, lt = t["type"], t.get("logicalType")
        if tt == "null":
            return None, None
        if tt == "boolean":
            v = r.random() < 0.5
            return v, v
        if tt == "int":
            if lt == "date":
                v = r.randint(-100000, 100000)
            elif lt == "time-millis":
                v = r.randint(0, 86399999)
            else:
                v = r.choice([0, 1, -1, 63, -64, 64, 2 ** 31 - 1, -2 ** 31, r.randint(-2 ** 31, 2 ** 31 - 1), r.randint(-300, 300)])
            return v, v
        if tt == "long":
            v = r.choice([0, -1, 2 ** 31, -2 ** 31 - 1, 2 ** 53, -2 ** 53, 2 ** 53 + 1, 2 ** 63 - 1, -2 ** 63,
                          r.randint(-2 ** 63, 2 ** 63 - 1), r.randint(-2 ** 40, 2 ** 40), r.randint(-2 ** 53, 2 ** 53),
                          1764498600123, r.randint(-1000, 1000)])
            return v, str(v)
        if tt == "float":
            v = struct.unpack("<f", struct.pack("<f", r.uniform(-1, 1) * 10 ** r.randint(-5, 30)))[0]
            return v, v
        if tt == "double":
            v = r.choice([0.0, -0.5, 1e300, -1e-300, r.uniform(-1, 1) * 10 ** r.randint(-300, 300), r.uniform(-1e6, 1e6)])
            return v, v
        if tt == "bytes":
            if lt == "decimal":
                return self.decimal(t["precision"], t.get("scale", 0))
            v = bytes(r.randrange(256) for _ in range(r.randint(0, 12)))
            return v, v.hex()
        if tt == "string":
            if lt == "uuid":
                v = str(uuid.UUID(int=r.getrandbits(128)))
                return v, v
            v = self.text()
            return v, v
        if tt == "enum":
            v = r.choice(t["symbols"])
            return v, v
        if tt == "fixed":
            if lt == "duration":
                m, d, ms = r.randrange(2 ** 32), r.randrange(2 ** 32), r.randrange(2 ** 32)
                return struct.pack("<III", m, d, ms), {"months": m, "days": d, "milliseconds": ms}
            if lt == "decimal":
                return self.decimal(t["precision"], t.get("scale", 0))
            v = bytes(r.randrange(256) for _ in range(t["size"]))
            return v, v.hex()
        if tt == "array":
            py, tag = [], []
            for _ in range(r.randint(0, 4) if depth < 4 else 0):
                a, b = self.value(t["items"], depth + 1)
                py.append(a)
                tag.append(b)
            return py, tag
        if tt == "map":
            py, tag = {}, {}
            for _ in range(r.randint(0, 3) if depth < 4 else 0):
                k = self.text()
                a, b = self.value(t["values"], depth + 1)
                py[k] = a
                tag[k] = b
            return py, tag
        if tt == "record":
            py, tag = {}, {}
            for f in t["fields"]:
                if "default" in f and r.random() < 0.3:
                    continue  # left out: both writers use the default
                a, b = self.value(f["type"], depth + 1)
                py[f["name"]] = a
                tag[f["name"]] = b
            return py, tag
        raise ValueError(f"no value for {t}")

    def decimal(self, precision, scale):
        r = self.rng
        u = r.randint(-(10 ** precision - 1), 10 ** precision - 1)
        if r.random() < 0.2:
            u = r.choice([x for x in (0, 1, -1, 128, -128, 255, -256) if abs(x) < 10 ** precision] + [10 ** precision - 1, -(10 ** precision - 1)])
        d = decimal.Decimal(u).scaleb(-scale)
        return d, format(d, "f")

    def text(self):
        r = self.rng
        chars = []
        for _ in range(r.randint(0, 8)):
            c = r.choice([r.randint(0x20, 0x7e), r.randint(0xa0, 0x7ff), r.randint(0x800, 0xd7ff), r.randint(0x10000, 0x10ffff)])
            chars.append(chr(c))
        return "".join(chars)


class _NoDefault:
    pass


NO_DEFAULT = _NoDefault()


def multikey(schema, value, named, seen_depth=0):
    """Whether `value` holds a map of more than one key somewhere (its bytes depend on key order)."""
    s = named.get(schema, schema) if isinstance(schema, str) else schema
    if isinstance(s, list):
        return any(multikey(b, value, named) for b in s if not isinstance(b, str) or b in named)
    if not isinstance(s, dict):
        return False
    if s["type"] == "map" and isinstance(value, dict):
        return len(value) > 1 or any(multikey(s["values"], v, named) for v in value.values())
    if s["type"] == "array" and isinstance(value, list):
        return any(multikey(s["items"], v, named) for v in value)
    if s["type"] == "record" and isinstance(value, dict):
        return any(multikey(f["type"], value.get(f["name"]), named) for f in s["fields"])
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("klua", help='the command that runs a script: "KLUA run" (a path alone gets " run")')
    ap.add_argument("--cases", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    if " " not in args.klua:
        args.klua += " run"
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)
    print(f"seed {seed} ({args.cases} cases); replay with --seed {seed}", flush=True)
    rng = random.Random(seed)
    warnings.simplefilter("ignore")  # Apache avro warns of the logical types it does not know
    decimal.getcontext().prec = 100  # the default 28 digits would round 30-digit decimals

    cases = []
    for i in range(args.cases):
        g = Gen(rng)
        schema = g.schema(0)
        try:
            parsed = fastavro.parse_schema(json.loads(json.dumps(schema)))
        except Exception as e:  # our generator made something fastavro refuses: a generator bug
            print(f"case {i}: fastavro refuses the schema: {e}\n{json.dumps(schema)}")
            return 1
        canonical = fastavro.schema.to_parsing_canonical_form(parsed)
        # Apache avro 1.12 (Python) as a second opinion where it keeps the spec: it writes a primitive
        # that had attributes as {"type":"long"} (against [PRIMITIVE]; normalised here), and writes a
        # named type in full again when it was defined in an earlier branch of a union (Java and
        # fastavro write its name): cases where it disagrees with fastavro are counted, not judged.
        apache = avro.schema.parse(json.dumps(schema))
        apache_canonical = PRIMITIVE_OBJECT.sub(r'"\1"', apache.canonical_form)
        if apache_canonical != canonical:
            apache_canonical = None
        py, tag = g.value(schema)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, py)
        cases.append({"i": i, "schema": schema, "value": tag, "hex": buf.getvalue().hex(),
                      "unordered": multikey(schema, py, g.named), "_parsed": parsed,
                      "canonical": canonical, "apache_canonical": apache_canonical,
                      "fingerprint": fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")})

    with tempfile.TemporaryDirectory(dir=os.environ.get("KLUA_TEST_TMP")) as tmp:
        cin, cout = os.path.join(tmp, "cases.jsonl"), os.path.join(tmp, "out.jsonl")
        with open(cin, "w", encoding="utf-8") as f:
            for c in cases:
                f.write(json.dumps({k: v for k, v in c.items() if k != "_parsed"}, ensure_ascii=False) + "\n")
        res = subprocess.run(args.klua.split() + [os.path.join(HERE, "fastavro_property.lua"), cin, cout],
                             capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            print("klua failed:", res.returncode, res.stdout, res.stderr)
            return 1
        with open(cout) as f:
            results = [json.loads(line) for line in f]

    failures = 0
    unordered = 0
    apache_differs = 0
    # fastavro's reader without logical types: the raw Avro values, for comparing two encodings.
    saved = dict(fastavro.read.LOGICAL_READERS)
    fastavro.read.LOGICAL_READERS.clear()
    try:
        for c, r in zip(cases, results):
            why = r.get("error")
            if not why and r["canonical"] != c["canonical"]:
                why = f"canonical form: klua {r['canonical']}\n  fastavro {c['canonical']}"
            if c["apache_canonical"] is None:
                apache_differs += 1
            elif not why and r["canonical"] != c["apache_canonical"]:
                why = f"canonical form: klua {r['canonical']}\n  Apache avro {c['apache_canonical']}"
            if not why and r["fingerprint"] != c["fingerprint"]:
                why = f"fingerprint: klua {r['fingerprint']}, fastavro {c['fingerprint']}"
            if not why and r["hex"] != c["hex"]:
                if c["unordered"]:
                    unordered += 1
                    a = fastavro.schemaless_reader(io.BytesIO(bytes.fromhex(c["hex"])), c["_parsed"], None)
                    b = fastavro.schemaless_reader(io.BytesIO(bytes.fromhex(r["hex"])), c["_parsed"], None)
                    if a != b:
                        why = f"fastavro reads klua's bytes as {b!r}, its own as {a!r}"
                else:
                    why = f"klua encodes {r['hex']}, fastavro {c['hex']}"
            if why:
                failures += 1
                if failures <= 10:
                    print(f"case {c['i']}: {why}\n  schema {json.dumps(c['schema'])}\n  value {json.dumps(c['value'])}")
    finally:
        fastavro.read.LOGICAL_READERS.update(saved)
    if len(results) != len(cases):
        print(f"klua answered {len(results)} of {len(cases)} cases")
        return 1
    print(f"{len(cases) - failures}/{len(cases)} cases agree ({unordered} with multi-key maps compared through fastavro's "
          f"reader; Apache avro's canonical form differs from fastavro's in {apache_differs}, see above)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
