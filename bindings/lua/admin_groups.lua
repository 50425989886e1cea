-- klua.admin: consumer groups, their committed offsets, resets and lag.
-- Public methods; bindings/admin.cpp loads this file after admin.lua, which returns the shared helpers
-- H. P holds the C primitives, private to these files.
local M, P, H = ...
local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local sort, concat = table.sort, table.concat
local floor, max, min = math.floor, math.max, math.min
local klua, kerr, E, C, new_error, argerr = H.klua, H.kerr, H.E, H.C, H.new_error, H.argerr
local unsupported, check_opts, name_list = H.unsupported, H.check_opts, H.name_list
local by_topic_partition, tp_key, topic_map = H.by_topic_partition, H.tp_key, H.topic_map
local resolve_partitions, check_group, group_offsets = H.resolve_partitions, H.check_group, H.group_offsets
local check_selection = H.check_selection
local list_offsets, watermarks = H.list_offsets, H.watermarks

-- ---- groups ----------------------------------------------------------------------------------

local COORDINATOR_BUSY = { [C.COORDINATOR_LOAD_IN_PROGRESS] = true, [C.COORDINATOR_NOT_AVAILABLE] = true,
                           [C.NOT_COORDINATOR] = true }

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
  local groups, errs = P.list_groups(self, states, types, opts.timeout_ms)
  if not groups then return nil, errs end
  sort(groups, function(a, b) return a.group < b.group end)
  if #errs > 0 then
    local parts = {}
    for _, e in ipairs(errs) do parts[#parts + 1] = tostring(e.message) end
    local msg = "some brokers could not list their groups: " .. concat(parts, "; ")
    -- No broker answered (unreachable cluster): an error, not an empty list.
    if #groups == 0 then return nil, kerr(errs[1].code, "could not list the groups: " .. concat(parts, "; "), { op = "admin:list_groups" }) end
    -- Partial answer: the groups that could be listed, and an error naming the brokers that failed.
    return groups, kerr(errs[1].code, msg, { op = "admin:list_groups" })
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
  -- Asked again while a coordinator is loading (a fresh cluster answers COORDINATOR_LOAD_IN_PROGRESS for a
  -- few seconds), until the call's timeout.
  local deadline = klua.now() + (opts.timeout_ms or P.timeout(self))
  local by = {}
  while true do
    local res, err = P.describe_groups(self, send, opts.include_authorized_operations, max(1, deadline - klua.now()))
    if not res then return nil, err end
    local again = {}
    for _, g in ipairs(res) do
      by[g.group] = g
      if g.error and COORDINATOR_BUSY[g.error.code] then again[#again + 1] = g.group end
    end
    if #again == 0 or klua.now() + 500 > deadline then break end
    send = again
    klua.sleep(500)  -- a backoff before asking again
  end
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
  local res, err = P.delete_groups(self, ids, opts.timeout_ms)
  if not res then return nil, err end
  local by = {}
  for _, g in ipairs(res) do by[g.group] = g end
  local out = {}
  for i, id in ipairs(ids) do
    out[i] = { group = id, error = by[id] and by[id].error }
  end
  return out
end

-- Every committed offset of a group. The embedded mock answers no all-topics OffsetFetch (still so in 2.15:
-- an empty list, measured): there, ask for
-- every partition of every topic and keep the committed ones.
local function all_group_offsets(self, group, t)
  local req
  if P.embedded(self) then
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
  check_selection(op, partitions)
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

-- Checks `to` and returns it with times and durations read (klua.timespec: {timestamp="2024-05-01T12:00:00Z"},
-- {timestamp="-2h"}, {duration="1h"}, {duration="PT1H"} as well as numbers of ms).
local function check_to(op, to)
  if to == "earliest" or to == "latest" then return to end
  if type(to) == "number" then
    if to < 0 or to ~= floor(to) then argerr(op, 4, "an offset must be a whole number >= 0") end
    return to
  end
  if type(to) == "table" then
    local n, out = 0, {}
    for k, v in pairs(to) do
      n = n + 1
      if k ~= "timestamp" and k ~= "shift" and k ~= "duration" then
        argerr(op, 4, "unknown target '%s' (use \"earliest\", \"latest\", an offset, {timestamp=}, {shift=} or {duration=})", tostring(k))
      end
      if type(v) == "string" and k ~= "shift" then
        local ms, perr
        if k == "timestamp" then ms, perr = klua.timespec.time(v) else ms, perr = klua.timespec.duration(v) end
        if not ms then argerr(op, 4, "'%s' %s: %s", k, v, perr) end
        v = ms
      end
      if type(v) ~= "number" or v ~= floor(v) then argerr(op, 4, "'%s' must be a whole number", k) end
      -- a duration always looks back: {duration = "1h"} and {duration = "-1h"} both mean an hour ago
      out[k] = k == "duration" and math.abs(v) or v
    end
    if n == 1 then return out end
  end
  argerr(op, 4, "'to' must be \"earliest\", \"latest\", an offset, {timestamp=}, {shift=n} or {duration=}")
end

local function missing_group_error(group, op, hint)
  return kerr(C.GROUP_ID_NOT_FOUND, ("group \"%s\" does not exist%s"):format(group, hint or ""),
              { op = "admin:" .. op, group = group })
end

-- reset_group_offsets(group, topics | nil, to, {dry_run=, create=}) -> plan: per partition {topic, partition,
-- current, new, error}. topics nil: every partition of the topics the group has committed offsets for.
-- Refuses (NON_EMPTY_GROUP) when the group has live members, and (GROUP_ID_NOT_FOUND) a group that does
-- not exist unless opts.create. Offsets are clamped to [low, high].
function M:reset_group_offsets(group, topics, to, opts)
  local op = "reset_group_offsets"
  check_group(op, group)
  if topics ~= nil then check_selection(op, topics) end
  to = check_to(op, to)
  opts = check_opts(op, 5, opts, { dry_run = true, create = true, timeout_ms = true })
  local t = opts.timeout_ms
  if type(to) == "table" and (to.timestamp or to.duration) and P.embedded(self) then
    -- the mock answers time-based ListOffsets with -1, which would read as "no record after it"
    return nil, new_error(E.KLUA_EMBEDDED_UNSUPPORTED, "resetting offsets to a time is not supported by "
      .. "the embedded mock cluster: run with -b against a real broker", { group = group, op = "admin:" .. op })
  end
  local parts
  if topics ~= nil then
    local err
    parts, err = resolve_partitions(self, op, topics, t)
    if not parts then return nil, err end
  end
  local committed  -- every committed offset of the group, when needed
  local function all_committed()
    if committed then return committed end
    local r, err = all_group_offsets(self, group, t)
    if not r then return nil, err end
    if r.error then return nil, r.error end
    committed = r.partitions or {}
    return committed
  end
  local missing
  if not P.embedded(self) then
    local d, derr = self:describe_groups({ group }, { timeout_ms = t })
    if not d then return nil, derr end
    local g = d[1]
    missing = g.error and g.error.code == C.GROUP_ID_NOT_FOUND
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
  else
    -- The embedded cluster serves no DescribeGroups: there a group exists when it has committed offsets,
    -- and only the commit's own refusal protects live groups.
    local list, err = all_committed()
    if not list then return nil, err end
    missing = #list == 0
  end
  if missing and not opts.create then
    return nil, missing_group_error(group, op, " (opts.create = true makes it with these offsets)")
  end
  if not parts then
    local list, err
    if missing then list = {} else list, err = all_committed() end
    if not list then return nil, err end
    local map, merr = topic_map(self, t)
    if not map then return nil, merr end
    local names = {}
    for _, p in ipairs(list) do
      if map[p.topic] then names[#names + 1] = p.topic end  -- a deleted topic's offsets are left alone
    end
    if #names == 0 then return {} end
    parts, err = resolve_partitions(self, op, names, t)
    if not parts then return nil, err end
  end
  if #parts == 0 then return {} end
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
    if REFUSED[r.error.code] and P.embedded(self) then
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
      if REFUSED[p.error.code] and P.embedded(self) then
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

-- The snapshot from its parts: parts (sorted {topic, partition}), offsets (the group's OffsetFetch
-- answer: {topic, partition, offset, error}) and marks (tp_key -> {low, high, end, error}). A
-- partition whose committed offset or watermarks could not be read carries that error and no lag
-- (unknown, not caught up); the totals count the known lags. Reached by tests through
-- debug.getregistry()["klua.private"].admin_lag_snapshot: no broker answers OffsetFetch with an
-- error on one partition on demand.
local function lag_snapshot(group, parts, offsets, marks)
  local committed, failed = {}, {}
  for _, p in ipairs(offsets or {}) do
    if p.offset then committed[tp_key(p.topic, p.partition)] = p.offset end
    if p.error then failed[tp_key(p.topic, p.partition)] = p.error end
  end
  local snap = { group = group, time = klua.time(), lag = 0, topics = {}, partitions = {} }
  local per_topic, order = {}, {}
  for i, p in ipairs(parts) do
    local k = tp_key(p.topic, p.partition)
    local w = marks[k] or {}
    local item = { topic = p.topic, partition = p.partition, committed = committed[k], low = w.low, high = w.high,
                   ["end"] = w["end"], error = failed[k] or w.error }
    if w.high and w.low and not item.error then
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
do
  local private = debug.getregistry()["klua.private"]
  if private then private.admin_lag_snapshot = lag_snapshot end
end

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
  if not topics then
    local found = {}  -- the topics to measure: those with a committed offset (or an error reading one)
    for _, p in ipairs(r.partitions or {}) do
      if (p.offset or p.error) and map[p.topic] then found[#found + 1] = p.topic end
    end
    if #found == 0 then
      -- Nothing committed: "lag 0, no partitions" would read as caught up. Only a group the cluster
      -- knows is measured, from its members' assignments; otherwise it does not exist (as far as lag
      -- can tell) and the caller is told to name the topics.
      local d, derr
      if P.embedded(self) then d = { { error = { code = C.GROUP_ID_NOT_FOUND } } }  -- no DescribeGroups there
      else d, derr = self:describe_groups({ group }, { timeout_ms = t }) end
      if not d then return nil, derr end
      local g = d[1]
      if g.error and g.error.code == C.GROUP_ID_NOT_FOUND then
        return nil, missing_group_error(group, op, " (it has no committed offsets and the cluster does not know it; "
          .. "name the topics to measure from the low watermarks: klua.lag(group, topics))")
      end
      if g.error then return nil, g.error end
      for _, m in ipairs(g.members or {}) do
        for _, a in ipairs(m.assignment or {}) do
          if map[a.topic] then found[#found + 1] = a.topic end
        end
      end
      if #found == 0 then
        -- Known (an Empty group the broker keeps, a group still joining) but nothing to measure.
        return nil, kerr(C.GROUP_ID_NOT_FOUND, ("group \"%s\" has no committed offsets and no member is assigned a "
          .. "partition (state %s, %d member%s): name the topics to measure from the low watermarks: "
          .. "klua.lag(group, topics)"):format(group, tostring(g.state), #(g.members or {}),
          #(g.members or {}) == 1 and "" or "s"), { op = "admin:" .. op, group = group })
      end
    end
    local seen = {}
    for _, name in ipairs(found) do
      if not seen[name] then
        seen[name] = true
        for _, mp in ipairs(map[name].partitions) do parts[#parts + 1] = { topic = name, partition = mp.partition } end
      end
    end
  end
  sort(parts, by_topic_partition)
  local marks = {}
  if #parts > 0 then
    local wm, werr = watermarks(self, parts, true, t)
    if not wm then return nil, werr end
    for _, w in ipairs(wm) do marks[tp_key(w.topic, w.partition)] = w end
  end
  return lag_snapshot(group, parts, r.partitions, marks)
end
