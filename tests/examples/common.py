"""Shared plumbing of the examples' tests: a klua service started as a real process, whose
"listening on URL" line is read (no sleeping), and HTTP calls made by independent clients
(Python's urllib and http.client, and the curl program)."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def use_venv_python():
    """Re-run under the interpreter that has confluent-kafka (KLUA_PYTHON, else tools/dev's venv)."""
    try:
        import confluent_kafka  # noqa: F401
        return
    except ImportError:
        pass
    venv = os.environ.get("KLUA_PYTHON") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "klua/venv/bin/python")
    if os.path.exists(venv) and not os.environ.get("KLUA_PYTHON_REEXEC"):
        os.environ["KLUA_PYTHON_REEXEC"] = "1"
        os.execv(venv, [venv] + sys.argv)
    raise SystemExit("confluent-kafka is not installed (tools/dev makes ~/.cache/klua/venv)")


class LineReader:
    """Lines of a child's stdout, read by a thread as they come (so the child never blocks on a full
    pipe) and handed out with a deadline (a queue, no sleep)."""

    def __init__(self, proc, name):
        self.proc, self.name, self.lines = proc, name, queue.Queue()

        def pump():
            for raw in proc.stdout:
                self.lines.put(raw.decode().rstrip("\n"))
            self.lines.put(None)  # the end of the output

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, predicate, timeout):
        """The next line for which predicate(line) is true (earlier ones are dropped); raises after timeout s."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0))
            except queue.Empty:
                raise AssertionError(f"{self.name}: no expected line within {timeout} s") from None
            if line is None:
                self.lines.put(None)
                raise AssertionError(f"{self.name} ended (status {self.proc.wait()}) before the expected line")
            if predicate(line):
                return line


class Service:
    """A klua script serving HTTP: started, its URL read from its "listening on" line."""

    def __init__(self, klua, script, *args, env=None, log=None, klua_args=()):
        self.log = open(log, "wb") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen([klua, *klua_args, "run", script, *args], stdout=subprocess.PIPE, stderr=self.log,
                                     env=env or os.environ.copy())
        self.out = LineReader(self.proc, script)
        line = self.out.wait_for(lambda l: l.startswith("listening on "), 60)
        self.url = line[len("listening on "):].strip()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends sig and returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.log is not subprocess.DEVNULL:
                self.log.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def call(method, url, body=None, raw=None, headers=None, timeout=30):
    """urllib: (status, headers, decoded JSON or text or None). body: a value sent as JSON."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json"} if data is not None else {}
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, text = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, text = e.code, e.headers, e.read()
    if not text:
        return status, hdrs, None
    if (hdrs.get("Content-Type") or "").startswith("application/json"):
        return status, hdrs, json.loads(text)
    return status, hdrs, text.decode()


def curl(method, url, body=None):
    """The curl program: (status, decoded JSON or None)."""
    args = ["curl", "-sS", "-X", method, "-o", "-", "-w", "\n%{http_code}", url]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", body if isinstance(body, str) else json.dumps(body)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    text, _, code = out.rpartition("\n")
    return int(code), (json.loads(text) if text.strip() else None)


class Checks:
    """Assertions that count and go on, so one run reports every difference."""

    def __init__(self, name):
        self.name, self.failed, self.passed = name, [], 0

    def eq(self, what, got, want):
        if got == want:
            self.passed += 1
        else:
            self.failed.append(f"{what}: got {got!r}, want {want!r}")
            print(f"FAIL {what}: got {got!r}, want {want!r}", flush=True)

    def true(self, what, cond, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed.append(f"{what} {detail}")
            print(f"FAIL {what} {detail}", flush=True)

    def finish(self):
        if self.failed:
            print(f"{self.name}: {len(self.failed)} failed, {self.passed} passed")
            sys.exit(1)
        print(f"{self.name} ok: {self.passed} checks passed")
