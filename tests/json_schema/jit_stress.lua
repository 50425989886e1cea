-- JIT stress of klua.json_schema (json_schema_jit_stress in tests/CMakeLists.txt): the official
-- JSON-Schema-Test-Suite's cases (drafts 4 and 7) validated round after round with the JIT on, so
-- the validators' closures compile, each answer checked against the suite's, followed by the same
-- schemas against random objects and arrays of random keys (varied table layouts for the object
-- keywords' traversals), each answer checked against the first round's. The validators walk
-- objects with next() loops the JIT compiles; Debian's luajit 2.1.0-beta3 (git 20220320, without
-- upstream 5e3c45c4) can miscompile such a loop into a truncated pointer and a crash, which klua
-- avoids by building on luajit2 and, on any other LuaJIT, by making next and pairs C functions
-- (host/lua_next.cpp). This guards that, and the validators' answers with compiled traces.
--
--   build/klua run tests/json_schema/jit_stress.lua [SEED] [ROUNDS]
local js, json = klua.json_schema, klua.json
local suite = dofile("tests/json_schema/suite_fixture.lua")
local ROOT, read, list, remotes = suite.root, suite.read, suite.list, suite.remotes
local seed, rounds = tonumber(arg[1]) or 1, tonumber(arg[2]) or 40
math.randomseed(seed)

local cases, validators = {}, {}
for _, draft in ipairs { 4, 7 } do
  for _, file in ipairs(list("ls " .. ROOT .. "draft" .. draft .. " | grep '\\.json$'")) do
    for _, g in ipairs(assert(json.decode(read(ROOT .. "draft" .. draft .. "/" .. file)))) do
      local v = js.compile(g.schema, { draft = draft, references = remotes })
      if v then
        validators[#validators + 1] = v
        for _, t in ipairs(g.tests) do
          cases[#cases + 1] = { v = v, data = t.data, valid = t.valid,
                                name = ("draft%d/%s: %s: %s"):format(draft, file, g.description, t.description) }
        end
      end
    end
  end
end

local checked = 0
for _ = 1, rounds do
  for i = #cases, 2, -1 do  -- a new order each round: other traces, other call sites hot
    local j = math.random(i)
    cases[i], cases[j] = cases[j], cases[i]
  end
  for _, c in ipairs(cases) do
    local ok, err = c.v:validate(c.data)
    if (ok == true) ~= c.valid then
      error(("%s: expected %s, got %s"):format(c.name, tostring(c.valid), tostring(err)))
    end
    checked = checked + 1
  end
end

-- Random values: objects of 0-12 keys drawn from names the suite's schemas use and random ones,
-- arrays, scalars, nested two levels.
local NAMES = { "foo", "bar", "baz", "a", "b", "c", "quux", "bar2", "fo", "x", "y", "1", "" }
local function random_value(depth)
  local r = math.random(depth > 1 and 4 or 6)
  if r == 1 then return math.random(-3, 3) end
  if r == 2 then return ({ "x", "foo", "", "aaaaaa" })[math.random(4)] end
  if r == 3 then return math.random() < 0.5 end
  if r == 4 then return json.null end
  if r == 5 then
    local a = json.array {}
    for i = 1, math.random(0, 5) do a[i] = random_value(depth + 1) end
    return a
  end
  local o = {}
  for _ = 1, math.random(0, 12) do
    local k = math.random(3) == 1 and ("k" .. math.random(1000)) or NAMES[math.random(#NAMES)]
    o[k] = random_value(depth + 1)
  end
  return o
end
local values = {}
for i = 1, 300 do values[i] = random_value(0) end
local first = {}
for round = 1, math.max(1, math.floor(rounds / 4)) do
  for vi, v in ipairs(validators) do
    for xi = (vi % 7) + 1, #values, 7 do
      local ok = v:validate(values[xi]) == true
      local key = vi * 1000 + xi
      if round == 1 then first[key] = ok
      elseif first[key] ~= ok then error(("validator %d, value %d: %s, then %s"):format(vi, xi, tostring(first[key]), tostring(ok))) end
      checked = checked + 1
    end
  end
end
print(("checked %d validations without a crash"):format(checked))
