-- klua.admin's public methods (the primitives they call are C functions named "_...").
local M, klua, kerr, topic_problem = ...
local E = klua.errors
local sort, concat = table.sort, table.concat
local type, pairs, ipairs, tostring, tonumber, error = type, pairs, ipairs, tostring, tonumber, error
local floor, max, min = math.floor, math.max, math.min

local C = { -- librdkafka codes used here
  UNKNOWN_TOPIC_OR_PART = 3, ILLEGAL_GENERATION = 22, UNKNOWN_MEMBER_ID = 25, REBALANCE_IN_PROGRESS = 27,
  TOPIC_ALREADY_EXISTS = 36, INVALID_PARTITIONS = 37, INVALID_CONFIG = 40, NON_EMPTY_GROUP = 68,
  GROUP_ID_NOT_FOUND = 69, FENCED_INSTANCE_ID = 82, CONFLICT = -173, UNSUPPORTED_FEATURE = -165,
}

local function new_error(name, code, message, ctx)
  local e = E.new { name = name, code = code, message = message }
  for k, v in pairs(ctx or {}) do e[k] = v end
  return e
end

-- Programmer errors raise.
local function argerr(op, fmt, ...)
  error(new_error("KLUA_INVALID_ARGUMENT", -1002, ("admin:%s: " .. fmt):format(op, ...), { op = "admin:" .. op }), 0)
end

-- A returned (not raised) invalid-argument error for one item of a batch.
local function item_invalid(op, message, ctx)
  ctx = ctx or {}
  ctx.op = "admin:" .. op
  return new_error("KLUA_INVALID_ARGUMENT", -1002, message, ctx)
end

local function unsupported(self, op)
  if self:_embedded() then
    return new_error("KLUA_EMBEDDED_UNSUPPORTED", -1003,
      op .. " is not supported by the embedded mock cluster: run with -b against a real broker", { op = "admin:" .. op })
  end
end

