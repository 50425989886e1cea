-- The klua side of tests/json_schema/oracle_test.py: reads the corpus (JSON) on stdin,
-- { schemas = [ { schema =, draft = } ], cases = [ [schema index (0-based), instance] ] },
-- and writes one JSON array: per case true/false (valid or not), or the string "compile: ..." when
-- its schema did not compile. Everything runs in this one process.
local json = klua.json
local js = klua.json_schema

local corpus = assert(json.decode(io.read("*a")))
local validators = {}
for i, s in ipairs(corpus.schemas) do
  local v, err = js.compile(s.schema, { draft = s.draft })
  validators[i] = v or ("compile: " .. tostring(err))
end
local out = {}
for i, c in ipairs(corpus.cases) do
  local v = validators[c[1] + 1]
  if type(v) == "string" then
    out[i] = v
  else
    local ok, err = v:validate(c[2])
    if ok then
      out[i] = true
    else
      assert(err.name == "KLUA_SERIALIZATION" and type(err.path) == "string" and err.path:sub(1, 1) == "$"
             and type(err.keyword) == "string" and type(err.schema_path) == "string", tostring(err))
      out[i] = false
    end
  end
end
io.write(json.encode(json.array(out)), "\n")
