-- The producer against faults and bad input (issue 17): persisted status of failed deliveries,
-- header names with NUL bytes, argument ranges. Embedded cluster.
local name = klua.testkit.fresh

-- librdkafka's rd_kafka_message_status, on every failed delivery: "not_persisted" means the broker
-- never got the message (safe to send again).
test("a delivery that fails before reaching a broker says not_persisted (error and report)", function()
  local t = name("persist")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer{ ["message.timeout.ms"] = 500 }
  -- A partition that does not exist: refused locally.
  local r, err = p:produce{ topic = t, partition = 7, value = "x" }
  assert_nil(r)
  assert_eq(err.name, "_UNKNOWN_PARTITION")
  assert_eq(err.persisted, "not_persisted")
  -- Every broker down: the message times out in the queue, never sent.
  for id = 1, 3 do klua.embedded.broker_down(id) end
  local seen = {}
  local ok, res = pcall(function()
    p:send{ topic = t, value = "y", on_delivery = function(rep, e) seen[#seen + 1] = { rep = rep, err = e } end }
    return p:produce_batch{ { topic = t, value = "z" } }
  end)
  for id = 1, 3 do klua.embedded.broker_up(id) end
  assert_true(ok, tostring(res))
  p:flush()
  assert_eq(#seen, 1)
  assert_eq(seen[1].err.name, "_MSG_TIMED_OUT")
  assert_eq(seen[1].err.persisted, "not_persisted")
  assert_eq(seen[1].rep.persisted, "not_persisted")
  assert_eq(res[1].error.name, "_MSG_TIMED_OUT")
  assert_eq(res[1].persisted, "not_persisted")
  assert_eq(res[1].error.persisted, "not_persisted")
  -- A delivered message's report has no persisted field: delivered means persisted.
  p:close()
  local p2 = klua.producer()
  local rep = assert(p2:produce{ topic = t, value = "ok" })
  assert_nil(rep.persisted)
  p2:close()
end, { timeout_ms = 30000 })

-- librdkafka asks the application for an OAUTHBEARER token when it has no way to make one;
-- unanswered, a send waited 300 s (message.timeout.ms) and the exit's flush as long, silently.
test("OAUTHBEARER without a token source fails sends promptly, saying why", function()
  local errs = {}
  local p = klua.producer{ ["security.protocol"] = "SASL_PLAINTEXT", ["sasl.mechanism"] = "OAUTHBEARER",
                           on_error = function(e) errs[#errs + 1] = e end }
  local t0 = klua.now()
  local r, err = p:produce{ topic = name("oauth"), value = "x" }
  assert_nil(r)
  assert_eq(err.name, "_AUTHENTICATION")
  assert_match(err.message, "no token")
  assert_eq(err.persisted, "not_persisted")
  assert_true(klua.now() - t0 < 8000, "took " .. (klua.now() - t0) .. " ms")
  assert_true(#errs >= 1 and errs[1].name == "_AUTHENTICATION")
  local t1 = klua.now()
  p:close()
  assert_true(klua.now() - t1 < 3000)
end, { timeout_ms = 30000 })

test("an empty or blank bootstrap.servers is refused at creation, naming the property", function()
  assert_raises(function() klua.producer{ ["bootstrap.servers"] = "" } end, "bootstrap.servers is empty")
  assert_raises(function() klua.consumer{ group = "g", brokers = " , " } end, "bootstrap.servers is empty %(set by the script's table")
  assert_raises(function() klua.admin{ ["bootstrap.servers"] = " " } end, "bootstrap.servers is empty")
  -- and from the command line (-X; -b '' is refused by the CLI itself), before any wait
  local out = klua.testkit.sh(os.getenv("KLUA_BIN") .. " -X bootstrap.servers= -e 'klua.producer()' 2>&1")
  assert_match(out, "bootstrap.servers is empty %(set by ")
end)

test("timeouts, partitions and offsets out of range raise, naming the argument and the value", function()
  local p = klua.producer()
  local c = klua.consumer{ group = name("g") }
  local a = klua.admin()
  local cases = {
    { function() c:poll{ timeout_ms = -5 } end, "bad argument #2 to 'c:poll' %(timeout_ms must be .*>= 0.*got %-5%)" },
    { function() c:poll(-5) end, "c:poll.*got %-5" },
    { function() c:poll(0 / 0) end, "c:poll.*timeout_ms must be .*>= 0.*got %-?nan" },
    { function() c:commit(nil, { timeout_ms = 0 / 0 }) end, "c:commit.*got %-?nan" },
    { function() c:watermarks("t", 0, { timeout_ms = -1 }) end, "c:watermarks.*got %-1" },
    { function() c:close{ timeout_ms = -1 } end, "c:close takes no arguments" },
    { function() p:flush{ timeout_ms = -1 } end, "p:flush.*got %-1" },
    { function() p:produce{ topic = "t", value = "x", timeout_ms = -1 } end, "timeout_ms' must be a number >= 0, got %-1" },
    { function() klua.producer{ timeout_ms = -2 } end, "option 'timeout_ms' must be a number >= 0, got %-2" },
    { function() klua.consumer{ group = "g", poll_timeout_ms = -1 } end, "poll_timeout_ms' must be a number >= 0, got %-1" },
    { function() a:list_topics{ timeout_ms = 0 / 0 } end, "admin:list_topics.*positive number, got %-?nan" },
    { function() c:assign{ { topic = "t", partition = -3 } } end, "c:assign.*item 1: partition must be a whole number from 0 to 2147483647, got %-3" },
    { function() c:assign{ { topic = "t", partition = 1e10 } } end, "c:assign.*got 10000000000" },
    { function() c:assign{ { topic = "t", partition = 1.5 } } end, "c:assign.*got 1.5" },
    { function() c:seek("t", 1e10, 1) end, "bad argument #3 to 'c:seek' %(partition must be .*got 10000000000" },
    { function() c:seek("t", 0, 1.5) end, "bad argument #4 to 'c:seek' %(offset must be .*got 1.5" },
    { function() c:store{ topic = "t", partition = 0, offset = -5 } end, "c:store.*got %-5" },
  }
  for i, case in ipairs(cases) do
    local ok, e = pcall(case[1])
    assert_false(ok, "case " .. i .. " did not raise")
    assert_match(tostring(e), case[2], "case " .. i)
  end
  p:close(); c:close(); a:close()
end)

test("an invalid regex subscription raises, naming the pattern", function()
  local c = klua.consumer{ group = name("g") }
  assert_raises(function() c:subscribe{ "^[a-z]+", "^[" } end,
                'bad argument #2 to \'c:subscribe\' %("%^%[": invalid regular expression: ')
  assert_raises(function() klua.consumer{ group = name("g"), topics = { "t", "^(a" } } end,
                'bad argument #1 to \'klua.consumer\' %(topics: "%^%(a": invalid regular expression: ')
  assert(c:subscribe{ "^[a-z]+", "t" })  -- valid patterns still subscribe
  c:close()
end)

-- librdkafka's consumer API hands header names out NUL-terminated: a name with a NUL arrived cut
-- ("a\0b" read back as "a"). Refused at the send, naming the header; values stay binary-safe.
test("a header name with a NUL byte is refused naming it; NUL bytes in values round-trip", function()
  local t = name("hdr")
  klua.embedded.create_topic(t, 1)
  local p = klua.producer()
  assert_raises(function() p:produce{ topic = t, value = "v", headers = { { "a\0b", "x" } } } end,
                'header name "a\\0b" contains a NUL byte')
  assert_raises(function() p:send{ topic = t, value = "v", headers = { ["k\0"] = "x" } } end,
                'header name "k\\0" contains a NUL byte')
  assert(p:produce{ topic = t, value = "v", headers = { { "ab", "x\0y" }, { "ab", "\0" } } })
  p:close()
  local c = klua.consumer{ group = name("g") }
  assert(c:assign{ { topic = t, partition = 0, offset = 0 } })
  local m = assert(c:poll{ timeout_ms = 10000 })
  assert_eq(m.headers, { { "ab", "x\0y" }, { "ab", "\0" } })
  c:close()
end, { timeout_ms = 30000 })
