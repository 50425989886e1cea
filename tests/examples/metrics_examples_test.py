#!/usr/bin/env python3
"""The seed 002 and seed 003 examples serve metrics and health while they run (METRICS_ADDR on an
ephemeral port): /healthz answers "ok"; /readyz answers JSON, 503 with reasons or 200, and turns
200 once the service runs; /metrics is the text format 0.0.4, accepted by `promtool check metrics`,
with the example's own series (the workers' klua_worker_messages_total, the pipeline's
pipeline_orders_total); and the example still ends with its "ok" line.

Usage: metrics_examples_test.py KLUA seed002|seed003 [N]
  (seed003 needs a real broker: KLUA_BROKERS, set by tools/with-broker)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import LineReader  # noqa: E402

KLUA = os.path.realpath(sys.argv[1])
WHICH = sys.argv[2]
SCRIPT, OK_LINE, SERIES = {
    # 3,000 messages keep the workers busy for seconds: time to see them ready and counting
    "seed002": ("examples/worker_seed002.lua", "seed002 ok: ", r'^klua_worker_messages_total\{worker="(aws|azure)-sync-group-[^"]*",topic="[^"]*",outcome="ok"\} [1-9]'),
    "seed003": ("examples/pipeline_seed003.lua", "seed003 ok: ", r'^pipeline_consumed_total [1-9]'),
}[WHICH]
ARGS = sys.argv[3:] or (["3000"] if WHICH == "seed002" else [])
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def get(url):
    """(status, content type, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def fail(msg):
    print(f"{WHICH} metrics FAIL: {msg}")
    sys.exit(1)


env = os.environ.copy()
env["METRICS_ADDR"] = "127.0.0.1:0"
proc = subprocess.Popen([KLUA, "run", SCRIPT, *ARGS], stdout=subprocess.PIPE, env=env)
try:
    out = LineReader(proc, SCRIPT)
    line = out.wait_for(lambda l: l.startswith("metrics: "), 60)
    base = re.match(r"metrics: (http://\S+)/metrics", line).group(1)

    status, _, body = get(base + "/healthz")
    if (status, body) != (200, "ok"):
        fail(f"/healthz answered {status} {body!r}")

    # /readyz until it says ready; every answer before is a 503 with its reasons
    deadline, not_ready = time.monotonic() + 60, []
    while True:
        status, ctype, body = get(base + "/readyz")
        doc = json.loads(body)
        if status == 200:
            if doc != {"ready": True}:
                fail(f"/readyz 200 with {body!r}")
            break
        if status != 503 or doc.get("ready") is not False or not doc.get("reasons"):
            fail(f"/readyz answered {status} {body!r}")
        not_ready.append(doc["reasons"])
        if time.monotonic() > deadline:
            fail(f"/readyz never ready: {not_ready[-1]}")
        time.sleep(0.05)  # polling a service with a deadline: it has no event to wait for

    # /metrics until the example's own series counts
    deadline = time.monotonic() + 60
    while True:
        status, ctype, body = get(base + "/metrics")
        if status != 200 or ctype != CONTENT_TYPE:
            fail(f"/metrics answered {status} {ctype}")
        if any(re.match(SERIES, l) for l in body.splitlines()):
            break
        if time.monotonic() > deadline:
            fail(f"no {SERIES} in /metrics")
        time.sleep(0.05)
    promtool = shutil.which("promtool")
    if promtool:
        check = subprocess.run([promtool, "check", "metrics"], input=body.encode(), capture_output=True)
        if check.returncode != 0:
            fail(f"promtool check metrics: {check.stdout.decode()}{check.stderr.decode()}")

    ok = out.wait_for(lambda l: l.startswith(OK_LINE) or " FAIL: " in l, 170)
    if not ok.startswith(OK_LINE):
        fail(ok)
    rc = proc.wait(30)
    if rc != 0:
        fail(f"exit status {rc}")
    print(f"{WHICH} metrics ok: /healthz, /readyz ready after {len(not_ready)} not-ready answer(s), /metrics "
          f"({len(body.splitlines())} lines{', promtool clean' if promtool else ''}); {ok}")
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
