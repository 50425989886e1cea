#!/usr/bin/env python3
"""klua's log as a machine reads it (host/log.cpp, docs/log.md): with --log-format json every line
klua writes on stderr is one JSON object {time, level, message, fields}, whatever a script logs and
whatever klua itself says (a deprecation, librdkafka's log lines, client errors, the uncaught error
with its traceback, the first signal); the text format's shape; the level threshold; and secrets
never appear, in either format.

Usage: log_test.py KLUA. No broker: the embedded cluster, and clients pointed at 127.0.0.1:1
(nothing listens there) for error and log lines. log_test.py KLUA --broker (tools/with-broker sets
KLUA_SASL_BROKERS): only the SASL case, a real PLAIN login and a refused one with librdkafka's
security debug lines on.
"""
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

KLUA = os.path.realpath(sys.argv[1])
BROKER = "--broker" in sys.argv[2:]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("KLUA_LOG_")}
ENV["KLUA_BROKERS"] = ""
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
failures = []


def run(args, env=None, timeout=60):
    p = subprocess.run([KLUA] + args, stdin=subprocess.DEVNULL, capture_output=True, env=env or ENV,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr


def run_stdin(args, script, env=None, timeout=60):
    p = subprocess.run([KLUA] + args, input=script.encode(), capture_output=True, env=env or ENV, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr


def json_lines(err):
    """Every stderr line parsed as JSON (strictly: no NaN, UTF-8), with the four keys."""
    out = []
    for raw in err.split(b"\n"):
        if raw == b"":
            continue
        text = raw.decode("utf-8")  # raises on invalid UTF-8
        rec = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        assert isinstance(rec, dict) and set(rec) == {"time", "level", "message", "fields"}, text
        assert TIME.match(rec["time"]), rec["time"]
        assert rec["level"] in ("debug", "info", "warn", "error"), rec["level"]
        assert isinstance(rec["message"], str) and isinstance(rec["fields"], dict), text
        out.append(rec)
    return out


def case(fn):
    if BROKER != fn.__name__.startswith("broker_"):
        return fn
    t0 = time.monotonic()
    try:
        fn()
        print(f"ok   {fn.__name__} ({time.monotonic() - t0:.1f} s)")
    except Exception as e:  # noqa: BLE001 (a report of every case)
        failures.append(fn.__name__)
        print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}")


NASTY = r'''"quote\" back\\ nl\n cr\r tab\t nul\0 esc\27 bad\255\254 half\226\130 ok\226\130\172"'''

JSON_SCRIPT = r'''
local nasty = %s
klua.log.info(nasty, { bytes = nasty, n = 42, f = 1.5, yes = true, t = { a = { 1, 2 } }, [nasty] = "key",
                      bin = { nasty } })
klua.log.debug("not shown at info")
local p = klua.producer()
assert(p:produce{ topic = "log-json", value = "v" })
p:flush(1000)              -- the positional timeout: a deprecation warning, once
local a = klua.admin{ brokers = "127.0.0.1:1", ["klua.unreachable.timeout.ms"] = 200, debug = "broker" }
assert(not a:list_topics())  -- client errors and librdkafka's broker log lines
a:close()
error("the end " .. nasty)
''' % NASTY


@case
def json_every_line_is_an_object():
    rc, out, err = run_stdin(["--log-format", "json", "run", "/dev/stdin"], JSON_SCRIPT)
    assert rc == 1, (rc, err[-2000:])
    recs = json_lines(err)
    script = [r for r in recs if "logger" not in r["fields"]]
    assert len(script) == 1, script
    s = script[0]
    assert s["level"] == "info" and s["message"].startswith('quote" back\\ nl\n cr\r tab\t nul\0 esc\x1b bad'), s
    assert "\ufffd" in s["message"] and s["message"].endswith("ok\u20ac"), s["message"]
    f = s["fields"]
    assert f["n"] == 42 and f["f"] == 1.5 and f["yes"] is True and f["t"] == {"a": [1, 2]}, f
    assert f["bytes"] == s["message"] and "key" in f.values(), f
    assert f["bin"] == [s["message"]], f  # a table holding bytes that are not UTF-8 is still JSON
    by_logger = {}
    for r in recs:
        by_logger.setdefault(r["fields"].get("logger"), []).append(r)
    assert any("deprecated" in r["message"] for r in by_logger["klua"]), by_logger["klua"]
    assert any(r["message"].startswith("no broker configured") and r["level"] == "info" for r in by_logger["klua"])
    errors = [r for r in by_logger["klua"] if r["message"].startswith("admin error: ")]
    assert errors and all(r["fields"]["code"] in ("_TRANSPORT", "_ALL_BROKERS_DOWN") for r in errors), errors
    rd = by_logger["librdkafka"]
    assert rd and all(r["level"] == "debug" and r["fields"]["facility"] and r["fields"]["client"].startswith("rdkafka#")
                      and r["fields"]["syslog_level"] == 7 for r in rd), rd[:3]
    last = recs[-1]
    assert last["level"] == "error" and "the end" in last["message"], last
    assert "stack traceback:" in last["fields"]["traceback"] and "in main chunk" in last["fields"]["traceback"], last


@case
def json_worker_warnings_and_summary():
    script = r'''
local p = klua.producer()
assert(p:produce{ topic = "log-worker", value = "1" })
local w = klua.worker{ group = "log-w", topics = { "log-worker" }, ["auto.offset.reset"] = "earliest",
                       handlers = function() end }
klua.spawn(function() while w:counters().processed < 1 do klua.sleep(10) end; w:stop() end)
w:run()
'''
    rc, out, err = run_stdin(["--log-format", "json", "run", "/dev/stdin"], script)
    assert rc == 0, (rc, err[-2000:])
    recs = json_lines(err)
    summary = [r for r in recs if r["fields"].get("logger") == "klua.worker"]
    assert len(summary) == 1 and summary[0]["fields"]["worker"] == "log-w", recs
    assert summary[0]["fields"]["processed"] == 1 and summary[0]["fields"]["consumed"] == 1, summary


@case
def json_first_signal():
    p = subprocess.Popen([KLUA, "--log-format", "json", "-e", 'print("ready"); io.stdout:flush(); klua.sleep(60000)'],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        fd = p.stdout.fileno()
        assert select.select([fd], [], [], 20)[0] and os.read(fd, 100).startswith(b"ready")
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 143, p.returncode
    recs = json_lines(err)
    assert [r["message"] for r in recs if r["message"].startswith("SIGTERM received: stopping")], recs


@case
def text_shape_and_levels():
    code = 'klua.log.info("hello there", { port = 8080, name = "a b", empty = "", q = "x=y" }); klua.log.warn("w")'
    rc, out, err = run(["-e", code])
    lines = err.decode().splitlines()
    assert rc == 0 and len(lines) == 2, (rc, lines)
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO hello there empty="" name="a b" port=8080 q="x=y"',
                        lines[0]), lines[0]
    assert re.fullmatch(r"\S+Z WARN w", lines[1]), lines[1]
    # the threshold: the option, else the environment; the option wins
    rc, out, err = run(["--log-level", "warn", "-e", code])
    got = err.decode().splitlines()
    assert rc == 0 and len(got) == 1 and re.fullmatch(r"\S+Z WARN w", got[0]), err
    rc, out, err = run(["-e", code], env=dict(ENV, KLUA_LOG_LEVEL="error"))
    assert rc == 0 and err == b"", err
    rc, out, err = run(["--log-level=debug", "-e", 'klua.log.debug("d")'], env=dict(ENV, KLUA_LOG_LEVEL="error"))
    assert rc == 0 and b" DEBUG d" in err, err
    rc, out, err = run(["-e", 'klua.log.info("j")'], env=dict(ENV, KLUA_LOG_FORMAT="json"))
    assert rc == 0 and json_lines(err)[0]["message"] == "j", err
    # klua's own lines keep their shape in text
    rc, out, err = run(["-e", 'error("boom")'])
    assert rc == 1 and err.decode().startswith("klua: (command line):1: boom\nstack traceback:\n"), err


@case
def bad_values_are_usage_errors():
    for args, env, want in [
        (["--log-format", "xml", "-e", ""], None, "klua: --log-format must be text or json, got 'xml'"),
        (["--log-level", "loud", "-e", ""], None, "klua: --log-level must be debug, info, warn or error, got 'loud'"),
        (["--log-level"], None, "klua: --log-level needs debug, info, warn or error"),
        (["-e", ""], dict(ENV, KLUA_LOG_FORMAT="yaml"), "klua: KLUA_LOG_FORMAT must be text or json, got 'yaml'"),
        (["-e", ""], dict(ENV, KLUA_LOG_LEVEL="trace"), "klua: KLUA_LOG_LEVEL must be debug, info, warn or error"),
    ]:
        rc, out, err = run(args, env=env)
        assert rc == 2 and err.decode().startswith(want), (args, rc, err)


SECRET = "Zq8-sekrit-VALUE-91"
SECRET_SCRIPT = r'''
local secret = "%s"
local a = klua.admin{ brokers = "127.0.0.1:1", ["klua.unreachable.timeout.ms"] = 300, debug = "all",
                      ["security.protocol"] = "sasl_plaintext", ["sasl.mechanism"] = "PLAIN",
                      ["sasl.username"] = "alice", ["sasl.password"] = secret }
assert(not a:list_topics())
a:close()
klua.log.info("connecting with " .. secret, { password = secret, ["sasl.password"] = "x" .. secret,
  authorization = "Bearer " .. secret, url = "https://alice:" .. secret .. "@example.com/", other = "ok" })
klua.log.warn("config: password=" .. secret .. " Authorization: Bearer " .. secret)
klua.log.info("a JSON body", { body = { user = "alice", token = secret } })
''' % SECRET


@case
def secrets_never_logged():
    for fmt in ("text", "json"):
        rc, out, err = run_stdin(["--log-format", fmt, "run", "/dev/stdin"], SECRET_SCRIPT)
        text = err.decode(errors="replace")
        assert rc == 0, (fmt, rc, text[-2000:])
        assert SECRET not in text and SECRET[4:] not in text, (fmt, [l for l in text.splitlines() if SECRET[4:] in l][:3])
        # what was said is there, masked: librdkafka's debug lines, the records with their other fields
        assert text.count("\n") > 20 and "connecting with ***" in text and "Bearer ***" in text, (fmt, text[-1500:])
        if fmt == "json":
            recs = json_lines(err)
            rec = next(r for r in recs if r["message"].startswith("connecting with"))
            assert rec["fields"]["password"] == "********" and rec["fields"]["other"] == "ok", rec
            assert rec["fields"]["url"] == "https://***@example.com/", rec
            body = next(r for r in recs if r["message"] == "a JSON body")["fields"]["body"]
            assert body["user"] == "alice" and body["token"] == "***", body
            assert any(r["fields"].get("logger") == "librdkafka" for r in recs)
    # -X sets it for every client: masked too, even in the script's own records
    rc, out, err = run(["-X", "sasl.password=" + SECRET, "-e", 'klua.log.info("pw " .. klua.config()["sasl.password"])'])
    assert rc == 0 and SECRET not in err.decode() and b"pw ***" in err, err


SASL_SCRIPT = r'''
local brokers = assert(os.getenv("KLUA_SASL_BROKERS"))
local function client(password)
  return klua.producer{ brokers = brokers, debug = "security,broker,protocol", ["security.protocol"] = "SASL_PLAINTEXT",
    ["sasl.mechanism"] = "PLAIN", ["sasl.username"] = "klua-plain", ["sasl.password"] = password,
    ["message.timeout.ms"] = 3000 }
end
local p = client("klua-plain-secret")
assert(p:produce{ topic = "log-sasl-" .. klua.uuid(), value = "v" })  -- logged in: the handshake was logged
p:close()
local bad = client("klua-plain-secret-but-wrong")
assert(not bad:produce{ topic = "log-sasl", value = "v" })               -- refused: errors and log lines
bad:close()
print("done")
'''


@case
def broker_sasl_password_never_logged():
    assert os.environ.get("KLUA_SASL_BROKERS"), "KLUA_SASL_BROKERS is not set (run under tools/with-broker)"
    for fmt in ("text", "json"):
        rc, out, err = run_stdin(["--log-format", fmt, "run", "/dev/stdin"], SASL_SCRIPT, timeout=120)
        text = err.decode(errors="replace")
        assert rc == 0 and out.strip() == "done", (fmt, rc, out, text[-3000:])
        assert "secret" not in text, (fmt, [l for l in text.splitlines() if "secret" in l][:3])
        assert "SASL" in text and "klua-plain" in text, (fmt, text[-2000:])  # the login was logged
        if fmt == "json":
            recs = json_lines(err)
            assert any(r["fields"].get("facility") in ("SASL", "SASLAUTH", "SECURITY") for r in recs), recs[-5:]
            assert any(r["fields"].get("code") == "_AUTHENTICATION" for r in recs), [r for r in recs if r["level"] == "error"]


sys.exit(1 if failures else 0)
