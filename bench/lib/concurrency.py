"""10,000 tasks each awaiting p:produce at once vs the same volume in sequential
batches (bench/concurrency.lua), alternated; goal: tasks >= 0.9 x batched msgs/s."""
import os

from common import BENCH, RunError, fmt_rate, median, spread_pct, run
from cluster import fresh

GOAL = 0.9


def bench(env, cluster, tasks, per_task, rounds, table):
    label = f"concurrency {cluster.kind} {tasks:,} tasks x {per_task}"
    print(f"== {label} ({rounds} rounds)", flush=True)
    base = [env.klua, "-b", cluster.bootstrap, "run", os.path.join(BENCH, "concurrency.lua"),
            "--tasks", str(tasks), "--per-task", str(per_task)]
    rates = {"tasks": [], "batched": []}
    rss = {"tasks": [], "batched": []}
    for r in range(rounds):
        for mode in (["tasks", "batched"] if r % 2 == 0 else ["batched", "tasks"]):
            # A fresh topic per run: the mock cluster's partitions fill up to its cap run after
            # run, and a later run would produce into fuller logs than an earlier one.
            topic = fresh("bench-conc")
            cluster.create(topic, 32)
            try:
                x = run(base + ["--topic", topic, "--mode", mode], env.timeout)
                if x["delivered"] != tasks * per_task or x["errors"]:
                    raise RunError(f"not every message was delivered: {x}")
            except RunError as e:
                env.failures += 1
                print(f"  round {r + 1} {mode:7}: FAILED: {e}", flush=True)
                continue
            finally:
                cluster.delete(topic)
            rates[mode].append(x["msgs_per_s"])
            rss[mode].append(x["maxrss_kb"] or x["rss_kb"])
            print(f"  round {r + 1} {mode:7}: {fmt_rate(x['msgs_per_s']):>10} msgs/s  peak RSS "
                  f"{(x['maxrss_kb'] or 0) / 1024:.1f} MiB", flush=True)
    for mode in ("batched", "tasks"):
        if not rates[mode]:
            table.add(label, f"lua {mode}", "no successful run", "", "", False)
            continue
        fig = (f"{fmt_rate(median(rates[mode]))} msgs/s median, spread {spread_pct(rates[mode]):.0f}%, "
               f"peak RSS {median(rss[mode]) / 1024:.1f} MiB")
        if mode == "batched":
            table.add(label, "lua batched", fig)
        else:
            ratio = median(rates["tasks"]) / median(rates["batched"]) if rates["batched"] else None
            table.judge(label, "lua tasks", fig, ratio, f"tasks/batched >= {GOAL:g}", lambda v: v >= GOAL)
