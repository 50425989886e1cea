"""Produce and consume throughput: raw C++, klua, kcat and Python confluent-kafka
on one cluster, alternated round by round.

raw, lua and python time themselves (warm-up, connection and group setup
excluded; delivery confirmed for produce). kcat can only be timed from outside,
so it is compared by whole-process wall time with the wall time of the klua
process (which also pays its start, its connection and a 10k-message warm-up),
and consumers all assign partitions (no group join) like kcat -C.
"""
import os
import subprocess

from common import BENCH, RunError, fmt_rate, median, run, spread_pct
from cluster import fresh

GOALS = {"raw": 0.95, "kcat": 1.0, "python": 5.0}
# Consumers: raw, klua and Python all get this fetch.queue.backoff.ms (klua's default; librdkafka's
# 1000 ms stalls any consumer faster than its fetcher). kcat (librdkafka 2.0.2) predates it.
FETCH_QUEUE_BACKOFF_MS = 10


def partitions_for(count, size):
    """32, or more so that the mock's ~5 MiB per partition holds every message (with batch overhead)."""
    need = count * (size + 40) / (4 * 1024 * 1024)
    p = 32
    while p < need:
        p *= 2
    return p


def payload_file(tmp, count, size):
    path = os.path.join(tmp, f"payload-{count}x{size}.txt")
    if not os.path.exists(path):
        line = b"x" * size + b"\n"
        with open(path, "wb") as f:
            left = count
            while left > 0:
                n = min(left, 10000)
                f.write(line * n)
                left -= n
    return path


def contenders(kind, env, cluster, topic, count, size, parts, tmp):
    b = cluster.bootstrap
    common = ["--topic", topic, "--count", str(count), "--size", str(size)]
    if kind == "produce":
        return {
            "raw": [env.raw_produce, "--brokers", b] + common,
            "lua": [env.klua, "-b", b, "run", os.path.join(BENCH, "produce.lua")] + common,
            # the same with metrics served and a user counter + histogram per message
            "lua+metrics": [env.klua, "-b", b, "run", os.path.join(BENCH, "produce.lua")] + common + ["--metrics", "on"],
            # kcat sends each line of stdin as a message (a file argument would be one message)
            "kcat": ["kcat", "-P", "-b", b, "-t", topic, "-q", "-X", "enable.idempotence=true"],
            "python": [env.python, os.path.join(BENCH, "produce.py"), "--brokers", b] + common,
        }
    assign = ["--assign", str(parts), "--fetch-queue-backoff-ms", str(FETCH_QUEUE_BACKOFF_MS)]
    return {
        "raw": [env.raw_consume, "--brokers", b] + common + assign,
        "lua": [env.klua, "-b", b, "run", os.path.join(BENCH, "consume.lua")] + common + assign,
        "lua+metrics": [env.klua, "-b", b, "run", os.path.join(BENCH, "consume.lua")] + common + assign
        + ["--metrics", "on"],
        "kcat": ["kcat", "-C", "-b", b, "-t", topic, "-e", "-o", "beginning", "-q"],
        "python": [env.python, os.path.join(BENCH, "consume.py"), "--brokers", b] + common + assign,
    }


HIGH_LUA = r"""
local topic, partitions = ...
local c = klua.consumer{ group = "klua-bench-wm-" .. klua.uuid() }
local sum = 0
for p = 0, tonumber(partitions) - 1 do
  local _, high = assert(c:watermarks(topic, p))
  sum = sum + high
end
print(sum)
c:close()
"""