local function check_opts(op, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerr(op, "options must be a table, got %s", type(opts)) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      sort(names)
      argerr(op, "unknown option '%s' (options: %s)", tostring(k), concat(names, ", "))
    end
  end
  if opts.timeout_ms ~= nil and (type(opts.timeout_ms) ~= "number" or opts.timeout_ms <= 0) then
    argerr(op, "option 'timeout_ms' must be a positive number")
  end
  return opts
end

-- A list of names (a single string stands for a list of one).
local function name_list(op, names, what)
  if type(names) == "string" then return { names } end
  if type(names) ~= "table" then argerr(op, "expected a list of %s names, got %s", what, type(names)) end
  for i, n in ipairs(names) do
    if type(n) ~= "string" then argerr(op, "%s name %d must be a string, got %s", what, i, type(n)) end
  end
  if #names == 0 and next(names) ~= nil then argerr(op, "expected a list of %s names", what) end
  return names
end

local function by_topic_partition(a, b)
  if a.topic ~= b.topic then return a.topic < b.topic end
  return a.partition < b.partition
end

local function tp_key(topic, partition) return topic .. "\0" .. tostring(partition) end

local function config_string(op, k, v)
  if type(k) ~= "string" then argerr(op, "config names must be strings, got %s", type(k)) end
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then
    if v == floor(v) and math.abs(v) < 2^53 then return ("%d"):format(v) end
    return tostring(v)
  end
  if t == "boolean" then return tostring(v) end
  argerr(op, "config '%s' must be a string, number or boolean, got %s", k, t)
end

-- All topics' metadata as name -> topic (partitions sorted).
local function topic_map(self, timeout)
  local md, err = self:_metadata(true, false, timeout)
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

function M:describe_cluster(opts)
  opts = check_opts("describe_cluster", opts, { timeout_ms = true })
  local md, err = self:_metadata(false, true, opts.timeout_ms)
  if not md then return nil, err end
  sort(md.brokers, function(a, b) return a.id < b.id end)
  return {
    cluster_id = md.cluster_id,
    controller_id = md.controller_id,
    brokers = md.brokers,
    rack_note = "broker racks need librdkafka >= 2.3 (DescribeCluster); linked: " .. klua.librdkafka_version(),
  }
end

function M:ping(opts)
  opts = check_opts("ping", opts, { timeout_ms = true })
  local md, err = self:_metadata(false, false, opts.timeout_ms)
  if not md then return nil, err end
  return md.rtt_ms
end

-- ---- topics ------------------------------------------------------------------------------

function M:list_topics(opts)
  opts = check_opts("list_topics", opts, { internal = true, timeout_ms = true })
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

function M:describe_topics(names, opts)
  names = name_list("describe_topics", names, "topic")
  opts = check_opts("describe_topics", opts, { configs = true, timeout_ms = true })
  local map, err = topic_map(self, opts.timeout_ms)
  if not map then return nil, err end
  local out, found = {}, {}
  for i, name in ipairs(names) do
    local t = map[name]
    if not t then
      out[i] = { name = name, error = kerr(C.UNKNOWN_TOPIC_OR_PART, ("topic \"%s\" does not exist"):format(name),
                                           { op = "admin:describe_topics", topic = name }) }
    else
      local parts = {}
      for j, p in ipairs(t.partitions) do
        parts[j] = { partition = p.partition, leader = p.leader, replicas = p.replicas, isr = p.isr, error = p.error }
      end
      out[i] = { name = name, partitions = parts, replication_factor = replication_factor(t),
                 internal = name:sub(1, 2) == "__", error = t.error }
      found[#found + 1] = { type = "topic", name = name }
    end
  end
  -- Configs come from DescribeConfigs (not served by the embedded cluster: configs stay nil there).
  if opts.configs ~= false and #found > 0 and not self:_embedded() then
    local res, cerr = self:_describe_configs(found, opts.timeout_ms)
    if not res then return nil, cerr end
    local by_name = {}
    for _, r in ipairs(res) do by_name[r.name] = r end
    for _, item in ipairs(out) do
      local r = by_name[item.name]
      if r and r.configs then
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
  if type(spec) ~= "table" then argerr(op, "topic spec %d must be a table or a name, got %s", i, type(spec)) end
  for k in pairs(spec) do
    if not SPEC_KEYS[k] then
      argerr(op, "topic spec %d: unknown field '%s' (fields: name, partitions, replication_factor, assignment, configs)",
             i, tostring(k))
    end
  end
  if type(spec.name) ~= "string" then argerr(op, "topic spec %d: 'name' must be a string", i) end
  local out = { name = spec.name }
  if spec.partitions ~= nil then
    if type(spec.partitions) ~= "number" or spec.partitions < 1 or spec.partitions ~= floor(spec.partitions) then
      argerr(op, "topic \"%s\": 'partitions' must be a whole number >= 1", spec.name)
    end
    out.partitions = spec.partitions
  end
  if spec.replication_factor ~= nil then
    local rf = spec.replication_factor
    if type(rf) ~= "number" or rf < 1 or rf ~= floor(rf) then
      argerr(op, "topic \"%s\": 'replication_factor' must be a whole number >= 1", spec.name)
    end
    out.replication_factor = rf
  end
  if spec.assignment ~= nil then
    if spec.replication_factor ~= nil then
      argerr(op, "topic \"%s\": give either 'replication_factor' or 'assignment', not both", spec.name)
    end
    if type(spec.assignment) ~= "table" or #spec.assignment == 0 then
      argerr(op, "topic \"%s\": 'assignment' must be a list (one list of broker ids per partition)", spec.name)
    end
    for p, brokers in ipairs(spec.assignment) do
      if type(brokers) ~= "table" or #brokers == 0 then
        argerr(op, "topic \"%s\": assignment[%d] must be a non-empty list of broker ids", spec.name, p)
      end
      for _, b in ipairs(brokers) do
        if type(b) ~= "number" then argerr(op, "topic \"%s\": assignment[%d] has a non-numeric broker id", spec.name, p) end
      end
    end
    if out.partitions and out.partitions ~= #spec.assignment then
      argerr(op, "topic \"%s\": 'partitions' (%d) differs from the assignment's length (%d)", spec.name,
             out.partitions, #spec.assignment)
    end
    out.assignment = spec.assignment
    out.partitions = #spec.assignment  -- librdkafka wants the count along with the assignment
  end
  if spec.configs ~= nil then
    if type(spec.configs) ~= "table" then argerr(op, "topic \"%s\": 'configs' must be a table", spec.name) end
    out.configs = {}
    for k, v in pairs(spec.configs) do out.configs[k] = config_string(op, k, v) end
  end
  return out
end

function M:create_topics(specs, opts)
  local op = "create_topics"
  if type(specs) == "string" or (type(specs) == "table" and specs.name ~= nil) then specs = { specs } end
  if type(specs) ~= "table" then argerr(op, "expected a list of topic specs, got %s", type(specs)) end
  opts = check_opts(op, opts, { if_not_exists = true, validate_only = true, timeout_ms = true })
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
          set_result(i, kerr(-186, ("topic \"%s\": replication factor %d is larger than the embedded cluster's 3 brokers")
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
  names = name_list(op, names, "topic")
  opts = check_opts(op, opts, { timeout_ms = true })
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
  if type(list) ~= "table" then argerr(op, "expected a list of {topic=, partitions=}, got %s", type(list)) end
  opts = check_opts(op, opts, { validate_only = true, timeout_ms = true })
  for i, item in ipairs(list) do
    if type(item) ~= "table" or type(item.topic) ~= "string" or type(item.partitions) ~= "number"
       or item.partitions < 1 or item.partitions ~= floor(item.partitions) then
      argerr(op, "item %d must be {topic=string, partitions=new total count}", i)
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
  if type(list) ~= "table" then argerr(op, "expected a list of {topic=, partition=, before=}, got %s", type(list)) end
  opts = check_opts(op, opts, { timeout_ms = true })
  local req = {}
  for i, item in ipairs(list) do
    if type(item) ~= "table" or type(item.topic) ~= "string" or type(item.partition) ~= "number" then
      argerr(op, "item %d must be {topic=, partition=, before=}", i)
    end
    local before = item.before
    if not (before == "end" or (type(before) == "number" and before >= 0 and before == floor(before))) then
      argerr(op, "item %d: 'before' must be an offset >= 0 or \"end\"", i)
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
  if type(r) ~= "table" then argerr(op, "resource %d must be a topic name or {type=, name=}", i) end
  local t = r.type or "topic"
  if t ~= "topic" and t ~= "broker" then argerr(op, "resource %d: type must be \"topic\" or \"broker\"", i) end
  local name = r.name
  if type(name) == "number" then name = ("%d"):format(name) end
  if type(name) ~= "string" then argerr(op, "resource %d: 'name' must be a string (a broker id for brokers)", i) end
  return { type = t, name = name }
end

-- describe_configs(resources): each result {type, name, error, configs = {name = {name, value, source,
-- default, sensitive, read_only}}}.
function M:describe_configs(resources, opts)
  local op = "describe_configs"
  if type(resources) == "string" or (type(resources) == "table" and resources.name ~= nil) then
    resources = { resources }
  end
  if type(resources) ~= "table" then argerr(op, "expected a list of resources, got %s", type(resources)) end
  opts = check_opts(op, opts, { timeout_ms = true })
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
      error = kerr(-186, "no result for this resource", { op = "admin:describe_configs" }) }
  end
  return out
end

-- Configs whose values are comma-separated lists (append/subtract work on these only).
local LIST_CONFIGS = {
  ["cleanup.policy"] = true,
  ["leader.replication.throttled.replicas"] = true,
  ["follower.replication.throttled.replicas"] = true,
}

local function split_list(s)
  local items = {}
  for item in tostring(s or ""):gmatch("[^,]+") do
    item = item:match("^%s*(.-)%s*$")
    if item ~= "" then items[#items + 1] = item end
  end
  return items
end

local function dynamic_configs(r)
  local d = {}
  for name, e in pairs(r.configs or {}) do
    if e.source == "dynamic_topic" then d[name] = e.value end
  end
  return d
end

local function same_map(a, b)
  for k, v in pairs(a) do if b[k] ~= v then return false, k end end
  for k, v in pairs(b) do if a[k] ~= v then return false, k end end
  return true
end

local ALTER_KEYS = { type = true, name = true, set = true, delete = true, append = true, subtract = true }

-- alter_configs(changes, {validate_only=}): incremental semantics emulated on AlterConfigs (librdkafka 2.0.2
-- has no IncrementalAlterConfigs). Each change: {type="topic", name=, set={k=v}, delete={k, ...},
-- append={k=v or {v, ...}}, subtract={k=v or {v, ...}}}. For each topic: read its configuration, refuse
-- when a sensitive override exists (its value cannot be read back), compute the new set of dynamic
-- overrides, re-read just before writing and fail with _CONFLICT if any override changed meanwhile, then
-- write the whole set. Not atomic: a change made between the re-read and the write is lost.
function M:alter_configs(changes, opts)
  local op = "alter_configs"
  if type(changes) == "table" and changes.name ~= nil then changes = { changes } end
  if type(changes) ~= "table" then argerr(op, "expected a list of changes, got %s", type(changes)) end
  opts = check_opts(op, opts, { validate_only = true, timeout_ms = true })
  local plans = {}
  for i, c in ipairs(changes) do
    if type(c) ~= "table" then argerr(op, "change %d must be a table", i) end
    for k in pairs(c) do
      if not ALTER_KEYS[k] then
        argerr(op, "change %d: unknown field '%s' (fields: type, name, set, delete, append, subtract)", i, tostring(k))
      end
    end
    local r = resource(op, i, c)
    local p = { type = r.type, name = r.name, set = {}, delete = {}, append = {}, subtract = {} }
    for k, v in pairs(c.set or {}) do p.set[k] = config_string(op, k, v) end
    for _, k in ipairs(c.delete or {}) do
      if type(k) ~= "string" then argerr(op, "change %d: 'delete' must be a list of config names", i) end
      p.delete[#p.delete + 1] = k
    end
    for _, kind in ipairs { "append", "subtract" } do
      for k, v in pairs(c[kind] or {}) do
        local vals = type(v) == "table" and v or { v }
        local list = {}
        for j, item in ipairs(vals) do list[j] = config_string(op, k, item) end
        p[kind][k] = list
      end
    end
    plans[i] = p
  end
  local u = unsupported(self, op)
  if u then return nil, u end
  local results, topics, index = {}, {}, {}
  for i, p in ipairs(plans) do
    results[i] = { type = p.type, name = p.name }
    if p.type ~= "topic" then
      results[i].error = kerr(C.UNSUPPORTED_FEATURE,
        ("altering broker configs needs IncrementalAlterConfigs (librdkafka >= 2.2; linked: %s)")
          :format(klua.librdkafka_version()), { op = "admin:alter_configs" })
    elseif index[p.name] then
      results[i].error = item_invalid(op, ("topic \"%s\" is listed twice"):format(p.name), { topic = p.name })
    else
      index[p.name] = i
      topics[#topics + 1] = { type = "topic", name = p.name }
    end
  end
  if #topics == 0 then return results end
  local first, err = self:_describe_configs(topics, opts.timeout_ms)
  if not first then return nil, err end
  local writes, before = {}, {}
  for _, r in ipairs(first) do
    local i = index[r.name]
    local p, res = plans[i], results[i]
    local ctx = { op = "admin:alter_configs", topic = r.name }
    if r.error then
      res.error = r.error
    else
      local sensitive
      for name, e in pairs(r.configs) do
        if e.sensitive and e.source == "dynamic_topic" then sensitive = name end
      end
      if sensitive then
        res.error = kerr(C.UNSUPPORTED_FEATURE, ("topic \"%s\" has a sensitive override (%s) whose value cannot be "
          .. "read back, so an emulated incremental alter would lose it; refusing"):format(r.name, sensitive), ctx)
      else
        local dyn = dynamic_configs(r)
        before[r.name] = dyn
        local new = {}
        for k, v in pairs(dyn) do new[k] = v end
        for k, v in pairs(p.set) do new[k] = v end
        for _, k in ipairs(p.delete) do new[k] = nil end
        for _, kind in ipairs { "append", "subtract" } do
          for k, vals in pairs(p[kind]) do
            if not LIST_CONFIGS[k] then
              res.error = item_invalid(op, ("config \"%s\" is not a list-typed config; %s works on: cleanup.policy, "
                .. "leader.replication.throttled.replicas, follower.replication.throttled.replicas"):format(k, kind),
                { topic = r.name })
            else
              local current = new[k]
              if current == nil and r.configs[k] then current = r.configs[k].value end
              local items, has = split_list(current), {}
              for _, it in ipairs(items) do has[it] = true end
              if kind == "append" then
                for _, v in ipairs(vals) do
                  if not has[v] then items[#items + 1] = v; has[v] = true end
                end
              else
                local drop, kept = {}, {}
                for _, v in ipairs(vals) do drop[v] = true end
                for _, it in ipairs(items) do if not drop[it] then kept[#kept + 1] = it end end
                items = kept
              end
              new[k] = concat(items, ",")
            end
          end
        end
        if not res.error then
          writes[#writes + 1] = { type = "topic", name = r.name, configs = new }
          res.configs = new
        end
      end
    end
  end
  if #writes == 0 then return results end
  -- Re-read just before writing: fail the topics whose overrides changed since the first read.
  local again, aerr = self:_describe_configs(writes, opts.timeout_ms)
  if not again then return nil, aerr end
  local ok_writes = {}
  local changed = {}
  for _, r in ipairs(again) do
    local same, key = true, nil
    if r.error then same, key = false, "(describe failed)" else same, key = same_map(before[r.name], dynamic_configs(r)) end
    if not same then changed[r.name] = key end
  end
  for _, w in ipairs(writes) do
    local i = index[w.name]
    if changed[w.name] then
      results[i].configs = nil
      results[i].error = kerr(C.CONFLICT, ("topic \"%s\": config \"%s\" changed while altering; nothing written, retry")
        :format(w.name, tostring(changed[w.name])), { op = "admin:alter_configs", topic = w.name })
    else
      ok_writes[#ok_writes + 1] = w
    end
  end
  if #ok_writes == 0 then return results end
  local res, werr = self:_alter_configs(ok_writes, opts.validate_only, opts.timeout_ms)
  if not res then return nil, werr end
  local written = {}
  for _, r in ipairs(res) do
    local i = index[r.name]
    if i and r.error then
      results[i].error = r.error
      results[i].configs = nil
    elseif i then
      written[r.name] = true
    end
  end
  if not opts.validate_only and next(written) then
    -- The broker applies an alter asynchronously (KRaft metadata). Wait until a describe shows
    -- what was written, so that the next emulated alter re-reads the new state, not the old one
    -- (which it would write back, losing this change).
    local pending = {}
    for _, w in ipairs(ok_writes) do if written[w.name] then pending[#pending + 1] = w end end
    local deadline = klua.now() + 10000
    while #pending > 0 and klua.now() < deadline do
      local seen = self:_describe_configs(pending, opts.timeout_ms)
      local still = {}
      for k, r in ipairs(seen or {}) do
        if r.error or not same_map(pending[k].configs, dynamic_configs(r)) then still[#still + 1] = pending[k] end
      end
      pending = still
      if #pending > 0 then klua.sleep(100) end
    end
    for _, w in ipairs(pending) do
      results[index[w.name]].note = "written, but not yet visible in describe_configs after 10 s"
    end
  end
  return results
end

-- ---- groups ----------------------------------------------------------------------------------

function M:list_groups(opts)
  opts = check_opts("list_groups", opts, { timeout_ms = true })
  local u = unsupported(self, "list_groups")
  if u then return nil, u end
  local groups, errs = self:_list_groups(opts.timeout_ms)
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

-- Kafka 4.1 answers DescribeGroups < v6 with "Dead", no members and no error both for a missing group and
-- for a group on the new consumer protocol (KIP-848): cross-check with ListGroups.
function M:describe_groups(ids, opts)
  local op = "describe_groups"
  ids = name_list(op, ids, "group")
  opts = check_opts(op, opts, { timeout_ms = true })
  local u = unsupported(self, op)
  if u then return nil, u end
  if #ids == 0 then return {} end
  local res, err = self:_describe_groups(ids, opts.timeout_ms)
  if not res then return nil, err end
  local by = {}
  for _, g in ipairs(res) do by[g.group] = g end
  local listed
  local out = {}
  for i, id in ipairs(ids) do
    local g = by[id] or { group = id, error = kerr(-186, "no result for this group", { op = "admin:describe_groups", group = id }) }
    if g.members then
      sort(g.members, function(a, b) return (a.member_id or "") < (b.member_id or "") end)
    end
    if not g.error and g.state == "Dead" and #(g.members or {}) == 0 then
      if listed == nil then
        local groups = self:_list_groups(opts.timeout_ms)
        listed = {}
        for _, l in ipairs(groups or {}) do listed[l.group] = l end
      end
      local l = listed[id]
      if l then
        g.state = l.state
        g.protocol = "consumer"
        g.note = "the group uses the new consumer protocol (KIP-848), which DescribeGroups below v6 "
          .. "(librdkafka 2.0.2) cannot describe: members unknown"
        g.members = nil
      else
        g.error = kerr(C.GROUP_ID_NOT_FOUND, ("group \"%s\" does not exist"):format(id),
                       { op = "admin:describe_groups", group = id })
      end
    end
    out[i] = g
  end
  return out
end

function M:delete_groups(ids, opts)
  local op = "delete_groups"
  ids = name_list(op, ids, "group")
  opts = check_opts(op, opts, { timeout_ms = true })
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
  if type(sel) ~= "table" then argerr(op, "expected topic names or {topic=, partition=} records, got %s", type(sel)) end
  local out, seen, need_md = {}, {}, false
  for i, s in ipairs(sel) do
    if type(s) == "string" then
      need_md = true
    elseif type(s) ~= "table" or type(s.topic) ~= "string" or type(s.partition) ~= "number" then
      argerr(op, "item %d must be a topic name or {topic=, partition=}", i)
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
  if type(group) ~= "string" or group == "" then argerr(op, "the group id must be a non-empty string") end
end

-- Group offset requests, retried while the coordinator is loading or moving (a fresh cluster answers
-- COORDINATOR_LOAD_IN_PROGRESS for a while; librdkafka does not retry per-partition errors).
local COORDINATOR_BUSY = { [14] = true, [15] = true, [16] = true }
local raw_group_offsets = M._group_offsets
-- Each attempt gets at most ATTEMPT_MS: on a broker that has just created __consumer_offsets,
-- librdkafka 2.0.2 sometimes never completes a group-offsets request (no response and no error until
-- the timeout, seen in about one run in three of the admin test); a new request, with a new
-- coordinator lookup, succeeds at once. Every kind is safe to repeat (list reads; alter and delete
-- set the same state again).
local ATTEMPT_MS, TIMED_OUT = 5000, -185
local function group_offsets(self, kind, group, parts, t)
  local deadline = klua.now() + (t or self:_timeout())
  while true do
    local attempt = math.max(1, math.min(ATTEMPT_MS, deadline - klua.now()))
    local r, err = raw_group_offsets(self, kind, group, parts, attempt)
    local busy = false
    if r then
      if r.error and COORDINATOR_BUSY[r.error.code] then busy = true end
      for _, p in ipairs(r.partitions or {}) do
        if p.error and COORDINATOR_BUSY[p.error.code] then busy = true end
      end
    elseif err and (COORDINATOR_BUSY[err.code] or err.code == TIMED_OUT) then
      busy = true
    end
    if not busy or klua.now() + 500 > deadline then return r, err end
    if not (err and err.code == TIMED_OUT) then klua.sleep(500) end
  end
end

-- Watermarks, retried while leadership is settling (a just-created or moving partition answers
-- NOT_LEADER / LEADER_NOT_AVAILABLE for a moment, and offsets_for_times fails as a whole).
local LEADER_MOVING = { [5] = true, [6] = true }
local raw_watermarks = M._watermarks
local function watermarks(self, parts, want_end, t)
  local deadline = klua.now() + (t or self:_timeout())
  while true do
    local r, err = raw_watermarks(self, parts, want_end, t)
    if r or not LEADER_MOVING[err.code] or klua.now() + 200 > deadline then return r, err end
    klua.sleep(200)
  end
end

-- Every committed offset of a group. The embedded mock answers no all-topics OffsetFetch: there, ask for
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
  opts = check_opts(op, opts, { timeout_ms = true })
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
  if type(offsets) ~= "table" then argerr(op, "expected a list of {topic=, partition=, offset=}, got %s", type(offsets)) end
  opts = check_opts(op, opts, { timeout_ms = true })
  for i, o in ipairs(offsets) do
    if type(o) ~= "table" or type(o.topic) ~= "string" or type(o.partition) ~= "number"
       or type(o.offset) ~= "number" or o.offset < 0 or o.offset ~= floor(o.offset) then
      argerr(op, "item %d must be {topic=, partition=, offset=whole number >= 0}", i)
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
  opts = check_opts(op, opts, { timeout_ms = true })
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
    if to < 0 or to ~= floor(to) then argerr(op, "an offset must be a whole number >= 0") end
    return
  end
  if type(to) == "table" then
    local n = 0
    for k, v in pairs(to) do
      n = n + 1
      if k ~= "timestamp" and k ~= "shift" and k ~= "duration" then
        argerr(op, "unknown target '%s' (use \"earliest\", \"latest\", an offset, {timestamp=}, {shift=} or {duration=})", tostring(k))
      end
      if type(v) ~= "number" or v ~= floor(v) then argerr(op, "'%s' must be a whole number", k) end
    end
    if n == 1 then return end
  end
  argerr(op, "'to' must be \"earliest\", \"latest\", an offset, {timestamp=ms}, {shift=n} or {duration=ms}")
end

-- reset_group_offsets(group, topics, to, {dry_run=}) -> plan: per partition {topic, partition, current, new,
-- error}. Refuses (NON_EMPTY_GROUP) when the group has live members. Offsets are clamped to [low, high].
function M:reset_group_offsets(group, topics, to, opts)
  local op = "reset_group_offsets"
  check_group(op, group)
  check_to(op, to)
  opts = check_opts(op, opts, { dry_run = true, timeout_ms = true })
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
    local ts = to.timestamp or (klua.time() - to.duration)
    local q = {}
    for i, p in ipairs(parts) do q[i] = { topic = p.topic, partition = p.partition, offset = ts } end
    local r, terr = self:_offsets_for_times(q, t)
    if not r then return nil, terr end
    by_time = {}
    for _, p in ipairs(r) do by_time[tp_key(p.topic, p.partition)] = p end
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
          item.error = kerr(-186, "no committed offset to shift from", ctx)
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
      return nil, new_error("KLUA_EMBEDDED_UNSUPPORTED", -1003, "resetting the offsets of a group that had " ..
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
        return nil, new_error("KLUA_EMBEDDED_UNSUPPORTED", -1003, "resetting the offsets of a group that had " ..
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
-- (read_committed), which stays below high while a transaction is open. Offsets come from one ListOffsets
-- request per leader (offsets_for_times with the logical earliest/latest offsets), three rounds.
function M:lag(group, topics, opts)
  local op = "lag"
  check_group(op, group)
  if topics ~= nil then topics = name_list(op, topics, "topic") end
  opts = check_opts(op, opts, { timeout_ms = true })
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
