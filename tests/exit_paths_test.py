#!/usr/bin/env python3
"""Every way a script ends flushes its producers and commits its consumers' stored offsets,
seen from outside klua (confluent-kafka on the real test broker).

Usage: exit_paths_test.py KLUA (KLUA_BROKERS names the broker; tools/with-broker sets it)

Each path runs one klua process: it takes 10 messages of an input topic (assign, no group join),
stores the first 7 (auto-commit every 10 minutes, so only the close can commit them), sends 100
messages with linger.ms=60000 (only a flush sends them), prints "ready" and ends its way. Python
then counts the output topic (exactly 100: none lost, none doubled) and reads the group's
committed offset (7). The paths run side by side.
"""
import os
import signal
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

try:
    import confluent_kafka  # noqa: F401
except ImportError:
    # The interpreter that has it: KLUA_PYTHON, else the virtualenv tools/dev makes (as
    # tests/integration/helpers/python.lua finds it).
    venv = os.environ.get("KLUA_PYTHON") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "klua/venv/bin/python")
    if os.path.exists(venv) and not os.environ.get("KLUA_PYTHON_REEXEC"):
        os.environ["KLUA_PYTHON_REEXEC"] = "1"
        os.execv(venv, [venv] + sys.argv)
    raise
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

KLUA = os.path.realpath(sys.argv[1])
BROKERS = os.environ["KLUA_BROKERS"]
RUN = uuid.uuid4().hex[:8]

SCRIPT = r"""
local in_topic, out_topic, group, path = ...
local c = klua.consumer{ group = group, ["auto.commit.interval.ms"] = 600000 }
assert(c:assign{ { topic = in_topic, partition = 0, offset = "beginning" } })
local n = 0
while n < 10 do
  local m = assert(c:poll{ timeout_ms = 20000 }, "no message")
  n = n + 1
  if n <= 7 then c:store(m) end
end
local p = klua.producer{ ["linger.ms"] = 60000 }
for i = 1, 100 do p:send{ topic = out_topic, value = "m" .. i } end
print("ready") io.stdout:flush()
if path == "end" then return end
if path == "error" then error("boom") end
if path == "bad_tostring" then error(setmetatable({}, { __tostring = function() error("tostring fails") end })) end
if path == "exit3" then klua.exit(3) end
if path == "os_exit" then os.exit(0) end
if path == "task_error" then klua.spawn(function() error("in a task") end) klua.sleep(60000) end
if path == "task_exit" then klua.spawn(function() klua.exit(5) end) klua.sleep(60000) end
if path == "signal_sleeping" then while true do klua.sleep(1000) end end
if path == "signal_busy" then jit.off() while true do end end
if path == "sigpipe" then while true do print("more") io.stdout:flush() end end -- the reader is gone
if path == "stderr_closed" then error("boom") end
error("unknown path " .. path)
"""

# path -> (signal to send after "ready" or None, expected exit code, a text stderr must hold)
PATHS = {
    "end": (None, 0, ""),
    "error": (None, 1, "boom"),
    "bad_tostring": (None, 1, "error object (table) whose __tostring raised: "),
    "exit3": (None, 3, ""),
    "os_exit": (None, 0, ""),
    "task_error": (None, 1, "in a task"),
    "task_exit": (None, 5, ""),
    "signal_sleeping": (signal.SIGINT, 130, "SIGINT received: stopping"),
    "signal_busy": (signal.SIGTERM, 143, "SIGTERM received: stopping"),
    # `klua script | head`: the first write to the closed pipe stops the script (exit 141).
    "sigpipe": ("close stdout", 141, ""),
    # `klua script 2>&-`: a message to the closed stderr aborted klua before its producers flushed.
    "stderr_closed": (None, 1, ""),
}

lock = threading.Lock()
failures = []


def report(name, ok, detail=""):
    with lock:
        print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail), flush=True)
        if not ok:
            failures.append(name)


def run_path(path):
    sig, code, text = PATHS[path]
    out_topic, group = f"exitpath-{RUN}-{path}", f"exitpath-{RUN}-{path}"
    with open(os.devnull, "rb") as devnull:
        closed = path == "stderr_closed"
        proc = subprocess.Popen([KLUA, "-e", SCRIPT, IN_TOPIC, out_topic, group, path], stdin=devnull,
                                stdout=subprocess.PIPE, stderr=None if closed else subprocess.PIPE,
                                preexec_fn=(lambda: os.close(2)) if closed else None)
    try:
        line = proc.stdout.readline()  # the event: the messages are queued, the offsets stored
        if line != b"ready\n":
            proc.kill()
            _, err = proc.communicate(timeout=30)
            return report(path, False, f"no ready line ({line!r}); stderr: {(err or b'').decode(errors='replace')}")
        if sig == "close stdout":
            proc.stdout.close()
        elif sig is not None:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return report(path, False, "klua did not end within 60 s")
    err = (err or b"").decode(errors="replace")
    if proc.returncode != code or text not in err:
        return report(path, False, f"exit {proc.returncode} (want {code}); stderr: {err}")
    delivered = count(out_topic)
    committed = committed_offset(group)
    report(path, delivered == 100 and committed == 7,
           f"{delivered} messages in {out_topic} (want 100), committed offset {committed} (want 7); stderr: {err}")


def count(topic):
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": f"exitpath-reader-{RUN}",
                  "enable.partition.eof": True, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    n = 0
    try:
        while True:
            m = c.poll(20)
            if m is None:
                return -1  # no end of partition in 20 s
            if m.error():
                if m.error().name() == "_PARTITION_EOF":
                    return n
                if m.error().name() == "UNKNOWN_TOPIC_OR_PART":
                    return 0
                raise RuntimeError(m.error().str())
            n += 1
    finally:
        c.close()


def committed_offset(group):
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": group, "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition(IN_TOPIC, 0)], timeout=20)[0].offset
    finally:
        c.close()


IN_TOPIC = f"exitpath-{RUN}-in"
admin = AdminClient({"bootstrap.servers": BROKERS})
topics = [IN_TOPIC] + [f"exitpath-{RUN}-{p}" for p in PATHS]
for f in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
    f.result(30)
p = Producer({"bootstrap.servers": BROKERS})
for i in range(10):
    p.produce(IN_TOPIC, value=f"in{i}")
assert p.flush(30) == 0

with ThreadPoolExecutor(len(PATHS)) as pool:
    list(pool.map(run_path, PATHS))

for f in admin.delete_topics(topics).values():
    f.result(30)
print(f"{len(PATHS) - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
