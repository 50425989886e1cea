#!/usr/bin/env python3
"""examples/control_api.lua driven by real clients (curl, urllib) and checked against independent
answers: kcat -L -J for partition counts, kcat -C -J for produced records, Python confluent-kafka for
a live group's commits and the offsets a reset wrote.

Usage: control_api_test.py KLUA [--embedded]
  without --embedded: against the broker KLUA_BROKERS names (tools/with-broker sets it);
  --embedded: the embedded cluster (what it serves, and 501 for what it does not), then a cluster
  whose brokers refuse connections (503).
"""
import datetime
import json
import os
import signal
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Checks, Service, call, curl, use_venv_python  # noqa: E402

KLUA = os.path.realpath(sys.argv[1])
EMBEDDED = "--embedded" in sys.argv[2:]
SCRIPT = "examples/control_api.lua"
RUN = uuid.uuid4().hex[:8]
LOG_DIR = os.environ.get("KLUA_TEST_SCRATCH") or os.path.join(os.path.dirname(KLUA), "examples-test")
os.makedirs(LOG_DIR, exist_ok=True)
ck = Checks("control_api" + (" (embedded)" if EMBEDDED else ""))


def iso_ms(s):
    return round(datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def common_checks(api):
    """What both clusters answer alike: routing, 400s naming the field, create/get/produce."""
    st, _, body = call("GET", api + "/health")
    ck.eq("health status", (st, body and body.get("status")), (200, "healthy"))
    ck.true("health brokers", body and body.get("brokers", 0) >= 1, repr(body))

    # Routing: no route 404, a known path with another method 405 naming the allowed ones.
    st, _, _ = call("GET", api + "/nothing-here")
    ck.eq("unknown path", st, 404)
    st, hdrs, _ = call("PUT", api + "/topics")
    ck.eq("wrong method", st, 405)
    ck.true("405 Allow", "GET" in (hdrs.get("Allow") or "") and "POST" in (hdrs.get("Allow") or ""), repr(hdrs.get("Allow")))

    # Bad requests: 400 naming the field.
    for what, raw, field in [
        ("not JSON", b"{name:", "body"),
        ("an array", b"[]", "body"),
        ("no name", b'{"partitions": 3}', "name"),
        ("bad name", b'{"name": "a b"}', "name"),
        ("partitions 0", b'{"name": "x", "partitions": 0}', "partitions"),
        ("partitions text", b'{"name": "x", "partitions": "3"}', "partitions"),
        ("partitions 1.5", b'{"name": "x", "partitions": 1.5}', "partitions"),
        ("replication 0", b'{"name": "x", "replicationFactor": 0}', "replicationFactor"),
        ("configs list", b'{"name": "x", "configs": [1]}', "configs"),
        ("config value", b'{"name": "x", "configs": {"retention.ms": {}}}', "configs.retention.ms"),
    ]:
        st, _, body = call("POST", api + "/topics", raw=raw)
        ck.eq("400 " + what, (st, body and body["error"]["field"]), (400, field))
    for what, b, field in [("no topic", {"value": "v"}, "topic"), ("no value", {"topic": "t"}, "value"),
                           ("numeric key", {"topic": "t", "key": 1, "value": "v"}, "key")]:
        st, _, body = call("POST", api + "/produce", b)
        ck.eq("produce 400 " + what, (st, body and body["error"]["field"]), (400, field))
    st, _, body = call("POST", api + "/groups/g/reset", {"resetTo": "yesterday"})
    ck.eq("reset 400 resetTo", (st, body and body["error"]["field"]), (400, "resetTo"))


def embedded():
    svc = Service(KLUA, SCRIPT, "--port", "0", env=dict(os.environ, KLUA_BROKERS=""),
                  log=os.path.join(LOG_DIR, "control_api_embedded.log"))
    try:
        api = svc.url + "/api/kafka"
        common_checks(api)
        t = "ctl-emb-" + RUN
        st, body = curl("POST", api + "/topics", {"name": t, "partitions": 4})
        ck.eq("create", (st, body and body["partitionCount"]), (201, 4))
        st, _, body = call("GET", api + "/topics/" + t)
        ck.eq("get topic", (st, body and body["partitionCount"], body and body["messageCount"]), (200, 4, 0))
        offsets = []
        for i in range(3):
            st, _, body = call("POST", api + "/produce", {"topic": t, "key": "k", "value": f"v{i}"})
            ck.eq(f"produce {i}", st, 200)
            offsets.append((body["partition"], body["offset"]))
        ck.eq("one key, one partition, consecutive offsets", [o for _, o in offsets], [0, 1, 2])
        ck.eq("one key, one partition", len({p for p, _ in offsets}), 1)
        st, _, body = call("GET", api + "/topics")
        mine = [x for x in body if x["name"] == t]
        ck.eq("listed with its count", [(x["partitionCount"], x["messageCount"]) for x in mine], [(4, 3)])
        st, _, body = call("POST", api + "/produce", {"topic": "ctl-emb-missing-" + RUN, "value": "v"})
        ck.eq("produce unknown topic", (st, body and body["error"]["name"]), (404, "UNKNOWN_TOPIC_OR_PART"))
        # What the embedded cluster does not serve: 501 with klua's error name.
        for method, path in [("GET", "/groups"), ("GET", "/groups/g-" + RUN), ("DELETE", "/topics/" + t),
                             ("DELETE", "/groups/g-" + RUN)]:
            st, _, body = call(method, api + path)
            ck.eq(f"{method} {path.split('/')[1]} on the embedded cluster",
                  (st, body and body["error"]["name"]), (501, "KLUA_EMBEDDED_UNSUPPORTED"))
    finally:
        ck.eq("SIGTERM exit status", svc.stop(signal.SIGTERM), 143)


def port_taken():
    """A port another program listens on: exit 1 naming the address, not a traceback."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    r = subprocess.run([KLUA, "run", SCRIPT, str(port)], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, KLUA_BROKERS=""))
    s.close()
    ck.eq("port taken: exit status", r.returncode, 1)
    ck.true("port taken: says so", f"127.0.0.1:{port}: address already in use" in r.stderr, r.stderr[-300:])
    r = subprocess.run([KLUA, "run", SCRIPT, "--port", "x"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, KLUA_BROKERS=""))
    ck.eq("bad port: usage", (r.returncode, "usage: control_api.lua" in r.stderr), (2, True))


def brokers_down():
    """A cluster nobody answers for: 503 with _ALL_BROKERS_DOWN once klua.unreachable.timeout.ms passed."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    port = s.getsockname()[1]
    svc = Service(KLUA, SCRIPT, "--port", "0", env=dict(os.environ, KLUA_BROKERS=f"127.0.0.1:{port}"),
                  klua_args=("-X", "klua.unreachable.timeout.ms=1000"),
                  log=os.path.join(LOG_DIR, "control_api_down.log"))
    try:
        api = svc.url + "/api/kafka"
        st, _, body = call("GET", api + "/health")
        ck.eq("health with the brokers down", (st, body and body["status"], body and body["error"]["name"]),
              (503, "unhealthy", "_ALL_BROKERS_DOWN"))
        st, _, body = call("GET", api + "/topics")
        ck.eq("topics with the brokers down", (st, body and body["error"]["name"]), (503, "_ALL_BROKERS_DOWN"))
    finally:
        ck.eq("SIGTERM exit status (brokers down)", svc.stop(signal.SIGTERM), 143)
        s.close()


def kcat_partition_counts(brokers, topics):
    out = subprocess.run(["kcat", "-b", brokers, "-L", "-J"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    return {t["topic"]: len(t["partitions"]) for t in json.loads(out)["topics"] if t["topic"] in topics}


def kcat_record(brokers, topic, partition, offset):
    out = subprocess.run(["kcat", "-b", brokers, "-C", "-t", topic, "-p", str(partition), "-o", str(offset),
                          "-c", "1", "-e", "-J"], capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out.strip().splitlines()[0])


def broker():
    use_venv_python()
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource
    from confluent_kafka import ConsumerGroupTopicPartitions

    brokers = os.environ["KLUA_BROKERS"]
    svc = Service(KLUA, SCRIPT, "0", log=os.path.join(LOG_DIR, "control_api_broker.log"))
    consumer = None
    try:
        api = svc.url + "/api/kafka"
        common_checks(api)
        t3, t5 = "ctl-a-" + RUN, "ctl-b-" + RUN
        # Create with curl and with urllib; configs reach the broker.
        st, body = curl("POST", api + "/topics", {"name": t3, "partitions": 3})
        ck.eq("create t3", (st, body and body["partitionCount"]), (201, 3))
        st, hdrs, body = call("POST", api + "/topics", {"name": t5, "partitions": 5, "replicationFactor": 1,
                                                         "configs": {"retention.ms": 3600000}})
        ck.eq("create t5", (st, hdrs.get("Location")), (201, "/api/kafka/topics/" + t5))
        st, _, body = call("POST", api + "/topics", {"name": t3, "partitions": 3})
        ck.eq("create again", (st, body and body["error"]["name"]), (409, "TOPIC_ALREADY_EXISTS"))
        st, _, body = call("POST", api + "/topics", {"name": "ctl-rf-" + RUN, "replicationFactor": 3})
        ck.eq("replication 3 on one broker", (st, body and body["error"]["field"]), (400, "replicationFactor"))
        admin = AdminClient({"bootstrap.servers": brokers})
        res = ConfigResource("topic", t5)
        cfg = admin.describe_configs([res], request_timeout=20)[res].result(20)
        ck.eq("config written", cfg["retention.ms"].value, "3600000")

        # GET's partition counts against kcat's metadata.
        st, _, body = call("GET", api + "/topics")
        got = {x["name"]: x["partitionCount"] for x in body if x["name"] in (t3, t5)}
        ck.eq("GET /topics partition counts = kcat -L", got, kcat_partition_counts(brokers, [t3, t5]))
        ck.eq("GET /topics partition counts", got, {t3: 3, t5: 5})
        ck.true("internal topics hidden", not any(x["name"].startswith("__") for x in body))

        # Produce via POST, read each record back with kcat.
        produced = []
        for i in range(12):
            key, value = f"user-{i % 4}", f"event {i} " + "é" * (i % 2)
            st, _, body = call("POST", api + "/produce", {"topic": t3, "key": key, "value": value})
            ck.eq(f"produce {i}", st, 200)
            produced.append((key, value, body))
        for key, value, r in produced[:: 3] + produced[-1:]:
            rec = kcat_record(brokers, t3, r["partition"], r["offset"])
            ck.eq(f"kcat record at {r['partition']}/{r['offset']}",
                  (rec["key"], rec["payload"], rec["partition"], rec["offset"], rec["ts"]),
                  (key, value, r["partition"], r["offset"], iso_ms(r["timestamp"])))
        by_key = {}
        for key, _, r in produced:
            by_key.setdefault(key, set()).add(r["partition"])
        ck.true("a key stays on one partition", all(len(v) == 1 for v in by_key.values()), repr(by_key))
        st, body = curl("POST", api + "/produce", {"topic": t3, "key": None, "value": "no key"})
        ck.eq("produce a null key", st, 200)
        produced.append((None, "no key", body))
        st, _, body = call("GET", api + "/topics/" + t3)
        ck.eq("messageCount", body["messageCount"], len(produced))
        high = {}
        for _, _, r in produced:
            high[r["partition"]] = max(high.get(r["partition"], 0), r["offset"] + 1)

        # A live group: confluent-kafka consumes some, commits, stays in the group.
        group = "ctl-g-" + RUN
        consumer = Consumer({"bootstrap.servers": brokers, "group.id": group, "client.id": "ctl-test-" + RUN,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([t3])
        taken = 0
        while taken < 7:
            m = consumer.poll(20)
            assert m is not None, "the consumer got nothing within 20 s"
            if m.error():
                continue
            taken += 1
            consumer.commit(message=m, asynchronous=False)
        committed = {tp.partition: tp.offset for tp in consumer.committed(
            [TopicPartition(t3, p) for p in range(3)], timeout=20)}
        want_lag = sum(high.get(p, 0) - max(committed[p], 0) for p in range(3))
        ck.eq("produced - committed", want_lag, len(produced) - 7)
        st, _, body = call("GET", api + "/groups/" + group)
        ck.eq("group detail status", st, 200)
        ck.eq("group state/members", (body["state"], body["memberCount"], [m["clientId"] for m in body["members"]]),
              ("Stable", 1, ["ctl-test-" + RUN]))
        ck.eq("group totalLag = produced - committed", body["totalLag"], want_lag)
        parts = {p["partition"]: p for p in body["partitions"] if p["topic"] == t3}
        ck.eq("per-partition high", {p: v["highWatermark"] for p, v in parts.items()},
              {p: high.get(p, 0) for p in range(3)})
        ck.eq("per-partition committed", {p: v["currentOffset"] for p, v in parts.items()},
              {p: (committed[p] if committed[p] >= 0 else None) for p in range(3)})
        ck.eq("per-partition lag", {p: v["lag"] for p, v in parts.items()},
              {p: high.get(p, 0) - max(committed[p], 0) for p in range(3)})
        st, _, body = call("GET", api + "/groups")
        mine = [g for g in body if g["groupId"] == group]
        ck.eq("GET /groups has the group", [(g["memberCount"], g["totalLag"]) for g in mine], [(1, want_lag)])

        # Reset: refused while the consumer is in the group, done once it left.
        st, _, body = call("POST", api + f"/groups/{group}/reset", {"topic": t3, "resetTo": "earliest"})
        ck.eq("reset while live", (st, body and body["error"]["name"]), (409, "NON_EMPTY_GROUP"))
        st, _, body = call("DELETE", api + "/groups/" + group)
        ck.eq("delete while live", (st, body and body["error"]["name"]), (409, "NON_EMPTY_GROUP"))
        consumer.close()  # leaves the group (LeaveGroup): the coordinator makes it Empty
        consumer = None
        st, _, body = call("POST", api + f"/groups/{group}/reset", {"topic": t3, "resetTo": "earliest"})
        ck.eq("reset once empty", st, 200)
        ck.eq("reset answer", sorted((p["partition"], p["previousOffset"], p["newOffset"]) for p in body["partitions"]),
              sorted((p, committed[p] if committed[p] >= 0 else None, 0) for p in range(3)))
        got = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(20)
        ck.eq("offsets after reset (confluent-kafka)", sorted((tp.partition, tp.offset) for tp in got.topic_partitions),
              [(p, 0) for p in range(3)])
        st, _, body = call("POST", api + f"/groups/{group}/reset", {"topic": t3, "resetTo": "latest"})
        got = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(20)
        ck.eq("offsets after reset to latest", sorted((tp.partition, tp.offset) for tp in got.topic_partitions),
              [(p, high.get(p, 0)) for p in range(3)])
        st, _, body = call("GET", api + "/groups/" + group)
        ck.eq("lag after reset to latest", (st, body["state"], body["totalLag"]), (200, "Empty", 0))
        st, _, body = call("POST", api + "/groups/ctl-nobody-" + RUN + "/reset", {"topic": t3, "resetTo": "earliest"})
        ck.eq("reset unknown group", (st, body and body["error"]["name"]), (404, "GROUP_ID_NOT_FOUND"))
        st, _, body = call("DELETE", api + "/groups/" + group)
        ck.eq("delete the empty group", st, 204)
        st, _, body = call("GET", api + "/groups/" + group)
        ck.eq("deleted group", (st, body and body["error"]["name"]), (404, "GROUP_ID_NOT_FOUND"))

        # Delete a topic, then it is gone.
        st, _ = curl("DELETE", api + "/topics/" + t5)
        ck.eq("delete topic", st, 204)
        st, _, body = call("GET", api + "/topics/" + t5)
        ck.eq("GET deleted topic", (st, body and body["error"]["name"]), (404, "UNKNOWN_TOPIC_OR_PART"))
        st, _, body = call("DELETE", api + "/topics/" + t5)
        ck.eq("delete it again", (st, body and body["error"]["name"]), (404, "UNKNOWN_TOPIC_OR_PART"))
        st, _, body = call("POST", api + "/produce", {"topic": t5, "value": "v"})
        ck.eq("produce to the deleted topic", (st, body and body["error"]["name"]), (404, "UNKNOWN_TOPIC_OR_PART"))
        admin.delete_topics([t3], request_timeout=20)
    finally:
        if consumer is not None:
            consumer.close()
        ck.eq("SIGTERM exit status", svc.stop(signal.SIGTERM), 143)


if __name__ == "__main__":
    if EMBEDDED:
        embedded()
        port_taken()
        brokers_down()
    else:
        broker()
    ck.finish()
