-- klua.admin's public methods, in five files of one job each (loaded in this order by bindings/admin.cpp):
--   admin.lua          shared helpers (argument checks, errors) and the cluster calls
--   admin_offsets.lua  partition selection, ListOffsets, watermarks, elect_leaders
--   admin_topics.lua   topics, partitions, records, configs
--   admin_groups.lua   groups, their committed offsets, reset_group_offsets, lag
--   admin_acls.lua     SCRAM credentials and ACLs
-- The primitives they call are C functions in the private table P (P.metadata(a, ...)), not on the
-- public metatable.
local M, P, klua, kerr, topic_problem = ...
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
  if P.embedded(self) then
    return new_error(E.KLUA_EMBEDDED_UNSUPPORTED,
      op .. " is not supported by the embedded mock cluster: run with -b against a real broker", { op = "admin:" .. op })
  end
end

local function check_opts(op, argn, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerr(op, argn, "options must be a table, got %s", type(opts)) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      sort(names)
      argerr(op, argn, "unknown option '%s' (options: %s)", tostring(k), concat(names, ", "))
    end
  end
  if opts.timeout_ms ~= nil and (type(opts.timeout_ms) ~= "number" or not (opts.timeout_ms > 0)) then
    argerr(op, argn, "option 'timeout_ms' must be a positive number, got %s", tostring(opts.timeout_ms))
  end
  return opts
end

-- A list of names (a single string stands for a list of one).
local function name_list(op, argn, names, what)
  if type(names) == "string" then return { names } end
  if type(names) ~= "table" then argerr(op, argn, "expected a list of %s names, got %s", what, type(names)) end
  for i, n in ipairs(names) do
    if type(n) ~= "string" then argerr(op, argn, "%s name %d must be a string, got %s", what, i, type(n)) end
  end
  if #names == 0 and next(names) ~= nil then argerr(op, argn, "expected a list of %s names", what) end
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
  local md, err = P.metadata(self, true, timeout)
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
  local c, err = P.describe_cluster(self, opts.include_authorized_operations, opts.timeout_ms)
  if not c then return nil, err end
  c.controller_id = c.controller and c.controller.id
  return c
end

function M:ping(opts)
  opts = check_opts("ping", 2, opts, { timeout_ms = true })
  local md, err = P.metadata(self, false, opts.timeout_ms)
  if not md then return nil, err end
  return md.rtt_ms
end

-- The helpers the other parts (admin_*.lua) share.
local H = {
  klua = klua,
  kerr = kerr,
  topic_problem = topic_problem,
  E = E,
  C = C,
  new_error = new_error,
  argerr = argerr,
  item_invalid = item_invalid,
  unsupported = unsupported,
  check_opts = check_opts,
  name_list = name_list,
  by_topic_partition = by_topic_partition,
  tp_key = tp_key,
  config_string = config_string,
  topic_map = topic_map,
  replication_factor = replication_factor,
}
return H
