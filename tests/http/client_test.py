#!/usr/bin/env python3
"""klua.http's client against real peers: Python's http.server (plain and TLS, with a CA, server
and client certificates made here by openssl) and an asyncio server for the 1,000-requests test.
Each case runs a small klua script; what the script reports is checked against what the server
saw (connections, concurrency, closed sockets, headers) and against Python's own encoders.

usage: client_test.py KLUA_BINARY SCRATCH_DIR [unittest args]
"""
import asyncio
import base64
import gzip
import http.server
import json
import os
import queue
import resource
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

KLUA = os.path.abspath(sys.argv[1])
SCRATCH = os.path.abspath(sys.argv[2])
del sys.argv[1:3]

SECRETS = ["pw-SECRET-1", "tok-SECRET-2", "pw-SECRET-3", "kp-SECRET-4", "q-SECRET-5"]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status=200):
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _client_closed(self, timeout):
        """Waits up to timeout for the client to close the connection (an event on the socket)."""
        r, _, _ = select.select([self.connection], [], [], timeout)
        if not r:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (ConnectionError, ssl.SSLError):
            return True

    def handle_any(self):
        body = self._body()
        if self.path.startswith("http://"):  # absolute form: we are the proxy
            return self._json({"proxied": self.path})
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        arg = lambda k, d: int(q.get(k, [d])[0])
        p = url.path
        if p == "/json":
            return self._json({"hello": "world", "list": [1, 2, 3]})
        if p == "/echo":
            headers = {}
            for k, v in self.headers.items():
                k = k.lower()
                headers[k] = headers[k] + ", " + v if k in headers else v
            peer = None
            if isinstance(self.connection, ssl.SSLSocket) and self.connection.getpeercert():
                peer = dict(x[0] for x in self.connection.getpeercert()["subject"])["commonName"]
            return self._json({"method": self.command, "path": self.path, "headers": headers,
                               "body": body.decode("latin-1"), "peer": peer})
        if p == "/status":
            return self._send(arg("code", 200), b"status body")
        if p == "/big":
            return self._send(200, b"x" * arg("n", 0))
        if p == "/chunked":
            n, sent = arg("n", 0), 0
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"y" * 65536
            try:
                while sent < n:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
                self.wfile.write(b"0\r\n\r\n")
                self.server.events.put(("chunked-complete", sent))
            except (ConnectionError, ssl.SSLError):
                self.server.events.put(("chunked-stopped", sent))
                self.close_connection = True
            return
        if p == "/redirect":
            n = arg("n", 0)
            if n > 0:
                return self._send(302, b"", extra=[("Location", "/redirect?n=%d" % (n - 1))])
            return self._send(200, b"arrived")
        if p == "/loop":
            return self._send(302, b"", extra=[("Location", "/loop")])
        if p == "/slow":
            self.server.started(q.get("id", [""])[0]).set()
            if self._client_closed(arg("ms", 1000) / 1000):
                self.server.events.put(("closed", p))
                self.close_connection = True
                return
            return self._send(200, b"slow done")
        if p == "/slow-started":  # answers once the /slow request with this id has arrived
            self.server.started(q.get("id", [""])[0]).wait(10)
            return self._send(200, b"started")
        if p == "/concurrent":
            with self.server.lock:
                self.server.active += 1
                self.server.max_active = max(self.server.max_active, self.server.active)
            time.sleep(arg("ms", 100) / 1000)  # the simulated service time
            with self.server.lock:
                self.server.active -= 1
            return self._send(200, b"ok")
        if p == "/repeat":
            return self._send(200, b"r", extra=[("X-Multi", "one"), ("X-Multi", "two"), ("X-Single", "s")])
        if p == "/gzip":
            return self._send(200, gzip.compress(b"z" * 10000), extra=[("Content-Encoding", "gzip")])
        if p == "/not-json":
            return self._send(200, b"{not json")
        return self._send(404, b"no such path")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


def start_server(context=None):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.connections = srv.active = srv.max_active = 0
    srv.events = queue.Queue()
    events = {}

    def started(key):  # one event per /slow?id=
        with srv.lock:
            return events.setdefault(key, threading.Event())
    srv.started = started
    # A refused handshake is what some cases test: not worth a traceback on stderr.
    srv.handle_error = lambda request, address: None
    if context:
        srv.socket = context.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class SlowAsyncServer:
    """Answers every request after `delay` seconds; counts the requests waiting at once."""

    def __init__(self, delay):
        self.delay, self.active, self.max_active, self.served, self.connections = delay, 0, 0, 0, 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=4096))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        self.server.close()
        tasks = asyncio.all_tasks(self.loop)
        for t in tasks:
            t.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()

    async def _handle(self, reader, writer):
        self.connections += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                await asyncio.sleep(self.delay)
                self.active -= 1
                self.served += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=TLS_DIR)


