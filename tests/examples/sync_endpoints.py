#!/usr/bin/env python3
"""The two cloud endpoints of seed 002 for examples/ingest.lua's test, in a process of their own.

Usage: sync_endpoints.py SLOW_MS FAIL_EVERY
  "aws": fast, and every FAIL_EVERY-th request answers 503 (not recorded);
  "azure": SLOW_MS per request.
A message whose Data is "reject-me" gets 422 (its id listed in "rejected").
Both record every MessageId they accept (POST, JSON body with MessageId, Idempotency-Key equal to it)
with the time it came (monotonic seconds). Prints "ports AWS AZURE" once both listen, then
"saved NAME n T" when NAME got its n-th distinct id, and for the slow one "arrived NAME ID T" when a
request comes (before its wait), "rejected NAME ID T" after a 422 (T monotonic). GET /records
answers {"ids": {id: count}, "times": [t...], "bad": [...], "refused": n, "rejected": [id...]}.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_MS, FAIL_EVERY = int(sys.argv[1]), int(sys.argv[2])
lock = threading.Lock()
out_lock = threading.Lock()


def say(line):
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Endpoint:
    def __init__(self, name, slow_ms, fail_every):
        self.name, self.slow_ms, self.fail_every = name, slow_ms, fail_every
        self.ids, self.times, self.bad, self.requests, self.refused, self.rejected = {}, [], [], 0, 0, []

    def handler(self):
        ep = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a cloud endpoint would
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, *a):
                pass

            def answer(self, status, body=b""):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                with lock:
                    body = json.dumps({"ids": ep.ids, "times": ep.times, "bad": ep.bad, "refused": ep.refused,
                                       "rejected": ep.rejected})
                self.answer(200, body.encode())

            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if ep.slow_ms:
                    say(f"arrived {ep.name} {self.headers.get('Idempotency-Key')} {time.monotonic()}")
                    time.sleep(ep.slow_ms / 1000)
                with lock:
                    ep.requests += 1
                    fail = ep.fail_every and ep.requests % ep.fail_every == 0
                    if fail:
                        ep.refused += 1
                if fail:
                    return self.answer(503, b'{"error":"try again"}')
                try:
                    msg = json.loads(data)
                    mid = msg["MessageId"]
                except (ValueError, KeyError, TypeError):
                    with lock:
                        ep.bad.append(data.decode(errors="replace")[:200])
                    return self.answer(400, b'{"error":"bad message"}')
                if msg.get("Data") == "reject-me":  # a payload the cloud refuses: final, not retried
                    with lock:
                        ep.rejected.append(mid)
                    self.answer(422, b'{"error":"unprocessable"}')
                    return say(f"rejected {ep.name} {mid} {time.monotonic()}")
                if self.headers.get("Idempotency-Key") != mid or not (self.headers.get("Content-Type") or "").startswith("application/json"):
                    with lock:
                        ep.bad.append(f"{mid}: headers {dict(self.headers)!r}")
                now = time.monotonic()
                with lock:
                    ep.ids[mid] = ep.ids.get(mid, 0) + 1
                    ep.times.append(now)
                    n = len(ep.ids)
                    first = ep.ids[mid] == 1
                if first:
                    say(f"saved {ep.name} {n} {now}")
                self.answer(200, b'{"saved":true}')

        return H


servers = []
for ep in (Endpoint("aws", 0, FAIL_EVERY), Endpoint("azure", SLOW_MS, 0)):
    s = ThreadingHTTPServer(("127.0.0.1", 0), ep.handler())
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()
    servers.append(s)
say(f"ports {servers[0].server_address[1]} {servers[1].server_address[1]}")
sys.stdin.read()  # until the test closes our stdin
