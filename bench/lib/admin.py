"""Admin figures on a real broker (bench/admin.lua): topics created per second and
klua.lag of a 1,000-partition group (goal: well under a second, judged as < 0.5 s)."""
import os

from common import BENCH, RunError, median, run

LAG_GOAL_MS = 500


def bench(env, broker, topics, lag_partitions, table):
    label = "admin broker"
    print(f"== {label} ({topics} topics, lag over {lag_partitions} partitions)", flush=True)
    try:
        x = run([env.klua, "-b", broker.bootstrap, "run", os.path.join(BENCH, "admin.lua"),
                 "--topics", str(topics), "--lag-partitions", str(lag_partitions)], env.timeout)
    except RunError as e:
        env.failures += 1
        print(f"  FAILED: {e}", flush=True)
        table.add(label, "lua", "failed", "", "", False)
        return
    print(f"  create_topics: {x['topics']} topics in {x['create_s']:.3f} s; klua.lag ms: {x['lag_ms']}", flush=True)
    table.add(label, "lua", f"{x['topics_per_s']:,.0f} topics/s created ({x['topics']} in one create_topics call)")
    lag = median(x["lag_ms"])
    table.add(label, "lua", f"klua.lag of {x['lag_partitions']:,} partitions: {lag:.0f} ms median of "
              f"{len(x['lag_ms'])} (max {max(x['lag_ms']):.0f})", "", f"< {LAG_GOAL_MS} ms ('well under a second')",
              lag < LAG_GOAL_MS)
