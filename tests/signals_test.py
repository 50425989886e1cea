#!/usr/bin/env python3
"""SIGINT/SIGTERM against scripts that never let the loop turn, the second signal's exit and its
count of lost messages, and the error reporter's own failures (host/signals.cpp, host/runtime.cpp).

Usage: signals_test.py KLUA. No broker: the producers here name an address nothing listens on
(127.0.0.1:1), so their messages stay queued. Each case waits for a line the script prints (or
the first signal's message) before it signals: no sleeps.
"""
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

KLUA = os.path.realpath(sys.argv[1])
ENV = dict(os.environ, KLUA_BROKERS="")
STOPPING = {signal.SIGINT: "klua: SIGINT received: stopping", signal.SIGTERM: "klua: SIGTERM received: stopping"}
results = []


def start(args):
    return subprocess.Popen([KLUA] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV)


def wait_line(stream, text, timeout=20):
    """Reads stream (a pipe) until a line containing text; returns what was read."""
    got = b""
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    while text.encode() not in got:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no {text!r} within {timeout} s; read {got!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"the stream ended before {text!r}; read {got!r}")
        got += chunk
    return got


def case(name):
    def wrap(fn):
        results.append((name, fn))
        return fn
    return wrap


def finish(p, timeout=20):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError(f"klua still runs {timeout} s after the signal")
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def stop_busy(script, sig, code):
    p = start(["-e", script])
    wait_line(p.stdout, "ready")
    p.send_signal(sig)
    rc, _, err = finish(p)
    assert rc == code, f"exit {rc}, want {code}; stderr: {err}"
    assert STOPPING[sig] in err, err
    # The cancellation the hook raised ends the task quietly: no error report, no traceback.
    assert "KLUA_CANCELLED" not in err and "traceback" not in err, err


@case("the first SIGINT stops an interpreted busy loop (exit 130)")
def _():
    stop_busy('jit.off() print("ready") io.stdout:flush() while true do end', signal.SIGINT, 130)


@case("the first SIGTERM stops a busy loop that calls C functions (exit 143)")
def _():
    stop_busy('print("ready") io.stdout:flush() local n = 0 while true do n = n + klua.now() end', signal.SIGTERM, 143)


@case("the first SIGINT stops a busy loop inside a plain coroutine of a task")
def _():
    stop_busy('jit.off() print("ready") io.stdout:flush() coroutine.wrap(function() while true do end end)()',
              signal.SIGINT, 130)


@case("a compiled loop that never exits ends at the second signal, at once (exit 130)")
def _():
    p = start(["-e", 'print("ready") io.stdout:flush() while true do end'])
    wait_line(p.stdout, "ready")
    p.send_signal(signal.SIGINT)
    wait_line(p.stderr, "send it again")
    p.send_signal(signal.SIGINT)
    rc, _, err = finish(p, 10)
    assert rc == 130, f"exit {rc}; stderr: {err}"
    assert "klua: second signal: exiting at once; 0 message(s) not delivered" in err, err


UNREACHABLE = ('local p = klua.producer{ brokers = "127.0.0.1:1", on_error = function() end } '
               'for i = 1, 100 do p:send{ topic = "t", value = "m" .. i } end print("ready") io.stdout:flush() ')


@case("the second signal says how many messages are lost, from a stuck loop (SIGTERM, SIGINT: exit 130)")
def _():
    p = start(["-e", UNREACHABLE + "while true do end"])
    wait_line(p.stdout, "ready")
    p.send_signal(signal.SIGTERM)
    wait_line(p.stderr, "send it again")
    p.send_signal(signal.SIGINT)
    rc, _, err = finish(p, 10)
    assert rc == 130, f"exit {rc}; stderr: {err}"
    assert "second signal: exiting at once; 100 message(s) not delivered (queued, in flight or failed" in err, err


@case("the second signal says how many messages are lost, during the first one's flush (exit 143)")
def _():
    p = start(["-e", UNREACHABLE + "klua.sleep(600000)"])
    wait_line(p.stdout, "ready")
    p.send_signal(signal.SIGTERM)
    wait_line(p.stderr, "send it again")
    p.send_signal(signal.SIGTERM)
    rc, _, err = finish(p, 10)
    assert rc == 143, f"exit {rc}; stderr: {err}"
    assert "second signal: exiting at once; 100 message(s) not delivered" in err, err


@case("a shielded task computing when SIGINT comes runs to its end")
def _():
    p = start(["-e", 'jit.off() local t = klua.spawn_shielded(function() print("ready") io.stdout:flush() '
                     'local t0 = os.clock() while os.clock() - t0 < 0.3 do end print("shielded done") end) '
                     'klua.sleep(600000)'])
    wait_line(p.stdout, "ready")
    p.send_signal(signal.SIGINT)
    rc, out, err = finish(p)
    assert rc == 130 and "shielded done" in out, f"exit {rc}; stdout: {out}; stderr: {err}"


@case("SIGINT stops a provision state file that loops (exit 130)")
def _():
    with tempfile.NamedTemporaryFile("w", suffix=".lua", dir=os.getcwd()) as f:
        f.write('print("ready") io.stdout:flush()\nwhile true do end\nreturn {}\n')
        f.flush()
        p = start(["provision", f.name, "--embedded"])
        wait_line(p.stdout, "ready")
        p.send_signal(signal.SIGINT)
        rc, _, err = finish(p)
    assert rc == 130, f"exit {rc}; stderr: {err}"


@case("a provision state file that runs too long fails, naming the file")
def _():
    with tempfile.NamedTemporaryFile("w", suffix=".lua", dir=os.getcwd()) as f:
        f.write("while true do end\nreturn {}\n")
        f.flush()
        p = start(["-e", "klua.provision.STATE_FILE_BUDGET_MS = 200 "
                         "local s, err = klua.provision.load(...) assert(s == nil) print(err)", f.name])
        rc, out, err = finish(p)
    assert rc == 0 and f"{f.name} runs too long (over 200 ms)" in out, f"exit {rc}; stdout {out}; stderr: {err}"


@case("an error object whose __tostring raises is reported as such (exit 1)")
def _():
    p = start(["-e", 'error(setmetatable({}, { __tostring = function() error("no text") end }))'])
    rc, _, err = finish(p)
    assert rc == 1, f"exit {rc}; stderr: {err}"
    assert "klua: error object (table) whose __tostring raised: (command line):1: no text" in err, err
    assert "PANIC" not in err, err


@case("an error object whose __tostring returns no string is reported as such (exit 1)")
def _():
    p = start(["-e", 'klua.spawn(function() error(setmetatable({}, { __tostring = function() return {} end })) end) '
                     'klua.sleep(600000)'])
    rc, _, err = finish(p)
    assert rc == 1 and "error object (table) whose __tostring returned a table" in err, f"exit {rc}; stderr: {err}"


def run(item):
    name, fn = item
    t0 = time.monotonic()
    try:
        fn()
        return True, f"ok   {name} ({time.monotonic() - t0:.1f} s)"
    except AssertionError as e:
        return False, f"FAIL {name}: {e}"


with tempfile.TemporaryDirectory() as d:
    os.chdir(d)
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(run, results))
failed = 0
for ok, line in outcomes:
    print(line)
    failed += not ok
print(f"{len(outcomes) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