def make_certs():
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate (its key under a
    password) signed by the CA, and an unrelated CA."""
    shutil.rmtree(TLS_DIR, ignore_errors=True)
    os.makedirs(TLS_DIR)
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca + ".key", "-out", ca + ".pem",
                "-days", "2", "-subj", "/CN=klua test " + ca)
    with open(os.path.join(TLS_DIR, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    openssl("req", "-newkey", "rsa:2048", "-passout", "pass:kp-SECRET-4", "-keyout", "client.key", "-out", "client.csr",
            "-subj", "/CN=klua-client")
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "client.pem", "-days", "2")


def tls(name):
    return os.path.join(TLS_DIR, name)


TLS_DIR = os.path.join(SCRATCH, "tls")


def run_lua(name, code, env=None, timeout=60, nofile=None):
    """Runs code as a klua script; returns (exit status, stdout, stderr)."""
    path = os.path.join(SCRATCH, name + ".lua")
    with open(path, "w") as f:
        f.write(code)
    e = dict(os.environ, KLUA_BROKERS="")
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        e.pop(k, None)
    e.update(env or {})
    cmd = [KLUA, "run", path]
    if nofile:
        cmd = ["sh", "-c", 'ulimit -n %d && exec "$@"' % nofile, "sh", *cmd]
    p = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


# Lua helpers prepended to every script: check() fails the script with the message; out() prints
# one JSON line for Python.
PRELUDE = r"""
local URL = os.getenv("URL")
local function check(cond, ...)
  if not cond then error(table.concat({ ... }, " "), 2) end
  return cond
end
local function out(t) print(klua.json.encode(t)) end
"""


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        os.makedirs(SCRATCH, exist_ok=True)
        make_certs()
        cls.plain = start_server()
        cls.url = "http://127.0.0.1:%d" % cls.plain.server_address[1]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls("server.pem"), tls("server.key"))
        cls.tls = start_server(ctx)
        cls.tls_url = "https://127.0.0.1:%d" % cls.tls.server_address[1]
        mctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        mctx.load_cert_chain(tls("server.pem"), tls("server.key"))
        mctx.verify_mode = ssl.CERT_REQUIRED
        # TLS 1.2: the refusal of a missing client certificate is then part of the handshake. With
        # TLS 1.3 the client has finished its handshake when the server refuses, and may only see
        # the connection drop (KLUA_HTTP_PROTOCOL, as documented).
        mctx.maximum_version = ssl.TLSVersion.TLSv1_2
        mctx.load_verify_locations(tls("ca.pem"))
        cls.mtls = start_server(mctx)
        cls.mtls_url = "https://localhost:%d" % cls.mtls.server_address[1]

    @classmethod
    def tearDownClass(cls):
        for s in (cls.plain, cls.tls, cls.mtls):
            s.shutdown()
            s.server_close()

    def lua(self, name, code, url=None, env=None, **kw):
        e = {"URL": url or self.url}
        e.update(env or {})
        status, stdout, stderr = run_lua(name, PRELUDE + code, e, **kw)
        self.assertEqual(status, 0, "klua failed:\n" + stdout + stderr)
        return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]

    def event(self, srv, timeout=5):
        return srv.events.get(timeout=timeout)

    def drain(self, srv):
        while not srv.events.empty():
            srv.events.get_nowait()

    # ---- responses ----------------------------------------------------------------------------

    def test_json_headers_status_and_methods(self):
        (r,) = self.lua("basics", r"""
