-- klua.admin: SCRAM credentials and ACLs.
-- Public methods; bindings/admin.cpp loads this file after admin.lua, which returns the shared helpers
-- H. P holds the C primitives, private to these files.
local M, P, H = ...
local type, pairs, ipairs, tostring, next = type, pairs, ipairs, tostring, next
local sort, concat = table.sort, table.concat
local floor = math.floor
local kerr, C, argerr, unsupported, check_opts = H.kerr, H.C, H.argerr, H.unsupported, H.check_opts
local name_list = H.name_list

-- ---- SCRAM credentials --------------------------------------------------------------------------

local SCRAM = { ["SCRAM-SHA-256"] = 1, ["SCRAM-SHA-512"] = 2 }
local SCRAM_KEYS = { user = true, mechanism = true, iterations = true, password = true, salt = true, delete = true }

local function check_mechanism(op, i, m)
  local code = type(m) == "string" and SCRAM[m:upper()]
  if not code then argerr(op, 2, "item %d: 'mechanism' must be \"SCRAM-SHA-256\" or \"SCRAM-SHA-512\", got %s", i, tostring(m)) end
  return code, m:upper()
end

-- describe_user_scram_credentials(users | nil, {timeout_ms=}) -> per user (in input order; without users,
-- every user with credentials, by name): {user, credentials = {{mechanism, iterations}}, error}. A user
-- without credentials has error RESOURCE_NOT_FOUND.
function M:describe_user_scram_credentials(users, opts)
  local op = "describe_user_scram_credentials"
  if users ~= nil then users = name_list(op, 2, users, "user") end
  opts = check_opts(op, 3, opts, { timeout_ms = true })
  local u = unsupported(self, op)
  if u then return nil, u end
  if users and #users == 0 then return {} end
  local send, seen = nil, {}
  if users then
    send = {}
    for _, name in ipairs(users) do
      if not seen[name] then seen[name] = true; send[#send + 1] = name end
    end
  end
  local res, err = P.describe_scram(self, send, opts.timeout_ms)
  if not res then return nil, err end
  for _, r in ipairs(res) do
    if r.credentials then sort(r.credentials, function(a, b) return a.mechanism < b.mechanism end) end
    if r.error then r.error.op = "admin:" .. op end
  end
  if not users then
    sort(res, function(a, b) return a.user < b.user end)
    return res
  end
  local by = {}
  for _, r in ipairs(res) do by[r.user] = r end
  local out = {}
  for i, name in ipairs(users) do
    out[i] = by[name] or { user = name, error = kerr(C._INVALID_ARG, "no result for this user", { op = "admin:" .. op }) }
  end
  return out
end

-- alter_user_scram_credentials(items, {timeout_ms=}) -> per item in input order {user, mechanism, error}.
-- An item upserts {user=, mechanism=, password=, iterations= (4096), salt= (random)} or deletes
-- {user=, mechanism=, delete=true}. Kafka answers per user: an error for a user applies to each of its
-- items. The password is sent only as a salted hash, and never appears in errors or logs.
function M:alter_user_scram_credentials(items, opts)
  local op = "alter_user_scram_credentials"
  if type(items) == "table" and items.user ~= nil then items = { items } end
  if type(items) ~= "table" then argerr(op, 2, "expected a list of credential changes, got %s", type(items)) end
  opts = check_opts(op, 3, opts, { timeout_ms = true })
  local send, out = {}, {}
  for i, it in ipairs(items) do
    if type(it) ~= "table" then argerr(op, 2, "item %d must be a table", i) end
    for k in pairs(it) do
      if not SCRAM_KEYS[k] then
        argerr(op, 2, "item %d: unknown field '%s' (fields: user, mechanism, password, iterations, salt, delete)", i, tostring(k))
      end
    end
    if type(it.user) ~= "string" or it.user == "" then argerr(op, 2, "item %d: 'user' must be a non-empty string", i) end
    local code, name = check_mechanism(op, i, it.mechanism)
    local a = { user = it.user, mechanism = code }
    if it.delete then
      if it.password ~= nil then argerr(op, 2, "item %d: give either 'password' or 'delete', not both", i) end
      a.delete = true
    else
      -- (the message names the field, never its value)
      if type(it.password) ~= "string" or it.password == "" then argerr(op, 2, "item %d: 'password' must be a non-empty string", i) end
      local iterations = it.iterations or 4096
      if type(iterations) ~= "number" or iterations < 4096 or iterations > 16384 or iterations ~= floor(iterations) then
        argerr(op, 2, "item %d: 'iterations' must be a whole number from 4096 to 16384 (Kafka's limits)", i)
      end
      if it.salt ~= nil and type(it.salt) ~= "string" then argerr(op, 2, "item %d: 'salt' must be a string", i) end
      a.password, a.iterations, a.salt = it.password, iterations, it.salt
    end
    send[i] = a
    out[i] = { user = it.user, mechanism = name }
  end
  local u = unsupported(self, op)
  if u then return nil, u end
  if #send == 0 then return {} end
  -- Kafka refuses a request that alters one user twice (DUPLICATE_RESOURCE), even for two mechanisms:
  -- send rounds, the n-th round carrying each user's n-th item. Each round is a request of its own.
  local rounds, count = {}, {}
  for i, a in ipairs(send) do
    local n = (count[a.user] or 0) + 1
    count[a.user] = n
    rounds[n] = rounds[n] or { items = {}, index = {} }
    local r = rounds[n]
    r.items[#r.items + 1] = a
    r.index[#r.index + 1] = i
  end
  for n, round in ipairs(rounds) do
    local res, err = P.alter_scram(self, round.items, opts.timeout_ms)
    if not res then
      -- a whole-request failure: the whole call failed only when nothing was sent before
      if n == 1 then return nil, err end
      for _, i in ipairs(round.index) do out[i].error = err end
    else
      local by = {}
      for _, r in ipairs(res) do by[r.user] = r end
      for _, i in ipairs(round.index) do
        local r = by[out[i].user]
        if r then out[i].error = r.error
        else out[i].error = kerr(C._INVALID_ARG, "no result for this user", { op = "admin:" .. op }) end
      end
    end
  end
  send = nil
  return out
end

-- ---- ACLs ------------------------------------------------------------------------------------------

-- librdkafka's codes (rd_kafka_ResourceType_t, _ResourcePatternType_t, _AclOperation_t, _AclPermissionType_t).
local ACL_RESOURCE = { any = 1, topic = 2, group = 3, broker = 4, cluster = 4, transactional_id = 5 }
local ACL_PATTERN = { any = 1, match = 2, literal = 3, prefixed = 4 }
local ACL_OPERATION = { any = 1, all = 2, read = 3, write = 4, create = 5, delete = 6, alter = 7, describe = 8,
  cluster_action = 9, describe_configs = 10, alter_configs = 11, idempotent_write = 12 }
local ACL_PERMISSION = { any = 1, deny = 2, allow = 3 }
local ACL_KEYS = { resource_type = true, name = true, pattern_type = true, principal = true, host = true,
                   operation = true, permission = true }

local function acl_enum(op, i, field, value, known, default, filter)
  if value == nil then value = default end
  local code = type(value) == "string" and known[value:lower()]
  if not code or (not filter and (value:lower() == "any" or value:lower() == "match")) then
    local names = {}
    for n in pairs(known) do
      if filter or (n ~= "any" and n ~= "match") then names[#names + 1] = n end
    end
    sort(names)
    argerr(op, 2, "item %d: '%s' must be one of %s, got %s", i, field, concat(names, ", "), tostring(value))
  end
  return code
end

-- A binding (filter=false: every field concrete) or a filter (nil fields match anything).
local function acl_fields(op, i, b, filter)
  if type(b) ~= "table" then argerr(op, 2, "item %d must be a table", i) end
  for k in pairs(b) do
    if not ACL_KEYS[k] then
      argerr(op, 2, "item %d: unknown field '%s' (fields: resource_type, name, pattern_type, principal, host, "
             .. "operation, permission)", i, tostring(k))
    end
  end
  local any = filter and "any" or nil
  local out = {
    restype = acl_enum(op, i, "resource_type", b.resource_type, ACL_RESOURCE, any, filter),
    pattern = acl_enum(op, i, "pattern_type", b.pattern_type, ACL_PATTERN, filter and "any" or "literal", filter),
    operation = acl_enum(op, i, "operation", b.operation, ACL_OPERATION, any, filter),
    permission = acl_enum(op, i, "permission", b.permission, ACL_PERMISSION, filter and "any" or "allow", filter),
    name = b.name, principal = b.principal, host = b.host,
  }
  if b.resource_type and b.resource_type:lower() == "cluster" then out.name = out.name or "kafka-cluster" end
  if not filter then
    out.host = out.host or "*"
    for _, k in ipairs { "name", "principal" } do
      if type(out[k]) ~= "string" or out[k] == "" then argerr(op, 2, "item %d: '%s' must be a non-empty string", i, k) end
    end
  end
  for _, k in ipairs { "name", "principal", "host" } do
    if out[k] ~= nil and type(out[k]) ~= "string" then argerr(op, 2, "item %d: '%s' must be a string", i, k) end
  end
  return out
end

local function acl_order(a, b)
  for _, k in ipairs { "resource_type", "name", "pattern_type", "principal", "host", "operation", "permission" } do
    if a[k] ~= b[k] then return tostring(a[k]) < tostring(b[k]) end
  end
  return false
end

local function acl_binding(b)
  -- Kafka calls the cluster resource "broker" in librdkafka's enum: name it as Kafka's tools do
  if b.resource_type == "broker" then b.resource_type = "cluster" end
  return b
end

-- create_acls(bindings, {timeout_ms=}) -> per binding in input order {error}. A binding: {resource_type =
-- "topic" | "group" | "cluster" | "transactional_id", name=, pattern_type = "literal" (default) | "prefixed",
-- principal = "User:alice", host = "*" (default), operation = "read" | "write" | ..., permission = "allow"
-- (default) | "deny"}.
function M:create_acls(bindings, opts)
  local op = "create_acls"
  if type(bindings) == "table" and bindings.principal ~= nil then bindings = { bindings } end
  if type(bindings) ~= "table" then argerr(op, 2, "expected a list of ACL bindings, got %s", type(bindings)) end
  opts = check_opts(op, 3, opts, { timeout_ms = true })
  local send = {}
  for i, b in ipairs(bindings) do send[i] = acl_fields(op, i, b, false) end
  local u = unsupported(self, op)
  if u then return nil, u end
  if #send == 0 then return {} end
  local res, err = P.create_acls(self, send, opts.timeout_ms)
  if not res then return nil, err end
  local out = {}
  for i = 1, #send do out[i] = { error = res[i] and res[i].error } end
  return out
end

-- describe_acls(filter, {timeout_ms=}) -> the matching bindings, sorted. A filter has the binding's fields;
-- a missing field matches anything (pattern_type "match" also matches prefixed and wildcard patterns that
-- cover name).
function M:describe_acls(filter, opts)
  local op = "describe_acls"
  opts = check_opts(op, 3, opts, { timeout_ms = true })
  local f = acl_fields(op, 1, filter or {}, true)
  local u = unsupported(self, op)
  if u then return nil, u end
  local res, err = P.describe_acls(self, f, opts.timeout_ms)
  if not res then return nil, err end
  for _, b in ipairs(res) do acl_binding(b) end
  sort(res, acl_order)
  return res
end

-- delete_acls(filters, {timeout_ms=}) -> per filter in input order {deleted = bindings (sorted), error}.
function M:delete_acls(filters, opts)
  local op = "delete_acls"
  if type(filters) ~= "table" then argerr(op, 2, "expected a list of ACL filters, got %s", type(filters)) end
  if next(filters) ~= nil and #filters == 0 then filters = { filters } end
  opts = check_opts(op, 3, opts, { timeout_ms = true })
  local send = {}
  for i, f in ipairs(filters) do send[i] = acl_fields(op, i, f, true) end
  local u = unsupported(self, op)
  if u then return nil, u end
  if #send == 0 then return {} end
  local res, err = P.delete_acls(self, send, opts.timeout_ms)
  if not res then return nil, err end
  local out = {}
  for i = 1, #send do
    local r = res[i] or { error = kerr(C._INVALID_ARG, "no result for this filter", { op = "admin:" .. op }) }
    if r.deleted then
      for _, b in ipairs(r.deleted) do acl_binding(b) end
      sort(r.deleted, acl_order)
    end
    out[i] = r
  end
  return out
end
