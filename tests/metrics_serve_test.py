#!/usr/bin/env python3
"""klua.metrics.serve and klua.metrics.routes against Python's http.client: /metrics (status, the
exact Content-Type, the text), /healthz, /readyz flipping from 503 to 200 as a readiness check and
the script's ready function change their minds (a ready function that waits, raises, or does not
answer within 2 s), 405 for other methods, /healthz failing while the loop is blocked, and /readyz
saying "shutting down" for a request in flight when SIGTERM comes.

Usage: metrics_serve_test.py KLUA SCRATCH_DIR. Events inside the script are lines on its stdout,
read by a thread: the test waits for them, never sleeps for them.
"""
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

KLUA = os.path.realpath(sys.argv[1])
SCRATCH = os.path.realpath(sys.argv[2])
os.makedirs(SCRATCH, exist_ok=True)
ENV = dict(os.environ, KLUA_BROKERS="")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

SCRIPT = r'''
local m = klua.metrics
local orders = m.counter{ name = "orders", help = "Orders handled", labels = { "outcome" } }
orders:labels("ok"):inc(41)
orders:labels("ok"):inc()
local flag = false
m.add_readiness_check("flag", function() return flag, "waiting for the flag" end)
local mode = "ok"
local function ready()
  if mode == "ok" then return true end
  if mode == "wait" then klua.sleep(50) return true end
  if mode == "false" then return false, "not warmed up" end
  if mode == "raise" then error("ready blew up") end
  if mode == "silent" then klua.sleep(60000) return true end
  if mode == "announce" then
    print("EVENT ready called") io.stdout:flush()
    klua.sleep(60000)
    return true
  end
end
local srv = assert(m.serve{ port = 0, ready = ready })
-- routes merged into a server of the script's own, beside its control routes
local routes = m.routes{ ready = ready }
routes["POST /flag"] = function() flag = true return "flag set" end
routes["POST /mode/:m"] = function(req) mode = req.params.m return "mode " .. mode end
routes["POST /block"] = function()
  print("EVENT blocking") io.stdout:flush()
  local t = os.clock()
  while os.clock() - t < 1.5 do end  -- the loop is blocked: nothing else answers meanwhile
  return "unblocked"
end
local own = assert(klua.http.serve{ port = 0, routes = routes })
print("PORTS " .. srv.port .. " " .. own.port) io.stdout:flush()
'''


class Klua:
    def __init__(self):
        path = os.path.join(SCRATCH, "metrics_serve.lua")
        with open(path, "w") as f:
            f.write(SCRIPT)
        self.p = subprocess.Popen([KLUA, "run", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                                  text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        line = self.expect("PORTS ")
        self.port, self.own = (int(x) for x in line.split()[1:])

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"klua ended before {prefix!r}: {self.p.stderr.read()}")
            if line.startswith(prefix):
                return line


def request(port, method, path, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        c.close()


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok   {what}", flush=True)


def main():
    k = Klua()
    try:
        for port, which in ((k.port, "serve"), (k.own, "routes")):
            st, ct, body = request(port, "GET", "/metrics")
            check(st == 200 and ct == CONTENT_TYPE, f"{which}: GET /metrics is 200 with Content-Type {ct!r}")
            check("# TYPE orders_total counter\n" in body and 'orders_total{outcome="ok"} 42\n' in body
                  and "\nprocess_resident_memory_bytes " in body, f"{which}: the text has the script's counter")
            st, ct, body = request(port, "GET", "/healthz")
            check((st, body) == (200, "ok"), f"{which}: /healthz is 200 ok")
            st, ct, body = request(port, "POST", "/metrics")
            check(st == 405, f"{which}: POST /metrics is 405")
            st, _, _ = request(port, "DELETE", "/readyz")
            check(st == 405, f"{which}: DELETE /readyz is 405")
            st, _, body = request(port, "HEAD", "/metrics")
            check(st == 200 and body == "", f"{which}: HEAD /metrics is 200 without a body")

        st, ct, body = request(k.port, "GET", "/readyz")
        check(st == 503 and ct == "application/json"
              and json.loads(body) == {"ready": False, "reasons": ["flag: waiting for the flag"]},
              f"/readyz is 503 while the check says no: {body}")
        request(k.own, "POST", "/flag")
        for port in (k.port, k.own):
            st, ct, body = request(port, "GET", "/readyz")
            check(st == 200 and json.loads(body) == {"ready": True}, f"/readyz is 200 once the check agrees: {body}")

        request(k.own, "POST", "/mode/wait")
        st, _, body = request(k.port, "GET", "/readyz")
        check(st == 200, "a ready function that waits (50 ms) and says yes: 200")
        request(k.own, "POST", "/mode/false")
        st, _, body = request(k.port, "GET", "/readyz")
        check(st == 503 and json.loads(body)["reasons"] == ["ready: not warmed up"], f"ready returns false: {body}")
        request(k.own, "POST", "/mode/raise")
        st, _, body = request(k.port, "GET", "/readyz")
        reasons = json.loads(body)["reasons"]
        check(st == 503 and len(reasons) == 1 and reasons[0].startswith("ready: raised: ")
              and reasons[0].endswith("ready blew up"), f"ready raises: {body}")
        request(k.own, "POST", "/mode/silent")
        t0 = time.monotonic()
        st, _, body = request(k.port, "GET", "/readyz")
        took = time.monotonic() - t0
        check(st == 503 and json.loads(body)["reasons"] == ["ready: no answer within 2000 ms"] and 1.9 < took < 5,
              f"a ready function that does not answer: 503 after {took:.2f} s: {body}")
        request(k.own, "POST", "/mode/ok")
        st, _, _ = request(k.port, "GET", "/readyz")
        check(st == 200, "ready again")

        # A blocked loop answers nothing: /healthz times out (the probe's failure), then recovers.
        blocker = threading.Thread(target=request, args=(k.own, "POST", "/block"))
        blocker.start()
        k.expect("EVENT blocking")
        t0 = time.monotonic()
        try:
            request(k.port, "GET", "/healthz", timeout=0.5)
            check(False, "/healthz answered while the loop was blocked")
        except (socket.timeout, TimeoutError):
            check(time.monotonic() - t0 < 1.4, "/healthz times out (0.5 s) while the loop is blocked")
        blocker.join()
        st, _, body = request(k.port, "GET", "/healthz")
        check((st, body) == (200, "ok"), "/healthz answers again once the loop runs")

        # SIGTERM while /readyz waits for the ready function: the answer says shutting down.
        request(k.own, "POST", "/mode/announce")
        result = {}

        def probe():
            result["r"] = request(k.port, "GET", "/readyz")
        t = threading.Thread(target=probe)
        t.start()
        k.expect("EVENT ready called")
        k.p.send_signal(signal.SIGTERM)
        t.join(10)
        st, _, body = result["r"]
        reasons = json.loads(body)["reasons"]
        check(st == 503 and reasons == ["shutting down"], f"/readyz in flight at SIGTERM: 503, shutting down: {body}")
        rc = k.p.wait(20)
        check(rc == 143, f"klua exits 143 after SIGTERM (got {rc})")
    finally:
        if k.p.poll() is None:
            k.p.kill()
            k.p.wait()
    print("metrics serve test ok")


if __name__ == "__main__":
    main()
