"""Shared pieces of bench/run: running a contender, statistics, the result table.

Every contender is a process that prints one line of JSON on stdout (kcat is
timed by wall clock instead). `run()` also records the process's wall time and
its peak RSS (ru_maxrss from wait4), so every figure of one run comes from the
same process.
"""
import json
import os
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)


class RunError(Exception):
    pass


def tail(text, n=5):
    return "\n".join("        " + l for l in (text or "").strip().splitlines()[-n:])


def run(cmd, timeout, stdin=None, env=None, want_json=True):
    """Runs cmd to its end. Returns a dict: the JSON line's fields (when want_json)
    plus wall_s and maxrss_kb. Raises RunError on failure."""
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(cmd, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE if want_json else subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=env)
    except OSError as e:
        raise RunError(f"could not start {cmd[0]}: {e}")
    # Read both pipes without deadlock, then reap with wait4 for the child's own rusage.
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise RunError(f"timed out after {timeout:g}s: {' '.join(cmd)}")
    wall = time.perf_counter() - t0
    rc = p.returncode
    maxrss = getattr(p, "_klua_maxrss", None)
    if rc != 0:
        raise RunError(f"exit status {rc}: {' '.join(cmd)}\n{tail(err)}")
    result = {}
    if want_json:
        for line in reversed((out or "").splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    result = json.loads(line)
                except ValueError:
                    continue
                break
        else:
            raise RunError(f"no JSON result line on stdout: {' '.join(cmd)}\n{tail(err)}")
    result["wall_s"] = wall
    result["maxrss_kb"] = maxrss
    return result


# subprocess reaps children with waitpid, which loses the rusage; wrap it so that
# the child's ru_maxrss is kept on the Popen object.
_orig_try_wait = subprocess.Popen._try_wait


def _try_wait_rusage(self, wait_flags):
    try:
        pid, sts, ru = os.wait4(self.pid, wait_flags)
    except ChildProcessError:
        pid, sts = self.pid, 0
    else:
        if pid == self.pid:
            self._klua_maxrss = ru.ru_maxrss
    return (pid, sts)


subprocess.Popen._try_wait = _try_wait_rusage


def median(xs):
    return statistics.median(xs) if xs else None


def spread_pct(xs):
    """(max - min) / median, in percent."""
    if not xs:
        return None
    m = statistics.median(xs)
    return (max(xs) - min(xs)) / m * 100 if m else 0.0


def percentile(sorted_xs, q):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_xs:
        return None
    k = max(0, min(len(sorted_xs) - 1, int(-(-q * len(sorted_xs) // 1)) - 1))
    return sorted_xs[k]


def fmt_rate(r):
    return "-" if r is None else f"{r:,.0f}"


class Table:
    """The one table bench/run prints: contender, figure, ratio vs goal, goal met."""

    def __init__(self):
        self.rows = []

    def add(self, section, contender, figure, ratio="", goal="", met=None):
        """met: True, False, or None (no goal, or not judged here)."""
        self.rows.append((section, contender, figure, ratio, goal,
                          "-" if met is None else ("yes" if met else "NO")))

    def judge(self, section, contender, figure, ratio_value, goal_text, ok_fn, judged=True, ratio_label=""):
        if ratio_value is None:
            self.add(section, contender, figure, "n/a", goal_text, False if judged else None)
            return
        met = ok_fn(ratio_value) if judged else None
        self.add(section, contender, figure, f"{ratio_label}{ratio_value:.2f}", goal_text, met)

    def print(self, out):
        head = ("section", "contender", "figure", "ratio", "goal", "met")
        widths = [max(len(str(r[i])) for r in self.rows + [head]) for i in range(len(head))]
        line = "  ".join("{:<%d}" % w for w in widths)
        print(line.format(*head), file=out)
        print("  ".join("-" * w for w in widths), file=out)
        for r in self.rows:
            print(line.format(*r), file=out)
        out.flush()