def high_sum(env, cluster, topic, parts):
    """Sum of the topic's high watermarks: kcat -P's deliveries are checked by their growth."""
    p = subprocess.run([env.klua, "-b", cluster.bootstrap, "-e", HIGH_LUA, topic, str(parts)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    if p.returncode != 0:
        raise RunError(f"watermarks of {topic}: {p.stderr.strip()[-300:]}")
    return int(p.stdout.strip().splitlines()[-1])


def check(kind, name, res, count, size):
    if name == "kcat":
        res["msgs"] = count
        res["msgs_per_s"] = count / res["wall_s"]
        return
    if res.get("msgs") != count:
        raise RunError(f"{name}: {res.get('msgs')} messages instead of {count}: {res}")
    if kind == "produce" and (res.get("delivered") != count or res.get("errors") != 0):
        raise RunError(f"{name}: not every message was delivered: {res}")
    if kind == "consume" and res.get("bytes") != count * size:
        raise RunError(f"{name}: read {res.get('bytes')} bytes instead of {count * size}: {res}")


def bench(kind, env, cluster, count, size, rounds, table, judged):
    """Runs one produce or consume comparison and adds its rows to the table."""
    parts = partitions_for(count, size)
    topic = fresh(f"bench-{kind}")
    cluster.create(topic, parts)
    label = f"{kind} {cluster.kind} {count // 1000}k x {size} B"
    extra = f", fetch.queue.backoff.ms {FETCH_QUEUE_BACKOFF_MS} (not kcat)" if kind == "consume" else ""
    print(f"== {label} ({parts} partitions, {rounds} rounds{extra})", flush=True)
    try:
        if kind == "consume":
            cluster.fill(topic, parts, count, size)
        cmds = contenders(kind, env, cluster, topic, count, size, parts, env.tmp)
        names = [n for n in ("raw", "lua", "lua+metrics", "kcat", "python") if n not in env.skip]
        rates = {n: [] for n in names}
        walls = {n: [] for n in names}
        rss = {n: [] for n in names}
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
            for n in order:
                try:
                    if kind == "produce" and n == "kcat":
                        before = high_sum(env, cluster, topic, parts)
                        with open(payload_file(env.tmp, count, size), "rb") as f:
                            res = run(cmds[n], env.timeout, stdin=f, want_json=False)
                        got = high_sum(env, cluster, topic, parts) - before
                        if got != count:
                            raise RunError(f"kcat -P: {got} of {count} messages reached the topic")
                    else:
                        res = run(cmds[n], env.timeout, want_json=(n != "kcat"))
                    check(kind, n, res, count, size)
                except RunError as e:
                    env.failures += 1
                    print(f"  round {r + 1} {n:6}: FAILED: {e}", flush=True)
                    continue
                rates[n].append(res["msgs_per_s"])
                walls[n].append(count / res["wall_s"])
                if res.get("maxrss_kb"):
                    rss[n].append(res["maxrss_kb"])
                print(f"  round {r + 1} {n:6}: {fmt_rate(res['msgs_per_s']):>11} msgs/s  "
                      f"(process wall {res['wall_s']:.2f} s, peak RSS {(res.get('maxrss_kb') or 0) / 1024:.0f} MiB)",
                      flush=True)
    finally:
        cluster.delete(topic)
    return summarize(kind, label, names, rates, walls, rss, table, judged)


def summarize(kind, label, names, rates, walls, rss, table, judged):
    med = {n: median(rates[n]) for n in names}
    wmed = {n: median(walls[n]) for n in names}
    for n in names:
        if not rates[n]:
            table.add(label, n, "no successful run", "", "", False if judged else None)
            continue
        timing = "wall, process start included" if n == "kcat" else "in-process timing"
        fig = (f"{fmt_rate(med[n])} msgs/s median, spread {spread_pct(rates[n]):.0f}% "
               f"({len(rates[n])} runs, {timing})")
        if n == "lua":
            table.add(label, "lua", fig)
            continue
        if n == "lua+metrics":
            # What serving metrics costs (issue 19): reported, not judged.
            ratio = med[n] / med["lua"] if med.get("lua") and med[n] else None
            table.judge(label, n, fig, ratio, "lua+metrics/lua (report only)", lambda v: True, judged=False)
            continue
        goal = GOALS[n]
        if n == "kcat":
            ratio = wmed["lua"] / med["kcat"] if wmed.get("lua") and med["kcat"] else None
            what = "lua/kcat (wall)"
        else:
            ratio = med["lua"] / med[n] if med.get("lua") and med[n] else None
            what = f"lua/{n}"
        goal_text = f"{what} >= {goal:g}"
        if n == "python" and med.get("raw") and med["python"]:
            # The raw C++ loop is the ceiling of any librdkafka binding: say where it stands.
            goal_text += f" (raw/python {med['raw'] / med['python']:.1f})"
        table.judge(label, n, fig, ratio, goal_text + ("" if judged else " (report only)"),
                    lambda v, g=goal: v >= g, judged=judged)
    return {"median": med, "wall_median": wmed,
            "rss_median_kb": {n: median(rss[n]) for n in names}}
