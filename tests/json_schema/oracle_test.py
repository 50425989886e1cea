#!/usr/bin/env python3
"""klua.json_schema against Python's jsonschema 4.26 as an oracle: a corpus of schemas x instances
(hand-written ones covering every keyword, then generated ones from a fixed seed), valid-or-not must
agree for every pair. klua runs once over the whole corpus (tests/json_schema/oracle_run.lua).

Usage: oracle_test.py KLUA [--seed N] [--schemas N]. Re-runs itself under KLUA_PYTHON (or tools/dev's
virtualenv) when jsonschema is not importable.

The corpus stays inside what both sides read the same way: numbers are integers or non-integral
floats (klua decodes every number to a double, so 1.0 and 1 are one value, which draft 4's integer
tells apart); patterns use the regex subset both engines share, and a case whose schema uses a
\\d \\w \\s \\b class is skipped when its instance holds non-ASCII text (Python's classes are
Unicode-aware, ECMA's are not); no string ends in a newline (Python's `$` matches before one).
"""
import json
import os
import random
import re
import subprocess
import sys


def use_venv_python():
    """The oracle is the virtualenv's jsonschema 4.26 (KLUA_PYTHON, else tools/dev's venv), not
    whatever python3 on PATH has."""
    venv = os.environ.get("KLUA_PYTHON") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "klua/venv/bin/python")
    if os.path.exists(venv) and not os.environ.get("KLUA_PYTHON_REEXEC"):
        os.environ["KLUA_PYTHON_REEXEC"] = "1"
        os.execv(venv, [venv] + sys.argv)
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        raise SystemExit("jsonschema is not installed (tools/dev makes ~/.cache/klua/venv)")


use_venv_python()
import jsonschema  # noqa: E402
from importlib.metadata import version  # noqa: E402

jsonschema_version = version("jsonschema")

VALIDATORS = {4: jsonschema.Draft4Validator, 6: jsonschema.Draft6Validator, 7: jsonschema.Draft7Validator,
              2019: jsonschema.Draft201909Validator, 2020: jsonschema.Draft202012Validator}
KLUA_DRAFT = {4: 4, 6: 6, 7: 7, 2019: "2019-09", 2020: "2020-12"}

STRINGS = ["", "a", "ab", "abc", "abcd", "cd", "12", "123", "1234", "x", "xy", "y", "foo", "foobaz", "barbaz",
           "Hello World", "hello", "a c", "é", "日本語", "a\nc", "john@example.com", "A1", " ", "\t", "+12", "-3",
           "ab ab", "aaab", "b", "ABC", "a.c", "abcabc", "😀x", "1", "true", "null"]
NUMBERS = [0, 1, 2, 3, 4, 5, 6, 7, 10, 12, 15, 100, -1, -2, -5, 0.5, 1.5, 2.25, -0.5, 0.1, 0.3, 3.75, 1e-3,
           10 ** 15 + 1, -1000]
PATTERNS = ["^a", "b$", "^[a-z]+$", "\\d", "^\\d{2,3}$", "^(ab|cd)+$", "x?y", "^[^0-9]*$", "a.c",
            "^\\w+@\\w+\\.com$", "(?:foo|bar)baz", "^.{2}$", "\\s", "^[A-Z][a-z]*( [A-Z][a-z]*)*$",
            "[-+]?[0-9]+$", "^(a|b)*?b$", "^a{2,}", "c\\b", "^[\\w.]+$", "^$", "^[a-c]{1,2}$", "\\.",
            "[^a-z]"]
KEYS = ["a", "b", "c", "1", "foo", "ab"]


