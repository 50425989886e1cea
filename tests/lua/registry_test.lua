-- klua.registry against a stub registry (klua.http.serve) that records what it is sent: auth
-- headers, content type, paths and bodies; errors, caches, secrets. The real registry's tests are
-- tests/registry/registry_test.lua. Run with: klua test tests/lua/registry_test.lua
local E = klua.errors

-- A stub of the Confluent API: each request recorded in seen; answers from the handlers.
local function stub(answers)
  local seen = {}
  local srv = assert(klua.http.serve{ routes = {
    ["* /*"] = function(req)
      seen[#seen + 1] = { method = req.method, path = req.path, query = req.query, headers = req.headers, body = req.body }
      local a = answers[req.method .. " " .. req.path]
      if type(a) == "function" then return a(req) end
      return a or { status = 404, json = { error_code = 40401, message = "Subject not found." } }
    end,
  } })
  return srv, seen
end

test("no registry configured: klua.registry() returns KLUA_NO_REGISTRY naming how to give one", function()
  klua.set_config("schema.registry.url", "", "test")  -- (an empty URL is none, whatever the environment says)
  local reg, err = klua.registry()
  assert_eq(reg, nil)
  assert_eq(err.name, E.KLUA_NO_REGISTRY)
  assert_eq(err.code, E.codes.KLUA_NO_REGISTRY)
  assert_match(err.message, "%-%-schema%-registry")
  assert_match(err.message, "KLUA_SCHEMA_REGISTRY")
end)

test("the five error names are klua's own, with codes", function()
  for _, n in ipairs{ "KLUA_NO_REGISTRY", "KLUA_REGISTRY", "KLUA_SCHEMA", "KLUA_SERIALIZATION", "KLUA_DESERIALIZATION" } do
    assert_eq(E[n], n)
    assert_true(type(E.codes[n]) == "number" and E.names[E.codes[n]] == n, n)
    assert_eq(E.new{ name = n, message = "m" }.code, E.codes[n])
  end
end)

test("basic auth from user.info: the Authorization header is sent, with the API's content type", function()
  local srv, seen = stub{ ["POST /apis/ccompat/v7/subjects/orders-value/versions"] = { json = { id = 7 } } }
  klua.set_config("schema.registry.url", srv.url .. "/apis/ccompat/v7", "test")
  klua.set_config("schema.registry.basic.auth.user.info", "alice:pa55:word", "test")
  local reg = assert(klua.registry())
  assert_true(klua.registry() == reg, "the configured registry is shared")
  assert_eq(reg:register("orders-value", '"string"'), 7)
  local r = seen[1]
  assert_eq(r.method, "POST")
  assert_eq(r.headers.authorization, "Basic " .. "YWxpY2U6cGE1NTp3b3Jk")  -- base64("alice:pa55:word")
  assert_eq(r.headers["content-type"], "application/vnd.schemaregistry.v1+json")
  assert_match(r.headers.accept, "application/vnd%.schemaregistry%.v1%+json")
  assert_eq(klua.json.decode(r.body), { schema = '"string"' })  -- schemaType left out for Avro
  -- a registry configured otherwise is a new object
  klua.set_config("schema.registry.basic.auth.user.info", "", "test")
  klua.set_config("schema.registry.bearer.auth.token", "tok-123456", "test")
  local reg2 = assert(klua.registry())
  assert_true(reg2 ~= reg)
  assert_eq(reg2:register("orders-value", '"string"'), 7)
  assert_eq(seen[2].headers.authorization, "Bearer tok-123456")
  klua.set_config("schema.registry.bearer.auth.token", "", "test")
  klua.set_config("schema.registry.url", "", "test")
  -- empty values are none: a client takes them
  local p = klua.producer()
  p:close()
  srv:close()
end)

test("credentials in the URL are basic auth and never shown: not in reg.url, errors or tostring", function()
  local srv, seen = stub{ ["GET /subjects"] = { status = 401, json = { error_code = 40101, message = "Unauthorized" } } }
  local url = srv.url:gsub("^http://", "http://bob:hunter2%%21@")
  local reg = klua.registry{ url = url }
  assert_eq(reg.url, srv.url)
  assert_false(tostring(reg):find("hunter2", 1, true))
  local v, err = reg:subjects()
  assert_eq(v, nil)
  assert_eq(seen[1].headers.authorization, "Basic " .. "Ym9iOmh1bnRlcjIh")  -- base64("bob:hunter2!")
  assert_eq(err.name, E.KLUA_REGISTRY)
  assert_eq(err.status, 401)
  assert_eq(err.error_code, 40101)
  assert_eq(err.url, srv.url .. "/subjects")
  assert_false(tostring(err):find("hunter2", 1, true))
  assert_false(klua.json.encode(err):find("hunter2", 1, true))
  -- nothing listens: the transport's error, the URL without credentials
  local dead = klua.registry{ url = "http://carol:s3cr3t-pw@127.0.0.1:1", timeout_ms = 2000 }
  v, err = dead:schema_by_id(1)
  assert_eq(v, nil)
  assert_eq(err.name, E.KLUA_REGISTRY)
  assert_eq(err.status, nil)
  assert_eq(err.cause, "KLUA_HTTP_CONNECT")
  assert_true(err.retriable)
  assert_eq(err.url, "http://127.0.0.1:1/schemas/ids/1")
  assert_false(tostring(err):find("s3cr3t", 1, true))
  srv:close()
end)

test("errors carry the registry's status, error_code and message", function()
  local srv = stub{
    ["GET /schemas/ids/42"] = { status = 404, json = { error_code = 40403, message = "Schema 42 not found." } },
    ["GET /subjects"] = { status = 503, body = "<html>down</html>" },
  }
  local reg = klua.registry{ url = srv.url }
  local v, err = reg:schema_by_id(42)
  assert_eq(v, nil)
  assert_eq(err.status, 404)
  assert_eq(err.error_code, 40403)
  assert_eq(err.registry_message, "Schema 42 not found.")
  assert_match(tostring(err), "^KLUA_REGISTRY: schema registry: GET .*/schemas/ids/42: HTTP 404 %(error_code 40403%): Schema 42 not found%.")
  assert_false(err.retriable)
  v, err = reg:subjects()
  assert_eq(err.status, 503)
  assert_eq(err.error_code, nil)
  assert_match(err.message, "<html>down</html>")
  assert_true(err.retriable)
  srv:close()
end)

test("schema_by_id is cached for the process; register and lookup per (subject, schema)", function()
  local n = 0
  local srv, seen = stub{
    ["GET /schemas/ids/3"] = function() n = n + 1; return { json = { schema = "syntax = \"proto3\";", schemaType = "PROTOBUF",
      references = { { name = "common.proto", subject = "common", version = 2 } } } } end,
    ["POST /subjects/a/b-value/versions"] = { json = { id = 5 } },
    ["POST /subjects/a/b-value"] = { json = { subject = "a/b-value", id = 5, version = 1, schema = '"int"' } },
  }
  local reg = klua.registry{ url = srv.url }
  local s = assert(reg:schema_by_id(3))
  assert_eq(s, { id = 3, schema = "syntax = \"proto3\";", schema_type = "PROTOBUF",
                 references = { { name = "common.proto", subject = "common", version = 2 } } })
  assert_true(reg:schema_by_id(3) == s)
  assert_eq(n, 1)
  -- a subject with a slash (percent-encoded in the path; the stub sees it decoded)
  for _ = 1, 3 do assert_eq(reg:register("a/b-value", '"int"'), 5) end
  for _ = 1, 2 do
    assert_eq(reg:lookup("a/b-value", '"int"'), { subject = "a/b-value", id = 5, version = 1, schema = '"int"',
                                                  schema_type = "AVRO", references = {} })
  end
  local posts = 0
  for _, r in ipairs(seen) do if r.method == "POST" then posts = posts + 1 end end
  assert_eq(posts, 2)
  -- another schema type or references make another key
  local body
  srv:close()
  srv, seen = stub{ ["POST /subjects/x/versions"] = function(req) body = req:json(); return { json = { id = 9 } } end }
  reg = klua.registry{ url = srv.url }
  assert_eq(reg:register("x", { schema = "syntax = \"proto3\";", schema_type = "PROTOBUF",
                                references = { { name = "c.proto", subject = "c", version = 1 } } }, { normalize = true }), 9)
  assert_eq(body, { schema = "syntax = \"proto3\";", schemaType = "PROTOBUF",
                    references = { { name = "c.proto", subject = "c", version = 1 } } })
  assert_eq(seen[1].query.normalize, "true")
  srv:close()
end)

test("tasks asking for the same new id at once share one request", function()
  local n, n9 = 0, 0
  local srv = stub{ ["GET /schemas/ids/8"] = function() n = n + 1; klua.sleep(50); return { json = { schema = '"int"' } } end,
                    ["GET /schemas/ids/9"] = function() n9 = n9 + 1
                      return { status = 404, json = { error_code = 40403, message = "Schema 9 not found." } } end }
  local reg = klua.registry{ url = srv.url }
  local tasks = {}
  for i = 1, 5 do tasks[i] = klua.spawn(function() return reg:schema_by_id(8) end) end
  for i = 1, 5 do assert_eq(tasks[i]:join().schema, '"int"') end
  assert_eq(n, 1)
  -- a failure is not cached: the next call asks again
  assert_eq(select(2, reg:schema_by_id(9)).error_code, 40403)
  assert_eq(select(2, reg:schema_by_id(9)).error_code, 40403)
  assert_eq(n9, 2)
  -- the requests are counted in klua.metrics' default registry
  local text = klua.metrics.expose()
  assert_match(text, 'klua_schema_registry_requests_total{outcome="ok"} %d')
  assert_match(text, 'klua_schema_registry_requests_total{outcome="error"} %d')
  srv:close()
end)

test("references are resolved transitively, each once", function()
  local srv, seen = stub{
    ["GET /subjects/order/versions/1"] = { json = { subject = "order", id = 3, version = 1, schema = "O",
      references = { { name = "line.proto", subject = "line", version = 2 }, { name = "money.proto", subject = "money", version = 1 } } } },
    ["GET /subjects/line/versions/2"] = { json = { subject = "line", id = 2, version = 2, schema = "L",
      references = { { name = "money.proto", subject = "money", version = 1 } } } },
    ["GET /subjects/money/versions/1"] = { json = { subject = "money", id = 1, version = 1, schema = "M" } },
  }
  local reg = klua.registry{ url = srv.url }
  local refs = assert(reg:references{ { name = "order.proto", subject = "order", version = 1 } })
  assert_eq(refs, { ["order.proto"] = "O", ["line.proto"] = "L", ["money.proto"] = "M" })
  assert_eq(#seen, 3)
  srv:close()
end)

test("programmer errors raise naming the argument", function()
  local reg = klua.registry{ url = "http://127.0.0.1:1" }
  assert_raises(function() klua.registry{ url = "ftp://x" } end, "option 'url' must be an http")
  assert_raises(function() klua.registry{ url = "http://x", colour = 1 } end, "unknown option 'colour'")
  assert_raises(function() klua.registry{ url = "http://x", user = "u", bearer = "t" } end, "exclusive")
  assert_raises(function() reg:versions("") end, "bad argument #2 to 'registry:versions'")
  assert_raises(function() reg:get_version("s", 0) end, "bad argument #3 to 'registry:get_version'")
  assert_raises(function() reg:register("s", { schema = "x", schema_type = "XML" }) end, "schema_type")
  assert_raises(function() reg:register("s", 5) end, "bad argument #3 to 'registry:register'")
  assert_raises(function() reg:subjects{ deleted = true, foo = 1 } end, "unknown option 'foo'")
  assert_raises(function() reg:set_config("LOOSE") end, "compatibility level")
  assert_raises(function() reg:schema_by_id("1") end, "schema id")
end)
