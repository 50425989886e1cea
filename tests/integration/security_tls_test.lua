-- TLS against the secure test broker (tools/kafka-broker --profile secure): klua trusts the
-- broker through ssl.ca.location, proves itself with a client certificate (mTLS: the broker's
-- principal is the certificate's CN), and a wrong CA, an expired broker certificate or a refused
-- client certificate fail fast (within 10 s, not a 30-60 s timeout) with an error naming the cause.
local S = dofile("tests/integration/helpers/secure.lua")
local q = klua.testkit.quote

local FAST_MS = 10000

-- One admin call on a client built from conf: its result, error and duration.
local function describe(conf)
  local a = klua.admin(conf)
  local ms, r, err = S.timed(a.describe_cluster, a)
  a:close()
  return r, err, ms
end

local function assert_fails_fast(conf, patterns, what)
  local r, err, ms = describe(conf)
  assert_nil(r, what .. ": the call succeeded")
  assert_error(err, "_ALL_BROKERS_DOWN")
  assert_true(ms < FAST_MS, string.format("%s: failed after %.0f ms (bound %d)", what, ms, FAST_MS))
  for _, p in ipairs(patterns) do assert_match(err.message, p, what) end
  return err
end

test("the profile's certificates are private (dir 700, files 600) and the broker's carries SAN IP:127.0.0.1", function()
  local out = klua.testkit.sh("stat -c '%a %n' " .. q(S.certs) .. " " .. q(S.certs) .. "/*")
  local n = 0
  for mode, path in out:gmatch("(%d+) ([^\n]+)") do
    n = n + 1
    assert_eq(mode, path == S.certs and "700" or "600", path)
  end
  assert_true(n >= 10, "certificates listed: " .. out)
  local san = klua.testkit.sh("openssl x509 -noout -ext subjectAltName -in " .. q(S.certs .. "/server.pem"))
  assert_match(san, "IP Address:127%.0%.0%.1")
end)

test("SASL_SSL with ssl.ca.location: what klua produces over TLS, kcat reads back", function()
  local t = S.topic("tls")
  local p = klua.producer(S.sasl("admin"))
  local r = assert(p:produce{ topic = t, key = "k", value = "over TLS" })
  assert_eq(r.offset, 0)
  p:close()
  local out = S.kcat("-C -t " .. q(t) .. " -e -q -f '%k=%s\\n'")
  assert_eq(out, "k=over TLS")
  -- and klua reads what kcat wrote, over TLS too
  klua.testkit.sh("kcat -b " .. q(S.admin_addr) .. " -P -t " .. q(t) .. " -K:", "k2:from kcat\n")
  local c = klua.consumer(S.sasl("admin", { topics = { t }, group = klua.testkit.fresh("g"),
                                            ["auto.offset.reset"] = "earliest" }))
  local got = klua.testkit.poll_n(c, 2, 20000)
  c:close()
  assert_eq(got[1].value, "over TLS")
  assert_eq(got[2].key, "k2")
  assert_eq(got[2].value, "from kcat")
end)

test("mTLS: the client certificate's CN is the principal the broker's ACLs see", function()
  local t = S.topic("mtls")
  -- Without a grant, klua-client (an ordinary principal) may not write...
  local p = klua.producer(S.mtls("client", { ["message.timeout.ms"] = 10000, ["enable.idempotence"] = false }))
  local ms, r, err = S.timed(p.produce, p, { topic = t, value = "denied" })
  p:close()
  assert_nil(r)
  assert_error(err, "TOPIC_AUTHORIZATION_FAILED")
  assert_true(ms < 5000, string.format("denied after %.0f ms", ms))
  -- ...with a grant for User:klua-client it may: the broker mapped the certificate to that name.
  S.grant("User:klua-client", { resource_type = "topic", name = t, operation = "write" },
    { resource_type = "topic", name = t, operation = "describe" })
  p = klua.producer(S.mtls("client", { ["message.timeout.ms"] = 10000 }))
  local deadline = klua.now() + 15000
  repeat
    r, err = p:produce{ topic = t, value = "allowed" }
    if not r then klua.sleep(200) end
  until r or klua.now() > deadline
  assert(r, tostring(err))
  p:close()
  assert_eq(S.kcat("-C -t " .. q(t) .. " -e -q"), "allowed")
  -- The super user's certificate (CN=klua-admin) needs no grant.
  local a = klua.admin(S.mtls("admin"))
  local cl = assert(a:describe_cluster())
  a:close()
  assert_eq(#cl.brokers, 1)
end)

test("a wrong CA fails fast, naming the verify failure and its cause", function()
  assert_fails_fast(S.mtls("client", { ["ssl.ca.location"] = S.certs .. "/other-ca.pem" }),
    { "certificate verify failed", "unable to get local issuer certificate", "CN=klua%-broker" }, "wrong CA")
end)

test("an expired broker certificate fails fast, naming the expiry", function()
  assert_fails_fast(S.mtls("client", { brokers = S.expired_addr }),
    { "certificate verify failed", "certificate has expired", "valid until 2020%-01%-02" }, "expired broker certificate")
end)

-- The tests above keep klua's default unreachable bound (5 s); these take 1.5 s to stay quick.
local SHORT = { ["klua.unreachable.timeout.ms"] = 1500 }

test("the broker refusing an expired client certificate fails fast, naming the expiry", function()
  assert_fails_fast(S.mtls("client-expired", SHORT),
    { "alert certificate unknown", "client certificate /CN=klua%-client expired on 2020%-01%-02" },
    "expired client certificate")
end)

test("a client certificate from a CA the broker does not trust, or none, is refused fast", function()
  assert_fails_fast(S.mtls("stranger", SHORT), { "alert", "broker refused the TLS handshake" }, "untrusted client certificate")
  assert_fails_fast(S.mtls(nil, SHORT), { "alert", "broker refused the TLS handshake" }, "no client certificate")
end)

test("a producer's send to an unverifiable broker fails within its bound, naming the cause", function()
  -- The same cause reaches the producer's error hook, without waiting for message.timeout.ms.
  local errs = {}
  local p = klua.producer(S.mtls("client", { ["ssl.ca.location"] = S.certs .. "/other-ca.pem",
                                             on_error = function(e) errs[#errs + 1] = e end }))
  local deadline = klua.now() + FAST_MS
  while #errs == 0 and klua.now() < deadline do klua.sleep(50) end
  p:close()
  assert_true(#errs > 0, "no error within 10 s")
  assert_match(errs[1].message, "unable to get local issuer certificate")
end)

test("the default printer says a TLS failure once or twice, not at every reconnect", function()
  -- librdkafka reports one refused handshake under two texts (_SSL and _TRANSPORT) at each of
  -- its reconnects (about 15 in 5 s here); klua prints each cause once per outage.
  local bin = os.getenv("KLUA_BIN") or "./build/klua"
  local script = string.format([[
local a = klua.admin{ brokers = %q, ["security.protocol"] = "SSL", ["ssl.ca.location"] = %q,
                      ["ssl.certificate.location"] = %q, ["ssl.key.location"] = %q }
local r, err = a:describe_cluster()
print(err and err.name)
]], S.mtls_addr, S.certs .. "/other-ca.pem", S.certs .. "/client.pem", S.certs .. "/client.key")
  local out, status = klua.testkit.sh("timeout -k 5 60 " .. q(bin) .. " -e " .. q(script) .. " 2>&1")
  assert_eq(status, 0, out)
  assert_match(out, "_ALL_BROKERS_DOWN\n$")
  local n = 0
  for line in out:gmatch("[^\n]+") do
    if line:find("^klua: admin error:") and line:find("certificate verify failed", 1, true) then n = n + 1 end
  end
  assert_true(n >= 1 and n <= 3, string.format("%d lines name the failure:\n%s", n, out))
end)
