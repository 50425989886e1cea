#!/usr/bin/env python3
"""klua's Avro schema resolution against Apache Avro (Java) 1.11.4, the reference implementation.

Usage: java_resolution_test.py KLUA_BIN [--seed N] [--count N]

Every case (the spec's rules written by hand in resolve_cases.py, plus --count generated writer/reader
pairs) goes through tests/avro/java/ResolveOracle.java in one JVM: Java encodes the writer's value and
decodes it with GenericDatumReader(writer, reader). klua decodes Java's bytes with
klua.avro.resolver(writer, reader) in one `klua run` and prints the value with the reader's
s:to_json. The two must agree: both fail, or both succeed with the same value. The writer's value
itself (the Avro JSON Java's JsonDecoder read) also goes through klua's s:from_json and s:encode,
which must give the value Java's bytes hold.

The jars come from Maven Central (tests/avro/java/pom.xml) into ~/.cache/klua/avro-java-1.11.4; the
test fetches them with mvn when missing and is skipped (exit 77) when there is no java or no way to
get them.
"""
import glob
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import resolve_cases  # noqa: E402

SKIP = 77
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "klua",
                     "avro-java-1.11.4")


def find_java():
    cands = []
    if os.environ.get("JAVA_HOME"):
        cands.append(os.path.join(os.environ["JAVA_HOME"], "bin", "java"))
    cands += sorted(glob.glob("/usr/lib/jvm/temurin-*/bin/java"), reverse=True)
    if shutil.which("java"):
        cands.append(shutil.which("java"))
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    return None


def jars():
    found = glob.glob(os.path.join(CACHE, "*.jar"))
    if any(os.path.basename(j).startswith("avro-1.11.4") for j in found):
        return found
    mvn = shutil.which("mvn")
    if not mvn:
        return None
    os.makedirs(CACHE, exist_ok=True)
    try:
        # MAVEN_OPTS: no /tmp/hsperfdata_USER left behind by Maven's JVM
        env = dict(os.environ, MAVEN_OPTS=(os.environ.get("MAVEN_OPTS", "") + " -XX:-UsePerfData").strip())
        r = subprocess.run([mvn, "-q", "-B", "-f", os.path.join(HERE, "java", "pom.xml"),
                            "dependency:copy-dependencies", "-DoutputDirectory=" + CACHE],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300, env=env)
    except subprocess.TimeoutExpired:
        print("mvn took over 300 s (no network?)")
        return None
    if r.returncode != 0:
        print(r.stdout[-2000:])
        return None
    return glob.glob(os.path.join(CACHE, "*.jar"))


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


LUA_ALIKE = {"int", "long", "float", "double", "bytes", "string"}


