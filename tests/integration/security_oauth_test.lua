-- SASL/OAUTHBEARER against the secure test broker, which checks every token's RS256 signature
-- against a JWKS (tools/kafka-broker.d/secure.properties.in): a token function in Lua (the client
-- option oauthbearer_token_refresh, served on the loop, refreshed before expiry, its failures
-- surfaced), and librdkafka's OIDC client-credentials method against a token endpoint served by
-- tests/security/oauth_server.py. A token signed with another key is refused.
local S = dofile("tests/integration/helpers/secure.lua")
local q = klua.testkit.quote
local proc = dofile("tests/integration/helpers/proc.lua")

local function token(key, sub, lifetime_s)
  local p = assert(io.popen("timeout 30 python3 tests/security/oauth_server.py token " .. q(S.certs .. "/" .. key)
                            .. " " .. q(sub) .. " " .. (lifetime_s or 600)))
  local t = p:read("*l")
  p:close()
  assert(t and t:match("^[%w_-]+%.[%w_-]+%.[%w_-]+$"), "no JWT from oauth_server.py: " .. tostring(t))
  return t
end

local GOOD = token("oauth.key", "klua-admin")
local FORGED = token("oauth-other.key", "klua-admin")

local function oauth(extra)
  local t = {
    brokers = S.sasl_addr,
    ["security.protocol"] = "SASL_SSL",
    ["ssl.ca.location"] = S.certs .. "/ca.pem",
    ["sasl.mechanism"] = "OAUTHBEARER",
  }
  for k, v in pairs(extra) do t[k] = v end
  return S.quiet(t)
end

local function describe(conf)
  local a = klua.admin(conf)
  local ms, r, err = S.timed(a.describe_cluster, a)
  return a, r, err, ms
end

