-- The reference (docs/*.md, bundled as klua.docs): its layout, that every public function has an
-- entry, the help built on it, and every example (those needing a real broker run in
-- tests/integration/docs_examples_test.lua).
local help = require("klua.help")

-- ---- the public API, enumerated at runtime -------------------------------------------------

-- The shipped library's modules (they load on first use, so pairs(klua) alone would miss them);
-- klua.repl, klua.repl_complete and klua.test_runner are the REPL's and `klua test`'s insides.
local SCRIPT_MODULES = { "provision", "envelope", "worker", "replay", "testkit", "pretty", "help", "serde", "json_schema" }
local INTERNAL = { repl = true, repl_complete = true, test_runner = true }

-- Public function names of a table (and of the tables its metatable's __index chain leads to).
local function functions_of(t, prefix, sep, out)
  local seen, depth = {}, 0
  while type(t) == "table" and depth < 5 do
    for k, v in pairs(t) do
      if type(k) == "string" and not k:match("^_") and not seen[k] then
        seen[k] = true
        local mt = type(v) == "table" and getmetatable(v)
        if type(v) == "function" or (mt and mt.__call) then out[prefix .. sep .. k] = true end
      end
    end
    local mt = getmetatable(t)
    t = mt and type(mt.__index) == "table" and mt.__index or nil
    depth = depth + 1
  end
end

-- Methods of an object: its metatable's __index table, or, when __index is a function (a
-- consumed message's, which builds fields lazily), the functions it closes over that are not
-- Lua's own (header, header_all).
local function methods_of(obj, prefix, out)
  local mt = getmetatable(obj)
  local index = mt and mt.__index
  if type(index) == "table" then
    functions_of(index, prefix, ":", out)
  elseif type(index) == "function" then
    local builtin = {}
    for _, v in pairs(_G) do if type(v) == "function" then builtin[v] = true end end
    for i = 1, 50 do
      local name, v = debug.getupvalue(index, i)
      if not name then break end
      if type(v) == "function" and not builtin[v] and not name:match("^_") and obj[name] == v then
        out[prefix .. ":" .. name] = true
      end
    end
  end
end

local function public_api()
  local api = {}
  functions_of(klua, "klua", ".", api)
  for k, v in pairs(klua) do
    if type(k) == "string" and not k:match("^_") and not INTERNAL[k] and type(v) == "table" then functions_of(v, "klua." .. k, ".", api) end
  end
  for _, m in ipairs(SCRIPT_MODULES) do
    local mod = klua[m]
    local mt = getmetatable(mod)
    if mt and mt.__call then api["klua." .. m] = true end
    functions_of(mod, "klua." .. m, ".", api)
  end
  local t = klua.testkit.topic("docs-api")
  local p = klua.producer()
  local tp = klua.producer{ ["transactional.id"] = "docs-api-" .. klua.uuid() }
  local c = klua.consumer{ group = klua.testkit.group("docs-api"), topics = { t } }
  local a = klua.admin()
  methods_of(p, "p", api)
  methods_of(tp, "p", api)
  methods_of(c, "c", api)
  methods_of(a, "admin", api)
  methods_of(klua.spawn(function() end), "task", api)
  methods_of(klua.http.client{}, "client", api)
  methods_of(klua.worker{ group = "docs-api", topics = { t }, handlers = function() end }, "w", api)
  klua.testkit.produce(t, { { value = "with", headers = { h = "1" } }, "without" })
  for _, msg in ipairs(klua.testkit.read(t)) do methods_of(msg, "msg", api) end
  c:close()
  p:close()
  tp:close()
  a:close()
  local list = {}
  for name in pairs(api) do list[#list + 1] = name end
  table.sort(list)
  return list
end

-- The documented names (exactly as written in the headings).
local function documented()
  local names = {}
  for _, page in ipairs(help.pages()) do
    for _, e in ipairs(page.entries) do
      for _, n in ipairs(e.names) do names[n] = page.name end
    end
  end
  return names
end

local function missing_entries(api, names)
  local missing = {}
  for _, name in ipairs(api) do
    if not names[name] then missing[#missing + 1] = name end
  end
  return missing
end

test("every public function has an entry in docs/", function()
  local api = public_api()
  assert_true(#api > 150, "the enumeration finds the API (" .. #api .. " functions)")
  for _, want in ipairs({ "klua.spawn", "c:poll", "msg:header", "msg:header_all", "p:begin", "admin:list_topics",
                          "task:join", "w:run", "klua.provision.apply", "klua.testkit.roundtrip", "klua.worker",
                          "klua.json.encode", "klua.lag.watch" }) do
    local found = false
    for _, n in ipairs(api) do found = found or n == want end
    assert_true(found, "the enumeration finds " .. want)
  end
  local names = documented()
  assert_eq(missing_entries(api, names), {}, "public functions without an entry in docs/")
  -- the check can fail: without the entry for c:poll it reports c:poll
  names["c:poll"] = nil
  assert_eq(missing_entries(api, names), { "c:poll" })
end)

test("every entry names a documented-looking function once, with arguments, returns, errors, an example", function()
  local problems, seen = {}, {}
  local pages = {}
  for _, page in ipairs(help.pages()) do
    pages[page.name] = true
    for _, e in ipairs(page.entries) do
      local where = string.format("docs/%s.md:%d %s", page.name, e.line, e.signatures[1])
      for _, n in ipairs(e.names) do
        if seen[n] then problems[#problems + 1] = where .. ": " .. n .. " is also documented at " .. seen[n] end
        seen[n] = where
      end
      if #e.names ~= #e.signatures then problems[#problems + 1] = where .. ": a heading without a name" end
      for _, field in ipairs({ "Arguments", "Returns", "Errors" }) do
        if not e.text:find("- **" .. field .. "**:", 1, true) then
          problems[#problems + 1] = where .. ": no **" .. field .. "**"
        end
      end
      local runnable = 0
      for _, ex in ipairs(e.examples) do
        if not ex.kind:find("norun", 1, true) then runnable = runnable + 1 end
      end
      if runnable == 0 then problems[#problems + 1] = where .. ": no example" end
    end
  end
  for _, want in ipairs({ "index", "klua", "producer", "consumer", "admin", "lag", "json", "transactions", "provision",
                          "worker", "replay", "envelope", "testkit", "cli" }) do
    if not pages[want] then problems[#problems + 1] = "no page docs/" .. want .. ".md" end
  end
  assert_eq(problems, {})
end)

test("help: pages, entries by name, by page.name and by bare name; sections; the overview", function()
  assert_match(help.text("consumer"), "^# consumer\n")
  assert_match(help.text("consumer"), "### c:commit")            -- the whole page
  local poll = help.text("c:poll")
  assert_match(poll, "^%[consumer%]\n### c:poll%(%[opts%]%)")
  assert_true(not poll:find("### c:commit", 1, true), "one entry only")
  assert_eq(help.text("consumer.poll"), poll)
  assert_eq(help.text("c:poll()"), poll)
  assert_match(help.text("list_topics"), "^%[admin%]\n### admin:list_topics")
  assert_match(help.text("klua.json.encode"), "opts.indent")
  assert_match(help.text("klua topics"), "^%[cli%]\n### klua topics")
  assert_match(help.text("cli.lag"), "### klua lag GROUP")
  assert_match(help.text("embedded"), "^## The embedded cluster")
  assert_match(help.text("msg:header"), "msg:header_all")          -- shared body
  assert_match(help.text("no_such_function_xyz"), "^no help for no_such_function_xyz")
  local overview = help.text()
  assert_match(overview, ":connect BROKERS")
  assert_match(overview, "producer")
  assert_raises(function() help.lookup(42) end, "name must be a non%-empty string")
  local names = table.concat(help.names(), " ")
  assert_match(names, "klua%.provision%.apply")
  assert_match(names, " consumer ")
end)

test("klua help: one entry or a page, piped output is never paged, exit 1 for an unknown name", function()
  local bin = os.getenv("KLUA_BIN")
  local kit = klua.testkit
  local out, status = kit.sh("PAGER=false " .. kit.quote(bin) .. " help consumer.poll")
  assert_eq(status, 0)
  assert_match(out, "^%[consumer%]\n### c:poll")
  out = kit.sh("PAGER=false " .. kit.quote(bin) .. " help consumer")
  assert_match(out, "^# consumer\n")
  assert_match(out, "### c:close")
  out, status = kit.sh(kit.quote(bin) .. " help")
  assert_eq(status, 0)
  assert_match(out, "^usage: klua")
  assert_match(out, "Reference pages")
  out, status = kit.sh(kit.quote(bin) .. [[ -e 'klua.help.show("consumer") klua.help.show("c:poll")']])
  assert_eq(status, 0)
  assert_match(out, "^# consumer\n.*### c:close.*\n%[consumer%]\n### c:poll")
  out, status = kit.sh(kit.quote(bin) .. " help no_such_thing 2>&1")
  assert_eq(status, 1)
  assert_match(out, "no help for no_such_thing")
end)

test("a long page goes through the pager when stdout is a terminal", function()
  local bin = os.getenv("KLUA_BIN")
  local kit = klua.testkit
  if kit.sh("command -v script >/dev/null && echo yes") ~= "yes\n" then return end  -- util-linux script(1)
  -- script(1) gives klua a terminal; the pager (cat with a marker) shows it was used
  local marker = "PAGEDBYTEST"
  local out = kit.sh("LINES=24 PAGER='echo " .. marker .. "; cat >/dev/null' script -qec "
    .. kit.quote(kit.quote(bin) .. " help consumer") .. " /dev/null")
  assert_match(out, marker)
  -- a short entry is written directly
  out = kit.sh("LINES=24 PAGER='echo " .. marker .. "; cat >/dev/null' script -qec "
    .. kit.quote(kit.quote(bin) .. " help klua.now") .. " /dev/null")
  assert_true(not out:find(marker, 1, true), "a short entry is not paged: " .. out)
  -- a pager that does not exist: plain output
  out = kit.sh("LINES=24 PAGER=/nonexistent/pager script -qec " .. kit.quote(kit.quote(bin) .. " help consumer")
    .. " /dev/null")
  assert_match(out, "### c:close")
end)

-- The examples, on the embedded cluster.
local n = dofile("tests/lua/docs_examples.lua")(test, function(k) return not k.broker and not k.registry end)
test("the docs have examples to run", function()
  assert_true(n > 100, n .. " examples")
end)
