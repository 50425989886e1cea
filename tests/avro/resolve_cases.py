"""Schema-resolution cases for klua's Avro resolver, shared by the Java and fastavro oracle tests.

A case is a dict: writer schema, reader schema and a writer value, the value given both in the Avro
JSON encoding of the writer ("value", what Java's JsonDecoder reads) and as the Python value
fastavro's schemaless_writer takes ("native"). spec_cases() are written by hand, one or more per
rule of the spec's "Schema Resolution"; generated(seed, n) derives readers from random writers.
"""
import base64
import json
import random
import struct


# ---- hand-written cases: (writer, reader, Avro JSON value of the writer, what the case shows) ----

def rec(name, *fields, **extra):
    d = {"type": "record", "name": name, "fields": list(fields)}
    d.update(extra)
    return d


def field(name, type_, **extra):
    d = {"name": name, "type": type_}
    d.update(extra)
    return d


ENUM_W = {"type": "enum", "name": "Suit", "symbols": ["SPADES", "HEARTS", "DIAMONDS", "CLUBS"]}
ENUM_R_DEFAULT = {"type": "enum", "name": "Suit", "symbols": ["UNKNOWN", "HEARTS", "SPADES"], "default": "UNKNOWN"}
ENUM_R_NODEFAULT = {"type": "enum", "name": "Suit", "symbols": ["HEARTS", "SPADES"]}

