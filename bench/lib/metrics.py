"""klua.metrics: `klua run bench/metrics.lua --json 1` (bound counter inc + histogram observe, goal
<= 50 ns median; the exposition of 1,000 counter series and of 100 histogram series)."""
import json
import os
import subprocess

from common import BENCH, RunError

GOAL_NS = 50


def bench(env, quick, table):
    iterations, runs = (200000, 3) if quick else (10000000, 7)
    print(f"== metrics (klua.metrics hot path: {runs} runs x {iterations:,}; exposition)", flush=True)
    cmd = [env.klua, "run", os.path.join(BENCH, "metrics.lua"), "--iterations", str(iterations),
           "--runs", str(runs), "--json", "1"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=env.timeout)
    if p.returncode != 0:
        env.failures += 1
        print(f"  FAILED: {' '.join(cmd)}: exit status {p.returncode}: {p.stderr.strip()[-300:]}", flush=True)
        table.add("metrics", "lua", "failed", "", "", False)
        return
    try:
        r = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise RunError(f"bench/metrics.lua printed no JSON: {e}: {p.stdout[-300:]}")
    hot = (f"counter inc + histogram observe: {r['hot_cpu_ns']:.1f} ns CPU time, median of {runs} "
           f"(min {r['hot_cpu_min_ns']:.1f}, max {r['hot_cpu_max_ns']:.1f}; wall clock {r['hot_wall_ns']:.1f} ns)")
    print(f"  {hot}", flush=True)
    table.add("metrics", "lua", hot, "", f"<= {GOAL_NS} ns", None if quick else r["goal_met"])
    table.add("metrics", "lua", f"the same through fam:labels(...) each time: {r['labels_wall_ns']:.1f} ns wall clock")
    table.add("metrics", "lua", f"expose 1,000 counter series: {r['expose_counter_us']:.0f} us")
    table.add("metrics", "lua", f"expose 100 histogram series ({r['expose_histogram_lines']:,} lines): "
                                f"{r['expose_histogram_us']:.0f} us")