test("a Lua token function: called on the loop with sasl.oauthbearer.config, refreshed before expiry", function()
  local calls = {}
  local LIFETIME = 6000
  local a, r, err = describe(oauth{
    ["sasl.oauthbearer.config"] = "scope=klua-test",
    oauthbearer_token_refresh = function(config)
      calls[#calls + 1] = { config = config, at = klua.now(), task = klua.current_task() }
      return { token = GOOD, lifetime_ms = LIFETIME, principal = "klua-admin", extensions = { traceId = "t1" } }
    end,
  })
  assert(r, tostring(err))
  assert_eq(#r.brokers, 1)
  assert_eq(calls[1].config, "scope=klua-test")
  -- librdkafka asks again at 80% of the lifetime (on its 1 s timer): before the token expires.
  local deadline = klua.now() + LIFETIME + 2000
  while #calls < 2 and klua.now() < deadline do klua.sleep(50) end
  assert_eq(#calls >= 2, true, "no refresh within the token's lifetime + 2 s")
  local gap = calls[2].at - calls[1].at
  assert_true(gap > LIFETIME * 0.5 and gap < LIFETIME, string.format("refreshed %.0f ms after the first token", gap))
  -- still authenticated with the refreshed token
  assert(a:describe_cluster())
  a:close()
end)

test("a token signed with a key the JWKS does not list is refused, at once", function()
  local a, r, err, ms = describe(oauth{
    oauthbearer_token_refresh = function() return { token = FORGED, lifetime_ms = 600000, principal = "klua-admin" } end,
  })
  a:close()
  assert_nil(r)
  assert_error(err, "_AUTHENTICATION")
  assert_match(err.message, "invalid_token")
  assert_match(err.message, "OAUTHBEARER")
  assert_true(ms < 5000, string.format("refused after %.0f ms", ms))
end)

test("a token function's failures surface as _AUTHENTICATION errors naming it, without a timeout", function()
  local cases = {
    { function() error("token service down") end, "oauthbearer_token_refresh: raised: .*token service down" },
    { function() return nil, "no token for you" end, "oauthbearer_token_refresh: no token for you" },
    { function() return { lifetime_ms = 1000 } end, "oauthbearer_token_refresh: the table has no 'token'" },
    { function() return { token = GOOD } end, "'lifetime_ms' must be a number" },
    { function() return "a string" end, "returned a string, not a table" },
  }
  for i, c in ipairs(cases) do
    local a, r, err, ms = describe(oauth{ oauthbearer_token_refresh = c[1] })
    a:close()
    assert_nil(r, "case " .. i)
    assert_error(err, "_AUTHENTICATION")
    assert_match(err.message, c[2], "case " .. i)
    assert_true(ms < 2000, string.format("case %d: failed after %.0f ms", i, ms))
  end
  assert_raises(function() klua.admin(oauth{ oauthbearer_token_refresh = "not a function" }) end,
    "option 'oauthbearer_token_refresh' must be a function")
end)

test("OAUTHBEARER without any token source fails fast, and queued messages are not held for 300 s", function()
  local a, r, err, ms = describe(oauth{})
  a:close()
  assert_nil(r)
  assert_error(err, "_AUTHENTICATION")
  assert_match(err.message, "no token: sasl.mechanism OAUTHBEARER needs a token function")
  assert_true(ms < 2000, string.format("failed after %.0f ms", ms))
  local p = klua.producer(oauth{})
  local pms, rep, perr = S.timed(p.produce, p, { topic = "sec-no-token", value = "x" })
  p:close()
  assert_nil(rep)
  assert_true(pms < 10000, string.format("the produce waited %.0f ms", pms))
  assert_match(tostring(perr), "no token")
end)

-- ------------------------------------------------------------------ OIDC ----
local server, server_dir, URL

local function start_server()
  server_dir = proc.tmpdir("oauth")
  -- Its stdin is our pipe: closing it ends the server.
  server = assert(io.popen("exec timeout 120 python3 tests/security/oauth_server.py serve " .. q(S.certs) .. " >"
                           .. q(server_dir .. "/url") .. " 2>" .. q(server_dir .. "/log"), "w"))
  local deadline = klua.now() + 15000
  repeat
    URL = (proc.slurp(server_dir .. "/url") or ""):match("^(http://%S+)")
    if not URL then klua.sleep(50) end
  until URL or klua.now() > deadline
  assert(URL, "the token endpoint did not start: " .. tostring(proc.slurp(server_dir .. "/log")))
end

local function oidc(client_id, extra)
  local t = oauth{
    ["sasl.oauthbearer.method"] = "oidc",
    ["sasl.oauthbearer.client.id"] = client_id,
    ["sasl.oauthbearer.client.secret"] = client_id .. "-secret",
    ["sasl.oauthbearer.token.endpoint.url"] = URL,
  }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

test("OIDC client credentials: librdkafka fetches a signed token from the endpoint; the broker takes it", function()
  start_server()
  local a, r, err = describe(oidc("klua-oidc"))
  assert(r, tostring(err))
  assert_eq(#r.brokers, 1)
  -- The principal is the token's sub (klua-oidc): an ordinary user, refused a topic without a grant...
  local t = S.topic("oidc")
  -- (Not idempotent: an idempotent producer with no Write grant anywhere fails at once and for good
  -- with CLUSTER_AUTHORIZATION_FAILED on its producer id; security_acl_test.lua covers that.)
  local p = klua.producer(oidc("klua-oidc", { ["message.timeout.ms"] = 10000, ["enable.idempotence"] = false }))
  local rep, perr = p:produce{ topic = t, value = "v" }
  p:close()
  assert_nil(rep)
  assert_error(perr, "TOPIC_AUTHORIZATION_FAILED")
  -- ...and allowed with one for User:klua-oidc.
  S.grant("User:klua-oidc", { resource_type = "topic", name = t, operation = "write" })
  p = klua.producer(oidc("klua-oidc", { ["message.timeout.ms"] = 10000 }))
  local deadline = klua.now() + 15000
  repeat
    rep, perr = p:produce{ topic = t, value = "via oidc" }
    if not rep then klua.sleep(200) end
  until rep or klua.now() > deadline
  assert(rep, tostring(perr))
  p:close()
  a:close()
  assert_eq(S.kcat("-C -t " .. q(t) .. " -e -q"), "via oidc")
  assert_match(proc.slurp(server_dir .. "/log"), "token request: client klua%-oidc grant client_credentials")
end)

test("OIDC: a token signed with another key is refused; wrong client credentials are named", function()
  local a, r, err, ms = describe(oidc("klua-forger"))
  a:close()
  assert_nil(r)
  assert_error(err, "_AUTHENTICATION")
  assert_match(err.message, "invalid_token")
  assert_true(ms < 5000, string.format("refused after %.0f ms", ms))
  a, r, err, ms = describe(oidc("klua-nobody"))
  a:close()
  assert_nil(r)
  assert_error(err, "_AUTHENTICATION")
  assert_match(err.message, "invalid_client")
  assert_true(ms < 5000, string.format("refused after %.0f ms", ms))
end)

test("OIDC: a slow token endpoint does not block klua's loop", function()
  local gap, last, stop = 0, klua.now(), false
  local ticker = klua.spawn(function()
    while not stop do
      klua.sleep(20)
      local now = klua.now()
      gap = math.max(gap, now - last)
      last = now
    end
  end)
  local a, r, err, ms = describe(oidc("klua-slow"))
  stop = true
  ticker:join()
  a:close()
  assert(r, tostring(err))
  assert_true(ms >= 1400, string.format("the endpoint answers after 1.5 s; the call took %.0f ms", ms))
  assert_true(gap < 500, string.format("the loop stalled for %.0f ms", gap))
  server:close()
  proc.remove_dir(server_dir)
end)
