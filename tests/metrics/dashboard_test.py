#!/usr/bin/env python3
"""Every panel of the Grafana dashboards in examples/grafana/*.json evaluated against a real
Prometheus that scrapes a klua worker after traffic (Grafana itself is not in Debian 12).

Each panel's targets[].expr has its Grafana variables replaced (a multi-value variable with "All"
by its allValue or .*, another by a value Prometheus has for its label; $__rate_interval and the
other built-ins by fixed durations), and must parse and return at least one series; a failure
names the dashboard, the panel and the expression. Every klua_ metric name the dashboard uses
must also exist in Prometheus (a panel's `or vector(0)` would hide a missing family).

Usage: dashboard_test.py KLUA SCRATCH_DIR
"""
import glob
import json
import os
import re
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from common import Checks  # noqa: E402
from klua_worker import Worker, kcat_produce  # noqa: E402
from prometheus_harness import Prometheus  # noqa: E402

KLUA = os.path.realpath(sys.argv[1])
SCRATCH = os.path.abspath(sys.argv[2])
N = 200
RUN = uuid.uuid4().hex[:8]
TOPIC, GROUP = f"dash-{RUN}", f"dash-g-{RUN}"
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__interval_ms": "15000", "__range": "5m",
            "__range_s": "300", "__range_ms": "300000"}
# Families whose series only a failure creates, that this traffic cannot cause on the embedded
# cluster (a commit the group coordinator refuses): the panel is still checked, its `or vector(0)`
# keeps it non-empty.
ONLY_ON_FAILURE = {"klua_consumer_commit_failures_total"}
VAR = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\[\[(\w+)\]\]|\$(\w+)")
ck = Checks("dashboard")


def panels(items):
    for p in items or []:
        yield p
        yield from panels(p.get("panels"))  # a collapsed row holds its panels


def variable_values(dashboard, prom):
    values = {}
    for v in (dashboard.get("templating") or {}).get("list", []):
        name, cur = v["name"], v.get("current") or {}
        value = cur.get("value")
        if isinstance(value, list):
            value = value[0] if value else None
        if v.get("type") == "datasource":
            values[name] = "prometheus"
        elif v.get("includeAll") and value in (None, "$__all", "All"):
            values[name] = v.get("allValue") or ".*"
        elif value not in (None, ""):
            values[name] = str(value)
        else:  # a query variable without a saved value: a value Prometheus has for it
            m = re.search(r"label_values\((?:[^,]*,\s*)?(\w+)\)", json.dumps(v.get("query")) + str(v.get("definition")))
            found = prom.api(f"/api/v1/label/{m.group(1)}/values") if m else []
            values[name] = found[0] if found else ".*"
    return values


def substitute(expr, values):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in values:
            return values[name]
        raise KeyError(name)
    return VAR.sub(repl, expr)


def main():
    dashboards = sorted(glob.glob(os.path.join(ROOT, "examples", "grafana", "*.json")))
    ck.true("dashboards in examples/grafana", len(dashboards) >= 1, "none found")
    t0 = time.monotonic()
    # TRAFFIC=1: the app also produces, commits and aborts a transaction and fails a delivery.
    w = Worker(KLUA, os.path.join(SCRATCH, "dashboard_worker.log"), args=(TOPIC, GROUP, "0"), extra_env={"TRAFFIC": "1"})
    try:
        with Prometheus(SCRATCH, targets=[w.target]) as prom:
            prom.wait_for_scrape()
            kcat_produce(w.bootstrap, TOPIC, N)
            prom.wait_value(f'sum(klua_worker_messages_total{{worker="{GROUP}",outcome="ok"}})', lambda v: v >= N, 60)
            # Broker round-trip time and state come from statistics (every 5 s under --metrics).
            prom.wait_until("klua_broker_rtt_seconds", lambda r: len(r) > 0, 60, "statistics scraped")
            # rate() needs two samples of a counter in its window: two more scrapes after the traffic.
            scrapes = prom.value('count_over_time(up{job="klua"}[10m])')
            prom.wait_value('count_over_time(up{job="klua"}[10m])', lambda v: v >= scrapes + 2, 30)
            names = set()
            for path in dashboards:
                with open(path) as f:
                    dash = json.load(f)
                values = variable_values(dash, prom)
                n = 0
                for p in panels(dash.get("panels")):
                    for t in p.get("targets") or []:
                        expr = t.get("expr")
                        if not expr:
                            continue
                        n += 1
                        where = f"{os.path.basename(path)}: panel {p.get('title')!r} ({t.get('refId', '?')})"
                        names.update(re.findall(r"\bklua_\w+", expr))
                        try:
                            q = substitute(expr, values)
                        except KeyError as e:
                            ck.true(where + ": every variable known", False, f"unknown variable ${e.args[0]} in {expr}")
                            continue
                        try:
                            rows = prom.query(q)
                        except AssertionError as e:
                            ck.true(where + ": the query runs", False, str(e))
                            continue
                        ck.true(where + ": a non-empty result", len(rows) > 0, q)
                ck.true(f"{os.path.basename(path)}: panels with queries", n >= 10, str(n))
            for name in sorted(names):
                family = re.sub(r"_(bucket|sum|count)$", "", name) if name.endswith(("_bucket", "_sum", "_count")) else name
                if family in ONLY_ON_FAILURE or name in ONLY_ON_FAILURE:
                    continue
                found = prom.query(f'count({{__name__="{name}"}})')
                ck.true(f"metric {name} exists in Prometheus", len(found) > 0 and found[0]["value"] > 0)
    finally:
        w.stop()
    print(f"dashboard: {time.monotonic() - t0:.1f} s")


main()
ck.finish()
