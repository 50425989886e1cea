"""The clusters bench/run measures against.

MockCluster: one standalone klua embedded (mock) cluster (bench/mock_cluster.lua)
that every contender reaches over TCP, so raw C++, klua, kcat and Python all hit
the very same cluster. Its topics are made by the mock process itself (the mock
serves no admin requests).

Broker: a real broker (tools/kafka-broker); topics are made with klua's admin API.
"""
import os
import subprocess
import uuid

from common import BENCH, RunError, tail

CREATE_LUA = r"""
local name, partitions = ...
local a = klua.admin()
local res, err = a:create_topics({ { name = name, partitions = tonumber(partitions), replication_factor = 1 } })
if not res then error(err, 0) end
if res[1].error then error(res[1].error, 0) end
a:close()
"""

DELETE_LUA = r"""
local a = klua.admin()
local res, err = a:delete_topics({ ... })
if not res then error(err, 0) end
a:close()
"""


def fresh(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class MockCluster:
    kind = "embedded"

    def __init__(self, klua):
        self.klua = klua
        self.proc = subprocess.Popen([klua, "run", os.path.join(BENCH, "mock_cluster.lua")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.bootstrap = self.proc.stdout.readline().strip()
        if not self.bootstrap:
            self.close()
            raise RunError("bench/mock_cluster.lua printed no bootstrap address")

    def _command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer != "ok":
            raise RunError(f"mock cluster: {line}: {answer or 'no answer (it exited)'}")

    def create(self, topic, partitions):
        self._command(f"create {topic} {partitions}")

    def fill(self, topic, partitions, count, size):
        self._command(f"fill {topic} {partitions} {count} {size}")

    def delete(self, topic):
        pass  # the 2.0.2 mock cannot delete topics; it keeps at most ~5 MiB per partition

    def pid(self):
        return self.proc.pid

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Broker:
    kind = "broker"

    def __init__(self, klua, bootstrap):
        self.klua = klua
        self.bootstrap = bootstrap

    def _lua(self, code, *args):
        p = subprocess.run([self.klua, "-b", self.bootstrap, "-e", code] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        if p.returncode != 0:
            raise RunError(f"broker admin failed:\n{tail(p.stderr)}")

    def create(self, topic, partitions):
        self._lua(CREATE_LUA, topic, str(partitions))

    def fill(self, topic, partitions, count, size):
        """Fills with kcat -P (default partitioner): a broker keeps everything."""
        line = b"x" * size + b"\n"
        k = subprocess.Popen(["kcat", "-P", "-b", self.bootstrap, "-t", topic, "-q"],
                             stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        chunk = line * 10000
        left = count
        while left > 0:
            n = min(left, 10000)
            k.stdin.write(chunk if n == 10000 else line * n)
            left -= n
        k.stdin.close()
        err = k.stderr.read().decode(errors="replace")
        if k.wait(timeout=900) != 0:
            raise RunError(f"kcat -P fill failed:\n{tail(err)}")

    def delete(self, topic):
        try:
            self._lua(DELETE_LUA, topic)
        except RunError:
            pass  # best effort: the broker's data dir goes with `tools/kafka-broker stop`

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def broker_address(root):
    """The address of this tree's broker when it runs (tools/kafka-broker address), else None."""
    env = dict(os.environ)
    env.setdefault("KLUA_BROKER_STATE", os.path.join(root, "build", "kafka-broker"))
    try:
        p = subprocess.run([os.path.join(root, "tools", "kafka-broker"), "status"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        if p.returncode != 0:
            return None
        p = subprocess.run([os.path.join(root, "tools", "kafka-broker"), "address"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    addr = p.stdout.strip().splitlines()[-1] if p.returncode == 0 and p.stdout.strip() else None
    return addr
