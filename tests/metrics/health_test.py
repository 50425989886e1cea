#!/usr/bin/env python3
"""/healthz and /readyz of klua.metrics.serve, driven from outside by curl and urllib, on the embedded
cluster (docs/metrics.md, Endpoints):

- /healthz answers "ok" while the loop is free, FAILS within curl's --max-time 1 while the script
  blocks its loop on purpose (a busy Lua loop of 3 s, started by a request to a control server of
  the script's own), and answers again once the loop is free.
- /readyz is 200 before any consumer exists, 503 naming the consumer from its subscribe until its
  group assignment is done (held by an on_assign hook that waits for the test), 200 after.
- /readyz in flight when SIGTERM comes (the script's ready function takes 1.5 s) answers 503
  "shutting down", where the same request without the signal answers 200; the script exits 143.

Usage: health_test.py KLUA [SCRATCH_DIR]
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from common import LineReader  # noqa: E402

KLUA = os.path.realpath(sys.argv[1])
SCRATCH = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(KLUA), "health-test")
os.makedirs(SCRATCH, exist_ok=True)
BLOCK_MS = 3000

SCRIPT = r"""
local suffix = klua.uuid():sub(1, 8)
local topic, group = "health-" .. suffix, "health-" .. suffix
local slow_ready = false -- POST /slow-ready: the ready function then takes 1.5 s
local srv = assert(klua.metrics.serve{ host = "127.0.0.1", port = 0, ready = function()
  if slow_ready then
    print("ready-called") io.stdout:flush()
    klua.sleep(1500)
  end
  return true
end })
klua.embedded.create_topic(topic, 2)
local gate = klua.spawn(klua.sleep, 600000) -- the assignment waits for it (POST /assign opens it)
local ctl = assert(klua.http.serve{ host = "127.0.0.1", port = 0, routes = {
  ["POST /subscribe"] = function()
    local c = klua.consumer{ group = group, topics = { topic }, hook_timeout_ms = 60000,
      on_assign = function()
        print("assigning") io.stdout:flush()
        gate:join()
      end }
    klua.spawn(function() while true do c:poll(100) end end)
    return "subscribed"
  end,
  ["POST /assign"] = function() gate:cancel() return "ok" end,
  ["POST /block"] = function()
    print("blocking") io.stdout:flush()
    local t0 = klua.now()
    while klua.now() - t0 < BLOCK_MS do end -- the loop runs nothing else meanwhile
    print("unblocked") io.stdout:flush()
    return "ok"
  end,
  ["POST /slow-ready"] = function() slow_ready = true return "ok" end,
} })
print("listening on " .. srv.url .. " " .. ctl.url) io.stdout:flush()
""".replace("BLOCK_MS", str(BLOCK_MS))

failures = []


def check(what, cond, detail=""):
    print(("ok   " if cond else "FAIL ") + what + ("" if cond else f": {detail}"))
    if not cond:
        failures.append(what)


def get(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def post(url):
    with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=60) as r:
        return r.read().decode()


def curl_healthz(base):
    """(curl's exit status, body, seconds taken) of GET /healthz with --max-time 1."""
    t0 = time.monotonic()
    r = subprocess.run(["curl", "-sS", "--max-time", "1", base + "/healthz"], capture_output=True)
    return r.returncode, r.stdout.decode(), time.monotonic() - t0


script = os.path.join(SCRATCH, "health.lua")
with open(script, "w") as f:
    f.write(SCRIPT)
env = os.environ.copy()
env["KLUA_BROKERS"] = ""
proc = subprocess.Popen([KLUA, "run", script], stdout=subprocess.PIPE, env=env)
try:
    out = LineReader(proc, "health.lua")
    base, ctl = out.wait_for(lambda l: l.startswith("listening on "), 60).split()[2:4]

    # /healthz: free, blocked, free again
    rc, body, _ = curl_healthz(base)
    check("/healthz answers ok while the loop is free", (rc, body) == (0, "ok"), (rc, body))
    blocker = threading.Thread(target=post, args=(ctl + "/block",))
    blocker.start()
    out.wait_for(lambda l: l == "blocking", 30)
    rc, body, took = curl_healthz(base)
    check("/healthz fails within curl's 1 s timeout while the loop is blocked",
          rc == 28 and took < 1.9, f"curl exit {rc} (28 is a timeout), body {body!r}, {took:.2f} s")
    out.wait_for(lambda l: l == "unblocked", 30)
    blocker.join()
    rc, body, _ = curl_healthz(base)
    check("/healthz answers ok again once the loop is free", (rc, body) == (0, "ok"), (rc, body))

    # /readyz around the group assignment
    status, body = get(base + "/readyz")
    check("/readyz is 200 before any consumer exists", (status, json.loads(body)) == (200, {"ready": True}), body)
    post(ctl + "/subscribe")
    status, body = get(base + "/readyz")
    doc = json.loads(body)
    check("/readyz is 503 after the subscribe, naming the consumer without an assignment",
          status == 503 and doc["ready"] is False and any("no partition assignment" in r for r in doc["reasons"]),
          (status, body))
    out.wait_for(lambda l: l == "assigning", 60)
    status, body = get(base + "/readyz")
    check("/readyz is still 503 while the assignment's on_assign hook runs", status == 503, (status, body))
    post(ctl + "/assign")
    deadline = time.monotonic() + 10
    while True:  # the hook returns on the loop's next turns: poll with a deadline
        status, body = get(base + "/readyz")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    check("/readyz is 200 once the assignment is done", (status, json.loads(body)) == (200, {"ready": True}), body)

    # /readyz in flight when SIGTERM comes
    post(ctl + "/slow-ready")
    status, body = get(base + "/readyz")
    check("a slow /readyz without a signal is 200", status == 200, (status, body))
    out.wait_for(lambda l: l == "ready-called", 30)  # that request's line: the next one is the next request's
    answer = {}
    reader = threading.Thread(target=lambda: answer.update(zip(("status", "body"), get(base + "/readyz"))))
    reader.start()
    out.wait_for(lambda l: l == "ready-called", 30)
    proc.send_signal(signal.SIGTERM)
    reader.join(30)
    doc = json.loads(answer.get("body") or "{}")
    check("/readyz in flight at SIGTERM is 503 shutting down",
          answer.get("status") == 503 and "shutting down" in doc.get("reasons", []), answer)
    rc = proc.wait(60)
    check("the script exits 143 after SIGTERM", rc == 143, rc)
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()

if failures:
    print(f"health FAIL: {len(failures)} check(s) failed")
    sys.exit(1)
print("health ok")
