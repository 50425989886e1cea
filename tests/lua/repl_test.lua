-- The REPL's pure-Lua parts: chunk compilation, completion, :help from the bundled docs/ (and
-- that every public function has an entry there; tests/lua/docs_test.lua checks more), the
-- history path.
local repl = require("klua.repl")
local complete = require("klua.repl_complete")
local help = require("klua.help")

test("compile: bare expressions and =expr return values; incomplete chunks are told apart", function()
  assert_eq(repl.compile("1 + 1")(), 2)
  assert_eq(repl.compile("=1 + 2")(), 3)
  assert_eq({ repl.compile("= 1, 'a'")() }, { 1, "a" })
  assert_eq(repl.compile("x_repl_test = 5")(), nil)
  assert_eq(rawget(_G, "x_repl_test"), 5)
  local fn, err, incomplete = repl.compile("for i = 1, 3 do")
  assert_eq(fn, nil)
  assert_true(incomplete, "an open block is incomplete: " .. tostring(err))
  assert_true(select(3, repl.compile("f(")), "an open call is incomplete")
  assert_true(select(3, repl.compile("s = [[abc")), "an open long string is incomplete")
  local _, err2, inc2 = repl.compile("x = = 2")
  assert_true(not inc2, "a plain syntax error is not incomplete")
  assert_match(err2, "unexpected symbol")
  assert_eq(repl.compile("for i = 1, 3 do\nend")(), nil)
end)

test("completion: globals, module members, methods through the metatable, commands", function()
  assert_eq(complete.candidates("pri"), { "print" })
  assert_eq(complete.candidates("klua.json.en"), { "klua.json.encode" })
  assert_true(#complete.candidates("klua.pro") >= 2, "klua.producer and the lazy klua.provision")
  local all = table.concat(complete.candidates("klua.pro"), " ")
  assert_match(all, "klua%.producer")
  assert_match(all, "klua%.provision")
  local admin = klua.admin()
  rawset(_G, "completion_admin", admin)  -- the REPL's chunks set globals in _G
  assert_eq(complete.candidates("completion_admin:list_t"), { "completion_admin:list_topics" })
  local methods = complete.candidates("completion_admin:")
  for _, m in ipairs(methods) do assert_true(not m:find(":_", 1, true), "no private methods: " .. m) end
  assert_true(#methods > 10, "admin has many methods")
  assert_eq(complete.candidates("no_such_global:x"), {})
  assert_eq(complete.candidates(":he", ":he", 0, 3), { ":help" })
  assert_eq(complete.candidates("list_to", ":help list_to", 6, 13), { "list_topics" })
  assert_eq(complete.candidates("wh"), { "while" })
  admin:close()
  rawset(_G, "completion_admin", nil)
end)

test(":help NAME comes from docs/, for methods, module functions and pages", function()
  assert_match(help.text("list_topics"), "^%[admin%]")
  assert_match(help.text("admin:list_topics"), "list_topics")
  assert_match(help.text("p:produce"), "yields until the delivery report")
  assert_match(help.text("klua.json.encode"), "indent")
  assert_match(help.text("consumer"), "^# consumer")
  assert_match(help.text("no_such_function_xyz"), "^no help for no_such_function_xyz")
  local overview = help.text()
  assert_match(overview, ":connect BROKERS")
  assert_match(overview, "producer")
  assert_raises(function() help.lookup(42) end, "name must be a non%-empty string")
end)

-- Every public function must have an entry in docs/ (the help's only source), so adding a function
-- without documenting it fails here.
test("every public function has an entry in docs/", function()
  local missing = {}
  local function check(name)
    if not help.lookup(name) then missing[#missing + 1] = name end
  end
  local function functions_of(t, prefix, sep)
    for k, v in pairs(t) do
      if type(v) == "function" and type(k) == "string" and not k:match("^_") then check(prefix .. sep .. k) end
    end
  end
  functions_of(klua, "klua", ".")
  for _, m in ipairs({ "json", "embedded", "errors", "lag", "provision", "envelope", "worker", "pretty", "help",
                       "line_editor" }) do
    if type(klua[m]) == "table" then functions_of(klua[m], "klua." .. m, ".") end
  end
  local function methods(obj, prefix)
    functions_of(getmetatable(obj).__index, prefix, ":")
  end
  local p = klua.producer()
  local c = klua.consumer{ group = "help-test", topics = { "help-test" } }
  local a = klua.admin()
  methods(p, "p")
  methods(c, "c")
  methods(a, "admin")
  methods(klua.spawn(function() end), "task")
  methods(klua.worker{ group = "help-test", topics = { "help-test" }, handlers = { ["help-test"] = function() end } }, "w")
  table.sort(missing)
  assert_eq(missing, {}, "functions without an entry in docs/")
  c:close()
  p:close()
  a:close()
end)

test("history lives under XDG_STATE_HOME or ~/.local/state", function()
  local path = repl.history_path()
  local xdg = os.getenv("XDG_STATE_HOME")
  if xdg and xdg ~= "" then
    assert_eq(path, xdg .. "/klua/history")
  else
    assert_eq(path, os.getenv("HOME") .. "/.local/state/klua/history")
  end
end)
