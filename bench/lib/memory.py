"""Memory: idle RSS of klua, and a produce+consume soak reporting RSS growth
(bench/soak.lua). The RSS while producing 1M messages comes from the produce
runs themselves (peak RSS of each process, see throughput.py)."""
import os
import subprocess
import time

from common import BENCH, RunError, median, run
from cluster import fresh

IDLE_GOAL_MB = 20
# "No leak": RSS may settle during the first quarter (buffers, JIT); after that
# growth must stay under this much over the whole soak.
LEAK_LIMIT_KB = 2048


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def idle_rss_kb(cmd):
    """VmRSS of cmd 500 ms after its start."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        if p.poll() is not None:
            raise RunError(f"{' '.join(cmd)} exited early with status {p.returncode}")
        return status_kb(p.pid, "VmRSS")
    finally:
        p.kill()
        p.wait()


def idle(env, table, runs=3):
    print("== idle RSS", flush=True)
    try:
        klua = [idle_rss_kb([env.klua, "-e", "klua.sleep(2000)"]) for _ in range(runs)]
        py = [idle_rss_kb([env.python, "-c", "import confluent_kafka, time; time.sleep(2)"]) for _ in range(runs)]
    except RunError as e:
        env.failures += 1
        print(f"  FAILED: {e}", flush=True)
        table.add("memory", "lua", "idle RSS: failed", "", "", False)
        return
    k = median(klua) / 1024
    table.add("memory", "lua", f"idle RSS {k:.1f} MiB (klua -e 'klua.sleep(2000)' at 500 ms, median of {runs})",
              "", f"< {IDLE_GOAL_MB} MB", k * 1024 * 1024 < IDLE_GOAL_MB * 1e6)
    table.add("memory", "python", f"idle RSS {median(py) / 1024:.1f} MiB (python -c 'import confluent_kafka')")


def producing(table, label, rss_median_kb):
    """Peak RSS of the 1M-message produce runs (median over rounds), per contender."""
    for n, kb in rss_median_kb.items():
        if kb:
            table.add("memory", n, f"peak RSS {kb / 1024:.0f} MiB while producing ({label})")


def soak(env, cluster, seconds, rate, table):
    label = f"soak {cluster.kind} " + (f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds} s")
    print(f"== {label} (produce+consume at {rate:,} msg/s)", flush=True)
    topic = fresh("bench-soak")
    cluster.create(topic, 32)
    try:
        x = run([env.klua, "-b", cluster.bootstrap, "run", os.path.join(BENCH, "soak.lua"), "--topic", topic,
                 "--partitions", "32", "--seconds", str(seconds), "--rate", str(rate)], seconds + 180)
    except RunError as e:
        env.failures += 1
        print(f"  FAILED: {e}", flush=True)
        table.add(label, "lua", "failed", "", "", False)
        return
    finally:
        cluster.delete(topic)
    samples = x["samples"]
    settled = [kb for t, kb in samples if t >= seconds / 4]
    if len(settled) < 2:
        table.add(label, "lua", f"too few RSS samples ({len(samples)})", "", "", False)
        return
    base, end, peak = settled[0], settled[-1], max(settled)
    growth = end - base
    print(f"  sent {x['sent']:,}, received {x['received']:,}; RSS at {seconds / 4:.0f} s {base / 1024:.1f} MiB, "
          f"at the end {end / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB", flush=True)
    table.add(label, "lua", f"RSS {base / 1024:.1f} -> {end / 1024:.1f} MiB from 1/4 to the end "
              f"(growth {growth / 1024:+.1f} MiB, peak {peak / 1024:.1f}; {x['received']:,} msgs round-tripped)",
              "", f"growth < {LEAK_LIMIT_KB / 1024:g} MiB", growth < LEAK_LIMIT_KB)
