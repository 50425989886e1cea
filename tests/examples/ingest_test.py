#!/usr/bin/env python3
"""examples/ingest.lua (seed 002) against the real broker, driven by curl and http.client, its two
cloud endpoints served by another Python process (tests/examples/sync_endpoints.py): "aws" fast and
answering 503 to every 10th request, "azure" taking 300 ms per request.

Checks: bad DataSyncMessages get 400 naming the field; N accepted messages (202 with MessageId,
partition, offset) reach both endpoints exactly once, the 503s retried; the fast group is done before
the slow one is half way (the groups do not hold each other back); SIGTERM while the slow group is
half way and a client is posting exits 143, every POST answered 202 (in flight at the signal included)
is kept, and a restart delivers the rest without repeating any (each group handles exactly what its
endpoint had not saved: the commits held); at the end both groups' committed offsets equal the topic's
high watermarks. A message the endpoints refuse (422) is tried once and dead-lettered once per group,
with the status.

Usage: ingest_test.py KLUA [--embedded]
  without --embedded: KLUA_BROKERS names the broker (tools/with-broker sets it);
  --embedded: on the embedded cluster, which lives in the klua process: no restart and no Kafka-side
  checks, every message saved once by both endpoints and the refused one dead-lettered, then SIGTERM.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Checks, LineReader, Service, call, curl, use_venv_python  # noqa: E402

KLUA = os.path.realpath(sys.argv[1])
EMBEDDED = "--embedded" in sys.argv[2:]
if not EMBEDDED:
    use_venv_python()
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition  # noqa: E402
    from confluent_kafka import Consumer  # noqa: E402
    from confluent_kafka.admin import AdminClient  # noqa: E402
    BROKERS = os.environ["KLUA_BROKERS"]
HERE = os.path.dirname(os.path.abspath(__file__))
RUN = uuid.uuid4().hex[:8]
N, SLOW_MS, FAIL_EVERY, CONCURRENCY = 96, 300, 10, 4
TOPIC, PREFIX = "ingest-" + RUN, "ingest-" + RUN + "-"
LOG_DIR = os.environ.get("KLUA_TEST_SCRATCH") or os.path.join(os.path.dirname(KLUA), "examples-test")
os.makedirs(LOG_DIR, exist_ok=True)
ck = Checks("ingest" + (" (embedded)" if EMBEDDED else ""))


def post_many(url, bodies):
    """http.client on one keep-alive connection per thread: [(status, answer)] in order."""
    u = urlsplit(url)
    out = [None] * len(bodies)

    def worker(idx):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        for i in idx:
            conn.request("POST", u.path, body=json.dumps(bodies[i]), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            out[i] = (r.status, json.loads(r.read()))
        conn.close()

    threads = [threading.Thread(target=worker, args=(range(k, len(bodies), 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def check_records(aws_port, azure_port, ids):
    """Both endpoints saved every id exactly once, refused the 422 one once; aws's 503s were retried."""
    for name, port in (("aws", aws_port), ("azure", azure_port)):
        st, _, rec = call("GET", f"http://127.0.0.1:{port}/records")
        ck.eq(f"{name}: ids saved", sorted(rec["ids"]), sorted(ids))
        ck.eq(f"{name}: saved more than once", {k: v for k, v in rec["ids"].items() if v != 1}, {})
        ck.eq(f"{name}: bad requests", rec["bad"], [])
        ck.eq(f"{name}: refused with 422 once (not retried)", rec["rejected"], [f"rej-{RUN}"])
        if name == "aws":
            ck.true("aws refused some with 503 (retried)", rec["refused"] >= N // FAIL_EVERY // 2, repr(rec["refused"]))


def main():
    ep = subprocess.Popen([sys.executable, os.path.join(HERE, "sync_endpoints.py"), str(SLOW_MS), str(FAIL_EVERY)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    events = LineReader(ep, "sync_endpoints.py")
    aws_port, azure_port = events.wait_for(lambda l: l.startswith("ports "), 30).split()[1:]
    aws, azure = f"http://127.0.0.1:{aws_port}/aws/save", f"http://127.0.0.1:{azure_port}/azure/save"
    args = ["--port", "0", "--topic", TOPIC, "--group-prefix", PREFIX, "--concurrency", str(CONCURRENCY),
            "--aws", aws]
    env = dict(os.environ, SYNC_AZURE_URL=azure)  # one URL by option, the other by environment
    if EMBEDDED:
        env["KLUA_BROKERS"] = ""
    svc = Service(KLUA, "examples/ingest.lua", *args, env=env, log=os.path.join(LOG_DIR, "ingest_embedded.log" if EMBEDDED else "ingest_1.log"))
    svc2 = None
    try:
        api = svc.url + "/api/datasync"
        # Bad DataSyncMessages: 400 naming the field, nothing produced.
        for what, raw, field in [
            ("not JSON", b'{"Data":', "body"),
            ("no Data", b'{"MessageId": "m1"}', "Data"),
            ("Data a number", b'{"Data": 5}', "Data"),
            ("empty Data", b'{"Data": ""}', "Data"),
            ("bad MessageId", b'{"Data": "x", "MessageId": "a b"}', "MessageId"),
            ("bad CreatedAt", b'{"Data": "x", "CreatedAt": "yesterday"}', "CreatedAt"),
            ("Metadata value", b'{"Data": "x", "Metadata": {"n": 1}}', "Metadata.n"),
            ("an array", b'["x"]', "body"),
        ]:
            st, _, body = call("POST", api, raw=raw)
            ck.eq("400 " + what, (st, body and body["error"]["field"]), (400, field))
        st, _, _ = call("GET", api)
        ck.eq("GET /api/datasync", st, 405)

        # N messages: 3 with curl as the seed's README sends them (a JSON string), 2 with curl and an id,
        # the rest with http.client on keep-alive connections.
        accepted, t_start = [], time.monotonic()  # the endpoints' clock: CLOCK_MONOTONIC, one machine
        for i in range(3):
            st, body = curl("POST", api, json.dumps(f"Test message {i} for dual-cloud sync"))
            accepted.append((st, body))
        for i in range(2):
            st, body = curl("POST", api, {"MessageId": f"curl-{RUN}-{i}", "Data": f"curl {i}", "Source": "test",
                                          "Metadata": {"tenant": "t1"}})
            accepted.append((st, body))
        accepted += post_many(api, [{"MessageId": f"m-{RUN}-{i:04d}", "Data": f"record {i}", "Source": "test"}
                                    for i in range(N - 5)])
        st, _, body = call("POST", api, {"MessageId": f"rej-{RUN}", "Data": "reject-me"})
        ck.eq("the one the endpoints refuse is accepted here", st, 202)
        ck.eq("all 202", [st for st, _ in accepted], [202] * N)
        ids = [b["MessageId"] for _, b in accepted]
        ck.eq("ids given are kept", ids[3:5], [f"curl-{RUN}-0", f"curl-{RUN}-1"])
        ck.eq("distinct ids", len(set(ids)), N)
        ck.true("partition/offset answered", all(b["topic"] == TOPIC and 0 <= b["partition"] < 12 and b["offset"] >= 0
                                                 for _, b in accepted))
        ck.eq("distinct (partition, offset)", len({(b["partition"], b["offset"]) for _, b in accepted}), N)

        # The fast group finishes before the slow one is half way (the groups do not hold each other back).
        saved, at, rejected = {"aws": 0, "azure": 0}, {}, set()

        def until(name, n, refused=False):
            """Reads the endpoints' reports until name saved n ids (and refused the 422 one, if asked)."""
            while saved[name] < n or refused and name not in rejected:
                kind, who, k, t = events.wait_for(lambda l: l.startswith(("saved ", "rejected ")), 60).split()
                if kind == "rejected":
                    rejected.add(who)
                    continue
                saved[who] = int(k)
                at[(who, int(k))] = float(t)

        until("aws", N)
        until("azure", N // 2)
        aws_done, azure_half = at[("aws", N)], at[("azure", N // 2)]
        print(f"aws done {aws_done - t_start:.2f} s after the first POST, azure half way at {azure_half - t_start:.2f} s",
              flush=True)
        ck.true("aws done before azure is half way", aws_done <= azure_half,
                f"(aws done at {aws_done - t_start:.2f} s, azure half at {azure_half - t_start:.2f} s)")

        if EMBEDDED:
            # The cluster lives in the klua process: no restart; every message saved once, then SIGTERM.
            until("aws", N, refused=True)
            until("azure", N, refused=True)
            check_records(aws_port, azure_port, ids)
            st, _, status = call("GET", svc.url + "/api/datasync/status")
            ck.eq("status: processed (the refused one too)", (st, status["aws"]["processed"], status["azure"]["processed"]),
                  (200, N + 1, N + 1))
            ck.eq("SIGTERM exit status", svc.stop(signal.SIGTERM), 143)
            return

        # SIGTERM while a client is posting: the requests in flight get their 202 (after the delivery),
        # later ones are refused; every 202 is saved by both endpoints in the end.
        late, posting = [], threading.Event()

        def post_until_refused():
            u = urlsplit(api)
            for i in range(100000):
                try:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                    conn.request("POST", u.path, body=json.dumps({"MessageId": f"late-{RUN}-{i}", "Data": "late"}),
                                 headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    body = json.loads(r.read())
                    conn.close()
                except (OSError, http.client.HTTPException):
                    break
                if r.status != 202:
                    late.append(("status", r.status))
                    break
                late.append(body["MessageId"])
                if len(late) == 3:
                    posting.set()
            posting.set()

        poster = threading.Thread(target=post_until_refused)
        poster.start()
        posting.wait(30)
        # ... and while azure is saving one: SIGTERM within 100 ms of a request's arrival (it takes 300 ms).
        while True:
            _, _, in_flight, t = events.wait_for(lambda l: l.startswith("arrived azure "), 30).split()
            if time.monotonic() - float(t) < 0.1:
                break
        ck.eq("SIGTERM mid-way exit status", svc.stop(signal.SIGTERM), 143)
        poster.join(30)
        ck.true("posted during the stop", len(late) >= 3 and all(isinstance(x, str) for x in late), repr(late[-3:]))
        ids += [x for x in late if isinstance(x, str)]
        total = len(ids)
        # what each endpoint had by the exit: saved ids, plus the refused one if it came already
        before = {}
        for name, port in (("aws", aws_port), ("azure", azure_port)):
            rec = call("GET", f"http://127.0.0.1:{port}/records")[2]
            before[name] = len(rec["ids"]) + len(rec["rejected"])

        ck.true("the save in flight at SIGTERM finished", in_flight in call("GET", f"http://127.0.0.1:{azure_port}/records")[2]["ids"],
                in_flight)

        # A restart delivers the rest: nothing lost, nothing repeated.
        svc2 = Service(KLUA, "examples/ingest.lua", *args, env=env, log=os.path.join(LOG_DIR, "ingest_2.log"))
        until("aws", total, refused=True)
        until("azure", total, refused=True)
        print(f"{len(late)} posted during the stop; handled before the restart: {before}; azure done "
              f"{at[('azure', total)] - t_start:.2f} s after the first POST", flush=True)
        check_records(aws_port, azure_port, ids)
        st, _, status = call("GET", svc2.url + "/api/datasync/status")
        ck.eq("status", st, 200)
        ck.eq("restart: what each group handled", (status["aws"]["processed"], status["azure"]["processed"]),
              (total + 1 - before["aws"], total + 1 - before["azure"]))
        ck.true("restart: azure had work left", total + 1 - before["azure"] > 0, repr(before))
        ck.eq("second SIGTERM exit status", svc2.stop(signal.SIGTERM), 143)

        # Committed offsets (read by confluent-kafka) equal the high watermarks; the DLQ is empty.
        c = Consumer({"bootstrap.servers": BROKERS, "group.id": "ingest-check-" + RUN})
        high = {p: c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=20)[1] for p in range(12)}
        dlq = sum(c.get_watermark_offsets(TopicPartition(TOPIC + "-dlq", p), timeout=20)[1] for p in range(4))
        c.close()
        ck.eq("sum of high watermarks", sum(high.values()), total + 1)
        # The dead-letter topic holds the refused message once per group, with the status.
        c = Consumer({"bootstrap.servers": BROKERS, "group.id": "ingest-dlq-" + RUN, "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(TOPIC + "-dlq", p, 0) for p in range(4)])
        dead = []
        while len(dead) < dlq:
            m = c.poll(20)
            assert m is not None, "the dead-letter records did not come"
            if not m.error():
                h = dict((k, v.decode()) for k, v in (m.headers() or []))
                dead.append((m.key().decode(), h.get("x-http-status"), h.get("x-sync-target"), h.get("x-dead-letter-reason")))
        c.close()
        ck.eq("dead-letter records", sorted(dead), [(f"rej-{RUN}", "422", cloud, "refused") for cloud in ("aws", "azure")])
        admin = AdminClient({"bootstrap.servers": BROKERS})
        for cloud in ("aws", "azure"):
            g = PREFIX + cloud + "-sync-group"
            got = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)])[g].result(20)
            committed = {tp.partition: tp.offset for tp in got.topic_partitions if tp.topic == TOPIC}
            ck.eq(f"{cloud}: committed = high", {p: committed.get(p, -1001) for p in high if high[p] > 0},
                  {p: h for p, h in high.items() if h > 0})
        admin.delete_topics([TOPIC, TOPIC + "-dlq"], request_timeout=20)
    finally:
        svc.kill()
        if svc2:
            svc2.kill()
        ep.stdin.close()
        ep.wait(10)


if __name__ == "__main__":
    main()
    ck.finish()
