#!/usr/bin/env python3
"""`klua run --metrics HOST:PORT FILE` from outside: the option's values and errors (exit 2 naming
it), the address printed once on stderr, the statistics default as the lowest configuration
layer, the endpoint's lifetime (it serves while the script runs, never keeps it running, and is
gone after it), a signal's end, and promtool's opinion of what /metrics serves.

Usage: cli_metrics_test.py KLUA SCRATCH_DIR
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from common import Checks, LineReader  # noqa: E402
from prometheus_harness import promtool_check_metrics  # noqa: E402

KLUA = os.path.realpath(sys.argv[1])
os.makedirs(sys.argv[2], exist_ok=True)
SCRATCH = tempfile.mkdtemp(prefix="cli-metrics-", dir=os.path.abspath(sys.argv[2]))
ENV = dict(os.environ, KLUA_BROKERS="")
ck = Checks("cli_metrics")
URL_LINE = re.compile(r"^klua: metrics on (http://\S+/metrics)$")


def klua(*args, stdin=None, timeout=60):
    return subprocess.run([KLUA, *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=ENV,
                          cwd=SCRATCH)


def script(name, text):
    path = os.path.join(SCRATCH, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def get(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


class Running:
    """klua run --metrics ... as a process; stderr's lines read by a thread (the URL comes first)."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([KLUA, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV,
                                     cwd=SCRATCH)
        self.proc.stdout = self.proc.stderr  # LineReader reads .stdout
        self.err = LineReader(self.proc, "klua")
        self.url = URL_LINE.match(self.err.wait_for(lambda l: URL_LINE.match(l), 30)).group(1)

    def wait_line(self, text, timeout=30):
        return self.err.wait_for(lambda l: text in l, timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def bad_values():
    for value in [":9464", "70000", "9464x", "abc", "::1:9464", "127.0.0.1:", "0x10", ""]:
        r = klua("--metrics=" + value if value == "" else "--metrics", *([] if value == "" else [value]), "-e", "print(1)")
        ck.eq(f"--metrics {value!r}: exit", r.returncode, 2)
        ck.true(f"--metrics {value!r}: names the option", "--metrics" in r.stderr and r.stdout == "", r.stderr)
    r = klua("run", "--metrics")
    ck.eq("--metrics without a value", r.returncode, 2)
    ck.true("--metrics without a value: message", "--metrics needs HOST:PORT" in r.stderr, r.stderr)
    r = klua("--embedded", "topics", "--metrics", "0")
    ck.eq("a one-liner refuses --metrics", (r.returncode, "--metrics serves a script's metrics" in r.stderr), (2, True))
    # An address in use: the listener's error, exit 2, nothing of the script run.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        r = klua("--metrics", str(busy.getsockname()[1]), "-e", "print('ran')")
        ck.eq("address in use: exit", r.returncode, 2)
        ck.true("address in use: message", "--metrics" in r.stderr and "address already in use" in r.stderr
                and "ran" not in r.stdout, r.stderr)
    finally:
        busy.close()
    r = klua("--metrics", "not-an-ip:0", "-e", "print(1)")
    ck.eq("a host that is not an IP address", (r.returncode, "not an IP address" in r.stderr), (2, True))


def values_and_layers():
    # PORT alone is 127.0.0.1; the line is printed once; the script's arguments stay its own.
    s = script("args.lua", "print(select('#', ...), ...)")
    r = klua("run", "--metrics", "0", s, "--metrics", "x")
    lines = [l for l in r.stderr.splitlines() if l.startswith("klua: metrics on")]
    ck.eq("run --metrics PORT FILE args: exit", r.returncode, 0)
    ck.eq("the address line, once", len(lines), 1)
    ck.true("PORT alone binds 127.0.0.1", bool(lines) and re.fullmatch(r"klua: metrics on http://127\.0\.0\.1:\d+/metrics",
                                                                        lines[0]) is not None, repr(lines))
    ck.eq("the script's arguments after FILE", r.stdout, "2\t--metrics\tx\n")
    r = klua("--metrics", "[::1]:0", "-", stdin="print('stdin ok')")
    ck.eq("[::1]:0 and a script on stdin", (r.returncode, r.stdout, "http://[::1]:" in r.stderr), (0, "stdin ok\n", True))
    # statistics.interval.ms: the lowest layer, named --metrics; -X wins; without --metrics unset.
    code = "local e = {} for _, x in ipairs(klua.config_entries()) do if x.key == 'statistics.interval.ms' then " \
           "e[#e + 1] = x.value .. '@' .. x.source end end print(table.concat(e, ' '), klua.config()['statistics.interval.ms'])"
    ck.eq("statistics default", klua("--metrics", "0", "-e", code).stdout, "5000@--metrics\t5000\n")
    ck.eq("-X statistics.interval.ms wins", klua("--metrics", "0", "-X", "statistics.interval.ms=1000", "-e", code).stdout,
          "5000@--metrics 1000@-X\t1000\n")
    ck.eq("no --metrics: no statistics", klua("-e", code).stdout, "\tnil\n")
    # Global options between run and FILE; the FILE checked before anything is served.
    s = script("layers.lua", code)
    ck.eq("run -X ... --metrics ... FILE", klua("run", "-X", "statistics.interval.ms=2000", "--metrics", "0", s).stdout,
          "5000@--metrics 2000@-X\t2000\n")
    r = klua("run", "--metrics", "0", os.path.join(SCRATCH, "missing.lua"))
    ck.eq("an unreadable FILE: exit 2, nothing served", (r.returncode, "cannot read" in r.stderr, "metrics on" in r.stderr),
          (2, True, False))


def lifetime():
    # The script's own background task keeps it running (and the endpoint with it); once it ends,
    # klua exits 0 and the port is closed.
    s = script("background.lua", """
local p = klua.producer()
for i = 1, 7 do assert(p:produce{ topic = "cli-metrics", key = tostring(i), value = "v" }) end
local done = klua.spawn(function() klua.sleep(1500) io.stderr:write("background done\\n") end)
io.stderr:write("main done\\n")
""")
    t0 = time.monotonic()
    run = Running("run", "--metrics", "127.0.0.1:0", s)
    try:
        run.wait_line("main done")
        st, hdrs, body = get(run.url)
        ck.eq("/metrics while the script runs", st, 200)
        ck.eq("Content-Type", hdrs.get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        ok, out = promtool_check_metrics(body)
        ck.true("promtool check metrics", ok, out)
        base = run.url[:-len("/metrics")]
        ck.eq("/healthz", get(base + "/healthz")[0], 200)
        ck.eq("/readyz", get(base + "/readyz")[0], 200)
        ck.eq("exit once the background task ended", run.proc.wait(30), 0)
        ck.true("ran as long as its task (1.5 s), not longer", 1.4 < time.monotonic() - t0 < 15,
                f"{time.monotonic() - t0:.1f} s")
        try:
            get(run.url, timeout=5)
            ck.true("the endpoint is gone after the script", False)
        except (urllib.error.URLError, ConnectionError):
            ck.true("the endpoint is gone after the script", True)
    finally:
        run.close()

    # A signal: /readyz turns 503 no later than the stop, and klua exits 143.
    s = script("sleeper.lua", "io.stderr:write('sleeping\\n') klua.sleep(60000)")
    run = Running("--metrics", "0", s)
    try:
        run.wait_line("sleeping")
        ck.eq("/readyz before the signal", get(run.url[:-len("/metrics")] + "/readyz")[0], 200)
        run.proc.send_signal(signal.SIGTERM)
        ck.eq("SIGTERM: exit", run.proc.wait(30), 143)
    finally:
        run.close()


try:
    bad_values()
    values_and_layers()
    lifetime()
finally:
    shutil.rmtree(SCRATCH, ignore_errors=True)
ck.finish()
