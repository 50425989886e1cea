"""Round-trip latency at a fixed rate: klua (bench/roundtrip.lua) against the raw
C++ program (bench/raw_roundtrip.cpp), alternated; goal: lua p99 <= 1.1 x raw p99."""
import os

from common import BENCH, RunError, median, spread_pct, run
from cluster import fresh

GOAL = 1.1
PARTITIONS = 32


def bench(env, cluster, rate, seconds, rounds, table, judged):
    label = f"round trip {cluster.kind} {rate // 1000}k msg/s"
    print(f"== {label} ({seconds:g} s measured per run, {rounds} rounds)", flush=True)
    args = ["--partitions", str(PARTITIONS), "--rate", str(rate), "--seconds", str(seconds)]
    if cluster.kind == "embedded":
        args += ["--fetch-wait-ms", "10"]  # the mock answers a fetch only after fetch.wait.max.ms (500 ms)
    cmds = {"raw": [env.raw_roundtrip, "--brokers", cluster.bootstrap] + args,
            "lua": [env.klua, "-b", cluster.bootstrap, "run", os.path.join(BENCH, "roundtrip.lua")] + args}
    res = {"raw": [], "lua": []}
    for r in range(rounds):
        for n in (["raw", "lua"] if r % 2 == 0 else ["lua", "raw"]):
            # A fresh topic for every run: the mock's fetch slows down as a partition's log grows
            # (2.0.2's rd_kafka_mock_msgset_find walks the log's message sets one by one), which
            # would hand each later run a worse cluster: p50 grew 11 -> 47 ms over 5 rounds.
            topic = fresh("bench-rt")
            try:
                cluster.create(topic, PARTITIONS)
                x = run(cmds[n] + ["--topic", topic], env.timeout)
            except RunError as e:
                env.failures += 1
                print(f"  round {r + 1} {n:3}: FAILED: {e}", flush=True)
                continue
            finally:
                cluster.delete(topic)
            res[n].append(x)
            print(f"  round {r + 1} {n:3}: p50 {x['p50_ms']:.2f} ms  p99 {x['p99_ms']:.2f} ms  "
                  f"p999 {x['p999_ms']:.2f} ms  max {x['max_ms']:.2f} ms  ({x['measured']} messages)", flush=True)
    med = {}
    for n in ("raw", "lua"):
        if not res[n]:
            table.add(label, n, "no successful run", "", "", False if judged else None)
            continue
        m = {k: median([x[k] for x in res[n]]) for k in ("p50_ms", "p99_ms", "p999_ms")}
        med[n] = m
        fig = (f"p50 {m['p50_ms']:.2f} / p99 {m['p99_ms']:.2f} / p999 {m['p999_ms']:.2f} ms "
               f"(medians; p99 spread {spread_pct([x['p99_ms'] for x in res[n]]):.0f}%)")
        if n == "raw":
            table.add(label, n, fig)
    if "lua" in med:
        ratio = med["lua"]["p99_ms"] / med["raw"]["p99_ms"] if "raw" in med and med["raw"]["p99_ms"] else None
        table.judge(label, "lua", fig, ratio, f"p99 lua/raw <= {GOAL:g}" + ("" if judged else " (report only)"),
                    lambda v: v <= GOAL, judged=judged)
