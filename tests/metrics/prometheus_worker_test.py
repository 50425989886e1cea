#!/usr/bin/env python3
"""A real Prometheus scrapes a klua worker run with `klua run --metrics 127.0.0.1:0`, and the
counts it stores are checked against what the test itself produced (with kcat, not klua).

  - sum(klua_consumer_messages_total{topic}) == N, and the bytes == what kcat sent;
  - sum(klua_worker_messages_total{outcome="ok"}) == N;
  - klua_consumer_lag has one series per partition, was above 0 at some scrape (the worker's
    max_queued holds polling back while its handlers take DELAY_MS) and falls to 0;
  - klua_consumer_assigned_partitions == 3, a rebalance of kind assign;
  - `promtool check metrics` accepts a /metrics fetched by curl from the running worker;
  - SIGTERM: exit 143.

Usage: prometheus_worker_test.py KLUA SCRATCH_DIR [--broker]
  without --broker: the embedded cluster (its address read from the app's "ready" line);
  --broker: the broker KLUA_BROKERS names (tests/broker.cmake).
"""
import os
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from common import Checks  # noqa: E402
from prometheus_harness import Prometheus, promtool_check_metrics  # noqa: E402
from klua_worker import Worker, kcat_produce  # noqa: E402

KLUA = os.path.realpath(sys.argv[1])
SCRATCH = os.path.abspath(sys.argv[2])
BROKER = "--broker" in sys.argv[3:]
N = 300          # messages produced by kcat
DELAY_MS = 25    # per handler: 100 messages a partition take 2.5 s
RUN = uuid.uuid4().hex[:8]
TOPIC, GROUP = f"prom-worker-{RUN}", f"prom-worker-g-{RUN}"
ck = Checks("prometheus_worker" + (" (broker)" if BROKER else ""))


def main():
    os.makedirs(SCRATCH, exist_ok=True)
    t0 = time.monotonic()
    w = Worker(KLUA, os.path.join(SCRATCH, f"prometheus_worker{'_broker' if BROKER else ''}.log"),
               args=(TOPIC, GROUP, str(DELAY_MS)), broker=BROKER)
    try:
        with Prometheus(SCRATCH, targets=[w.target]) as prom:
            prom.wait_for_scrape()
            sent_bytes = kcat_produce(w.bootstrap, TOPIC, N)
            sel = f'{{topic="{TOPIC}"}}'
            # The lag series (one per partition) exist and, at some scrape, were above 0 ...
            rows = prom.wait_until(f"klua_consumer_lag{sel}", lambda r: len(r) == 3, 60, "three lag series")
            ck.eq("lag series: partitions", sorted(r["metric"]["partition"] for r in rows), ["0", "1", "2"])
            ck.eq("lag series: client_id label present", all(r["metric"].get("client_id") for r in rows), True)
            # ... then everything is consumed and handled: the counts Prometheus stored equal N.
            got = prom.wait_value(f"sum(klua_consumer_messages_total{sel})", lambda v: v >= N, 60)
            ck.eq("sum(klua_consumer_messages_total) == messages produced by kcat", got, N)
            got = prom.wait_value(f'sum(klua_worker_messages_total{{worker="{GROUP}",topic="{TOPIC}",outcome="ok"}})',
                                  lambda v: v >= N, 60)
            ck.eq('klua_worker_messages_total{outcome="ok"} == N', got, N)
            ck.eq("consumed bytes == key+value bytes kcat sent",
                  prom.wait_value(f"sum(klua_consumer_bytes_total{sel})", lambda v: v >= sent_bytes, 30), sent_bytes)
            other = prom.value(f'sum(klua_worker_messages_total{{worker="{GROUP}",outcome!="ok"}})')
            ck.true("no other outcome (retried, dead_lettered, ...)", other in (None, 0), repr(other))
            prom.wait_value(f"max(klua_consumer_lag{sel})", lambda v: v == 0, 60)
            ck.true("the lag falls to 0", True)
            peak = prom.value(f"max(max_over_time(klua_consumer_lag{sel}[5m]))")
            ck.true("the lag was above 0 at some scrape before", peak is not None and 0 < peak <= N, repr(peak))
            ck.eq("assigned partitions", prom.value("sum(klua_consumer_assigned_partitions)"), 3)
            ck.true("a rebalance of kind assign",
                    (prom.value('sum(klua_consumer_rebalances_total{kind="assign"})') or 0) >= 1)
            ck.eq("handler latency observed for every message",
                  prom.value(f'sum(klua_worker_handler_seconds_count{{worker="{GROUP}"}})'), N)
            ck.true(f"handler latency sum >= N x {DELAY_MS} ms",
                    (prom.value(f'sum(klua_worker_handler_seconds_sum{{worker="{GROUP}"}})') or 0) >= N * DELAY_MS / 1000 * 0.95)
            ck.eq("queue depth back to 0", prom.wait_value(f'klua_worker_queue_depth{{worker="{GROUP}"}}', lambda v: v == 0, 30), 0)
            # promtool on the exposition as curl fetches it from the running worker.
            r = subprocess.run(["curl", "-sS", "--fail", "-H", "Accept: text/plain", w.url], capture_output=True,
                               timeout=30)
            ck.eq("curl /metrics", r.returncode, 0)
            ok, out = promtool_check_metrics(r.stdout.decode())
            ck.true("promtool check metrics on the worker's /metrics", ok, out)
            ck.eq("up", prom.value(f'up{{job="klua"}}'), 1)
        ck.eq("SIGTERM: exit 143", w.stop(), 143)
    finally:
        w.stop()
    print(f"prometheus_worker: {time.monotonic() - t0:.1f} s")


main()
ck.finish()
