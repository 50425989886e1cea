"""A real Prometheus server for tests (Python stdlib only).

Starts Debian's `prometheus` directly (no daemon, no systemd) on an ephemeral port of 127.0.0.1,
with a configuration of its own (scrape_interval 1s, static targets) and its TSDB in a fresh
directory under the scratch directory given (the build dir), reads the bound address from its log
("Listening on" address=...), waits for /-/ready and offers queries through the HTTP API.
Everything is removed on the way out, failures included: use it as a context manager.

    from prometheus_harness import Prometheus
    with Prometheus(scratch, targets=["127.0.0.1:9464"]) as prom:
        prom.wait_for_scrape()                          # one successful scrape of every target
        prom.wait_value("sum(klua_consumer_messages_total)", lambda v: v == 100, timeout=30)
        rows = prom.query('klua_consumer_lag')          # [{"metric": {...}, "value": 0.0}, ...]

A system Prometheus on :9090 (Debian's postinst may have started one) is never used nor needed.
"""
import atexit
import ctypes
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

PROMETHEUS = os.environ.get("KLUA_PROMETHEUS", "prometheus")
PROMTOOL = os.environ.get("KLUA_PROMTOOL", "promtool")
_LISTENING = re.compile(r'msg="Listening on" address=(\S+)')


def _die_with_parent():
    # The server goes when the test does, even when the test is SIGKILLed (a ctest timeout):
    # prctl(PR_SET_PDEATHSIG, SIGTERM) in the child before exec.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Prometheus:
    def __init__(self, scratch, targets, job="klua", scrape_interval="1s", startup_timeout=60):
        self.targets, self.job = list(targets), job
        os.makedirs(scratch, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="prometheus-", dir=os.path.abspath(scratch))
        self.proc = None
        self.url = None
        self.log_lines = []
        atexit.register(self.close)
        try:
            self._start(scrape_interval, startup_timeout)
        except BaseException:
            self.close()
            raise

    def _start(self, scrape_interval, startup_timeout):
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            # YAML is a superset of JSON: no YAML library needed.
            json.dump({
                "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                           "evaluation_interval": scrape_interval},
                "scrape_configs": [{"job_name": self.job, "static_configs": [{"targets": self.targets}]}],
            }, f)
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:0", "--log.level=info"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent, cwd=self.dir)
        lines = queue.Queue()

        def pump():  # keeps reading so the server never blocks on a full pipe
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace").rstrip("\n")
                self.log_lines.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + startup_timeout
        while self.url is None:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise AssertionError(f"prometheus: no listening address within {startup_timeout} s\n" + self.log()) from None
            if line is None:
                raise AssertionError(f"prometheus exited (status {self.proc.wait()}) before listening\n" + self.log())
            m = _LISTENING.search(line)
            if m:
                self.url = "http://" + m.group(1)
        # /-/ready answers 503 until the TSDB is open; polled with a deadline (no event to wait on).
        while True:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited (status {self.proc.returncode})\n" + self.log())
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus not ready within {startup_timeout} s\n" + self.log())
            time.sleep(0.1)

    def log(self, last=30):
        return "\n".join(self.log_lines[-last:])

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # The HTTP API.

    def api(self, path, **params):
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400/422: a bad query, the error in the body
            body = json.loads(e.read() or b"{}")
        if body.get("status") != "success":
            raise AssertionError(f"prometheus {path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql):
        """An instant query: a list of {"metric": labels, "value": float} (a scalar: one row, no labels)."""
        data = self.api("/api/v1/query", query=promql)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": float(data["result"][1])}]
        if data["resultType"] == "matrix":
            return [{"metric": r["metric"], "values": [float(v) for _, v in r["values"]]} for r in data["result"]]
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in data["result"]]

    def value(self, promql):
        """The one value of a query, or None when it has no result; a query of several series is an error."""
        rows = self.query(promql)
        if not rows:
            return None
        if len(rows) > 1:
            raise AssertionError(f"{promql}: {len(rows)} series, expected one: {rows}")
        return rows[0]["value"]

    def wait_until(self, promql, predicate, timeout=30, what=None):
        """Polls query(promql) (once per 200 ms: Prometheus offers no event) until predicate(rows) is
        true; returns the rows, or raises naming the last rows seen."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.query(promql)
            if predicate(rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or promql}: not reached within {timeout} s; last result {rows}\n"
                                     f"targets: {self.targets_health()}")
            time.sleep(0.2)

    def wait_value(self, promql, predicate, timeout=30):
        """wait_until for a query of one value; returns it."""
        rows = self.wait_until(promql, lambda r: len(r) == 1 and predicate(r[0]["value"]), timeout)
        return rows[0]["value"]

    def targets_health(self):
        return [(t["scrapeUrl"], t["health"], t.get("lastError", "")) for t in self.api("/api/v1/targets")["activeTargets"]]

    def wait_for_scrape(self, timeout=30):
        """Until every target has been scraped successfully (up == 1)."""
        self.wait_until(f'up{{job="{self.job}"}}',
                        lambda rows: len(rows) == len(self.targets) and all(r["value"] == 1 for r in rows),
                        timeout, what="a successful scrape of " + ", ".join(self.targets))


def promtool_check_metrics(text):
    """`promtool check metrics` on an exposition text: (ok, its output). It reads standard input and
    exits non-zero on a format error or a lint problem (a counter not ending in _total, ...)."""
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    return r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")


if __name__ == "__main__":  # a self-check: a static exposition served by Python, scraped and queried
    import http.server
    import sys

    TEXT = b"# HELP harness_selfcheck_total A constant.\n# TYPE harness_selfcheck_total counter\nharness_selfcheck_total 42\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(TEXT)))
            self.end_headers()
            self.wfile.write(TEXT)

        def log_message(self, *args):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    ok, out = promtool_check_metrics(TEXT.decode())
    assert ok, out
    try:
        with Prometheus(sys.argv[1] if len(sys.argv) > 1 else os.getcwd(), [f"127.0.0.1:{srv.server_port}"]) as prom:
            prom.wait_for_scrape()
            got = prom.value("harness_selfcheck_total")
            assert got == 42, got
            storage = prom.dir
        assert not os.path.exists(storage), storage
        print("prometheus_harness ok")
    finally:
        srv.shutdown()
