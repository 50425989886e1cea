#!/usr/bin/env python3
"""Helper for python_interop_test.lua: a confluent-kafka (Python) client driven by JSON.

Bytes travel as lowercase hex strings (null for None) so that any byte survives JSON.

  pyclient.py produce BROKERS < spec.json
      spec: {"messages": [{"topic", "key", "value", "headers": [[name, hexvalue|null]...],
                           "timestamp", "partition"}...]}
      prints one JSON line per message: {"offset", "partition", "error"}
  pyclient.py consume BROKERS TOPIC GROUP COUNT [commit_last]
      prints one JSON line per message: {"topic", "partition", "offset", "key", "value",
      "headers", "timestamp_type", "timestamp"}; with commit_last, synchronously commits
      the last message (offset+1) before closing; auto commit is off.
  pyclient.py version
"""
import json
import sys
import time


def unhex(v):
    return None if v is None else bytes.fromhex(v)


def hexed(v):
    return None if v is None else v.hex()


def produce(brokers):
    from confluent_kafka import Producer

    spec = json.load(sys.stdin)
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True})
    results = [None] * len(spec["messages"])

    def report(i):
        def cb(err, msg):
            results[i] = {
                "error": None if err is None else err.str(),
                "offset": msg.offset(),
                "partition": msg.partition(),
            }
        return cb

    for i, m in enumerate(spec["messages"]):
        kwargs = {"topic": m["topic"], "key": unhex(m.get("key")), "value": unhex(m.get("value")),
                  "on_delivery": report(i)}
        if m.get("headers") is not None:
            kwargs["headers"] = [(h[0], unhex(h[1])) for h in m["headers"]]
        if m.get("timestamp") is not None:
            kwargs["timestamp"] = int(m["timestamp"])
        if m.get("partition") is not None:
            kwargs["partition"] = int(m["partition"])
        p.produce(**kwargs)
    left = p.flush(30)
    if left:
        sys.exit("pyclient: %d message(s) not delivered" % left)
    for r in results:
        print(json.dumps(r))


TS_TYPES = {0: "not_available", 1: "create", 2: "log_append"}


def consume(brokers, topic, group, count, commit_last):
    from confluent_kafka import Consumer

    c = Consumer({
        "bootstrap.servers": brokers,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    })
    c.subscribe([topic])
    got = []
    deadline = time.time() + 75  # generous: the suite runs many broker tests at once on 2 cores
    while len(got) < count and time.time() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            sys.exit("pyclient: poll error: %s" % msg.error())
        got.append(msg)
    if commit_last and got:
        c.commit(message=got[-1], asynchronous=False)
    c.close()
    for msg in got:
        tstype, ts = msg.timestamp()
        headers = msg.headers()
        print(json.dumps({
            "topic": msg.topic(),
            "partition": msg.partition(),
            "offset": msg.offset(),
            "key": hexed(msg.key()),
            "value": hexed(msg.value()),
            "headers": None if headers is None else [[n, hexed(v)] for n, v in headers],
            "timestamp_type": TS_TYPES.get(tstype, str(tstype)),
            "timestamp": ts,
        }))


def main(argv):
    if len(argv) >= 2 and argv[1] == "version":
        import confluent_kafka
        v, lib = confluent_kafka.version(), confluent_kafka.libversion()
        print(json.dumps({"client": v[0] if isinstance(v, tuple) else v,
                          "librdkafka": lib[0] if isinstance(lib, tuple) else lib}))
    elif len(argv) == 3 and argv[1] == "produce":
        produce(argv[2])
    elif len(argv) in (6, 7) and argv[1] == "consume":
        consume(argv[2], argv[3], argv[4], int(argv[5]), len(argv) == 7 and argv[6] == "commit_last")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