local res = assert(klua.http.get(URL .. "/json"))
local rep = assert(klua.http.get(URL .. "/repeat"))
local nf = assert(klua.http.get(URL .. "/status?code=404"))
local bad = assert(klua.http.get(URL .. "/not-json"))
local v, jerr = bad:json()
local head = assert(klua.http.request{ method = "head", url = URL .. "/big?n=12345" })
local put = assert(klua.http.request{ method = "PUT", url = URL .. "/echo", body = "put-body" })
local del = assert(klua.http.request{ method = "DELETE", url = URL .. "/echo" })
local gz = assert(klua.http.get(URL .. "/gzip"))
out{ status = res.status, ctype = res.headers["content-type"], hello = res:json().hello, list = res:json().list,
     url = res.url, multi = rep.headers["x-multi"], single = rep.headers["x-single"],
     nf_status = nf.status, nf_body = nf.body, json_nil = v == nil, jerr = jerr and jerr.name,
     head_status = head.status, head_len = head.headers["content-length"], head_body = head.body,
     put = put:json(), del = del:json().method, gz_len = #gz.body, gz_ok = gz.body == string.rep("z", 10000) }
""")
        self.assertEqual(r["status"], 200)
        self.assertEqual(r["ctype"], "application/json")
        self.assertEqual(r["hello"], "world")
        self.assertEqual(r["list"], [1, 2, 3])
        self.assertEqual(r["url"], self.url + "/json")
        self.assertEqual(r["multi"], "one, two")
        self.assertEqual(r["single"], "s")
        self.assertEqual((r["nf_status"], r["nf_body"]), (404, "status body"))  # a response, not an error
        self.assertTrue(r["json_nil"])
        self.assertEqual(r["jerr"], "KLUA_JSON")
        self.assertEqual((r["head_status"], r["head_len"], r["head_body"]), (200, "12345", ""))
        self.assertEqual((r["put"]["method"], r["put"]["body"]), ("PUT", "put-body"))
        self.assertNotIn("content-type", r["put"]["headers"])  # a raw body claims no type
        self.assertEqual(r["del"], "DELETE")
        self.assertEqual(r["gz_len"], 10000)
        self.assertTrue(r["gz_ok"])

    def test_request_query_headers_and_json_body(self):
        (r,) = self.lua("request", r"""
local a = assert(klua.http.request{ url = URL .. "/echo?x=1", query = { q = "a b&c/é", n = 2, list = { "x", "y" } },
                                    headers = { ["X-Map"] = "m", ["X-Empty"] = "", ["X-Num"] = 7 } }):json()
local b = assert(klua.http.request{ url = URL .. "/echo", headers = { { "X-Rep", "1" }, { "X-Rep", "2" } } }):json()
local c = assert(klua.http.post(URL .. "/echo", { k = "v", n = { 1, 2 } })):json()
local d = assert(klua.http.post(URL .. "/echo", "raw", { headers = { ["Content-Type"] = "text/csv" } })):json()
local api = klua.http.client{ base_url = URL, headers = { ["X-Default"] = "d", ["X-Over"] = "client" } }
local e = assert(api:get("/echo", { headers = { ["x-over"] = "request" } })):json()
out{ a = a, b = b, c = c, d = d, e = e }
""")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(r["a"]["path"]).query, keep_blank_values=True)
        self.assertEqual(q, {"x": ["1"], "q": ["a b&c/é"], "n": ["2"], "list": ["x", "y"]})
        h = r["a"]["headers"]
        self.assertEqual((h["x-map"], h["x-empty"], h["x-num"]), ("m", "", "7"))
        self.assertTrue(h["user-agent"].startswith("klua/"))
        self.assertEqual(r["b"]["headers"]["x-rep"], "1, 2")
        self.assertEqual(r["c"]["method"], "POST")
        self.assertEqual(r["c"]["headers"]["content-type"], "application/json")
        self.assertEqual(json.loads(r["c"]["body"]), {"k": "v", "n": [1, 2]})
        self.assertNotIn("expect", r["c"]["headers"])
        self.assertEqual((r["d"]["body"], r["d"]["headers"]["content-type"]), ("raw", "text/csv"))
        self.assertEqual(r["e"]["path"], "/echo")
        self.assertEqual(r["e"]["headers"]["x-default"], "d")
        self.assertEqual(r["e"]["headers"]["x-over"], "request")

    def test_large_body_and_size_limits(self):
        self.drain(self.plain)
        (r,) = self.lua("limits", r"""
local ok = assert(klua.http.get(URL .. "/big?n=1000000", { max_response_size = 1000000 }))
local _, known = klua.http.get(URL .. "/big?n=1000001", { max_response_size = 1000000 })
local chunked_ok = assert(klua.http.get(URL .. "/chunked?n=655360"))
local _, chunked = klua.http.get(URL .. "/chunked?n=104857600", { max_response_size = 1048576 })
out{ ok_len = #ok.body, ok_all_x = not ok.body:find("[^x]"), known = known.name, known_msg = known.message,
     chunked_ok = #chunked_ok.body, chunked = chunked.name, chunked_msg = chunked.message }
""")
        self.assertEqual(r["ok_len"], 1000000)
        self.assertTrue(r["ok_all_x"])
        self.assertEqual(r["known"], "KLUA_HTTP_TOO_LARGE")
        self.assertIn("/big?n=1000001", r["known_msg"])
        self.assertEqual(r["chunked_ok"], 655360)
        self.assertEqual(r["chunked"], "KLUA_HTTP_TOO_LARGE")
        self.assertIn("max_response_size (1048576 bytes)", r["chunked_msg"])
        self.assertEqual(self.event(self.plain), ("chunked-complete", 655360))
        # the 100 MiB transfer was stopped: the server's writes failed long before the end
        kind, sent = self.event(self.plain)
        self.assertEqual(kind, "chunked-stopped")
        self.assertLess(sent, 50 * 1048576)

    def test_redirects(self):
        (r,) = self.lua("redirects", r"""
local a = assert(klua.http.get(URL .. "/redirect?n=3"))
local _, loop = klua.http.get(URL .. "/loop")
local _, six = klua.http.get(URL .. "/redirect?n=6")
local six_ok = assert(klua.http.get(URL .. "/redirect?n=6", { max_redirects = 6 }))
local none = assert(klua.http.get(URL .. "/redirect?n=1", { max_redirects = 0 }))
local posted = assert(klua.http.post(URL .. "/redirect?n=1", "x"))
out{ body = a.body, url = a.url, loop = loop.name, loop_msg = loop.message, six = six.name, six_ok = six_ok.body,
     none = none.status, location = none.headers.location, posted = posted.body }
""")
        self.assertEqual((r["body"], r["url"]), ("arrived", self.url + "/redirect?n=0"))
        self.assertEqual(r["loop"], "KLUA_HTTP_REDIRECTS")
        self.assertIn("GET %s/loop" % self.url, r["loop_msg"])
        self.assertEqual(r["six"], "KLUA_HTTP_REDIRECTS")
        self.assertEqual(r["six_ok"], "arrived")
        self.assertEqual((r["none"], r["location"]), (302, "/redirect?n=0"))
        self.assertEqual(r["posted"], "arrived")

    # ---- failures -------------------------------------------------------------------------------

    def test_connect_refused_and_dns(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
        s.close()
        (r,) = self.lua("refused", r"""
local _, refused = klua.http.get("http://127.0.0.1:" .. os.getenv("CLOSED") .. "/x")
local _, dns = klua.http.get("http://no-such-host.invalid/")
out{ async_dns = klua.http._curl().async_dns, refused = refused.name, refused_msg = tostring(refused), refused_url = refused.url, retriable = refused.retriable,
     dns = dns.name, dns_msg = tostring(dns), code = dns.code == klua.errors.codes.KLUA_HTTP_DNS }
""", env={"CLOSED": str(closed_port)})
        self.assertTrue(r["async_dns"])  # curl's resolver thread: a lookup never blocks the loop
        self.assertEqual(r["refused"], "KLUA_HTTP_CONNECT")
        self.assertIn("Connection refused", r["refused_msg"])
        self.assertIn("GET http://127.0.0.1:%d/x" % closed_port, r["refused_msg"])
        self.assertEqual(r["refused_url"], "http://127.0.0.1:%d/x" % closed_port)
        self.assertTrue(r["retriable"])
        self.assertEqual(r["dns"], "KLUA_HTTP_DNS")
        self.assertIn("no-such-host.invalid", r["dns_msg"])
        self.assertTrue(r["code"])

    def test_timeout_and_cancel_close_the_connection(self):
        self.drain(self.plain)
        (r,) = self.lua("timeout", r"""
local t0 = klua.now()
local res, err = klua.http.get(URL .. "/slow?ms=5000", { timeout_ms = 300 })
out{ name = err.name, msg = err.message, timeout_ms = err.timeout_ms, elapsed = klua.now() - t0 }
""")
        self.assertEqual(r["name"], "_TIMED_OUT")
        self.assertEqual(r["msg"], "GET %s/slow?ms=5000: timed out after 300 ms" % self.url)
        self.assertEqual(r["timeout_ms"], 300)
        self.assertGreaterEqual(r["elapsed"], 290)
        self.assertLess(r["elapsed"], 3000)
        self.assertEqual(self.event(self.plain, 3), ("closed", "/slow"))  # the transfer was dropped

        (r,) = self.lua("cancel", r"""
local t = klua.spawn(function() return klua.http.get(URL .. "/slow?ms=10000&id=cancel") end)
assert(klua.http.get(URL .. "/slow-started?id=cancel"))  -- the server holds the slow request now
local t0 = klua.now()
t:cancel()
local _, err = t:join()
out{ name = err.name, status = t:status(), join_ms = klua.now() - t0 }
""")
        self.assertEqual(r["name"], "KLUA_CANCELLED")
        self.assertEqual(r["status"], "failed")
        self.assertEqual(self.event(self.plain, 3), ("closed", "/slow"))

    def test_close_exit_and_signal_with_requests_waiting(self):
        self.drain(self.plain)
        (r,) = self.lua("close", r"""
local api = klua.http.client{ base_url = URL }
local t = klua.spawn(function() return api:get("/slow?ms=10000&id=close") end)
assert(klua.http.get(URL .. "/slow-started?id=close"))
api:close()
api:close()
local res, err = t:join()
local ok, later = pcall(api.get, api, "/json")
out{ res = res, name = err.name, later = later.name }
""")
        self.assertEqual((r.get("res"), r["name"], r["later"]), (None, "KLUA_CLOSED", "KLUA_CLOSED"))
        self.assertEqual(self.event(self.plain, 3), ("closed", "/slow"))

        # klua.exit while another task's request waits: the client goes with the Lua state
        (r,) = self.lua("exit", r"""
klua.spawn(function() return klua.http.get(URL .. "/slow?ms=10000&id=exit") end)
assert(klua.http.get(URL .. "/slow-started?id=exit"))
out{ exiting = true }
klua.exit(0)
""")
        self.assertEqual(self.event(self.plain, 3), ("closed", "/slow"))

        # SIGTERM: the waiting request is cancelled, klua exits 143 at once
        path = os.path.join(SCRATCH, "sigterm.lua")
        with open(path, "w") as f:
            f.write('print(klua.http.get(os.getenv("URL") .. "/slow?ms=10000&id=sigterm"))\n')
        p = subprocess.Popen([KLUA, "run", path], env=dict(os.environ, URL=self.url, KLUA_BROKERS=""),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.assertTrue(self.plain.started("sigterm").wait(10))
            t0 = time.monotonic()
            p.terminate()
            out, err = p.communicate(timeout=10)
        finally:
            p.kill()
        self.assertEqual(p.returncode, 143, err)
        self.assertLess(time.monotonic() - t0, 3)
        self.assertEqual(self.event(self.plain, 3), ("closed", "/slow"))

    def test_other_tasks_keep_running_while_a_request_waits(self):
        (r,) = self.lua("ticking", r"""
local done = false
local req = klua.spawn(function()
  local res = assert(klua.http.get(URL .. "/slow?ms=600"))
  done = true
  return res.body
end)
local ticks, max_gap, last = 0, 0, klua.now()
while not done do
  klua.sleep(10)
  local now = klua.now()
  ticks, max_gap, last = ticks + 1, math.max(max_gap, now - last), now
end
out{ body = req:join(), ticks = ticks, max_gap = max_gap }
""")
        self.assertEqual(r["body"], "slow done")
        # blocking the loop (io.popen("curl ...")) would give one tick; 600 ms of 10 ms sleeps give ~50
        self.assertGreaterEqual(r["ticks"], 20)
        self.assertLess(r["max_gap"], 200)

    # ---- connections ----------------------------------------------------------------------------

    def test_connection_reuse(self):
        before = self.plain.connections
        (r,) = self.lua("reuse", r"""
local n = 0
for i = 1, 50 do
  local res = assert(klua.http.get(URL .. "/json"))
  if res.status == 200 then n = n + 1 end
end
out{ n = n }
""")
        self.assertEqual(r["n"], 50)
        self.assertEqual(self.plain.connections - before, 1)

    def test_connection_reuse_with_100_in_flight(self):
        # every response of a round arrives in the same loop turn: the connections must all be
        # kept for the next round (curl's default cache bound once closed most of them)
        srv = SlowAsyncServer(delay=0.05)
        try:
            (r,) = self.lua("reuse100", r"""
local ok, tasks = 0, {}
for w = 1, 100 do
  tasks[w] = klua.spawn(function()
    for i = 1, 5 do if assert(klua.http.get(URL .. "/")).body == "ok" then ok = ok + 1 end end
  end)
end
for _, t in ipairs(tasks) do t:join() end
out{ ok = ok }
""", url="http://127.0.0.1:%d" % srv.port)
        finally:
            srv.stop()
        self.assertEqual(r["ok"], 500)
        self.assertEqual(srv.served, 500)
        self.assertLessEqual(srv.connections, 100)  # the default limit per host, each kept

    def test_per_host_limit(self):
        self.plain.max_active = 0
        (r,) = self.lua("per_host", r"""
local api = klua.http.client{ base_url = URL, max_per_host = 3 }
local tasks = {}
for i = 1, 12 do tasks[i] = klua.spawn(function() return assert(api:get("/concurrent?ms=150")).status end) end
local ok = 0
for _, t in ipairs(tasks) do if t:join() == 200 then ok = ok + 1 end end
out{ ok = ok }
""")
        self.assertEqual(r["ok"], 12)
        self.assertEqual(self.plain.max_active, 3)

    def test_proxy_from_the_environment(self):
        (r,) = self.lua("proxy", r"""
local res = assert(klua.http.get("http://somewhere.invalid/through?x=1"))
local direct, err = klua.http.get("http://somewhere.invalid/", { proxy = "" })
out{ proxied = res:json().proxied, direct = err.name }
""", env={"http_proxy": self.url})
        self.assertEqual(r["proxied"], "http://somewhere.invalid/through?x=1")
        self.assertEqual(r["direct"], "KLUA_HTTP_DNS")

    # ---- auth and secrets -----------------------------------------------------------------------

    def test_basic_and_bearer_auth_and_no_secret_in_errors(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        closed = "http://127.0.0.1:%d" % s.getsockname()[1]
        s.close()
        host = self.url.split("//")[1]
        status, stdout, stderr = run_lua("auth", PRELUDE + r"""
local basic = assert(klua.http.get(URL .. "/echo", { user = "alice", password = "pw-SECRET-1" })):json()
local bearer = assert(klua.http.get(URL .. "/echo", { bearer = "tok-SECRET-2" })):json()
local inurl = assert(klua.http.get("http://bob:pw-SECRET-3@" .. os.getenv("HOST") .. "/echo")):json()
local api = klua.http.client{ base_url = URL, bearer = "tok-SECRET-2" }
local viaclient = assert(api:get("/echo")):json()
local noauth = assert(klua.http.get(URL .. "/echo")):json()  -- (after bearer on the same easy handles)
out{ basic = basic.headers.authorization, bearer = bearer.headers.authorization,
     inurl = inurl.headers.authorization, viaclient = viaclient.headers.authorization,
     noauth = noauth.headers.authorization or "none" }
local errs = {}
local C = os.getenv("CLOSED")
for _, args in ipairs{
  { C .. "/a", { user = "alice", password = "pw-SECRET-1" } },
  { C .. "/b", { bearer = "tok-SECRET-2", headers = { Authorization = "Bearer tok-SECRET-2" } } },
  { "http://bob:pw-SECRET-3@no-such-host.invalid/c?api_key=q-SECRET-5&page=2" },
  { "http://bob:pw-SECRET-3@" .. os.getenv("HOST") .. "/slow?ms=2000&access_token=q-SECRET-5", { timeout_ms = 50 } },
} do
  local _, err = klua.http.get(args[1], args[2])
  errs[#errs + 1] = { tostring(err), err.url, err.message }
end
for _, bad in ipairs{ { bearer = 42 }, { user = "u", password = {} }, { key_password = 1 } } do
  local ok, err = pcall(klua.http.get, URL, bad)
  errs[#errs + 1] = { tostring(err) }
end
out{ errs = errs }
-- and an uncaught error's report (message and traceback on stderr)
local _, err = klua.http.get("http://bob:pw-SECRET-3@no-such-host.invalid/?token=q-SECRET-5", { bearer = "tok-SECRET-2" })
error(err)
""", {"URL": self.url, "HOST": host, "CLOSED": closed})
        self.assertEqual(status, 1, stderr)
        lines = [json.loads(l) for l in stdout.splitlines() if l.startswith("{")]
        r, errs = lines[0], lines[1]["errs"]
        self.assertEqual(r["basic"], "Basic " + base64.b64encode(b"alice:pw-SECRET-1").decode())
        self.assertEqual(r["bearer"], "Bearer tok-SECRET-2")
        self.assertEqual(r["inurl"], "Basic " + base64.b64encode(b"bob:pw-SECRET-3").decode())
        self.assertEqual(r["viaclient"], "Bearer tok-SECRET-2")
        self.assertEqual(r["noauth"], "none")
        self.assertEqual(len(errs), 7)
        self.assertIn("KLUA_HTTP_CONNECT", errs[0][0])
        self.assertEqual(errs[2][1], "http://no-such-host.invalid/c?api_key=REDACTED&page=2")
        self.assertIn("_TIMED_OUT", errs[3][0])
        self.assertIn("KLUA_INVALID_ARGUMENT", errs[4][0])
        self.assertIn("KLUA_HTTP_DNS", stderr)
        everything = json.dumps(errs) + stderr
        for secret in SECRETS:
            self.assertNotIn(secret, everything)
            self.assertNotIn(base64.b64encode(("bob:" + secret).encode()).decode(), everything)

    # ---- TLS ------------------------------------------------------------------------------------

    def test_tls(self):
        (r,) = self.lua("tls", r"""
local env = os.getenv
local ok = assert(klua.http.get(URL .. "/json", { ca_file = env("CA") }))
local _, system = klua.http.get(URL .. "/json")
local _, wrong = klua.http.get(URL .. "/json", { ca_file = env("OTHER_CA") })
local insecure = assert(klua.http.get(URL .. "/json", { verify = false }))
-- neither the reused easy handle nor the unverified connection may carry verify=false over
local _, after_insecure = klua.http.get(URL .. "/json")
local capath = assert(klua.http.get(URL .. "/json", { ca_path = env("CA_DIR") }))
local M = env("MTLS")
local _, nocert = klua.http.get(M .. "/echo", { ca_file = env("CA") })
local mtls = assert(klua.http.get(M .. "/echo", { ca_file = env("CA"), cert_file = env("CERT"), key_file = env("KEY"),
                                                  key_password = "kp-SECRET-4" }))
-- (another client: the shared one would reuse the connection made with the right password)
local _, badpass = klua.http.client{}:get(M .. "/echo", { ca_file = env("CA"), cert_file = env("CERT"), key_file = env("KEY"),
                                                 key_password = "wrong-kp-SECRET-4" })
out{ ok = ok:json().hello, system = system.name, system_msg = system.message, wrong = wrong.name,
     wrong_msg = wrong.message, insecure = insecure.status, after_insecure = after_insecure and after_insecure.name, capath = capath.status,
     nocert = nocert.name, nocert_msg = nocert.message, peer = mtls:json().peer, badpass = badpass.name,
     badpass_msg = tostring(badpass) }
""", url=self.tls_url, env={"CA": tls("ca.pem"), "OTHER_CA": tls("other-ca.pem"), "CA_DIR": self.ca_dir(),
                            "MTLS": self.mtls_url, "CERT": tls("client.pem"), "KEY": tls("client.key")})
        self.assertEqual(r["ok"], "world")
        self.assertEqual(r["system"], "KLUA_HTTP_TLS")  # the system's CAs do not know the test CA
        self.assertIn("certificate", r["system_msg"])
        self.assertEqual(r["wrong"], "KLUA_HTTP_TLS")
        self.assertIn(self.tls_url + "/json", r["wrong_msg"])
        self.assertEqual(r["insecure"], 200)
        self.assertEqual(r["after_insecure"], "KLUA_HTTP_TLS")
        self.assertEqual(r["capath"], 200)
        self.assertEqual(r["nocert"], "KLUA_HTTP_TLS", r["nocert_msg"])
        self.assertEqual(r["peer"], "klua-client")
        self.assertEqual(r["badpass"], "KLUA_HTTP_TLS")
        self.assertNotIn("kp-SECRET-4", r["badpass_msg"])

    def ca_dir(self):
        """A CA directory as openssl wants it (HASH.0 links), made with openssl rehash."""
        d = os.path.join(TLS_DIR, "capath")
        os.makedirs(d, exist_ok=True)
        shutil.copy(tls("ca.pem"), os.path.join(d, "ca.pem"))
        subprocess.run(["openssl", "rehash", d], check=True, capture_output=True)
        return d

    # ---- programmer errors ----------------------------------------------------------------------

    def test_programmer_errors_raise(self):
        (r,) = self.lua("argerrors", r"""
local cases = {
  function() klua.http.request{} end,
  function() klua.http.request{ url = URL, bogus = 1 } end,
  function() klua.http.request{ url = URL, body = "x", json = {} } end,
  function() klua.http.request{ url = URL, headers = { ["X-A"] = "a\r\nInjected: 1" } } end,
  function() klua.http.request{ url = URL, method = "GET /x" } end,
  function() klua.http.get("ftp://example.com/") end,
  function() klua.http.get(URL, { timeout_ms = -1 }) end,
  function() klua.http.get(URL, { max_redirects = 1.5 }) end,
  function() klua.http.request("http://x") end,
  function() klua.http.client{ max_per_host = 0 } end,
  function() klua.http.post(URL, 42) end,
  function() klua.http.get("http://127.0.0.1:99999/") end,
  function() klua.http.request{ url = "http://u:pw-SECRET-1@127.0.0.1/a b" } end,
}
local msgs = {}
for i, f in ipairs(cases) do
  local ok, err = pcall(f)
  msgs[i] = { ok, err.name, tostring(err) }
end
out{ msgs = msgs }
""")
        expect = ["option 'url' is required", "unknown option 'bogus'", "'body' and 'json' are exclusive",
                  "contains a line break", "option 'method' must be", "#1 to 'klua.http.get' (the URL must be an http",
                  "option 'timeout_ms' must be", "'max_redirects' must be a whole number",
                  "#1 to 'klua.http.request' (options table expected, got string)", "'max_per_host' must be",
                  "#2 to 'klua.http.post' (body expected",
                  "#1 to 'klua.http.get' (the URL is malformed (Port number was not a decimal number between 0 and 65535)",
                  "option 'url' is malformed"]
        self.assertEqual(len(r["msgs"]), len(expect))
        self.assertNotIn("pw-SECRET-1", json.dumps(r["msgs"]))
        for (ok, name, msg), want in zip(r["msgs"], expect):
            self.assertFalse(ok)
            self.assertEqual(name, "KLUA_INVALID_ARGUMENT", msg)
            self.assertIn(want, msg)
            self.assertIn("argerrors.lua:", msg)  # located at the user's call

    # ---- load -----------------------------------------------------------------------------------

    def test_timers_keep_schedule_with_1000_requests_in_flight(self):
        srv = SlowAsyncServer(delay=1.5)
        try:
            (r,) = self.lua("thousand", r"""
local api = klua.http.client{ base_url = URL, max_per_host = 1000, timeout_ms = 30000 }
local N, ok, first_err = 1000, 0, nil
-- A tick's lag is wall time; the loop can only have held the timer for as long as the process
-- had the CPU (os.clock: its CPU time), so a lag without the CPU time to match is the machine's
-- other work (ctest -j2 beside other builds showed 200 ms), not klua: `held` is the smaller.
local stop, max_lag, max_held, ticks = false, 0, 0, 0
local ticker = klua.spawn(function()
  while not stop do
    local t0, c0 = klua.now(), os.clock()
    klua.sleep(10)
    local lag = klua.now() - t0 - 10
    max_lag = math.max(max_lag, lag)
    max_held = math.max(max_held, math.min(lag, (os.clock() - c0) * 1000))
    ticks = ticks + 1
  end
end)
local t0 = klua.now()
local tasks = {}
for i = 1, N do
  tasks[i] = klua.spawn(function()
    local res, err = api:get("/")
    if res and res.body == "ok" then ok = ok + 1 elseif not first_err then first_err = tostring(err) end
  end)
end
for _, t in ipairs(tasks) do t:join() end
stop = true
ticker:join()
out{ ok = ok, err = first_err, max_lag = max_lag, max_held = max_held, ticks = ticks, ms = klua.now() - t0 }
""", url="http://127.0.0.1:%d" % srv.port, nofile=1024, timeout=120)
        finally:
            srv.stop()
        print("\n1000 requests: %(ms).0f ms, %(ticks)d ticks, max tick lag %(max_lag).1f ms "
              "(%(max_held).1f ms of it with the CPU)" % r, file=sys.stderr)
        self.assertEqual(r["ok"], 1000, r.get("err"))
        self.assertGreaterEqual(srv.max_active, 990)  # all of them in flight at once
        self.assertLess(r["max_held"], 50)


if __name__ == "__main__":
    unittest.main(verbosity=2)
