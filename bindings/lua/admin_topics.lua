-- klua.admin: topics, partitions, records and configs.
-- Public methods; bindings/admin.cpp loads this file after admin.lua, which returns the shared helpers
-- H. P holds the C primitives, private to these files.
local M, P, H = ...
local type, pairs, ipairs, tostring, next = type, pairs, ipairs, tostring, next
local sort, concat = table.sort, table.concat
local floor = math.floor
local klua, kerr, topic_problem, C, argerr = H.klua, H.kerr, H.topic_problem, H.C, H.argerr
local item_invalid, unsupported, check_opts = H.item_invalid, H.unsupported, H.check_opts
local name_list, tp_key, config_string, topic_map = H.name_list, H.tp_key, H.config_string, H.topic_map
local replication_factor = H.replication_factor

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
  local res, err = P.describe_topics(self, send, opts.include_authorized_operations, opts.timeout_ms)
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
  if opts.configs ~= false and #found > 0 and not P.embedded(self) then
    local cres, cerr = P.describe_configs(self, found, opts.timeout_ms)
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
    -- (100,000: librdkafka's own bound for a new topic; the embedded cluster has none and
    -- aborted the process allocating 1e10 partitions)
    if type(spec.partitions) ~= "number" or not (spec.partitions >= 1 and spec.partitions <= 100000)
       or spec.partitions ~= floor(spec.partitions) then
      argerr(op, 2, "topic \"%s\": 'partitions' must be a whole number from 1 to 100000, got %s", spec.name,
             tostring(spec.partitions))
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
  if P.embedded(self) then
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
          local ok, cerr = P.mock_create_topic(self, spec.name, partitions, rf)
          if not ok then set_result(i, cerr) end
        end
        if spec.configs and next(spec.configs) then
          results[i].note = "the embedded cluster does not keep topic configs"
        end
      end
    end
    return results
  end
  local res, err = P.create_topics(self, send, opts.validate_only, opts.timeout_ms)
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
  local res, err = P.delete_topics(self, send, opts.timeout_ms)
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
  local res, rerr = P.create_partitions(self, send, opts.validate_only, opts.timeout_ms)
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
  local res, err = P.delete_records(self, req, opts.timeout_ms)
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

-- The config source of a value set on the resource itself (what kafka-configs --describe shows): a
-- topic's own override, a broker's per-broker dynamic config. "default" is Kafka's built-in default;
-- "static_broker" (server.properties) and "dynamic_default_broker" (a cluster-wide dynamic default) are
-- neither defaults nor the resource's own overrides.
local OVERRIDE_SOURCE = { topic = "dynamic_topic", broker = "dynamic_broker" }

-- describe_configs(resources, {overrides_only=}): each result {type, name, error, configs = {name = {name,
-- value, source, default, override, sensitive, read_only}}}; with overrides_only, only the configs whose
-- override is true.
function M:describe_configs(resources, opts)
  local op = "describe_configs"
  if type(resources) == "string" or (type(resources) == "table" and resources.name ~= nil) then
    resources = { resources }
  end
  if type(resources) ~= "table" then argerr(op, 2, "expected a list of resources, got %s", type(resources)) end
  opts = check_opts(op, 3, opts, { overrides_only = true, timeout_ms = true })
  local req = {}
  for i, r in ipairs(resources) do req[i] = resource(op, i, r) end
  local u = unsupported(self, op)
  if u then return nil, u end
  if #req == 0 then return {} end
  local res, err = P.describe_configs(self, req, opts.timeout_ms)
  if not res then return nil, err end
  local by = {}
  for _, r in ipairs(res) do
    by[r.type .. "\0" .. r.name] = r
    local own = OVERRIDE_SOURCE[r.type]
    for k, e in pairs(r.configs or {}) do
      -- a group's configs are all its own (librdkafka 2.15 names their source GROUP_CONFIG: "unknown" here)
      e.override = e.source == own or (r.type == "group" and e.source ~= "default")
      if opts.overrides_only and not e.override then r.configs[k] = nil end
    end
  end
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
  local res, err = P.incremental_alter_configs(self, send, opts.validate_only, opts.timeout_ms)
  if not res then return nil, err end
  for _, r in ipairs(res) do
    local i = index[r.type .. "\0" .. r.name]
    if i then results[i].error = r.error end
  end
  return results
end