SPEC = [
    # promotions
    ("int", "long", "5", "int -> long"),
    ("int", "float", "16777217", "int -> float rounds to single precision"),
    ("int", "double", "-2147483648", "int -> double"),
    ("long", "float", "9007199254740993", "long -> float"),
    ("long", "double", "9007199254740993", "long -> double rounds"),
    ("long", "long", "-9223372036854775808", "long minimum (int64 cdata)"),
    ("long", "long", "9223372036854775807", "long maximum (int64 cdata)"),
    ("float", "double", "1.1", "float -> double keeps the float's value"),
    ("string", "bytes", '"h\\u00e9llo"', "string -> bytes"),
    ("bytes", "string", '"abc"', "bytes -> string"),
    ("long", "int", "5", "long -> int does not resolve"),
    ("double", "float", "1.5", "double -> float does not resolve"),
    ("string", "int", '"x"', "string -> int does not resolve"),
    ("boolean", "boolean", "true", "same type"),
    ("null", "null", "null", "null"),
    ("null", "int", "null", "null -> int does not resolve"),
    # records: reordered fields, writer-only fields skipped, reader-only fields from defaults
    (rec("R", field("a", "int"), field("b", "string"), field("c", "double")),
     rec("R", field("c", "double"), field("a", "long")),
     '{"a": 1, "b": "skipped", "c": 2.5}', "reordered fields, b skipped"),
    (rec("R", field("a", "int")),
     rec("R", field("a", "int"),
         field("n", "null", default=None), field("b", "boolean", default=True),
         field("i", "int", default=-7), field("l", "long", default=1234567890123),
         field("f", "float", default=1.25), field("d", "double", default=-0.5),
         field("by", "bytes", default="\u00ff\u0000a"), field("s", "string", default="hé"),
         field("e", ENUM_R_DEFAULT, default="SPADES"),
         field("fx", {"type": "fixed", "name": "F2", "size": 2}, default="\u0001\u0002"),
         field("arr", {"type": "array", "items": "int"}, default=[1, 2, 3]),
         field("m", {"type": "map", "values": "string"}, default={"k": "v"}),
         field("u", ["null", "string"], default=None),
         field("u2", ["string", "null"], default="first"),
         field("r", rec("Inner", field("x", "int"), field("y", ["null", "long"])), default={"x": 3, "y": None})),
     '{"a": 1}', "defaults of every type"),
    (rec("R", field("a", "int")), rec("R", field("a", "int"), field("b", "string")),
     '{"a": 1}', "a reader field without default, missing in the writer"),
    # aliases
    (rec("Old", field("a", "int")), rec("New", field("a", "int"), aliases=["Old"]),
     '{"a": 2}', "record renamed, reader alias"),
    (rec("R", field("old_name", "string")), rec("R", field("new_name", "string", aliases=["old_name"])),
     '{"old_name": "v"}', "field renamed, reader field alias"),
    (rec("ns1.R", field("a", "int")), rec("ns2.R", field("a", "int")),
     '{"a": 2}', "records match by unqualified name"),
    ({"type": "enum", "name": "OldE", "symbols": ["A", "B"]},
     {"type": "enum", "name": "NewE", "symbols": ["B", "A"], "aliases": ["OldE"]},
     '"A"', "enum renamed, reader alias"),
    ({"type": "fixed", "name": "OldF", "size": 3}, {"type": "fixed", "name": "NewF", "size": 3, "aliases": ["OldF"]},
     '"abc"', "fixed renamed, reader alias"),
    # enums
    (ENUM_W, ENUM_R_DEFAULT, '"CLUBS"', "unknown writer symbol -> reader default"),
    (ENUM_W, ENUM_R_DEFAULT, '"HEARTS"', "known symbol, other index"),
    (ENUM_W, ENUM_R_NODEFAULT, '"SPADES"', "known symbol, no default needed"),
    (ENUM_W, ENUM_R_NODEFAULT, '"DIAMONDS"', "unknown symbol, no default: error"),
    # fixed
    ({"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "F", "size": 5}, '"abcd"',
     "fixed sizes differ"),
    ({"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "G", "size": 4}, '"abcd"',
     "fixed names differ"),
    # unions
    (["null", "int"], ["null", "long"], '{"int": 3}', "both unions, promoted branch"),
    (["null", "int"], ["null", "long"], "null", "both unions, null"),
    (["int", "string"], "string", '{"string": "s"}', "writer union, reader not: matching branch"),
    (["int", "string"], "string", '{"int": 1}', "writer union, reader not: branch without match, error"),
    ("int", ["null", "string", "long"], "7", "reader union: the first promotable branch"),
    ("int", ["null", "double", "int"], "7", "reader union: the exact match before a promotion"),
    ("string", ["null", "int"], '"s"', "reader union without a match"),
    (["null", "string"], ["string", "null"], '{"string": "x"}', "branches reordered"),
    (rec("R", field("a", "int")), ["null", rec("R", field("a", "long"), field("b", "int", default=4))],
     '{"a": 9}', "record into a reader union"),
    (["null", rec("R", field("a", "int"))], rec("R", field("a", "long")), '{"R": {"a": 1}}',
     "writer union of a record into the record"),
    # arrays and maps
    ({"type": "array", "items": "int"}, {"type": "array", "items": "double"}, "[1, 2, 3]", "array items promoted"),
    ({"type": "map", "values": "int"}, {"type": "map", "values": "long"}, '{"a": 1, "b": -2}', "map values promoted"),
    ({"type": "array", "items": "int"}, {"type": "map", "values": "int"}, "[1]", "array vs map"),
    ({"type": "array", "items": ENUM_W}, {"type": "array", "items": ENUM_R_DEFAULT}, '["CLUBS", "SPADES"]',
     "enum default inside an array"),
    # nested records and recursion
    (rec("Node", field("value", "int"), field("next", ["null", "Node"])),
     rec("Node", field("value", "long"), field("label", "string", default="?"), field("next", ["null", "Node"])),
     '{"value": 1, "next": {"Node": {"value": 2, "next": {"Node": {"value": 3, "next": null}}}}}',
     "a recursive list resolved"),
    (rec("Outer", field("skip", rec("Tree", field("v", "int"), field("kids", {"type": "array", "items": "Tree"}))),
         field("keep", "string")),
     rec("Outer", field("keep", "string")),
     '{"skip": {"v": 1, "kids": [{"v": 2, "kids": []}, {"v": 3, "kids": [{"v": 4, "kids": []}]}]}, "keep": "k"}',
     "a recursive writer-only field skipped"),
    (rec("A", field("b", rec("B", field("x", "int"), field("y", "string")))),
     rec("A", field("b", rec("B", field("y", "string"), field("z", "float", default=0.5)))),
     '{"b": {"x": 1, "y": "why"}}', "nested records"),
    (rec("A", field("b", rec("B", field("x", "int")))),
     rec("A", field("b", rec("B", field("x", "int"), field("q", "int")))),
     '{"b": {"x": 1}}', "nested: a missing default, error"),
    # skipping every type
    (rec("W", field("n", "null"), field("b", "boolean"), field("i", "int"), field("l", "long"),
         field("f", "float"), field("d", "double"), field("by", "bytes"), field("s", "string"),
         field("e", ENUM_W), field("fx", {"type": "fixed", "name": "FX", "size": 3}),
         field("a", {"type": "array", "items": "string"}), field("m", {"type": "map", "values": "double"}),
         field("u", ["null", "string", {"type": "array", "items": "int"}]), field("keep", "int")),
     rec("W", field("keep", "int")),
     '{"n": null, "b": true, "i": -5, "l": 123456789012, "f": 1.5, "d": 2.5, "by": "\\u0000\\u00ff", "s": "str",'
     ' "e": "CLUBS", "fx": "xyz", "a": ["p", "q"], "m": {"x": 1.0}, "u": {"array": [1, 2]}, "keep": 42}',
     "every writer type skipped"),
    # logical types keep their underlying values
    ({"type": "int", "logicalType": "date"}, {"type": "long", "logicalType": "timestamp-millis"}, "19000",
     "logical types promote as their underlying types"),
    ({"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2},
     {"type": "bytes", "logicalType": "decimal", "precision": 8, "scale": 2}, '"\\u0004\\u00d2"', "decimal widened"),
]


def spec_cases():
    out = []
    for i, (w, r, v, what) in enumerate(SPEC):
        out.append({"id": "spec%d" % i, "writer": w, "reader": r, "value": v, "what": what})
    return out


# ---- generated cases ------------------------------------------------------------------------

PRIMS = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
PROMOTE = {"int": ["long", "float", "double"], "long": ["float", "double"], "float": ["double"],
           "string": ["bytes"], "bytes": ["string"]}


class Gen:
    def __init__(self, rnd):
        self.rnd = rnd
        self.n = 0

    def name(self, prefix):
        self.n += 1
        return "%s%d" % (prefix, self.n)

    def type_(self, depth):
        r = self.rnd
        k = r.random()
        if depth > 2 or k < 0.45:
            return r.choice(PRIMS[1:])
        if k < 0.55:
            syms = ["S%d" % i for i in range(r.randint(1, 5))]
            return {"type": "enum", "name": self.name("E"), "symbols": syms}
        if k < 0.6:
            return {"type": "fixed", "name": self.name("F"), "size": r.randint(0, 6)}
        if k < 0.7:
            return {"type": "array", "items": self.type_(depth + 1)}
        if k < 0.78:
            return {"type": "map", "values": self.type_(depth + 1)}
        if k < 0.9:
            return self.record(depth + 1)
        # a union: distinct unnamed kinds, at most one of each
        kinds = r.sample(["null", "int", "long", "string", "double", "boolean", "bytes"], r.randint(1, 3))
        branches = list(kinds)
        if r.random() < 0.4:
            branches.append(self.record(depth + 1))
        return branches

    def record(self, depth):
        fields = [{"name": "f%d" % i, "type": self.type_(depth)}
                  for i in range(self.rnd.randint(1 if depth == 0 else 0, 4))]  # Java writes "" for a top-level {}
        return {"type": "record", "name": self.name("R"), "fields": fields}

    # A JSON default (the Avro JSON form) for a reader type; for a union the first branch.
    def default(self, t):
        r = self.rnd
        if isinstance(t, list):
            return self.default(t[0])
        tt = t if isinstance(t, str) else t["type"]
        if tt == "null":
            return None
        if tt == "boolean":
            return r.random() < 0.5
        if tt == "int":
            return r.randint(-1000, 1000)
        if tt == "long":
            return r.choice([r.randint(-10**6, 10**6), 2**40 + 3])
        if tt in ("float", "double"):
            return r.choice([0.5, -2.25, 100.0])
        if tt in ("bytes", "string"):
            return r.choice(["", "dflt", "\u00e9\u0000"])
        if tt == "enum":
            return r.choice(t["symbols"])
        if tt == "fixed":
            return "".join(chr(r.randint(0, 255)) for _ in range(t["size"]))
        if tt == "array":
            return [self.default(t["items"]) for _ in range(r.randint(0, 2))]
        if tt == "map":
            return {"k%d" % i: self.default(t["values"]) for i in range(r.randint(0, 2))}
        if tt == "record":
            return {f["name"]: self.default(f["type"]) for f in t["fields"]}
        raise ValueError(tt)

    # A reader type derived from a writer type: mostly compatible, sometimes not.
    def derive(self, w, depth=0):
        r = self.rnd
        if isinstance(w, list):
            bs = [self.derive(b, depth + 1) for b in w]
            bs = [b for b in bs if not isinstance(b, list)]
            # keep the union valid: no duplicate unnamed kinds
            seen, out = set(), []
            for b in bs:
                key = b if isinstance(b, str) else (b["type"] if b["type"] in ("array", "map") else b["name"])
                if key not in seen:
                    seen.add(key)
                    out.append(b)
            if r.random() < 0.3:
                r.shuffle(out)
            if not out:
                return "string"
            if len(out) == 1 and r.random() < 0.5:
                return out[0]  # writer union, reader not
            return out
        if isinstance(w, str):
            k = r.random()
            if w in PROMOTE and k < 0.35:
                t = r.choice(PROMOTE[w])
            elif k < 0.03:
                t = r.choice(PRIMS)  # probably incompatible
            else:
                t = w
            if w != "null" and t != "null" and r.random() < 0.1:
                return ["null", t] if r.random() < 0.5 else [t, "null"]
            return t
        tt = w["type"]
        if tt == "enum":
            syms = list(w["symbols"])
            if r.random() < 0.5:
                r.shuffle(syms)
            if r.random() < 0.3 and len(syms) > 1:
                syms.pop()
            if r.random() < 0.3:
                syms.append("NEW")
            e = {"type": "enum", "name": w["name"], "symbols": syms}
            if r.random() < 0.5:
                e["default"] = syms[0]
            return e
        if tt == "fixed":
            f = dict(w)
            if r.random() < 0.05:
                f["size"] = w["size"] + 1
            return f
        if tt == "array":
            return {"type": "array", "items": self.derive(w["items"], depth + 1)}
        if tt == "map":
            return {"type": "map", "values": self.derive(w["values"], depth + 1)}
        if tt == "record":
            rd = {"type": "record", "name": w["name"], "fields": []}
            if r.random() < 0.2:
                rd["name"] = w["name"] + "x"
                rd["aliases"] = [w["name"]]
            for f in w["fields"]:
                if r.random() < 0.2:
                    continue  # writer-only: skipped
                nf = {"name": f["name"], "type": self.derive(f["type"], depth + 1)}
                if r.random() < 0.15:
                    nf["name"] = f["name"] + "_renamed"
                    nf["aliases"] = [f["name"]]
                rd["fields"].append(nf)
            for i in range(r.randint(0, 2)):
                t = self.type_(3)
                nf = {"name": "added%d" % i, "type": t}
                if r.random() < 0.93:
                    nf["default"] = self.default(t)
                rd["fields"].append(nf)
            if r.random() < 0.4:
                r.shuffle(rd["fields"])
            return rd
        raise ValueError(tt)

    # A value of writer type w: (Avro JSON, fastavro's native value).
    def value(self, w):
        r = self.rnd
        if isinstance(w, list):
            i = r.randrange(len(w))
            b = w[i]
            j, n = self.value(b)
            if b == "null":
                return None, None
            bname = b if isinstance(b, str) else (b["type"] if b["type"] in ("array", "map") else b["name"])
            return {bname: j}, (bname, n)  # fastavro's tuple notation names the branch
        tt = w if isinstance(w, str) else w["type"]
        if tt == "null":
            return None, None
        if tt == "boolean":
            v = r.random() < 0.5
            return v, v
        if tt == "int":
            v = r.choice([0, 1, -1, 63, -64, 64, r.randint(-2**31, 2**31 - 1)])
            return v, v
        if tt == "long":
            v = r.choice([0, -1, 2**31, r.randint(-2**53, 2**53), r.randint(-2**63, 2**63 - 1)])
            return v, v
        if tt == "float":
            v = struct.unpack("<f", struct.pack("<f", r.uniform(-1e6, 1e6)))[0]
            return v, v
        if tt == "double":
            v = r.choice([0.0, -1.5, r.uniform(-1e12, 1e12), 1e300])
            return v, v
        if tt in ("bytes", "fixed"):
            size = w["size"] if tt == "fixed" else r.randint(0, 6)
            b = bytes(r.randint(0, 255) for _ in range(size))
            return b.decode("latin-1"), b
        if tt == "string":
            s = "".join(r.choice("ab\u00e9\u4e2d\"\\\n") for _ in range(r.randint(0, 6)))
            return s, s
        if tt == "enum":
            s = r.choice(w["symbols"])
            return s, s
        if tt == "array":
            items = [self.value(w["items"]) for _ in range(r.randint(0, 3))]
            return [j for j, _ in items], [n for _, n in items]
        if tt == "map":
            items = {"k%d" % i: self.value(w["values"]) for i in range(r.randint(0, 3))}
            return {k: j for k, (j, _) in items.items()}, {k: n for k, (_, n) in items.items()}
        if tt == "record":
            vals = {f["name"]: self.value(f["type"]) for f in w["fields"]}
            return {k: j for k, (j, _) in vals.items()}, {k: n for k, (_, n) in vals.items()}
        raise ValueError(tt)


def generated(seed, n):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        g = Gen(rnd)
        w = g.record(0)
        r = g.derive(w)
        j, native = g.value(w)
        out.append({"id": "gen%d" % i, "writer": w, "reader": r, "value": json.dumps(j), "native": native,
                    "what": "generated (seed %d)" % seed})
    return out


def native_of(value_json, schema):
    """The fastavro value of an Avro JSON value (for the hand-written cases)."""
    return _native(json.loads(value_json), schema, {})


def _named(s, names):
    if isinstance(s, dict) and s.get("type") in ("record", "enum", "fixed"):
        names[s["name"]] = s
        names[s["name"].split(".")[-1]] = s
    return s


def _native(j, s, names):
    if isinstance(s, str) and s in names:
        s = names[s]
    _named(s, names)
    if isinstance(s, list):
        if j is None:
            return None
        (k, v), = j.items()
        for b in s:
            bs = names.get(b, b) if isinstance(b, str) else b
            bn = bs if isinstance(bs, str) else (bs["type"] if bs["type"] in ("array", "map") else bs["name"])
            if bn == k:
                return (k, _native(v, b, names))
        raise ValueError(k)
    t = s if isinstance(s, str) else s["type"]
    if t in ("bytes", "fixed"):
        return j.encode("latin-1")
    if t == "array":
        return [_native(x, s["items"], names) for x in j]
    if t == "map":
        return {k: _native(x, s["values"], names) for k, x in j.items()}
    if t == "record":
        return {f["name"]: _native(j.get(f["name"]), f["type"], names) for f in s["fields"]}
    return j


def b64(b):
    return base64.b64encode(b).decode()
