"""Startup: `klua -e ''` and a one-message producer script, against the same in
Python (confluent-kafka), alternated run by run; goal: klua -e '' <= 10 ms."""
import os
import subprocess
import time

from common import BENCH, RunError, median, spread_pct
from cluster import fresh

GOAL_MS = 10


def wall_ms(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise RunError(f"{' '.join(cmd)}: exit status {p.returncode}: {p.stderr.strip()[-300:]}")
    return t


def bench(env, cluster, runs, table):
    print(f"== startup ({runs} runs each, alternated)", flush=True)
    topic = fresh("bench-startup")
    cluster.create(topic, 1)
    cmds = {
        "/bin/true (the timing loop's own cost)": ["/bin/true"],
        "lua -e ''": [env.klua, "-e", ""],
        "python -c 'import confluent_kafka'": [env.python, "-c", "import confluent_kafka"],
        "lua one-message producer": [env.klua, "-b", cluster.bootstrap, "run",
                                     os.path.join(BENCH, "startup_producer.lua"), topic],
        "python one-message producer": [env.python, os.path.join(BENCH, "startup_producer.py"),
                                        cluster.bootstrap, topic],
    }
    times = {k: [] for k in cmds}
    try:
        for k, c in cmds.items():  # warm-up: page cache, Python bytecode cache
            wall_ms(c)
        for _ in range(runs):
            for k, c in cmds.items():
                times[k].append(wall_ms(c))
    except RunError as e:
        env.failures += 1
        print(f"  FAILED: {e}", flush=True)
        table.add("startup", "lua", "failed", "", "", False)
        return
    finally:
        cluster.delete(topic)
    m = {k: median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"  {k:40} median {m[k]:8.2f} ms  (min {min(v):.2f}, max {max(v):.2f})", flush=True)

    def fig(k):
        return f"{k}: {m[k]:.1f} ms median of {len(times[k])}, spread {spread_pct(times[k]):.0f}%"

    lua_e, py_e = "lua -e ''", "python -c 'import confluent_kafka'"
    lua_p, py_p = "lua one-message producer", "python one-message producer"
    table.add("startup", "baseline", fig("/bin/true (the timing loop's own cost)"))
    table.add("startup", "lua", fig(lua_e), "", f"<= {GOAL_MS} ms", m[lua_e] <= GOAL_MS)
    table.add("startup", "python", fig(py_e), f"python/lua {m[py_e] / m[lua_e]:.1f}")
    table.add("startup", "lua", fig(lua_p) + f" ({cluster.kind})")
    table.add("startup", "python", fig(py_p) + f" ({cluster.kind})", f"python/lua {m[py_p] / m[lua_p]:.1f}")
