"""Python side of the produce benchmark: what users write today with
confluent-kafka. Same job as bench/produce.lua and bench/raw_produce.cpp: a
producer with klua's default configuration (enable.idempotence=true, otherwise
librdkafka defaults), a warm-up of W messages (flushed, not timed), then N
messages of S bytes (no key, default partitioner) timed from just before the
first produce until the last delivery report has been served.

    python bench/produce.py --brokers B --topic T [--count N] [--size S] [--warmup W]

Prints one line of JSON:
    {"msgs":N,"bytes":S,"seconds":T,"msgs_per_s":R,"delivered":D,"errors":E}
"""
import argparse
import json
import sys
import time

from confluent_kafka import Producer

ap = argparse.ArgumentParser()
ap.add_argument("--brokers", required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--count", type=int, default=1000000)
ap.add_argument("--size", type=int, default=100)
ap.add_argument("--warmup", type=int, default=10000)
a = ap.parse_args()

state = {"delivered": 0, "errors": 0, "first_error": None}


def on_delivery(err, msg):
    if err is None:
        state["delivered"] += 1
    else:
        state["errors"] += 1
        if state["first_error"] is None:
            state["first_error"] = str(err)


p = Producer({"bootstrap.servers": a.brokers, "enable.idempotence": True, "on_delivery": on_delivery})
payload = b"x" * a.size


def batch(n):
    base = state["delivered"] + state["errors"]
    t0 = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                p.produce(a.topic, payload)
                break
            except BufferError:
                p.poll(0.001)  # local queue full: serve delivery reports to make room
        p.poll(0)
    while state["delivered"] + state["errors"] - base < n:
        p.poll(0.1)
    return time.perf_counter() - t0


if a.warmup > 0:
    batch(a.warmup)
    if state["errors"]:
        sys.exit("produce.py: warm-up delivery failed: " + str(state["first_error"]))
d0, e0 = state["delivered"], state["errors"]
secs = batch(a.count)
d, e = state["delivered"] - d0, state["errors"] - e0
print(json.dumps({"msgs": a.count, "bytes": a.size, "seconds": secs,
                  "msgs_per_s": a.count / secs if secs > 0 else 0, "delivered": d, "errors": e}), flush=True)
p.flush(10)
if e:
    sys.exit("produce.py: first delivery error: " + str(state["first_error"]))