def hand_written():
    """(draft, schema, [instances]) covering every keyword."""
    S = []

    def add(schema, instances, draft=7):
        S.append((draft, schema, instances))

    scalars = [None, True, False, 0, 1, -1, 1.5, "", "a", "1", [], {}, [1], {"a": 1}]
    for t in ["null", "boolean", "object", "array", "number", "string", "integer"]:
        add({"type": t}, scalars)
    add({"type": ["integer", "string"]}, scalars)
    add({"type": ["null", "array"]}, scalars)
    add({"enum": [1, "a", None, [1, 2], {"a": [True]}, False]},
        scalars + [[1, 2], [2, 1], {"a": [True]}, {"a": [1]}, {"a": [True], "b": 1}, 1.0 * 3])
    add({"const": {"a": [1, {"b": None}]}}, [{"a": [1, {"b": None}]}, {"a": [1, {"b": 0}]}, {"a": [1]}, None])
    add({"const": False}, [False, 0, None, "", True])
    add({"const": 0}, [0, False, -0.5, "0"])
    for kw in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]:
        add({kw: 2}, [1, 2, 3, 1.5, 2.5, "1", None])
        add({kw: -1.5}, [-2, -1.5, -1, 0])
    add({"maximum": 3, "exclusiveMaximum": True}, [2, 3, 4, 2.5], draft=4)
    add({"minimum": 3, "exclusiveMinimum": True}, [2, 3, 4, 3.5], draft=4)
    add({"maximum": 3, "exclusiveMaximum": False}, [2, 3, 4], draft=4)
    add({"type": "integer"}, [1, 2, 1.5, -7, 0.1], draft=4)
    for m in [2, 3, 0.5, 0.1, 1.5, 0.01]:
        add({"multipleOf": m}, NUMBERS + ["2"])
    add({"minLength": 2}, STRINGS + [1])
    add({"maxLength": 2}, STRINGS + [[1, 2, 3]])
    add({"minLength": 3, "maxLength": 3}, STRINGS)
    for p in PATTERNS:
        add({"pattern": p}, STRINGS + [12])
    add({"items": {"type": "integer"}}, [[], [1, 2], [1, "a"], ["a"], {"a": 1}, "ab", [1, 1.5]])
    add({"items": [{"type": "integer"}, {"type": "string"}]}, [[], [1], [1, "a"], ["a", 1], [1, "a", None]])
    add({"items": [{"type": "integer"}], "additionalItems": False}, [[], [1], [1, 2], ["a"]])
    add({"items": [{}], "additionalItems": {"type": "string"}}, [[1], [1, "a"], [1, 2], [1, "a", "b"]])
    add({"additionalItems": False}, [[], [1, 2]])
    add({"items": True}, [[], [1, None]], draft=6)
    add({"items": False}, [[], [1]], draft=6)
    add({"contains": {"const": 2}}, [[], [1], [1, 2], [2, 2], "2", {"a": 2}])
    add({"contains": {"type": "string"}, "items": {"type": ["string", "integer"]}}, [[1], ["a"], [1, "a"], [1.5, "a"]])
    add({"minItems": 2}, [[], [1], [1, 2], {"a": 1, "b": 2}, "ab"])
    add({"maxItems": 1}, [[], [1], [1, 2]])
    add({"uniqueItems": True}, [[], [1, 2], [1, 1], [1, "1"], [1, True], [0, False], [None, None],
                                [[1], [1]], [[1], [1, 2]], [{"a": 1, "b": 2}, {"b": 2, "a": 1}], [{"a": 1}, {"a": 2}],
                                [1.5, 1.5], [{}, []], [[], []]])
    add({"uniqueItems": False}, [[1, 1]])
    add({"properties": {"a": {"type": "integer"}, "b": {"type": "string"}}},
        [{}, {"a": 1}, {"a": "x"}, {"b": 1}, {"a": 1, "b": "x", "c": None}, [], "a"])
    add({"properties": {"1": {"type": "string"}}}, [{"1": "x"}, {"1": 1}, {"2": 1}])
    add({"required": ["a", "b"]}, [{}, {"a": 1}, {"a": 1, "b": None}, [], "ab"])
    add({"required": []}, [{}, {"a": 1}])
    add({"properties": {"a": {}}, "additionalProperties": False}, [{}, {"a": 1}, {"b": 1}, {"a": 1, "b": 2}])
    add({"properties": {"a": {}}, "patternProperties": {"^b": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
        [{}, {"a": 1}, {"b": 1}, {"bb": "x"}, {"c": "x"}, {"c": 1}, {"a": 1, "ba": 2, "c": "s"}])
    add({"patternProperties": {"^[0-9]+$": {"type": "null"}, "a": {"maximum": 3}}},
        [{"1": None}, {"12": 1}, {"ab": 2}, {"ab": 4}, {"1a": 5}])
    add({"propertyNames": {"maxLength": 2}}, [{}, {"ab": 1}, {"abc": 1}, [1, 2, 3]])
    add({"propertyNames": {"pattern": "^[a-z]+$"}}, [{"a": 1}, {"A": 1}, {"1": 1}])
    add({"propertyNames": False}, [{}, {"a": 1}])
    add({"minProperties": 1}, [{}, {"a": 1}, []])
    add({"maxProperties": 1}, [{}, {"a": 1}, {"a": 1, "b": 2}])
    add({"dependencies": {"a": ["b", "c"], "b": {"required": ["d"]}}},
        [{}, {"a": 1}, {"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 1, "c": 1, "d": 1}, {"b": 1}, {"b": 1, "d": 1}, {"c": 1}])
    add({"dependencies": {"a": ["b"]}}, [{"a": 1}, {"a": 1, "b": 1}], draft=4)
    add({"allOf": [{"type": "integer"}, {"minimum": 2}]}, [1, 2, 2.5, "a"])
    add({"anyOf": [{"type": "integer"}, {"minLength": 2}]}, [1, 1.5, "a", "ab", None])
    add({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, [1, 2.5, 3, 1.5])
    add({"oneOf": [{"required": ["a"]}, {"required": ["b"]}]}, [{}, {"a": 1}, {"b": 1}, {"a": 1, "b": 1}])
    add({"not": {"type": "string"}}, [1, "a", None])
    add({"not": {}}, [1, None], draft=7)
    add({"if": {"properties": {"t": {"const": "a"}}}, "then": {"required": ["x"]}, "else": {"required": ["y"]}},
        [{}, {"t": "a"}, {"t": "a", "x": 1}, {"t": "b"}, {"t": "b", "y": 1}, {"x": 1}])
    add({"if": {"minimum": 10}, "then": {"multipleOf": 2}}, [5, 11, 12])
    add({"then": {"type": "string"}}, [1, "a"])
    add({"else": {"type": "string"}}, [1, "a"])
    add(True, [1, None, {}])
    add(False, [1, None, {}])
    defs = {"definitions": {"pos": {"type": "integer", "minimum": 1},
                            "node": {"type": "object", "properties": {"v": {"$ref": "#/definitions/pos"},
                                                                      "next": {"$ref": "#/definitions/node"}},
                                     "required": ["v"]}},
            "$ref": "#/definitions/node"}
    add(defs, [{"v": 1}, {"v": 0}, {"v": 1, "next": {"v": 2}}, {"v": 1, "next": {"v": 2, "next": {}}},
               {"v": 1, "next": {"v": 2, "next": {"v": -1}}}, 3])
    add({"properties": {"a": {"type": "integer"}, "self": {"$ref": "#"}}},
        [{"a": 1}, {"self": {"a": "x"}}, {"self": {"self": {"a": 2}}}])
    add({"definitions": {"a~b": {"type": "string"}, "c/d": {"type": "integer"}, "e%f": {"type": "null"}},
         "properties": {"x": {"$ref": "#/definitions/a~0b"}, "y": {"$ref": "#/definitions/c~1d"},
                        "z": {"$ref": "#/definitions/e%25f"}}},
        [{"x": "s", "y": 1, "z": None}, {"x": 1}, {"y": "s"}, {"z": 1}])
    add({"$id": "http://example.com/root.json",
         "definitions": {"A": {"$id": "#foo", "type": "integer"},
                         "B": {"$id": "other.json", "definitions": {"X": {"$id": "#bar", "type": "string"}}}},
         "properties": {"a": {"$ref": "#foo"}, "b": {"$ref": "other.json#bar"},
                        "c": {"$ref": "http://example.com/other.json#/definitions/X"}}},
        [{"a": 1, "b": "s", "c": "t"}, {"a": "x"}, {"b": 1}, {"c": 2}])
    add({"id": "http://example.com/r4.json", "definitions": {"A": {"id": "#n", "type": "integer"}},
         "properties": {"a": {"$ref": "#n"}}}, [{"a": 1}, {"a": "x"}], draft=4)
    add({"definitions": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/definitions/n", "type": "string"}}},
        [{"a": 1}, {"a": "x"}])
    add({"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n", "minimum": 3}}},
        [{"a": 1}, {"a": 4}, {"a": "x"}], draft=2019)
    add({"$defs": {"n": {"$anchor": "num", "type": "integer"}}, "items": {"$ref": "#num"}},
        [[1, 2], [1, "a"]], draft=2020)
    add({"dependentRequired": {"a": ["b"]}, "dependentSchemas": {"b": {"properties": {"a": {"type": "string"}}}}},
        [{}, {"a": 1}, {"a": 1, "b": 1}, {"a": "s", "b": 1}, {"b": 1}], draft=2019)
    add({"contains": {"type": "integer"}, "minContains": 2, "maxContains": 3},
        [[], [1], [1, 2], [1, 2, 3], [1, 2, 3, 4], ["a", 1, 2]], draft=2019)
    add({"prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
        [[], [1], [1, "a"], [1, "a", 2], ["a"]], draft=2020)
    add({"prefixItems": [{"type": "integer"}], "items": {"type": "string"}},
        [[1], [1, "a"], [1, 2]], draft=2020)
    add({"type": "object", "properties": {
        "id": {"type": "string", "pattern": "^o-[0-9]+$"},
        "lines": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["sku", "qty"], "additionalProperties": False,
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}}},
        "status": {"enum": ["new", "paid"]}}, "required": ["id", "lines"]},
        [{"id": "o-1", "lines": [{"sku": "a", "qty": 1}]}, {"id": "o-1", "lines": []},
         {"id": "x", "lines": [{"sku": "a", "qty": 1}]}, {"id": "o-1", "lines": [{"sku": "a", "qty": 0}]},
         {"id": "o-1", "lines": [{"sku": "a", "qty": 1, "x": 1}]}, {"id": "o-1", "lines": [{"sku": "a", "qty": 1}],
                                                                       "status": "old"}])
    return S


def rand_value(rng, depth=0):
    r = rng.random()
    if depth >= 3 or r < 0.55:
        c = rng.randrange(5)
        if c == 0:
            return None
        if c == 1:
            return rng.choice([True, False])
        if c == 2:
            return rng.choice(NUMBERS)
        return rng.choice(STRINGS)
    if r < 0.78:
        return [rand_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): rand_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def rand_schema(rng, draft, depth=0, defs=False, ref_ok=False):
    """A random schema; $ref only below a keyword that descends into the value (ref_ok), so that no
    cycle of references validates the same value forever."""
    if depth > 0 and rng.random() < 0.08 and draft >= 6:
        return rng.choice([True, False])
    s = {}
    n = rng.randrange(1, 4)
    kws = ["type", "num", "str", "enum", "const", "items", "tuple", "contains", "arr", "props", "required",
           "addl", "pattern_props", "names", "nprops", "deps", "allOf", "anyOf", "oneOf", "not", "if"]
    if defs and ref_ok:
        kws.append("ref")
    for _ in range(n):
        k = rng.choice(kws)
        deeper = depth < 2
        if k == "type":
            ts = ["null", "boolean", "object", "array", "number", "string", "integer"]
            s["type"] = rng.choice(ts) if rng.random() < 0.7 else rng.sample(ts, 2)
        elif k == "num":
            kw = rng.choice(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"])
            if kw == "multipleOf":
                s[kw] = rng.choice([2, 3, 0.5, 1.5, 0.1])
            elif draft == 4 and kw.startswith("exclusive"):
                base = kw.replace("exclusiveM", "m")
                s[base] = rng.choice([0, 1, 2, 1.5])
                s[kw] = rng.choice([True, False])
            else:
                s[kw] = rng.choice([0, 1, 2, 1.5, -1, 10])
        elif k == "str":
            kw = rng.choice(["minLength", "maxLength", "pattern"])
            s[kw] = rng.choice(PATTERNS) if kw == "pattern" else rng.randrange(4)
        elif k == "enum":
            s["enum"] = [rand_value(rng, 2) for _ in range(rng.randrange(1, 4))]
        elif k == "const" and draft >= 6:
            s["const"] = rand_value(rng, 2)
        elif k == "items" and deeper:
            s["items"] = rand_schema(rng, draft, depth + 1, defs, True)
        elif k == "tuple" and deeper and draft <= 2019:
            s["items"] = [rand_schema(rng, draft, depth + 1, defs, True) for _ in range(rng.randrange(1, 3))]
            if rng.random() < 0.6:
                s["additionalItems"] = rand_schema(rng, draft, depth + 1, defs, True) if rng.random() < 0.5 else False
        elif k == "tuple" and deeper and draft == 2020:
            s["prefixItems"] = [rand_schema(rng, draft, depth + 1, defs, True) for _ in range(rng.randrange(1, 3))]
        elif k == "contains" and deeper and draft >= 6:
            s["contains"] = rand_schema(rng, draft, depth + 1, defs, True)
        elif k == "arr":
            kw = rng.choice(["minItems", "maxItems", "uniqueItems"])
            s[kw] = rng.choice([True, False]) if kw == "uniqueItems" else rng.randrange(4)
        elif k == "props" and deeper:
            s["properties"] = {key: rand_schema(rng, draft, depth + 1, defs, True) for key in rng.sample(KEYS, 2)}
        elif k == "required":
            s["required"] = rng.sample(KEYS, rng.randrange(1, 3))
        elif k == "addl" and deeper:
            s["additionalProperties"] = False if rng.random() < 0.4 else rand_schema(rng, draft, depth + 1, defs, True)
        elif k == "pattern_props" and deeper:
            s["patternProperties"] = {rng.choice(["^a", "b", "^[0-9]+$", "^.$"]): rand_schema(rng, draft, depth + 1, defs, True)}
        elif k == "names" and deeper and draft >= 6:
            s["propertyNames"] = rng.choice([{"maxLength": 1}, {"pattern": "^[a-z]+$"}, {"enum": ["a", "b"]}])
        elif k == "nprops":
            s[rng.choice(["minProperties", "maxProperties"])] = rng.randrange(3)
        elif k == "deps" and deeper:
            key = "dependencies" if draft <= 7 else "dependentRequired"
            if rng.random() < 0.5 or draft > 7:
                s[key] = {rng.choice(KEYS): rng.sample(KEYS, rng.randrange(1, 3))}
            else:
                s[key] = {rng.choice(KEYS): rand_schema(rng, draft, depth + 1, defs, ref_ok)}
        elif k in ("allOf", "anyOf", "oneOf") and deeper:
            s[k] = [rand_schema(rng, draft, depth + 1, defs, ref_ok) for _ in range(rng.randrange(1, 4))]
        elif k == "not" and deeper:
            s["not"] = rand_schema(rng, draft, depth + 1, defs, ref_ok)
        elif k == "if" and deeper and draft >= 7:
            s["if"] = rand_schema(rng, draft, depth + 1, defs, ref_ok)
            if rng.random() < 0.8:
                s["then"] = rand_schema(rng, draft, depth + 1, defs, ref_ok)
            if rng.random() < 0.8:
                s["else"] = rand_schema(rng, draft, depth + 1, defs, ref_ok)
        elif k == "ref":
            s["$ref"] = rng.choice(["#/definitions/d0", "#/definitions/d1", "#"])
    return s


def generated(rng, count):
    out = []
    for i in range(count):
        draft = rng.choice([7, 7, 7, 7, 6, 4, 2019, 2020])
        schema = rand_schema(rng, draft)
        if draft <= 7 and rng.random() < 0.3:
            # recursion through definitions (refs to the root and to each other)
            schema = {"definitions": {"d0": rand_schema(rng, draft, 1, True), "d1": rand_schema(rng, draft, 1, True)},
                      "anyOf": [rand_schema(rng, draft, 1, True), {"$ref": "#/definitions/d0"}]}
        instances = [rand_value(rng) for _ in range(12)]
        out.append((draft, schema, instances))
    return out


def rand_regex(rng, depth=0):
    """A random pattern in the subset both engines read alike (for ASCII text with no newline)."""
    def atom():
        r = rng.random()
        if depth < 2 and r < 0.15:
            inner = "|".join(rand_regex(rng, depth + 1) for _ in range(rng.randrange(1, 3)))
            return rng.choice(["(", "(?:"]) + inner + ")"
        return rng.choice(["a", "b", "c", "-", "\\.", ".", "[abc]", "[^a]", "[a-c1]", "\\d", "\\w", "\\s", "\\W",
                           "[-a]", "[.]", "1"])
    out = []
    if rng.random() < 0.3:
        out.append("^")
    for _ in range(rng.randrange(1, 4)):
        a = atom()
        q = rng.random()
        if q < 0.45:
            a += rng.choice(["*", "+", "?", "{2}", "{1,3}", "{2,}", "{0,2}"]) + ("?" if rng.random() < 0.2 else "")
        out.append(a)
        if rng.random() < 0.1:
            out.append("\\b")
    if rng.random() < 0.3:
        out.append("$")
    return "".join(out)


def regex_cases(rng, count):
    out = []
    alphabet = "abc1-. "
    for _ in range(count):
        pattern = rand_regex(rng)
        strings = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(9))) for _ in range(15)]
        out.append((7, {"pattern": pattern}, strings))
    return out


UNICODE_CLASS = re.compile(r"\\\\[wWdDsSb]")


def main():
    args = sys.argv[1:]
    klua = os.path.realpath(args[0])
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 20
    count = int(args[args.index("--schemas") + 1]) if "--schemas" in args else 250
    rng = random.Random(seed)
    corpus = hand_written() + generated(rng, count) + regex_cases(rng, count // 2)
    schemas, cases, expected, where = [], [], [], []
    oracle_errors = 0
    for idx, (draft, schema, instances) in enumerate(corpus):
        text = json.dumps(schema)
        unicode_classes = UNICODE_CLASS.search(text) is not None
        validator = VALIDATORS[draft](schema)
        schemas.append({"schema": schema, "draft": KLUA_DRAFT[draft]})
        for inst in instances:
            itext = json.dumps(inst, ensure_ascii=False)
            if unicode_classes and any(ord(ch) > 127 for ch in itext):
                continue
            try:
                valid = validator.is_valid(inst)
            except TypeError:
                # jsonschema 4.26 raises on additionalItems beside a boolean items (len(True)).
                oracle_errors += 1
                continue
            cases.append([idx, inst])
            expected.append(valid)
            where.append((draft, text, itext))
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([klua, "run", os.path.join(here, "oracle_run.lua")],
                          input=json.dumps({"schemas": schemas, "cases": cases}).encode(),
                          capture_output=True, timeout=300, env=dict(os.environ, KLUA_BROKERS=""))
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode())
        raise SystemExit("klua failed with exit status %d" % proc.returncode)
    got = json.loads(proc.stdout)
    assert len(got) == len(expected), (len(got), len(expected))
    bad = [(w, e, g) for w, e, g in zip(where, expected, got) if e != g]
    n_valid = sum(1 for e in expected if e)
    print("jsonschema %s; " % jsonschema_version, end="")
    print("%d schemas, %d cases (%d valid, %d invalid; %d left out where jsonschema raised), %d disagreements" %
          (len(schemas), len(cases), n_valid, len(cases) - n_valid, oracle_errors, len(bad)))
    for (draft, schema, inst), e, g in bad[:25]:
        print("draft %s schema %s instance %s: jsonschema %s, klua %s" % (draft, schema, inst, e, g))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
