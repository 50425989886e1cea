-- klua.admin's public methods (the primitives they call are C functions named "_...").
local M, klua, kerr, topic_problem = ...
local E = klua.errors
local sort, concat = table.sort, table.concat
local type, pairs, ipairs, tostring, tonumber, error = type, pairs, ipairs, tostring, tonumber, error
local floor, max, min = math.floor, math.max, math.min

-- Error codes by name (klua.errors.codes: librdkafka's and klua's own): Lua never spells a number.
local C = setmetatable({}, { __index = function(_, name)
  return E.codes[name] or error("klua.admin: no error code named " .. tostring(name), 2)
end })

local function new_error(name, message, ctx)
  local e = E.new { name = name, message = message }
  for k, v in pairs(ctx or {}) do e[k] = v end
  return e
end

-- Programmer errors raise KLUA_INVALID_ARGUMENT "bad argument #n to 'admin:op' (...)" at the caller's line
-- (self is argument #1).
local function argerr(op, n, fmt, ...)
  E.bad_argument("admin:" .. op, n, fmt:format(...))
end

-- A returned (not raised) invalid-argument error for one item of a batch.
local function item_invalid(op, message, ctx)
  ctx = ctx or {}
  ctx.op = "admin:" .. op
  return new_error(E.KLUA_INVALID_ARGUMENT, message, ctx)
end

local function unsupported(self, op)
  if self:_embedded() then
    return new_error(E.KLUA_EMBEDDED_UNSUPPORTED,
      op .. " is not supported by the embedded mock cluster: run with -b against a real broker", { op = "admin:" .. op })
  end
end

local function check_opts(op, n, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerr(op, n, "options must be a table, got %s", type(opts)) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      sort(names)
      argerr(op, n, "unknown option '%s' (options: %s)", tostring(k), concat(names, ", "))
    end
  end
  if opts.timeout_ms ~= nil and (type(opts.timeout_ms) ~= "number" or opts.timeout_ms <= 0) then
    argerr(op, n, "option 'timeout_ms' must be a positive number")
  end
  return opts
end

-- A list of names (a single string stands for a list of one).
local function name_list(op, n, names, what)
  if type(names) == "string" then return { names } end
  if type(names) ~= "table" then argerr(op, n, "expected a list of %s names, got %s", what, type(names)) end
  for i, n in ipairs(names) do
    if type(n) ~= "string" then argerr(op, n, "%s name %d must be a string, got %s", what, i, type(n)) end
  end
  if #names == 0 and next(names) ~= nil then argerr(op, n, "expected a list of %s names", what) end
  return names
end

local function by_topic_partition(a, b)
  if a.topic ~= b.topic then return a.topic < b.topic end
  return a.partition < b.partition
end

local function tp_key(topic, partition) return topic .. "\0" .. tostring(partition) end

local function config_string(op, k, v)
  if type(k) ~= "string" then argerr(op, 2, "config names must be strings, got %s", type(k)) end
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then
    if v == floor(v) and math.abs(v) < 2^53 then return ("%d"):format(v) end
    return tostring(v)
  end
  if t == "boolean" then return tostring(v) end
  argerr(op, 2, "config '%s' must be a string, number or boolean, got %s", k, t)
end

-- All topics' metadata as name -> topic (partitions sorted).
local function topic_map(self, timeout)
  local md, err = self:_metadata(true, timeout)
  if not md then return nil, err end
  local map = {}
  for _, t in ipairs(md.topics) do
    sort(t.partitions, function(a, b) return a.partition < b.partition end)
    map[t.name] = t
  end
  return map, md
end

local function replication_factor(t)
  local rf = 0
  for _, p in ipairs(t.partitions) do rf = max(rf, #p.replicas) end
  return rf
end

-- ---- cluster ----------------------------------------------------------------------------

-- describe_cluster{include_authorized_operations=, timeout_ms=} -> {cluster_id, controller_id, controller,
-- brokers = {{id, host, port, rack}} (by id), authorized_operations (when asked)}. Native DescribeCluster
-- (a Metadata request underneath, which the embedded cluster serves too).
function M:describe_cluster(opts)
  opts = check_opts("describe_cluster", 2, opts, { include_authorized_operations = true, timeout_ms = true })
  local c, err = self:_describe_cluster(opts.include_authorized_operations, opts.timeout_ms)
  if not c then return nil, err end
  c.controller_id = c.controller and c.controller.id
  return c
end

function M:ping(opts)
  opts = check_opts("ping", 2, opts, { timeout_ms = true })
  local md, err = self:_metadata(false, opts.timeout_ms)
  if not md then return nil, err end
  return md.rtt_ms
end

-- ---- topics ------------------------------------------------------------------------------

function M:list_topics(opts)
  opts = check_opts("list_topics", 2, opts, { internal = true, timeout_ms = true })
  local map, err = topic_map(self, opts.timeout_ms)
  if not map then return nil, err end
  local list = {}
  for name, t in pairs(map) do
    local internal = name:sub(1, 2) == "__"
    if opts.internal or not internal then
      list[#list + 1] = { name = name, partitions = #t.partitions, replication_factor = replication_factor(t),
                          internal = internal, error = t.error }
    end
  end
  sort(list, function(a, b) return a.name < b.name end)
  return list
end

-- describe_topics(names, {configs=, include_authorized_operations=, timeout_ms=}) -> per name, in input order:
-- {name, topic_id, internal, replication_factor, partitions = {{partition, leader, replicas, isr, racks}},
-- configs, authorized_operations, error}. Native DescribeTopics; configs from DescribeConfigs (a real broker
-- only).
function M:describe_topics(names, opts)
  local op = "describe_topics"
  names = name_list(op, 2, names, "topic")
  opts = check_opts(op, 3, opts, { configs = true, include_authorized_operations = true, timeout_ms = true })
  local out, send, seen = {}, {}, {}
  for i, name in ipairs(names) do
    local problem = topic_problem(name)
    if problem then
      out[i] = { name = name, error = item_invalid(op, ("invalid topic name \"%s\": %s"):format(name, problem),
                                                   { topic = name }) }
    elseif not seen[name] then
      seen[name] = true
      send[#send + 1] = name
    end
  end
  if #send == 0 then return out end
  local res, err = self:_describe_topics(send, opts.include_authorized_operations, opts.timeout_ms)
  if not res then return nil, err end
  local by = {}
  for _, t in ipairs(res) do
    if t.partitions then
      sort(t.partitions, function(a, b) return a.partition < b.partition end)
      t.replication_factor = replication_factor(t)
    end
    by[t.name] = t
  end
  local found = {}
  for i, name in ipairs(names) do
    if not out[i] then
      local t = by[name]
      if t then
        -- a copy per item: a name listed twice gets two tables
        local item = {}
        for k, v in pairs(t) do item[k] = v end
        out[i] = item
        if not item.error then found[#found + 1] = { type = "topic", name = name } end
      else
        out[i] = { name = name, error = kerr(C._INVALID_ARG, "no result for this topic", { op = "admin:describe_topics", topic = name }) }
      end
    end
  end
  -- Configs come from DescribeConfigs (not served by the embedded cluster: configs stay nil there).
  if opts.configs ~= false and #found > 0 and not self:_embedded() then
    local cres, cerr = self:_describe_configs(found, opts.timeout_ms)
    if not cres then return nil, cerr end
    local cfg_by = {}
    for _, r in ipairs(cres) do cfg_by[r.name] = r end
    for _, item in ipairs(out) do
      local r = cfg_by[item.name]
      if r and r.configs and not item.error then
        local cfg = {}
        for k, e in pairs(r.configs) do cfg[k] = e.value end
        item.configs = cfg
      end
    end
  end
  return out
end

local SPEC_KEYS = { name = true, partitions = true, replication_factor = true, assignment = true, configs = true }

local function check_spec(op, i, spec)
  if type(spec) == "string" then spec = { name = spec } end
  if type(spec) ~= "table" then argerr(op, 2, "topic spec %d must be a table or a name, got %s", i, type(spec)) end
  for k in pairs(spec) do
    if not SPEC_KEYS[k] then
      argerr(op, 2, "topic spec %d: unknown field '%s' (fields: name, partitions, replication_factor, assignment, configs)",
             i, tostring(k))
    end
  end
  if type(spec.name) ~= "string" then argerr(op, 2, "topic spec %d: 'name' must be a string", i) end
  local out = { name = spec.name }
  if spec.partitions ~= nil then
    if type(spec.partitions) ~= "number" or spec.partitions < 1 or spec.partitions ~= floor(spec.partitions) then
      argerr(op, 2, "topic \"%s\": 'partitions' must be a whole number >= 1", spec.name)
    end
    out.partitions = spec.partitions
  end
  if spec.replication_factor ~= nil then
    local rf = spec.replication_factor
    if type(rf) ~= "number" or rf < 1 or rf ~= floor(rf) then
      argerr(op, 2, "topic \"%s\": 'replication_factor' must be a whole number >= 1", spec.name)
    end
    out.replication_factor = rf
  end
  if spec.assignment ~= nil then
    if spec.replication_factor ~= nil then
      argerr(op, 2, "topic \"%s\": give either 'replication_factor' or 'assignment', not both", spec.name)
    end
    if type(spec.assignment) ~= "table" or #spec.assignment == 0 then
      argerr(op, 2, "topic \"%s\": 'assignment' must be a list (one list of broker ids per partition)", spec.name)
    end
    for p, brokers in ipairs(spec.assignment) do
      if type(brokers) ~= "table" or #brokers == 0 then
        argerr(op, 2, "topic \"%s\": assignment[%d] must be a non-empty list of broker ids", spec.name, p)
      end
      for _, b in ipairs(brokers) do
        if type(b) ~= "number" then argerr(op, 2, "topic \"%s\": assignment[%d] has a non-numeric broker id", spec.name, p) end
      end
    end
    if out.partitions and out.partitions ~= #spec.assignment then
      argerr(op, 2, "topic \"%s\": 'partitions' (%d) differs from the assignment's length (%d)", spec.name,
             out.partitions, #spec.assignment)
    end
    out.assignment = spec.assignment
    out.partitions = #spec.assignment  -- librdkafka wants the count along with the assignment
  end
  if spec.configs ~= nil then
    if type(spec.configs) ~= "table" then argerr(op, 2, "topic \"%s\": 'configs' must be a table", spec.name) end
    out.configs = {}
    for k, v in pairs(spec.configs) do out.configs[k] = config_string(op, k, v) end
  end
  return out
end

function M:create_topics(specs, opts)
  local op = "create_topics"
  if type(specs) == "string" or (type(specs) == "table" and specs.name ~= nil) then specs = { specs } end
  if type(specs) ~= "table" then argerr(op, 2, "expected a list of topic specs, got %s", type(specs)) end
  opts = check_opts(op, 3, opts, { if_not_exists = true, validate_only = true, timeout_ms = true })
  local results, send, seen = {}, {}, {}
  for i, raw in ipairs(specs) do
    local spec = check_spec(op, i, raw)
    results[i] = { name = spec.name }
    local problem = topic_problem(spec.name)
    if problem then
      results[i].error = item_invalid(op, ("invalid topic name \"%s\": %s"):format(spec.name, problem), { topic = spec.name })
    elseif seen[spec.name] then
      results[i].error = item_invalid(op, ("topic \"%s\" is listed twice"):format(spec.name), { topic = spec.name })
    else
      seen[spec.name] = i
      send[#send + 1] = spec
    end
  end
  local function set_result(i, err)
    if err and err.code == C.TOPIC_ALREADY_EXISTS and opts.if_not_exists then
      results[i].existed = true
    else
      results[i].error = err
    end
  end
  if #send == 0 then return results end
  if self:_embedded() then
    -- klua serves topic creation on its own mock cluster; it keeps no topic configs.
    local map, err = topic_map(self, opts.timeout_ms)
    if not map then return nil, err end
    for _, spec in ipairs(send) do
      local i = seen[spec.name]
      if map[spec.name] then
        set_result(i, kerr(C.TOPIC_ALREADY_EXISTS, ("topic \"%s\" already exists"):format(spec.name),
                           { op = "admin:create_topics", topic = spec.name }))
      else
        local partitions = spec.partitions or (spec.assignment and #spec.assignment) or 4
        local rf = spec.replication_factor or (spec.assignment and #spec.assignment[1]) or 3
        if rf > 3 then
          set_result(i, kerr(C._INVALID_ARG, ("topic \"%s\": replication factor %d is larger than the embedded cluster's 3 brokers")
                                     :format(spec.name, rf), { op = "admin:create_topics", topic = spec.name }))
        elseif not opts.validate_only then
          local ok, cerr = self:_mock_create_topic(spec.name, partitions, rf)
          if not ok then set_result(i, cerr) end
        end
        if spec.configs and next(spec.configs) then
          results[i].note = "the embedded cluster does not keep topic configs"
        end
      end
    end
    return results
  end
  local res, err = self:_create_topics(send, opts.validate_only, opts.timeout_ms)
  if not res then return nil, err end
  local created = {}
  for _, r in ipairs(res) do
    local i = seen[r.name]
    if i then
      set_result(i, r.error)
      if not r.error then created[#created + 1] = r.name end
    end
  end
  -- The controller has created them; wait (up to 5 s) until the metadata shows them with leaders, so
  -- that the next call (produce, describe, create_partitions) finds them.
  if #created > 0 and not opts.validate_only then
    local deadline = klua.now() + 5000
    while klua.now() < deadline do
      local map = topic_map(self, opts.timeout_ms)
      local ready = map ~= nil
      for _, name in ipairs(created) do
        local t = map and map[name]
        if not t or #t.partitions == 0 then ready = false; break end
        for _, p in ipairs(t.partitions) do if p.leader < 0 then ready = false end end
      end
      if ready then break end
      klua.sleep(100)
    end
  end
  return results
end

function M:delete_topics(names, opts)
  local op = "delete_topics"
  names = name_list(op, 2, names, "topic")
  opts = check_opts(op, 3, opts, { timeout_ms = true })
  local u = unsupported(self, op)
  if u then return nil, u end
  local results, send, seen = {}, {}, {}
  for i, name in ipairs(names) do
    results[i] = { name = name }
    local problem = topic_problem(name)
    if problem then
      results[i].error = item_invalid(op, ("invalid topic name \"%s\": %s"):format(name, problem), { topic = name })
    elseif seen[name] then
      results[i].error = item_invalid(op, ("topic \"%s\" is listed twice"):format(name), { topic = name })
    else
      seen[name] = i
      send[#send + 1] = name
    end
  end
  if #send == 0 then return results end
  local res, err = self:_delete_topics(send, opts.timeout_ms)
  if not res then return nil, err end
  for _, r in ipairs(res) do
    if seen[r.name] then results[seen[r.name]].error = r.error end
  end
  return results
end

-- create_partitions({{topic=, partitions=new_total}, ...}): increase only.
function M:create_partitions(list, opts)
  local op = "create_partitions"
  if type(list) == "table" and list.topic ~= nil then list = { list } end
  if type(list) ~= "table" then argerr(op, 2, "expected a list of {topic=, partitions=}, got %s", type(list)) end
  opts = check_opts(op, 3, opts, { validate_only = true, timeout_ms = true })
  for i, item in ipairs(list) do
    if type(item) ~= "table" or type(item.topic) ~= "string" or type(item.partitions) ~= "number"
       or item.partitions < 1 or item.partitions ~= floor(item.partitions) then
      argerr(op, 2, "item %d must be {topic=string, partitions=new total count}", i)
    end
  end
  local u = unsupported(self, op)
  if u then return nil, u end
  local map, err = topic_map(self, opts.timeout_ms)
  if not map then return nil, err end
  local results, send, seen = {}, {}, {}
  for i, item in ipairs(list) do
    local t = map[item.topic]
    results[i] = { topic = item.topic, partitions = item.partitions }
    local ctx = { op = "admin:create_partitions", topic = item.topic }
    if seen[item.topic] then
      results[i].error = item_invalid(op, ("topic \"%s\" is listed twice"):format(item.topic), { topic = item.topic })
    elseif t and item.partitions <= #t.partitions then
      results[i].error = kerr(C.INVALID_PARTITIONS,
        ("topic \"%s\" has %d partitions; create_partitions only increases the count (asked for %d)")
          :format(item.topic, #t.partitions, item.partitions), ctx)
    else
      seen[item.topic] = i
      send[#send + 1] = item
    end
  end
  if #send == 0 then return results end
  local res, rerr = self:_create_partitions(send, opts.validate_only, opts.timeout_ms)
  if not res then return nil, rerr end
  local grown = {}
  for _, r in ipairs(res) do
    local i = seen[r.name]
    if i then
      results[i].error = r.error
      if not r.error then grown[r.name] = list[i].partitions end
    end
  end
  -- As for create_topics: the controller has committed the new partitions, but the broker's
  -- metadata shows them a moment later. Wait (up to 5 s) until it does, so that the next call
  -- (describe_topics, a producer's partitioner, a plan) sees the new count.
  if next(grown) and not opts.validate_only then
    local deadline = klua.now() + 5000
    while klua.now() < deadline do
      local now_map = topic_map(self, opts.timeout_ms)
      local ready = now_map ~= nil
      for name, count in pairs(grown) do
        local t = now_map and now_map[name]
        if not t or #t.partitions < count then ready = false; break end
        for _, p in ipairs(t.partitions) do if p.leader < 0 then ready = false end end
      end
      if ready then break end
      klua.sleep(100)
    end
  end
  return results
end

-- delete_records({{topic=, partition=, before=offset | "end"}, ...}): results carry the new low watermark.
function M:delete_records(list, opts)
  local op = "delete_records"
  if type(list) == "table" and list.topic ~= nil then list = { list } end
  if type(list) ~= "table" then argerr(op, 2, "expected a list of {topic=, partition=, before=}, got %s", type(list)) end
  opts = check_opts(op, 3, opts, { timeout_ms = true })
  local req = {}
  for i, item in ipairs(list) do
    if type(item) ~= "table" or type(item.topic) ~= "string" or type(item.partition) ~= "number" then
      argerr(op, 2, "item %d must be {topic=, partition=, before=}", i)
    end
    local before = item.before
    if not (before == "end" or (type(before) == "number" and before >= 0 and before == floor(before))) then
      argerr(op, 2, "item %d: 'before' must be an offset >= 0 or \"end\"", i)
    end
    req[i] = { topic = item.topic, partition = item.partition, offset = before }
  end
  local u = unsupported(self, op)
  if u then return nil, u end
  if #req == 0 then return {} end
  local res, err = self:_delete_records(req, opts.timeout_ms)
  if not res then return nil, err end
  local by = {}
  for _, r in ipairs(res) do by[tp_key(r.topic, r.partition)] = r end
  local out = {}
  for i, item in ipairs(req) do
    local r = by[tp_key(item.topic, item.partition)] or {}
    out[i] = { topic = item.topic, partition = item.partition, low = r.offset, error = r.error }
  end
  return out
end

-- ---- configs ------------------------------------------------------------------------------

local function resource(op, i, r)
  if type(r) == "string" then return { type = "topic", name = r } end
  if type(r) ~= "table" then argerr(op, 2, "resource %d must be a topic name or {type=, name=}", i) end
  local t = r.type or "topic"
  if t ~= "topic" and t ~= "broker" and t ~= "group" then
    argerr(op, 2, "resource %d: type must be \"topic\", \"broker\" or \"group\"", i)
  end
  local name = r.name
  if type(name) == "number" then name = ("%d"):format(name) end
  if type(name) ~= "string" then argerr(op, 2, "resource %d: 'name' must be a string (a broker id for brokers)", i) end
  return { type = t, name = name }
end

-- describe_configs(resources): each result {type, name, error, configs = {name = {name, value, source,
-- default, sensitive, read_only}}}.
function M:describe_configs(resources, opts)
  local op = "describe_configs"
  if type(resources) == "string" or (type(resources) == "table" and resources.name ~= nil) then
    resources = { resources }
  end
  if type(resources) ~= "table" then argerr(op, 2, "expected a list of resources, got %s", type(resources)) end
  opts = check_opts(op, 3, opts, { timeout_ms = true })
  local req = {}
  for i, r in ipairs(resources) do req[i] = resource(op, i, r) end
  local u = unsupported(self, op)
  if u then return nil, u end
  if #req == 0 then return {} end
  local res, err = self:_describe_configs(req, opts.timeout_ms)
  if not res then return nil, err end
  local by = {}
  for _, r in ipairs(res) do by[r.type .. "\0" .. r.name] = r end
  local out = {}
  for i, r in ipairs(req) do
    out[i] = by[r.type .. "\0" .. r.name] or { type = r.type, name = r.name,
      error = kerr(C._INVALID_ARG, "no result for this resource", { op = "admin:describe_configs" }) }
  end
  return out
end

local ALTER_KEYS = { type = true, name = true, set = true, delete = true, append = true, subtract = true }
local OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3

-- alter_configs(changes, {validate_only=}): native IncrementalAlterConfigs, applied atomically by the broker
-- per resource. Each change: {type="topic" | "broker" | "group", name=, set={k=v}, delete={k, ...},
-- append={k=v or {v, ...}}, subtract={k=v or {v, ...}}} (append/subtract work on list-typed configs such as
-- cleanup.policy; the broker says which). Result per change in input order: {type, name, error}.
function M:alter_configs(changes, opts)
  local op = "alter_configs"
  if type(changes) == "table" and changes.name ~= nil then changes = { changes } end
  if type(changes) ~= "table" then argerr(op, 2, "expected a list of changes, got %s", type(changes)) end
  opts = check_opts(op, 3, opts, { validate_only = true, timeout_ms = true })
  local reqs = {}
  for i, c in ipairs(changes) do
    if type(c) ~= "table" then argerr(op, 2, "change %d must be a table", i) end
    for k in pairs(c) do
      if not ALTER_KEYS[k] then
        argerr(op, 2, "change %d: unknown field '%s' (fields: type, name, set, delete, append, subtract)", i, tostring(k))
      end
    end
    local r = resource(op, i, c)
    local ops = {}
    local function add(name, code, value) ops[#ops + 1] = { name = name, op = code, value = value } end
    local keys = {}
    for k in pairs(c.set or {}) do keys[#keys + 1] = k end
    sort(keys)
    for _, k in ipairs(keys) do add(k, OP_SET, config_string(op, k, c.set[k])) end
    if c.delete ~= nil and type(c.delete) ~= "table" then argerr(op, 2, "change %d: 'delete' must be a list of config names", i) end
    for _, k in ipairs(c.delete or {}) do
      if type(k) ~= "string" then argerr(op, 2, "change %d: 'delete' must be a list of config names", i) end
      add(k, OP_DELETE, nil)
    end
    for _, kind in ipairs { "append", "subtract" } do
      local names = {}
      for k in pairs(c[kind] or {}) do names[#names + 1] = k end
      sort(names)
      for _, k in ipairs(names) do
        local v = c[kind][k]
        local vals = type(v) == "table" and v or { v }
        local list = {}
        for j, item in ipairs(vals) do list[j] = config_string(op, k, item) end
        add(k, kind == "append" and OP_APPEND or OP_SUBTRACT, concat(list, ","))
      end
    end
    if #ops == 0 then argerr(op, 2, "change %d changes nothing (give set, delete, append or subtract)", i) end
    reqs[i] = { type = r.type, name = r.name, ops = ops }
  end
  local u = unsupported(self, op)
  if u then return nil, u end
  local results, send, index = {}, {}, {}
  for i, r in ipairs(reqs) do
    results[i] = { type = r.type, name = r.name }
    local key = r.type .. "\0" .. r.name
    if index[key] then
      -- one resource per request: librdkafka refuses duplicates, and two changes to one resource would
      -- not be one atomic change
      results[i].error = item_invalid(op, ("%s \"%s\" is listed twice"):format(r.type, r.name),
                                      { topic = r.type == "topic" and r.name or nil })
    else
      index[key] = i
      send[#send + 1] = r
    end
  end
  if #send == 0 then return results end
  local res, err = self:_incremental_alter_configs(send, opts.validate_only, opts.timeout_ms)
  if not res then return nil, err end
  for _, r in ipairs(res) do
    local i = index[r.type .. "\0" .. r.name]
    if i then results[i].error = r.error end
  end
  return results
end

-- ---- groups ----------------------------------------------------------------------------------

-- librdkafka's codes for group states and types (rd_kafka_consumer_group_state_t / _type_t).
local GROUP_STATES = { unknown = 0, preparingrebalance = 1, completingrebalance = 2, stable = 3, dead = 4, empty = 5 }
local GROUP_TYPES = { classic = 2, consumer = 1 }

local function codes(op, list, known, what)
  if list == nil then return nil end
  if type(list) == "string" then list = { list } end
  if type(list) ~= "table" then argerr(op, 2, "option '%s' must be a list of names", what) end
  local out = {}
  for i, name in ipairs(list) do
    local code = type(name) == "string" and known[name:lower():gsub("[_ ]", "")]
    if not code then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      sort(names)
      argerr(op, 2, "option '%s': item %d (%s) is not one of: %s", what, i, tostring(name), concat(names, ", "))
    end
    out[#out + 1] = code
  end
  return out
end

-- list_groups{states=, types=, timeout_ms=} -> {{group, state, type ("classic" | "consumer"), simple}} by
-- group id. states: "Stable", "Empty", "PreparingRebalance", "CompletingRebalance", "Dead" (any case);
-- types: "classic", "consumer". Both filters run on the broker (ListGroups v5).
function M:list_groups(opts)
  local op = "list_groups"
  opts = check_opts(op, 2, opts, { states = true, types = true, timeout_ms = true })
  local states = codes(op, opts.states, GROUP_STATES, "states")
  local types = codes(op, opts.types, GROUP_TYPES, "types")
  local u = unsupported(self, op)
  if u then return nil, u end
  local groups, errs = self:_list_groups(states, types, opts.timeout_ms)
  if not groups then return nil, errs end
  sort(groups, function(a, b) return a.group < b.group end)
  if #errs > 0 then
    local parts = {}
    for _, e in ipairs(errs) do parts[#parts + 1] = tostring(e.message) end
    -- Partial answer: the groups that could be listed, and an error naming the brokers that failed.
    return groups, kerr(errs[1].code, "some brokers could not list their groups: " .. concat(parts, "; "),
                        { op = "admin:list_groups" })
  end
  return groups
end

-- describe_groups(ids, {include_authorized_operations=, timeout_ms=}) -> per id in input order: {group, state,
-- type, simple, assignor, coordinator, members = {{member_id, client_id, host, group_instance_id, assignment,
-- target_assignment}}, authorized_operations, error}. librdkafka >= 2.10 describes groups of both protocols
-- (ConsumerGroupDescribe for KIP-848 groups, DescribeGroups v5+ otherwise); a missing group is
-- GROUP_ID_NOT_FOUND.
function M:describe_groups(ids, opts)
  local op = "describe_groups"
  ids = name_list(op, 2, ids, "group")
  opts = check_opts(op, 3, opts, { include_authorized_operations = true, timeout_ms = true })
  local u = unsupported(self, op)
  if u then return nil, u end
  if #ids == 0 then return {} end
  local send, seen = {}, {}
  for _, id in ipairs(ids) do
    if not seen[id] then seen[id] = true; send[#send + 1] = id end
  end
  local res, err = self:_describe_groups(send, opts.include_authorized_operations, opts.timeout_ms)
  if not res then return nil, err end
  local by = {}
  for _, g in ipairs(res) do by[g.group] = g end
  local out = {}
  for i, id in ipairs(ids) do
    local g = by[id] or { group = id, error = kerr(C._INVALID_ARG, "no result for this group", { op = "admin:describe_groups", group = id }) }
    if g.members then
      sort(g.members, function(a, b) return (a.member_id or "") < (b.member_id or "") end)
    end
    -- Still so with librdkafka 2.15 and Kafka 4.1 (admin_native_test "groups"): a missing group comes back
    -- as a classic group in state "Dead" with no members and no error (librdkafka falls back to
    -- DescribeGroups below v6 after ConsumerGroupDescribe's GROUP_ID_NOT_FOUND). KIP-848 groups are now
    -- described through ConsumerGroupDescribe, so "Dead" without members means missing.
    if not g.error and g.state == "Dead" and #(g.members or {}) == 0 then
      g = { group = id, error = kerr(C.GROUP_ID_NOT_FOUND, ("group \"%s\" does not exist"):format(id),
                                     { op = "admin:describe_groups", group = id }) }
    end
    out[i] = g
  end
  return out
end

function M:delete_groups(ids, opts)
  local op = "delete_groups"
  ids = name_list(op, 2, ids, "group")
  opts = check_opts(op, 3, opts, { timeout_ms = true })
  local u = unsupported(self, op)
  if u then return nil, u end
  if #ids == 0 then return {} end
  local res, err = self:_delete_groups(ids, opts.timeout_ms)
  if not res then return nil, err end
  local by = {}
  for _, g in ipairs(res) do by[g.group] = g end
  local out = {}
  for i, id in ipairs(ids) do
    out[i] = { group = id, error = by[id] and by[id].error }
  end
  return out
end

-- Partition selection: topic names (every partition) and/or {topic=, partition=} records.
local function resolve_partitions(self, op, sel, timeout)
  if type(sel) == "string" or (type(sel) == "table" and sel.topic ~= nil) then sel = { sel } end
  if type(sel) ~= "table" then argerr(op, 3, "expected topic names or {topic=, partition=} records, got %s", type(sel)) end
  local out, seen, need_md = {}, {}, false
  for i, s in ipairs(sel) do
    if type(s) == "string" then
      need_md = true
    elseif type(s) ~= "table" or type(s.topic) ~= "string" or type(s.partition) ~= "number" then
      argerr(op, 3, "item %d must be a topic name or {topic=, partition=}", i)
    end
  end
  local map
  if need_md then
    local err
    map, err = topic_map(self, timeout)
    if not map then return nil, err end
  end
  for _, s in ipairs(sel) do
    if type(s) == "string" then
      local t = map[s]
      if not t then
        return nil, kerr(C.UNKNOWN_TOPIC_OR_PART, ("topic \"%s\" does not exist"):format(s), { op = "admin:" .. op, topic = s })
      end
      for _, p in ipairs(t.partitions) do
        local k = tp_key(s, p.partition)
        if not seen[k] then seen[k] = true; out[#out + 1] = { topic = s, partition = p.partition } end
      end
    else
      local k = tp_key(s.topic, s.partition)
      if not seen[k] then seen[k] = true; out[#out + 1] = { topic = s.topic, partition = s.partition } end
    end
  end
  sort(out, by_topic_partition)
  return out
end

local function check_group(op, group)
  if type(group) ~= "string" or group == "" then argerr(op, 2, "the group id must be a non-empty string") end
end

-- Group offset requests, retried while the coordinator is loading or moving (a fresh cluster answers
-- COORDINATOR_LOAD_IN_PROGRESS for a while; librdkafka does not retry per-partition errors). (The
-- 5-second attempt cap that worked around librdkafka 2.0.2's lost group-offset requests is gone: 2.15
-- answers them.)
local COORDINATOR_BUSY = { [C.COORDINATOR_LOAD_IN_PROGRESS] = true, [C.COORDINATOR_NOT_AVAILABLE] = true,
                           [C.NOT_COORDINATOR] = true }
local raw_group_offsets = M._group_offsets
local function group_offsets(self, kind, group, parts, t)
  local deadline = klua.now() + (t or self:_timeout())
  while true do
    local r, err = raw_group_offsets(self, kind, group, parts, max(1, deadline - klua.now()))
    local busy = false
    if r then
      if r.error and COORDINATOR_BUSY[r.error.code] then busy = true end
      for _, p in ipairs(r.partitions or {}) do
        if p.error and COORDINATOR_BUSY[p.error.code] then busy = true end
      end
    elseif err and COORDINATOR_BUSY[err.code] then
      busy = true
    end
    if not busy or klua.now() + 500 > deadline then return r, err end
    klua.sleep(500)  -- a backoff before asking again, not a wait for an event
  end
end

-- One ListOffsets request (parts: {topic, partition, spec = code}), retried while leadership is settling
-- (a just-created or moving partition answers NOT_LEADER / LEADER_NOT_AVAILABLE for a moment). Returns
-- tp_key -> result.
local LEADER_MOVING = { [C.LEADER_NOT_AVAILABLE] = true, [C.NOT_LEADER_FOR_PARTITION] = true }
local raw_list_offsets = M._list_offsets
local function list_offsets(self, parts, committed, t)
  local deadline = klua.now() + (t or self:_timeout())
  while true do
    local r, err = raw_list_offsets(self, parts, committed, max(1, deadline - klua.now()))
    local moving = err and LEADER_MOVING[err.code]
    for _, p in ipairs(r or {}) do
      if p.error and LEADER_MOVING[p.error.code] then moving = true end
    end
    if not moving or klua.now() + 200 > deadline then
      if not r then return nil, err end
      local by = {}
      for _, p in ipairs(r) do by[tp_key(p.topic, p.partition)] = p end
      return by
    end
    klua.sleep(200)  -- a backoff before asking again
  end
end

local SPEC_EARLIEST, SPEC_LATEST, SPEC_MAX_TIMESTAMP = -2, -1, -3

-- Watermarks of partitions: {topic, partition, low, high, end (with want_end), error} in the order given.
-- ListOffsets earliest gives low; latest under read_uncommitted the high watermark; latest under
-- read_committed (want_end) the last stable offset.
local function watermarks(self, parts, want_end, t)
  local function req(spec)
    local q = {}
    for i, p in ipairs(parts) do q[i] = { topic = p.topic, partition = p.partition, spec = spec } end
    return q
  end
  local low, err = list_offsets(self, req(SPEC_EARLIEST), false, t)
  if not low then return nil, err end
  local high, herr = list_offsets(self, req(SPEC_LATEST), false, t)
  if not high then return nil, herr end
  local fin
  if want_end then
    local ferr
    fin, ferr = list_offsets(self, req(SPEC_LATEST), true, t)
    if not fin then return nil, ferr end
  end
  local out = {}
  for i, p in ipairs(parts) do
    local k = tp_key(p.topic, p.partition)
    local l, h, e = low[k] or {}, high[k] or {}, fin and fin[k] or {}
    out[i] = { topic = p.topic, partition = p.partition, low = l.offset, high = h.offset,
               ["end"] = want_end and e.offset or nil, error = l.error or h.error or (want_end and e.error) or nil }
  end
  return out
end

local ISOLATION = { read_uncommitted = false, read_committed = true }
local SPEC_NAMES = { earliest = SPEC_EARLIEST, latest = SPEC_LATEST, max_timestamp = SPEC_MAX_TIMESTAMP }

local function spec_code(op, i, spec)
  if type(spec) == "string" and SPEC_NAMES[spec] then return SPEC_NAMES[spec] end
  if type(spec) == "table" and type(spec.timestamp) == "number" then spec = spec.timestamp end
  if type(spec) == "number" and spec >= 0 and spec == floor(spec) then return spec end
  argerr(op, (i == 0 and 3 or 2), "item %d: 'spec' must be \"earliest\", \"latest\", \"max_timestamp\" or {timestamp=epoch ms}, got %s",
         i, tostring(spec))
end

-- list_offsets(items, {spec=, isolation_level=, timeout_ms=}) -> per partition, in input order (a topic
-- name stands for all its partitions, in partition order): {topic, partition, offset, timestamp,
-- leader_epoch, error}. An item is {topic=, partition=, spec=} or a topic name; spec (default opts.spec,
-- else "latest"): "earliest", "latest" (the high watermark under read_uncommitted, the last stable offset
-- under read_committed), "max_timestamp" (the record with the largest timestamp: its offset and
-- timestamp), or {timestamp=ms} (the first record at or after it; offset nil when there is none).
-- Native ListOffsets, one request per leader.
function M:list_offsets(items, opts)
  local op = "list_offsets"
  if type(items) == "string" or (type(items) == "table" and items.topic ~= nil) then items = { items } end
  if type(items) ~= "table" then argerr(op, 2, "expected a list of {topic=, partition=, spec=} or topic names, got %s", type(items)) end
  opts = check_opts(op, 3, opts, { spec = true, isolation_level = true, timeout_ms = true })
  local committed = ISOLATION[opts.isolation_level or "read_uncommitted"]
  if committed == nil then
    argerr(op, 3, "option 'isolation_level' must be \"read_uncommitted\" or \"read_committed\", got %s",
           tostring(opts.isolation_level))
  end
  local default = spec_code(op, 0, opts.spec or "latest")
  local names, need_md = {}, false
  for i, it in ipairs(items) do
    if type(it) == "string" then
      need_md = true
    elseif type(it) ~= "table" or type(it.topic) ~= "string" or type(it.partition) ~= "number" then
      argerr(op, 2, "item %d must be {topic=, partition=, spec=} or a topic name", i)
    end
    names[i] = it
  end
  local map
  if need_md then
    local err
    map, err = topic_map(self, opts.timeout_ms)
    if not map then return nil, err end
  end
  local out, send, seen = {}, {}, {}
  local function add(topic, partition, spec, known)
    local item = { topic = topic, partition = partition }
    out[#out + 1] = item
    local k = tp_key(topic, partition)
    if not known then
      item.error = kerr(C.UNKNOWN_TOPIC_OR_PART, ("topic \"%s\" does not exist"):format(topic),
                        { op = "admin:list_offsets", topic = topic })
    elseif seen[k] then
      item.error = item_invalid(op, ("%s [%d] is listed twice"):format(topic, partition), { topic = topic, partition = partition })
    elseif spec ~= SPEC_EARLIEST and spec ~= SPEC_LATEST and self:_embedded() then
      -- the mock answers every time-based lookup with -1 ("no such record"): a wrong answer, not an approximate one
      item.error = new_error(E.KLUA_EMBEDDED_UNSUPPORTED, "list_offsets by timestamp or max_timestamp is not "
        .. "supported by the embedded mock cluster: run with -b against a real broker",
        { op = "admin:list_offsets", topic = topic, partition = partition })
    else
      seen[k] = item
      send[#send + 1] = { topic = topic, partition = partition, spec = spec }
    end
  end
  for i, it in ipairs(names) do
    if type(it) == "string" then
      local t = map[it]
      if not t then add(it, -1, default, false); out[#out].partition = nil
      else
        for _, p in ipairs(t.partitions) do add(it, p.partition, default, true) end
      end
    else
      add(it.topic, it.partition, it.spec == nil and default or spec_code(op, i, it.spec), true)
    end
  end
  if #send == 0 then return out end
  local by, err = list_offsets(self, send, committed, opts.timeout_ms)
  if not by then return nil, err end
  for k, item in pairs(seen) do
    local r = by[k]
    if r then
      item.offset, item.timestamp, item.leader_epoch, item.error = r.offset, r.timestamp, r.leader_epoch, r.error
    else
      item.error = kerr(C._INVALID_ARG, "no result for this partition", { op = "admin:list_offsets", topic = item.topic,
                                                                  partition = item.partition })
    end
  end
  return out
end

-- elect_leaders(partitions | nil, {election = "preferred" | "unclean", timeout_ms=}) -> per partition {topic,
-- partition, error}: in input order, or, without partitions (every partition), in topic/partition order.
-- A partition already led by its preferred replica answers ELECTION_NOT_NEEDED (Kafka's word for it).
function M:elect_leaders(partitions, opts)
  local op = "elect_leaders"
  opts = check_opts(op, 3, opts, { election = true, timeout_ms = true })
  local election = opts.election or "preferred"
  if election ~= "preferred" and election ~= "unclean" then
    argerr(op, 3, "option 'election' must be \"preferred\" or \"unclean\", got %s", tostring(election))
  end
  local req
  if partitions ~= nil then
    if type(partitions) == "table" and partitions.topic ~= nil then partitions = { partitions } end
    if type(partitions) ~= "table" then argerr(op, 2, "expected a list of {topic=, partition=} or nil, got %s", type(partitions)) end
    req = {}
    for i, p in ipairs(partitions) do
      if type(p) ~= "table" or type(p.topic) ~= "string" or type(p.partition) ~= "number" then
        argerr(op, 2, "item %d must be {topic=, partition=}", i)
      end
      req[i] = { topic = p.topic, partition = p.partition }
    end
  end
  local u = unsupported(self, op)
  if u then return nil, u end
  if req and #req == 0 then return {} end
  local res, err = self:_elect_leaders(election == "unclean", req, opts.timeout_ms)
  if not res then return nil, err end
  if not req then
    sort(res, by_topic_partition)
    return res
  end
  local by = {}
  for _, r in ipairs(res) do by[tp_key(r.topic, r.partition)] = r end
  local out = {}
  for i, p in ipairs(req) do
    local r = by[tp_key(p.topic, p.partition)]
    out[i] = { topic = p.topic, partition = p.partition, error = r and r.error
      or (not r and kerr(C._INVALID_ARG, "no result for this partition", { op = "admin:elect_leaders", topic = p.topic,
                                                                    partition = p.partition })) or nil }
  end
  return out
end

-- Every committed offset of a group. The embedded mock answers no all-topics OffsetFetch (still so in 2.15:
-- an empty list, measured): there, ask for
-- every partition of every topic and keep the committed ones.
local function all_group_offsets(self, group, t)
  local req
  if self:_embedded() then
    local map, err = topic_map(self, t)
    if not map then return nil, err end
    req = {}
    for name, tm in pairs(map) do
      for _, p in ipairs(tm.partitions) do req[#req + 1] = { topic = name, partition = p.partition } end
    end
    if #req == 0 then return { group = group, partitions = {} } end
  end
  local r, err = group_offsets(self, "list", group, req, t)
  if not r then return nil, err end
  if req and r.partitions then
    local kept = {}
    for _, p in ipairs(r.partitions) do if p.offset or p.error then kept[#kept + 1] = p end end
    r.partitions = kept
  end
  return r
end

-- list_group_offsets(group[, partitions]) -> partition list ({topic, partition, offset (nil: none), metadata})
function M:list_group_offsets(group, partitions, opts)
  local op = "list_group_offsets"
  check_group(op, group)
  opts = check_opts(op, 4, opts, { timeout_ms = true })
  local req
  if partitions ~= nil then
    local err
    req, err = resolve_partitions(self, op, partitions, opts.timeout_ms)
    if not req then return nil, err end
  end
  local r, err
  if req then r, err = group_offsets(self, "list", group, req, opts.timeout_ms)
  else r, err = all_group_offsets(self, group, opts.timeout_ms) end
  if not r then return nil, err end
  if r.error then return nil, r.error end
  local list = r.partitions or {}
  sort(list, by_topic_partition)
  return list
end

local REFUSED = { [C.UNKNOWN_MEMBER_ID] = true, [C.ILLEGAL_GENERATION] = true, [C.REBALANCE_IN_PROGRESS] = true,
                  [C.FENCED_INSTANCE_ID] = true }

local function not_empty_error(group, detail, op)
  return kerr(C.NON_EMPTY_GROUP, ("group \"%s\" is not empty%s: stop its consumers first"):format(group, detail),
              { op = "admin:" .. (op or "reset_group_offsets"), group = group })
end

-- alter_group_offsets(group, {{topic=, partition=, offset=, metadata=}, ...}) -> per item {topic, partition,
-- offset, error} in input order. Kafka refuses commits to a group with live members.
function M:alter_group_offsets(group, offsets, opts)
  local op = "alter_group_offsets"
  check_group(op, group)
  if type(offsets) == "table" and offsets.topic ~= nil then offsets = { offsets } end
  if type(offsets) ~= "table" then argerr(op, 3, "expected a list of {topic=, partition=, offset=}, got %s", type(offsets)) end
  opts = check_opts(op, 4, opts, { timeout_ms = true })
  for i, o in ipairs(offsets) do
    if type(o) ~= "table" or type(o.topic) ~= "string" or type(o.partition) ~= "number"
       or type(o.offset) ~= "number" or o.offset < 0 or o.offset ~= floor(o.offset) then
      argerr(op, 3, "item %d must be {topic=, partition=, offset=whole number >= 0}", i)
    end
  end
  if #offsets == 0 then return {} end
  local r, err = group_offsets(self, "alter", group, offsets, opts.timeout_ms)
  if not r then return nil, err end
  if r.error then
    if REFUSED[r.error.code] then return nil, not_empty_error(group, " (the commit was refused: " .. r.error.name .. ")", op) end
    return nil, r.error
  end
  local by = {}
  for _, p in ipairs(r.partitions or {}) do
    by[tp_key(p.topic, p.partition)] = p
    if p.error and REFUSED[p.error.code] then
      return nil, not_empty_error(group, " (the commit was refused: " .. p.error.name .. ")", op)
    end
  end
  local out = {}
  for i, o in ipairs(offsets) do
    local p = by[tp_key(o.topic, o.partition)] or {}
    out[i] = { topic = o.topic, partition = o.partition, offset = o.offset, error = p.error }
  end
  return out
end

function M:delete_group_offsets(group, partitions, opts)
  local op = "delete_group_offsets"
  check_group(op, group)
  opts = check_opts(op, 4, opts, { timeout_ms = true })
  local u = unsupported(self, op)
  if u then return nil, u end
  local req, err = resolve_partitions(self, op, partitions, opts.timeout_ms)
  if not req then return nil, err end
  if #req == 0 then return {} end
  local r, derr = group_offsets(self, "delete", group, req, opts.timeout_ms)
  if not r then return nil, derr end
  if r.error then return nil, r.error end
  local by = {}
  for _, p in ipairs(r.partitions or {}) do by[tp_key(p.topic, p.partition)] = p end
  for _, p in ipairs(req) do
    local got = by[tp_key(p.topic, p.partition)]
    p.error = got and got.error
  end
  return req
end

local function check_to(op, to)
  if to == "earliest" or to == "latest" then return end
  if type(to) == "number" then
    if to < 0 or to ~= floor(to) then argerr(op, 4, "an offset must be a whole number >= 0") end
    return
  end
  if type(to) == "table" then
    local n = 0
    for k, v in pairs(to) do
      n = n + 1
      if k ~= "timestamp" and k ~= "shift" and k ~= "duration" then
        argerr(op, 4, "unknown target '%s' (use \"earliest\", \"latest\", an offset, {timestamp=}, {shift=} or {duration=})", tostring(k))
      end
      if type(v) ~= "number" or v ~= floor(v) then argerr(op, 4, "'%s' must be a whole number", k) end
    end
    if n == 1 then return end
  end
  argerr(op, 4, "'to' must be \"earliest\", \"latest\", an offset, {timestamp=ms}, {shift=n} or {duration=ms}")
end

-- reset_group_offsets(group, topics, to, {dry_run=}) -> plan: per partition {topic, partition, current, new,
-- error}. Refuses (NON_EMPTY_GROUP) when the group has live members. Offsets are clamped to [low, high].
function M:reset_group_offsets(group, topics, to, opts)
  local op = "reset_group_offsets"
  check_group(op, group)
  check_to(op, to)
  opts = check_opts(op, 5, opts, { dry_run = true, timeout_ms = true })
  local t = opts.timeout_ms
  local parts, err = resolve_partitions(self, op, topics, t)
  if not parts then return nil, err end
  if #parts == 0 then return {} end
  -- The embedded cluster serves no DescribeGroups: there only the commit's own refusal protects live groups.
  if not self:_embedded() then
    local d, derr = self:describe_groups({ group }, { timeout_ms = t })
    if not d then return nil, derr end
    local g = d[1]
    local missing = g.error and g.error.code == C.GROUP_ID_NOT_FOUND
    if g.error and not missing then return nil, g.error end
    if not missing then
      local members = g.members or {}
      if #members > 0 or (g.state ~= "Empty" and g.state ~= "Dead") then
        local names = {}
        for _, m in ipairs(members) do
          names[#names + 1] = ("%s@%s (%s)"):format(tostring(m.client_id), tostring(m.host), tostring(m.member_id))
        end
        local detail = (" (state %s, %d live member%s%s)"):format(g.state, #members, #members == 1 and "" or "s",
          #names > 0 and (": " .. concat(names, ", ")) or "")
        return nil, not_empty_error(group, detail)
      end
    end
  end
  local current, cerr = group_offsets(self, "list", group, parts, t)
  if not current then return nil, cerr end
  if current.error then return nil, current.error end
  local cur = {}
  for _, p in ipairs(current.partitions or {}) do cur[tp_key(p.topic, p.partition)] = p.offset end
  local wm, werr = watermarks(self, parts, false, t)
  if not wm then return nil, werr end
  local marks = {}
  for _, w in ipairs(wm) do marks[tp_key(w.topic, w.partition)] = w end
  local by_time
  if type(to) == "table" and (to.timestamp or to.duration) then
    if self:_embedded() then
      -- the mock answers time-based ListOffsets with -1, which would read as "no record after it"
      return nil, new_error(E.KLUA_EMBEDDED_UNSUPPORTED, "resetting offsets to a time is not supported by "
        .. "the embedded mock cluster: run with -b against a real broker", { group = group, op = "admin:" .. op })
    end
    local ts = max(0, to.timestamp or (klua.time() - to.duration))
    local q = {}
    for i, p in ipairs(parts) do q[i] = { topic = p.topic, partition = p.partition, spec = ts } end
    local terr
    by_time, terr = list_offsets(self, q, false, t)
    if not by_time then return nil, terr end
  end
  local plan, commit = {}, {}
  for i, p in ipairs(parts) do
    local k = tp_key(p.topic, p.partition)
    local w = marks[k] or {}
    local item = { topic = p.topic, partition = p.partition, current = cur[k] }
    local ctx = { op = "admin:reset_group_offsets", topic = p.topic, partition = p.partition, group = group }
    if w.error or w.low == nil or w.high == nil then
      item.error = w.error or kerr(C.UNKNOWN_TOPIC_OR_PART, "no watermarks for this partition", ctx)
    else
      local new
      if to == "earliest" then new = w.low
      elseif to == "latest" then new = w.high
      elseif type(to) == "number" then new = to
      elseif to.shift then
        if item.current == nil then
          item.error = kerr(C._INVALID_ARG, "no committed offset to shift from", ctx)
        else
          new = item.current + to.shift
        end
      else
        local r = by_time[k]
        if r and r.error then item.error = r.error
        else new = (r and r.offset) or w.high end -- no message at or after the time: the end
      end
      if new then item.new = min(max(new, w.low), w.high) end
    end
    plan[i] = item
    if item.new and not item.error then commit[#commit + 1] = { topic = p.topic, partition = p.partition, offset = item.new } end
  end
  if opts.dry_run or #commit == 0 then return plan end
  local r, aerr = group_offsets(self, "alter", group, commit, t)
  if not r then return nil, aerr end
  if r.error then
    if REFUSED[r.error.code] and self:_embedded() then
      -- the mock keeps every group that ever had members and refuses commits from outside it
      return nil, new_error(E.KLUA_EMBEDDED_UNSUPPORTED, "resetting the offsets of a group that had " ..
        "members is not supported by the embedded mock cluster: run with -b against a real broker",
        { group = group, op = "admin:reset_group_offsets" })
    end
    if REFUSED[r.error.code] then
      return nil, not_empty_error(group, " (members appeared meanwhile: the commit was refused with " .. r.error.name .. ")")
    end
    return nil, r.error
  end
  local res = {}
  for _, p in ipairs(r.partitions or {}) do res[tp_key(p.topic, p.partition)] = p end
  for _, item in ipairs(plan) do
    local p = res[tp_key(item.topic, item.partition)]
    if p and p.error then
      if REFUSED[p.error.code] and self:_embedded() then
        return nil, new_error(E.KLUA_EMBEDDED_UNSUPPORTED, "resetting the offsets of a group that had " ..
          "members is not supported by the embedded mock cluster: run with -b against a real broker",
          { group = group, op = "admin:reset_group_offsets" })
      end
      if REFUSED[p.error.code] then
        return nil, not_empty_error(group, " (members appeared meanwhile: the commit was refused with " .. p.error.name .. ")")
      end
      item.error = p.error
    end
  end
  return plan
end

-- ---- lag ---------------------------------------------------------------------------------------

-- lag(group[, topics]) -> snapshot {group, time, lag, topics = {{topic, partitions, lag}}, partitions =
-- {{topic, partition, committed, low, high, end, lag, error}}}. Without topics: the topics the group has
-- committed offsets for. lag = high - max(committed, low); a partition without a committed offset counts
-- from the low watermark (as auto.offset.reset=earliest would). "end" is the last stable offset
-- (read_committed), which stays below high while a transaction is open. Offsets come from native ListOffsets
-- calls: latest under read_uncommitted (high), latest under read_committed (end), and earliest (low; one
-- request cannot ask for two offsets of one partition).
function M:lag(group, topics, opts)
  local op = "lag"
  check_group(op, group)
  if topics ~= nil then topics = name_list(op, 3, topics, "topic") end
  opts = check_opts(op, 4, opts, { timeout_ms = true })
  local t = opts.timeout_ms
  local map, err = topic_map(self, t)
  if not map then return nil, err end
  local parts = {}
  local req
  if topics then
    for _, name in ipairs(topics) do
      local tm = map[name]
      if not tm then
        return nil, kerr(C.UNKNOWN_TOPIC_OR_PART, ("topic \"%s\" does not exist"):format(name),
                         { op = "lag", topic = name, group = group })
      end
      for _, p in ipairs(tm.partitions) do parts[#parts + 1] = { topic = name, partition = p.partition } end
    end
    req = parts
  end
  local r, oerr
  if req then r, oerr = group_offsets(self, "list", group, req, t) else r, oerr = all_group_offsets(self, group, t) end
  if not r then return nil, oerr end
  if r.error then return nil, r.error end
  local committed = {}
  if not topics then
    local seen = {}
    for _, p in ipairs(r.partitions or {}) do
      if not seen[p.topic] and map[p.topic] then
        seen[p.topic] = true
        for _, mp in ipairs(map[p.topic].partitions) do parts[#parts + 1] = { topic = p.topic, partition = mp.partition } end
      end
    end
  end
  for _, p in ipairs(r.partitions or {}) do
    if p.offset then committed[tp_key(p.topic, p.partition)] = p.offset end
  end
  sort(parts, by_topic_partition)
  local snap = { group = group, time = klua.time(), lag = 0, topics = {}, partitions = {} }
  if #parts == 0 then return snap end
  local wm, werr = watermarks(self, parts, true, t)
  if not wm then return nil, werr end
  local marks = {}
  for _, w in ipairs(wm) do marks[tp_key(w.topic, w.partition)] = w end
  local per_topic, order = {}, {}
  for i, p in ipairs(parts) do
    local k = tp_key(p.topic, p.partition)
    local w = marks[k] or {}
    local item = { topic = p.topic, partition = p.partition, committed = committed[k], low = w.low, high = w.high,
                   ["end"] = w["end"], error = w.error }
    if w.high and w.low then
      item.lag = max(0, w.high - max(item.committed or w.low, w.low))
    end
    snap.partitions[i] = item
    local tt = per_topic[p.topic]
    if not tt then
      tt = { topic = p.topic, partitions = 0, lag = 0 }
      per_topic[p.topic] = tt
      order[#order + 1] = tt
    end
    tt.partitions = tt.partitions + 1
    tt.lag = tt.lag + (item.lag or 0)
    snap.lag = snap.lag + (item.lag or 0)
  end
  snap.topics = order
  return snap
end

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
  local res, err = self:_describe_scram(send, opts.timeout_ms)
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
    local res, err = self:_alter_scram(round.items, opts.timeout_ms)
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
  local res, err = self:_create_acls(send, opts.timeout_ms)
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
  local res, err = self:_describe_acls(f, opts.timeout_ms)
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
  local res, err = self:_delete_acls(send, opts.timeout_ms)
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
