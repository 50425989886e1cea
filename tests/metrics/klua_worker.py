"""Shared by the Prometheus tests: tests/metrics/worker_app.lua run by `klua run --metrics
127.0.0.1:0` (its URL read from stderr, the cluster's address from its "ready" line), and kcat as
the independent producer."""
import os
import re
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from common import LineReader  # noqa: E402

URL_LINE = re.compile(r"^klua: metrics on (http://\S+/metrics)$")


class Worker:
    """tests/metrics/worker_app.lua under klua run --metrics; its stdout ("ready BOOTSTRAP") and
    stderr (the metrics URL) read by threads."""

    def __init__(self, klua, log_path, args=(), extra_env=None, broker=False, klua_args=()):
        env = dict(os.environ, **(extra_env or {}))
        if not broker:
            env["KLUA_BROKERS"] = ""
        self.log_path = log_path
        self.proc = subprocess.Popen([klua, *klua_args, "run", "--metrics", "127.0.0.1:0",
                                      os.path.join(HERE, "worker_app.lua"), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.out = LineReader(self.proc, "worker stdout")
        err_proc = type("P", (), {"stdout": self.proc.stderr, "wait": self.proc.wait})()
        self.err = LineReader(err_proc, "worker stderr")
        self.err_lines = []
        try:
            self.url = URL_LINE.match(self.err.wait_for(lambda l: self._keep(l) and URL_LINE.match(l), 60)).group(1)
            self.bootstrap = self.out.wait_for(lambda l: l.startswith("ready "), 60).split(" ", 1)[1]
        except AssertionError as e:
            self.stop()
            raise AssertionError(f"{e}; its stderr ends:\n" + "\n".join(self.err_lines[-15:])) from None
        self.target = self.url[len("http://"):-len("/metrics")]

    def _keep(self, line):
        self.err_lines.append(line)
        return True

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            while not self.err.lines.empty():  # what stderr said, kept for a failure's post-mortem
                line = self.err.lines.get()
                if line is not None:
                    self.err_lines.append(line)
            with open(self.log_path, "w") as f:
                f.write("\n".join(self.err_lines) + "\n")


def kcat_produce(bootstrap, topic, n):
    """N keyed messages through kcat (librdkafka's own CLI, not klua); returns the bytes sent (key + value)."""
    lines = [f"key-{i}:value-{i:05d}" for i in range(n)]
    r = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", ":", "-X", "topic.request.required.acks=all"],
                       input=("\n".join(lines) + "\n").encode(), capture_output=True, timeout=120)
    if r.returncode != 0 or r.stderr.strip():
        raise AssertionError(f"kcat failed ({r.returncode}): {r.stderr.decode()}")
    return sum(len(l) - 1 for l in lines)  # the ':' is the separator, not data
