-- A Confluent schema-registry stand-in for tests, served by klua.http.serve on an ephemeral port:
-- register, lookup, schemas by id, versions (latest), subjects; every request counted by route
-- ("POST /subjects/:subject/versions" ...) so that tests can see what the caches saved.
--
--   local stub = dofile("tests/lua/helpers/registry_stub.lua").start()
--   stub.url, stub.count["GET /schemas/ids/:id"], stub:reset_counts(), stub:close()
--   stub.fail_next = { status = 500, error_code = 50001, message = "boom" }   -- the next request fails
local M = {}

-- klua.errors.new keeps the fields it knows: the others (path, status, error_code...) are set after.
local function E(fields)
  local e = klua.errors.new(fields)
  for k, v in pairs(fields) do if e[k] == nil then e[k] = v end end
  return e
end

local function body_of(req)
  local b = req:json()
  if type(b) ~= "table" or type(b.schema) ~= "string" then return nil end
  return b
end

function M.start()
  local stub = { count = {}, subjects = {}, ids = {}, by_key = {}, next_id = 1, requests = {} }
  local function key(b)
    local refs = {}
    for _, r in ipairs(b.references or {}) do refs[#refs + 1] = r.name .. "=" .. r.subject .. "@" .. tostring(r.version) end
    return (b.schemaType or "AVRO") .. "\0" .. b.schema .. "\0" .. table.concat(refs, ",")
  end
  local function counted(route, fn)
    return function(req)
      stub.count[route] = (stub.count[route] or 0) + 1
      stub.requests[#stub.requests + 1] = route .. " " .. req.path .. (req.query.normalize and "?normalize" or "")
      local f = stub.fail_next
      if f then
        stub.fail_next = nil
        return { status = f.status, json = { error_code = f.error_code, message = f.message } }
      end
      return fn(req)
    end
  end
  local function not_found(code, msg) return { status = 404, json = { error_code = code, message = msg } } end
  local function version_json(subject, v)
    local s = stub.ids[v.id]
    return { subject = subject, id = v.id, version = v.version, schema = s.schema,
             schemaType = s.schemaType ~= "AVRO" and s.schemaType or nil,
             references = s.references and #s.references > 0 and s.references or nil }
  end
  -- the schema of a version (what references point at)
  function stub:version(subject, version)
    local list = self.subjects[subject]
    if not list then return nil end
    if version == "latest" or version == "-1" then return list[#list] end
    for _, v in ipairs(list) do if v.version == tonumber(version) then return v end end
  end
  function stub:register(subject, b)
    local k = key(b)
    local id = self.by_key[k]
    if not id then
      id = self.next_id
      self.next_id = id + 1
      self.by_key[k] = id
      self.ids[id] = { schema = b.schema, schemaType = b.schemaType or "AVRO", references = b.references }
    end
    local list = self.subjects[subject] or {}
    self.subjects[subject] = list
    for _, v in ipairs(list) do if v.id == id then return id, v end end
    local v = { id = id, version = #list + 1 }
    list[#list + 1] = v
    return id, v
  end
  local routes = {
    ["POST /subjects/:subject/versions"] = counted("register", function(req)
      local b = body_of(req)
      if not b then return { status = 422, json = { error_code = 42201, message = "Invalid schema" } } end
      if stub.incompatible and stub.incompatible[req.params.subject] then
        return { status = 409, json = { error_code = 409, message = "Schema being registered is incompatible with an earlier schema" } }
      end
      return { json = { id = (stub:register(req.params.subject, b)) } }
    end),
    ["POST /subjects/:subject"] = counted("lookup", function(req)
      local b = body_of(req)
      if not b then return { status = 422, json = { error_code = 42201, message = "Invalid schema" } } end
      local id = stub.by_key[key(b)]
      local list = stub.subjects[req.params.subject]
      if not list then return not_found(40401, "Subject '" .. req.params.subject .. "' not found.") end
      for _, v in ipairs(list) do
        if v.id == id then return { json = version_json(req.params.subject, v) } end
      end
      return not_found(40403, "Schema not found")
    end),
    ["GET /schemas/ids/:id"] = counted("schema_by_id", function(req)
      local s = stub.ids[tonumber(req.params.id)]
      if not s then return not_found(40403, "Schema " .. req.params.id .. " not found") end
      return { json = { schema = s.schema, schemaType = s.schemaType ~= "AVRO" and s.schemaType or nil,
                        references = s.references and #s.references > 0 and s.references or nil } }
    end),
    ["GET /subjects/:subject/versions/:version"] = counted("get_version", function(req)
      local v = stub:version(req.params.subject, req.params.version)
      if not v then return not_found(40402, "Version not found.") end
      return { json = version_json(req.params.subject, v) }
    end),
    ["GET /subjects/:subject/versions"] = counted("versions", function(req)
      local list = stub.subjects[req.params.subject]
      if not list then return not_found(40401, "Subject not found.") end
      local out = {}
      for i, v in ipairs(list) do out[i] = v.version end
      return { json = out }
    end),
    ["GET /subjects"] = counted("subjects", function()
      local out = {}
      for s in pairs(stub.subjects) do out[#out + 1] = s end
      table.sort(out)
      return { json = klua.json.array(out) }
    end),
  }
  local srv = assert(klua.http.serve{ routes = routes })
  stub.srv, stub.url = srv, srv.url
  function stub:reset_counts() self.count, self.requests = {}, {} end
  function stub:n(route) return self.count[route] or 0 end
  function stub:close() self.srv:close() end
  return stub
end

-- A registry client of its own for the stub (klua.registry caches per client).
function M.client(url) return klua.registry{ url = url } end

return M
