-- klua.http.serve's API without a client (tests/http/server_test.py drives it with real ones): options
-- and routes checked at serve() time, naming what is wrong; a port in use; srv.url; close and wait.
local SRC = debug.getinfo(1, "S").short_src
local ok_routes = { ["GET /x"] = function() return "x" end }

local function raises(fn, pattern)
  local line = debug.getinfo(fn, "S").linedefined
  local ok, err = pcall(fn)
  assert_false(ok, "nothing was raised")
  assert_error(err, "KLUA_INVALID_ARGUMENT")
  assert_match(err.message, "^bad argument #1 to 'klua.http.serve' %(")
  if pattern then assert_match(err.message, pattern) end
  assert_eq(err.where, SRC .. ":" .. line)
  return err
end

test("options and routes are checked at serve() time, naming the key", function()
  raises(function() klua.http.serve() end, "options table expected")
  raises(function() klua.http.serve{ port = 0 } end, "option 'routes' is required")
  raises(function() klua.http.serve{ routes = ok_routes, prot = 1 } end, "unknown option 'prot'")
  raises(function() klua.http.serve{ routes = ok_routes, port = 70000 } end, "option 'port' must be a whole number from 0 to 65535")
  raises(function() klua.http.serve{ routes = ok_routes, port = 1.5 } end, "'port'")
  raises(function() klua.http.serve{ routes = ok_routes, max_body_size = -1 } end, "'max_body_size'")
  raises(function() klua.http.serve{ routes = ok_routes, handler_timeout_ms = "5" } end, "'handler_timeout_ms'")
  raises(function() klua.http.serve{ routes = ok_routes, host = 5 } end, "'host'")
  raises(function() klua.http.serve{ routes = { ["/x"] = print } } end, 'bad key "/x"')
  raises(function() klua.http.serve{ routes = { ["get /x"] = print } } end, 'bad method in "get /x"')
  raises(function() klua.http.serve{ routes = { ["GET x"] = print } } end, 'bad key "GET x"')
  raises(function() klua.http.serve{ routes = { ["GET /x"] = "nope" } } end, 'routes%["GET /x"%] must be a function, got string')
  raises(function() klua.http.serve{ routes = { ["GET /a/:id/:id"] = print } } end, "parameter :id appears twice")
  raises(function() klua.http.serve{ routes = { ["GET /a/:"] = print } } end, 'bad parameter ":"')
  raises(function() klua.http.serve{ routes = { ["GET /a/*/b"] = print } } end, "%* must be the last segment")
  raises(function() klua.http.serve{ routes = { ["GET /a*"] = print } } end, "%* must be a whole segment")
  raises(function() klua.http.serve{ routes = { [1] = print } } end, "a key must be a string")
end)

test("serve listens at once on 127.0.0.1 and an ephemeral port; close is graceful and idempotent; wait returns", function()
  local srv = assert(klua.http.serve{ port = 0, routes = ok_routes })
  assert_eq(srv.host, "127.0.0.1")
  assert_true(srv.port > 0 and srv.port < 65536)
  assert_eq(srv.url, "http://127.0.0.1:" .. srv.port)
  assert_match(tostring(srv), "^klua.http.server%(http://127.0.0.1:%d+, open%)$")
  -- wait with a timeout: still open
  local ok, err = srv:wait{ timeout_ms = 20 }
  assert_nil(ok)
  assert_error(err, "_TIMED_OUT")
  local waiter = klua.spawn(function() return srv:wait() end)
  assert_true(srv:close())
  assert_eq(waiter:join(), true)
  assert_match(tostring(srv), "closed%)$")
  assert_true(srv:close())
  assert_true(srv:wait())
  -- the port is free again
  local again = assert(klua.http.serve{ port = srv.port, routes = ok_routes })
  assert_eq(again.port, srv.port)
  assert_true(again:close{ timeout_ms = 0 })
end)

test("a port in use is nil, err naming host:port; a host that is not an IP address too", function()
  local srv = assert(klua.http.serve{ port = 0, routes = ok_routes })
  local other, err = klua.http.serve{ port = srv.port, routes = ok_routes }
  assert_nil(other)
  assert_error(err, "KLUA_HTTP_LISTEN")
  assert_match(err.message, "cannot listen on 127.0.0.1:" .. srv.port .. ": address already in use")
  local _, err2 = klua.http.serve{ host = "example.org", routes = ok_routes }
  assert_error(err2, "KLUA_HTTP_LISTEN")
  assert_match(err2.message, "example.org:0: the host is not an IP address")
  srv:close()
end)

test("IPv6 and localhost hosts; close and wait check their options", function()
  local srv = assert(klua.http.serve{ host = "::1", routes = ok_routes })
  assert_eq(srv.url, "http://[::1]:" .. srv.port)
  local lh = assert(klua.http.serve{ host = "localhost", routes = ok_routes })
  assert_eq(lh.url, "http://127.0.0.1:" .. lh.port)
  local ok, err = pcall(srv.close, srv, { timeot_ms = 1 })
  assert_false(ok)
  assert_error(err, "KLUA_INVALID_ARGUMENT")
  assert_match(err.message, "unknown option 'timeot_ms'")
  ok, err = pcall(srv.wait, srv, { timeout_ms = -1 })
  assert_false(ok)
  assert_match(err.message, "timeout_ms must be a number >= 0")
  srv:close()
  lh:close()
end)