def same(a, b, path="$", strict=False):
    """Equal JSON values; a float that is exactly a single-precision value compares as one."""
    if isinstance(a, bool) or isinstance(b, bool):
        return (a == b and type(a) is type(b)) or "%s: %r != %r" % (path, a, b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
            return True
        if isinstance(a, float) or isinstance(b, float):
            # a float's shortest text differs between printers (-425076.12 and -425076.13 are both
            # the float -425076.125): equal when they are the same single-precision value
            fa, fb = float(a), float(b)
            if f32(fa) == f32(fb) and abs(fa - fb) <= abs(fa) * 1e-7:
                return True
        return "%s: %r != %r" % (path, a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        if not strict and len(a) == 1 and len(b) == 1 and set(a) != set(b) and {*a, *b} <= LUA_ALIKE:
            # a union branch the Lua value cannot tell (docs/avro.md: s:to_json names the first
            # branch taking the value): {"long": 5} and {"double": 5.0}, {"string": "中"} and
            # {"bytes": "\u00e4\u00b8\u00ad"} are the same value
            (ka, va), = a.items()
            (kb, vb), = b.items()
            if ka == "string":
                va = va.encode("utf-8").decode("latin-1")
            if kb == "string":
                vb = vb.encode("utf-8").decode("latin-1")
            return same(va, vb, path + "." + ka)
        if set(a) != set(b):
            return "%s: keys %s != %s" % (path, sorted(a), sorted(b))
        for k in a:
            r = same(a[k], b[k], path + "." + k, strict)
            if r is not True:
                return r
        return True
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return "%s: %d items != %d" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            r = same(x, y, "%s[%d]" % (path, i), strict)
            if r is not True:
                return r
        return True
    if isinstance(a, str) and isinstance(b, str) and a != b and "\ufffd" in a and "\ufffd" in b:
        # bytes read as a string that are not UTF-8: decoders differ in how many U+FFFD stand for
        # one malformed sequence (Java's decoder gives one for "ed a8", Unicode's recommended
        # practice, which klua follows, one per byte); the text around them must still agree
        a2, b2 = re.sub("\ufffd+", "\ufffd", a), re.sub("\ufffd+", "\ufffd", b)
        return a2 == b2 or "%s: %r != %r" % (path, a, b)
    return a == b or "%s: %r != %r" % (path, a, b)


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
    java = find_java()
    if not java:
        print("SKIP: no java")
        return SKIP
    cp = jars()
    if not cp:
        print("SKIP: no Apache Avro jars in %s and mvn could not fetch them" % CACHE)
        return SKIP
    print("seed %d (rerun with --seed %d or KLUA_SEED=%d)" % (seed, seed, seed))
    cases = resolve_cases.spec_cases() + resolve_cases.generated(seed, count)
    with tempfile.TemporaryDirectory(prefix="klua-avro-java-") as tmp:
        t0 = time.time()
        jin = "\n".join(json.dumps({"id": c["id"], "writer": c["writer"], "reader": c["reader"],
                                    "value": c["value"]}) for c in cases) + "\n"
        r = subprocess.run([java, "-XX:-UsePerfData", "-cp", os.pathsep.join(cp), os.path.join(HERE, "java", "ResolveOracle.java")],
                           input=jin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
        if r.returncode != 0:
            print(r.stderr[-3000:])
            return 1
        oracle = {o["id"]: o for o in (json.loads(x) for x in r.stdout.split("\n") if x)}
        t1 = time.time()
        kin = os.path.join(tmp, "cases.jsonl")
        kout = os.path.join(tmp, "out.jsonl")
        bad = 0
        with open(kin, "w") as f:
            for c in cases:
                o = oracle[c["id"]]
                if "bad_case" in o:
                    bad += 1
                    if c["id"].startswith("spec"):
                        print("BROKEN CASE %s (%s): %s" % (c["id"], c["what"], o["bad_case"]))
                        return 1
                    continue
                f.write(json.dumps({"op": "resolve", "id": c["id"], "writer": json.dumps(c["writer"]),
                                    "reader": json.dumps(c["reader"]), "bytes": o["bytes"],
                                    "value": c["value"]}) + "\n")
        r = subprocess.run([klua, "run", os.path.join(HERE, "resolve_driver.lua"), kin, kout],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                           env=dict(os.environ, KLUA_BROKERS=""))
        if r.returncode != 0:
            print(r.stdout[-3000:])
            return 1
        mine = {o["id"]: o for o in (json.loads(x) for x in open(kout).read().split("\n") if x)}
        t2 = time.time()
    failures, agree_ok, agree_err, java_blank = [], 0, 0, 0
    for c in cases:
        o = oracle[c["id"]]
        if "bad_case" in o:
            continue
        m = mine.get(c["id"])
        where = "%s (%s)\n  writer %s\n  reader %s\n  value  %s\n  bytes  %s" % (
            c["id"], c["what"], json.dumps(c["writer"]), json.dumps(c["reader"]), c["value"], o["bytes"])
        if m is None:
            failures.append(where + "\n  klua: no result")
        elif "value_error" in m or m.get("value_mine") != m.get("value_theirs"):
            # s:from_json of the value Java's JsonDecoder read, encoded by klua: the same value as
            # Java's bytes hold
            failures.append(where + "\n  klua's from_json of the writer's value: %s" % (
                m.get("value_error") or "%s, Java's bytes hold %s" % (m.get("value_mine"), m.get("value_theirs"))))
        elif (m.get("decode_json") or "").startswith("error"):
            failures.append(where + "\n  klua's decode_json of Java's bytes: %s" % m["decode_json"])
        elif o.get("writer_json") and same(json.loads(o["writer_json"]), json.loads(m.get("decode_json") or "null"),
                                           strict=True) is not True:  # ("" : Java's empty-record quirk)
            # s:decode_json of Java's bytes prints what Java's JsonEncoder prints for the writer's
            # value, union branch names included
            failures.append(where + "\n  java's writer JSON %s\n  klua decode_json   %s\n  %s" % (
                o["writer_json"], m["decode_json"],
                same(json.loads(o["writer_json"]), json.loads(m.get("decode_json") or "null"), strict=True)))
        elif o["ok"] != m["ok"]:
            failures.append(where + "\n  java: %s\n  klua: %s" % (
                o.get("result") or o.get("error"), m.get("result") or "%s: %s" % (m.get("stage"), m.get("error"))))
        elif o["ok"] and o["result"] == "":
            java_blank += 1  # Java's JsonEncoder writes nothing for some empty records
        elif o["ok"]:
            d = same(json.loads(o["result"]), json.loads(m["result"]))
            if d is not True:
                failures.append(where + "\n  java: %s\n  klua: %s\n  %s" % (o["result"], m["result"], d))
            else:
                agree_ok += 1
        else:
            if m.get("stage") not in ("resolver", "decode") or m.get("name") not in ("KLUA_SCHEMA",):
                failures.append(where + "\n  java: %s\n  klua failed with the wrong error: %s: %s" % (
                    o["error"], m.get("stage"), m.get("error")))
            else:
                agree_err += 1
    print("%d cases: %d decoded alike, %d refused by both, %d decoded by both (Java printed nothing), "
          "%d broken generated cases skipped; java %.1fs, klua %.1fs" % (
              len(cases), agree_ok, agree_err, java_blank, bad, t1 - t0, t2 - t1))
    for f in failures[:20]:
        print("MISMATCH " + f)
    if failures:
        print("%d mismatches (seed %d)" % (len(failures), seed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
