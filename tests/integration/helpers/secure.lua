-- tests/integration/helpers/secure.lua: the secure test broker (tools/kafka-broker --profile
-- secure, started by the kafka_broker_secure CTest fixture) for the security_*_test.lua files.
--   local S = dofile("tests/integration/helpers/secure.lua")
--   S.certs, S.admin_addr, S.sasl_addr, S.mtls_addr, S.expired_addr
--   S.admin()                   a klua.admin on the PLAINTEXT set-up listener (a super user)
--   S.sasl(user, extra)         options for SASL_SSL + PLAIN as klua-<user>
--   S.mtls(cert, extra)         options for SSL with <cert>.pem / <cert>.key (nil: no client certificate)
--   S.timed(fn)                 fn's results and the milliseconds it took
--   S.grant(principal, ...)     ACL bindings created through the set-up listener
local M = {}

local function sh(cmd)
  local p = assert(io.popen("timeout 30 " .. cmd .. " 2>/dev/null"))
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local tool = "tools/kafka-broker --profile secure"
M.certs = sh(tool .. " certs")
M.admin_addr = sh(tool .. " address")
M.sasl_addr = sh(tool .. " address --sasl")
M.mtls_addr = sh(tool .. " address --mtls")
M.expired_addr = sh(tool .. " address --expired")
assert(M.admin_addr:match("^127%.0%.0%.1:%d+$"),
  "no secure broker running (tools/kafka-broker --profile secure start; ctest starts it as a fixture)")

local function merge(t, extra)
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- Quiet clients: the tests look at the errors calls return; on_error keeps the last one heard.
function M.quiet(t)
  t.on_error = t.on_error or function() end
  t.on_log = t.on_log or function() end
  return t
end

function M.admin(extra)
  return klua.admin(M.quiet(merge({ brokers = M.admin_addr }, extra)))
end

function M.sasl(user, extra)
  return M.quiet(merge({
    brokers = M.sasl_addr,
    ["security.protocol"] = "SASL_SSL",
    ["ssl.ca.location"] = M.certs .. "/ca.pem",
    ["sasl.mechanism"] = "PLAIN",
    ["sasl.username"] = "klua-" .. user,
    ["sasl.password"] = "klua-" .. user .. "-secret",
  }, extra))
end

function M.mtls(cert, extra)
  local t = {
    brokers = M.mtls_addr,
    ["security.protocol"] = "SSL",
    ["ssl.ca.location"] = M.certs .. "/ca.pem",
  }
  if cert then
    t["ssl.certificate.location"] = M.certs .. "/" .. cert .. ".pem"
    t["ssl.key.location"] = M.certs .. "/" .. (cert:gsub("%-expired$", "")) .. ".key"
  end
  return M.quiet(merge(t, extra))
end

function M.timed(fn, ...)
  local t0 = klua.now()
  local r = { n = 0 }
  local function keep(...)
    r.n = select("#", ...)
    for i = 1, r.n do r[i] = select(i, ...) end
  end
  keep(fn(...))
  return klua.now() - t0, unpack(r, 1, r.n)
end

-- grant("User:klua-alice", {resource_type=, name=, operation=}, ...): creates ALLOW bindings.
function M.grant(principal, ...)
  local bindings = {}
  for _, b in ipairs({ ... }) do
    bindings[#bindings + 1] = merge({ principal = principal, host = "*", permission = "allow" }, b)
  end
  local a = M.admin()
  local r = assert(a:create_acls(bindings))
  for i, x in ipairs(r) do assert(x.error == nil, "create_acls " .. i .. ": " .. tostring(x.error)) end
  a:close()
end

-- A topic made through the set-up listener (auto-creation is off on the secure broker).
function M.topic(prefix, partitions)
  local name = klua.testkit.fresh(prefix or "sec")
  local a = M.admin()
  local r = assert(a:create_topics({ { name = name, partitions = partitions or 1 } }))
  assert(r[1].error == nil, tostring(r[1].error))
  a:close()
  return name
end

-- kcat through the set-up listener (an independent reader).
function M.kcat(args)
  return sh("kcat -b " .. klua.testkit.quote(M.admin_addr) .. " " .. args)
end

return M
