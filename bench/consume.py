"""Python side of the consume benchmark: what users write today with
confluent-kafka. Same job as bench/consume.lua and bench/raw_consume.cpp: a
consumer with klua's default configuration (enable.auto.offset.store=false,
enable.auto.commit=true), auto.offset.reset=earliest and a fresh group reads N
messages with poll(), touching every key and value; timed from the first
message to the N-th.

    python bench/consume.py --brokers B --topic T [--count N] [--size S] [--assign P]

With --assign P it assigns partitions 0..P-1 from the beginning instead of
subscribing (no group join), as raw and klua do in bench/run.

Prints one line of JSON: {"msgs":N,"seconds":T,"msgs_per_s":R,"bytes":B,"size":S}
"""
import argparse
import json
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

ap = argparse.ArgumentParser()
ap.add_argument("--brokers", required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--count", type=int, default=1000000)
ap.add_argument("--size", type=int, default=100)
ap.add_argument("--assign", type=int, default=0)
ap.add_argument("--idle-timeout", type=float, default=60)
ap.add_argument("--fetch-queue-backoff-ms", type=int, default=10)
a = ap.parse_args()

c = Consumer({
    "bootstrap.servers": a.brokers,
    "group.id": "klua-bench-py-" + uuid.uuid4().hex,
    "enable.auto.offset.store": False,
    "enable.auto.commit": True,
    "auto.offset.reset": "earliest",
    "fetch.queue.backoff.ms": a.fetch_queue_backoff_ms,
})
if a.assign > 0:
    c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in range(a.assign)])
else:
    c.subscribe([a.topic])

n = nbytes = 0
t0 = t1 = None
idle = 0.0
while n < a.count:
    msg = c.poll(1.0)
    if msg is None:
        idle += 1
        if idle > a.idle_timeout:
            sys.exit(f"consume.py: no message for {a.idle_timeout:g} s after {n} of {a.count}")
        continue
    idle = 0.0
    if msg.error():
        if msg.error().code() == KafkaError._PARTITION_EOF:
            continue
        sys.exit(f"consume.py: {msg.error()}")
    if n == 0:
        t0 = time.perf_counter()
    k, v = msg.key(), msg.value()
    nbytes += (len(k) if k is not None else 0) + (len(v) if v is not None else 0)
    n += 1
t1 = time.perf_counter()
secs = t1 - t0
print(json.dumps({"msgs": n, "seconds": secs, "msgs_per_s": n / secs if secs > 0 else 0,
                  "bytes": nbytes, "size": a.size}), flush=True)
c.close()
