#!/usr/bin/env python3
"""The REPL through a pseudo-terminal: prompt, completion, multi-line, Ctrl-C during a long poll,
Ctrl-C on a half-typed line, background tasks running while the user types, Ctrl-D leaving with
producers flushed, and history across sessions. Usage: repl_pty_test.py path/to/klua

Every wait is for screen output with a deadline (no fixed sleeps as synchronisation). HOME and
XDG_* point at a temporary directory, so the user's history and profiles are not touched."""
import atexit
import os
import pty
import re
import select
import shutil
import signal
import sys
import tempfile
import time

KLUA = os.path.abspath(sys.argv[1])
TMP = tempfile.mkdtemp(prefix="klua-pty-")
atexit.register(shutil.rmtree, TMP, True)  # also when the script dies before the end
ENV = dict(os.environ, HOME=TMP, XDG_STATE_HOME=os.path.join(TMP, "state"),
           XDG_CONFIG_HOME=os.path.join(TMP, "config"), KLUA_BROKERS="", TERM="xterm")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][AB0-9]|[\r\x07]")
failures = []
cases = 0
sessions = []


class Session:
    def __init__(self, *args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(KLUA, [KLUA, *args], ENV)
        sessions.append(self)
        self.out = b""
        self.seen = 0  # expect() searches output after the previous match

    def read(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            return None  # the process is gone
        if not data:
            return None
        self.out += data
        return True

    def text(self):
        return ANSI.sub(b"", self.out).decode("utf-8", "replace")

    def expect(self, pattern, timeout=10):
        """Waits until pattern (a regex) appears in the output after the last match."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.text()[self.seen:])
            if m:
                self.seen += m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0 or self.read(left) is None and not re.search(pattern, self.text()[self.seen:]):
                raise AssertionError(f"timed out waiting for {pattern!r}; screen so far:\n{self.text()[-1500:]}")

    def send(self, s):
        os.write(self.fd, s.encode() if isinstance(s, str) else s)

    def line(self, s):
        self.send(s + "\r")

    def wait_exit(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self.read(0.05):
                    pass
                return os.waitstatus_to_exitcode(status)
            self.read(0.1)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"did not exit; screen:\n{self.text()[-1500:]}")


def case(name):
    def run(fn):
        global cases
        cases += 1
        try:
            fn()
            print(f"ok   {name}", flush=True)
        except AssertionError as e:
            failures.append(name)
            print(f"FAIL {name}\n     {e}", flush=True)
        return fn
    return run


PROMPT = r"klua> "

s1 = None


@case("klua with no arguments on a terminal starts the REPL with a banner and a prompt")
def _():
    global s1
    s1 = Session()
    s1.expect(r"on the embedded mock cluster")
    s1.expect(r":help for help")
    s1.expect(PROMPT)


@case("tab completes globals, module members and methods through the metatable")
def _():
    s1.line("admin = klua.admin()")
    s1.expect(PROMPT)
    s1.send("=0*#admin:list_t")  # the word starts after the operators
    s1.send("\t")
    s1.expect(r"list_topics")
    s1.line("()")  # a method call: list_topics runs on the embedded cluster
    s1.expect(r"\n0\n")
    s1.send("=klua.json.enc")  # after '=': word breaks are Lua's operators and brackets
    s1.send("\t")
    s1.expect(r"encode")
    s1.line("({ 7 })")
    s1.expect(r"\[7\]")
    s1.expect(PROMPT)


@case("an incomplete chunk continues on the next line")
def _():
    s1.line("for i = 1, 2 do")
    s1.expect(r">> ")
    s1.line("print('row' .. i * 10)")
    s1.expect(r">> ")
    s1.line("end")
    s1.expect(r"row10\nrow20\n")
    s1.expect(PROMPT)


@case("records print as an aligned table")
def _():
    s1.line("={ { name = 'a', partitions = 1 }, { name = 'bb', partitions = 12 } }")
    s1.expect(r"name\s+partitions\s*\na\s+1\s*\nbb\s+12")
    s1.expect(PROMPT)


@case("a background task keeps running while the user types")
def _():
    s1.line("n = 0 klua.spawn(function() while true do n = n + 1 klua.sleep(10) end end)")
    s1.expect(PROMPT)
    s1.line("=n")
    a = int(s1.expect(r"\n(\d+)\n").group(1))
    s1.send("=")
    s1.expect(r"=")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.3:  # the user is typing: no input for a while
        s1.read(0.05)
    s1.line("n")
    b = int(s1.expect(r"\n(\d+)\n").group(1))
    assert b >= a + 10, f"the counter moved from {a} to {b} only"
    s1.expect(PROMPT)


@case("a background print goes above the line being typed, which is kept")
def _():
    s1.line("klua.spawn(function() klua.sleep(300) print('bg-line') end)")
    s1.expect(PROMPT)
    s1.send("=20")
    s1.expect(r"bg-line\n" + PROMPT + "=20")
    s1.line(" + 1")
    s1.expect(r"\n21\n")
    s1.expect(PROMPT)


@case("Ctrl-C during a long poll cancels that line, not the REPL")
def _():
    s1.line("c = klua.consumer{ group = 'pty', topics = { 'pty' } }")
    s1.expect(PROMPT)
    # 'polling' prints from a task that runs once the chunk waits in c:poll: a Ctrl-C before that
    # would interrupt the chunk's own code instead ("interrupted", the next case)
    s1.line("t0 = klua.now() klua.spawn(function() print('polling') end) c:poll(60000)")
    s1.expect(r"polling\n")
    s1.send("\x03")
    s1.expect(r"cancelled", timeout=5)
    s1.expect(PROMPT)
    s1.line("=klua.now() - t0 < 30000")
    s1.expect(r"\ntrue\n")
    s1.expect(PROMPT)


@case("Ctrl-C on a half-typed line drops it")
def _():
    s1.send("error('should not run')")
    s1.expect(r"should not run'\)")
    s1.send("\x03")
    s1.expect(PROMPT)
    s1.line("=40 + 2")
    s1.expect(r"\n42\n")
    assert "should not run" not in s1.text()[s1.seen:]
    s1.expect(PROMPT)


@case("Ctrl-C interrupts a pure-Lua loop (no yield) and the REPL goes on, the next Ctrl-C too")
def _():
    for _ in range(2):
        s1.line("print('looping') for i = 1, 1e15 do end print('not reached')")
        s1.expect(r"looping\n")
        s1.send("\x03")
        s1.expect(r"interrupted", timeout=5)
        s1.expect(PROMPT)
        assert "not reached" not in s1.text()[s1.seen:]
    # the loop's callback for that same signal is dropped: the next line typed is kept
    s1.line("=6 * 7")
    s1.expect(r"\n42\n")
    s1.expect(PROMPT)
    # a function defined in an earlier chunk is interpreted too
    s1.line("function spin() while true do end end")
    s1.expect(PROMPT)
    s1.line("print('spinning') spin()")
    s1.expect(r"spinning\n")
    s1.send("\x03")
    s1.expect(r"interrupted", timeout=5)
    s1.expect(PROMPT)


@case("an error in a background task prints with the task and the REPL goes on")
def _():
    s1.line("klua.spawn(function() klua.sleep(100) error('bg-boom') end)")
    s1.expect(r"error in background task \d+: stdin:1: bg-boom", timeout=5)
    s1.line("=1 + 1")
    s1.expect(r"\n2\n")
    s1.expect(PROMPT)


@case("errors are located at stdin:1 and error tables print as values")
def _():
    s1.line("error('located')")
    s1.expect(r"\nstdin:1: located\n")
    s1.expect(PROMPT)
    s1.line("error({ code = 1 })")
    s1.expect(r"\n\{ code = 1 \}\n")
    s1.expect(PROMPT)


@case("Ctrl-D leaves with exit 0 after producers flush")
def _():
    s1.line("hist_marker = 'from session one'")
    s1.expect(PROMPT)
    s1.line("p = klua.producer{ ['linger.ms'] = 60000, on_delivery = function(r, e) "
            "print(e and 'failed' or 'delivered at exit') end } p:send{ topic = 'pty', value = 'x' }")
    s1.expect(PROMPT)
    s1.send("\x04")
    code = s1.wait_exit()
    assert "delivered at exit" in s1.text(), s1.text()[-800:]
    assert code == 0, f"exit code {code}"


@case("history is kept across sessions")
def _():
    path = os.path.join(TMP, "state", "klua", "history")
    assert os.path.exists(path), "no history file at " + path
    s2 = Session("repl")
    s2.expect(PROMPT)
    # Up arrow: the previous session's lines, newest first.
    s2.send("\x1b[A")
    s2.expect(r"p:send")
    s2.send("\x1b[A")
    s2.expect(r"hist_marker = 'from session one'")
    s2.line("")
    s2.expect(PROMPT)
    s2.line("=hist_marker")
    s2.expect(r"from session one")
    s2.expect(PROMPT)
    s2.line(":help list_topics")
    s2.expect(r"\[admin\]\r?\n### admin:list_topics")
    s2.expect(PROMPT)
    s2.send("\x04")
    assert s2.wait_exit() == 0


for s in sessions:  # the ones a failed case left running
    try:
        os.kill(s.pid, signal.SIGKILL)
        os.waitpid(s.pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
shutil.rmtree(TMP, ignore_errors=True)

print(f"{cases - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
