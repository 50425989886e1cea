#!/usr/bin/env python3
"""The bad-input catalogue's runner (issue 17): every case of tests/badinput/cases_*.py is one klua
process, a command line or a Lua chunk (`klua -e`), with the exit code it must end with and a
regular expression its output (stderr, then stdout) must match: the message names what was wrong
and where. `absent` lists strings that must appear nowhere in the output (secrets). No case may
crash (a signal) or hang (each has a timeout).

    tests/badinput/run.py KLUA_BIN [--scratch DIR] [--group G]... [--match RE] [-j N] [--list]

Cases run on the embedded mock cluster (KLUA_BROKERS empty, an empty config directory) in
parallel. A case marked `pending="helper"` waits for another branch's fix: it is run and
counted, and its failure is not one of ours (the lead removes the mark after the merge); one that
passes is listed so the mark can go.
"""
import argparse
import concurrent.futures
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def load_cases():
    cases = []
    for name in sorted(os.listdir(HERE)):
        if not (name.startswith("cases_") and name.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(HERE, name))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        cases.extend(mod.CASES)
    seen = set()
    for c in cases:
        key = (c["group"], c["name"])
        if key in seen:
            raise SystemExit(f"duplicate case {key}")
        seen.add(key)
    return cases


def slug(s):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:80]


def run_case(klua, scratch, c):
    d = os.path.join(scratch, slug(c["group"] + "-" + c["name"]))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "cfg"))
    for rel, content in (c.get("files") or {}).items():
        p = os.path.join(d, rel)
        if content is None:  # a directory
            os.makedirs(p, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(content)
    if c.get("config") is not None:
        os.makedirs(os.path.join(d, "cfg", "klua"))
        with open(os.path.join(d, "cfg", "klua", "config.lua"), "w") as f:
            f.write(c["config"])
    env = dict(os.environ)
    for k in ("KLUA_BROKERS", "KLUA_PROFILE"):
        env.pop(k, None)
    env["XDG_CONFIG_HOME"] = os.path.join(d, "cfg")
    env["XDG_STATE_HOME"] = os.path.join(d, "state")
    env["KLUA_BIN"] = klua
    env.update(c.get("env") or {})
    argv = [klua, "-e", c["lua"]] if "lua" in c else [klua] + list(c["argv"])
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, cwd=d, env=env, input=(c.get("stdin") or "").encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=c.get("timeout", 5 if c.get("pending") else 30))
        rc, out = p.returncode, p.stderr.decode(errors="replace") + p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        rc, out = "hang", ((e.stderr or b"") + (e.stdout or b"")).decode(errors="replace")
    took = time.monotonic() - t0
    problems = []
    if rc != c["exit"]:
        problems.append(f"exit {rc}, expected {c['exit']}")
    if c.get("pattern") and not re.search(c["pattern"], out, re.M):
        problems.append(f"output does not match /{c['pattern']}/")
    for secret in c.get("absent") or ():
        if secret in out:
            problems.append(f"output shows {secret!r}")
    if not problems:
        shutil.rmtree(d, ignore_errors=True)
    return c, problems, out, took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("klua")
    ap.add_argument("--scratch", default=None)
    ap.add_argument("--group", action="append")
    ap.add_argument("--match")
    ap.add_argument("-j", type=int, default=4)
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    klua = os.path.abspath(a.klua)
    cases = load_cases()
    if a.group:
        cases = [c for c in cases if c["group"] in a.group]
    if a.match:
        cases = [c for c in cases if re.search(a.match, c["group"] + "/" + c["name"])]
    if a.list:
        for c in cases:
            print(f"{c['group']}/{c['name']}" + (f"  (pending {c['pending']})" if c.get("pending") else ""))
        print(f"{len(cases)} cases")
        return 0
    scratch = os.path.abspath(a.scratch or os.path.join(os.path.dirname(klua), "badinput"))
    os.makedirs(scratch, exist_ok=True)
    t0 = time.monotonic()
    failed, pending_failed, pending_passed, by_group, slow = [], [], [], {}, []
    with concurrent.futures.ThreadPoolExecutor(a.j) as ex:
        for c, problems, out, took in ex.map(lambda c: run_case(klua, scratch, c), cases):
            g = by_group.setdefault(c["group"], [0, 0])
            g[0] += 1
            slow.append((took, c["group"] + "/" + c["name"]))
            if c.get("pending"):
                (pending_failed if problems else pending_passed).append(c)
                continue
            if problems:
                failed.append((c, problems, out))
            else:
                g[1] += 1
    for c, problems, out in failed:
        what = c["lua"] if "lua" in c else " ".join(c["argv"])
        print(f"FAIL {c['group']}/{c['name']}: {'; '.join(problems)}\n  input: {what}\n  output: "
              + out.strip().replace("\n", "\n          ")[:1500])
    for g in sorted(by_group):
        print(f"  {g:12} {by_group[g][0]:4} cases")
    if pending_failed:
        by = {}
        for c in pending_failed:
            by[c["pending"]] = by.get(c["pending"], 0) + 1
        print("pending (another branch's fix, skipped): " + ", ".join(f"{n} {k}" for k, n in sorted(by.items())))
    for c in pending_passed:
        print(f"pending case now passes (remove its mark): {c['group']}/{c['name']}")
    slow.sort(reverse=True)
    print("slowest: " + ", ".join(f"{n} {t:.1f}s" for t, n in slow[:3]))
    n = len(cases) - len(pending_failed) - len(pending_passed)
    print(f"{len(cases)} cases: {n - len(failed)} passed, {len(failed)} failed, "
          f"{len(pending_failed) + len(pending_passed)} pending, in {time.monotonic() - t0:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
