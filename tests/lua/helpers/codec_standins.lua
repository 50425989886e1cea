-- Stand-ins for the codecs the serde sits on, used only while klua.avro / klua.json_schema are
-- not in the build (other branches bring them): just enough of their API (common.md) for the
-- serde's own tests, which check frames, subjects, caches and errors, not the codecs' bytes.
-- install() returns the names of the modules it stood in for.
local M = {}

-- klua.errors.new keeps the fields it knows: the others (path, status, error_code...) are set after.
local function E(fields)
  local e = klua.errors.new(fields)
  for k, v in pairs(fields) do if e[k] == nil then e[k] = v end end
  return e
end

local function standin_avro()
  local A = {}
  local S = {}
  S.__index = S
  local TYPES = { int = "number", long = "number", float = "number", double = "number", string = "string",
                  boolean = "boolean", bytes = "string" }
  function A.parse(schema)
    local t = schema
    if type(schema) == "string" then
      local err
      t, err = klua.json.decode(schema)
      if t == nil then return nil, E{ name = "KLUA_SCHEMA", message = "not JSON: " .. err.message } end
    end
    if type(t) == "string" then t = { type = t } end
    if type(t) ~= "table" or (t.type == "record" and type(t.fields) ~= "table") then
      return nil, E{ name = "KLUA_SCHEMA", message = "a record needs fields" }
    end
    local name = t.name and ((t.namespace and (t.namespace .. ".") or "") .. t.name)
    return setmetatable({ type = t.type, name = name, node = t, text = klua.json.encode(t) }, S)
  end
  function S:canonical() return self.text end
  function S:fingerprint() return self.text end
  function S:encode(value, prefix)
    if self.type == "record" then
      if type(value) ~= "table" then
        return nil, E{ name = "KLUA_SERIALIZATION", path = "$", message = "$: expected a record table, got " .. type(value) }
      end
      for _, f in ipairs(self.node.fields) do
        local want = TYPES[f.type]
        if want and type(value[f.name]) ~= want then
          return nil, E{ name = "KLUA_SERIALIZATION", path = "$." .. f.name,
            message = "$." .. f.name .. ": expected " .. f.type .. ", got " .. type(value[f.name]) }
        end
      end
    elseif TYPES[self.type] and type(value) ~= TYPES[self.type] then
      return nil, E{ name = "KLUA_SERIALIZATION", path = "$", message = "$: expected " .. self.type }
    end
    return (prefix or "") .. klua.json.encode({ v = value })
  end
  function S:decode(bytes, offset)
    local t = klua.json.decode(bytes:sub((offset or 0) + 1))
    if type(t) ~= "table" then
      return nil, E{ name = "KLUA_DESERIALIZATION", path = "$", message = "truncated or bad data" }
    end
    return t.v
  end
  -- the reader's fields: the writer's values, else the reader's defaults
  function A.resolver(w, r)
    local R = {}
    function R:decode(bytes, offset)
      local v, err = w:decode(bytes, offset)
      if err then return nil, err end
      local out = {}
      for _, f in ipairs(r.node.fields or {}) do
        if v[f.name] ~= nil then out[f.name] = v[f.name] else out[f.name] = f.default end
      end
      return out
    end
    return R
  end
  return A
end

local function standin_json_schema()
  local J = {}
  function J.compile(schema)
    local t = type(schema) == "string" and klua.json.decode(schema) or schema
    if type(t) ~= "table" then return nil, E{ name = "KLUA_SCHEMA", message = "not a schema" } end
    local v = { title = t.title }
    function v:validate(value)
      for _, name in ipairs(t.required or {}) do
        if type(value) ~= "table" or value[name] == nil then
          return nil, E{ name = "KLUA_SERIALIZATION", path = "$." .. name, keyword = "required",
                                       message = "$." .. name .. ": required" }
        end
      end
      return true
    end
    return v
  end
  return J
end

function M.install()
  local stood = {}
  if not pcall(require, "klua.avro") then
    package.loaded["klua.avro"] = standin_avro()
    stood[#stood + 1] = "klua.avro"
  end
  if not pcall(require, "klua.json_schema") then
    package.loaded["klua.json_schema"] = standin_json_schema()
    stood[#stood + 1] = "klua.json_schema"
  end
  return stood
end

return M
