-- klua.admin: partition selection, ListOffsets, watermarks and leader elections.
-- Public methods; bindings/admin.cpp loads this file after admin.lua, which returns the shared helpers
-- H. P holds the C primitives, private to these files.
local M, P, H = ...
local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local sort = table.sort
local floor, max = math.floor, math.max
local klua, kerr, E, C, new_error, argerr = H.klua, H.kerr, H.E, H.C, H.new_error, H.argerr
local item_invalid, unsupported, check_opts = H.item_invalid, H.unsupported, H.check_opts
local by_topic_partition, tp_key, topic_map = H.by_topic_partition, H.tp_key, H.topic_map

-- Partition selection: topic names (every partition) and/or {topic=, partition=} records.
-- check_selection(op, sel) -> the selection as a list; raises for a malformed one (argument #3), so that
-- callers can check it before anything else.
local function check_selection(op, sel)
  if type(sel) == "string" or (type(sel) == "table" and sel.topic ~= nil) then sel = { sel } end
  if type(sel) ~= "table" then argerr(op, 3, "expected topic names or {topic=, partition=} records, got %s", type(sel)) end
  for i, s in ipairs(sel) do
    if type(s) ~= "string" and (type(s) ~= "table" or type(s.topic) ~= "string" or type(s.partition) ~= "number") then
      argerr(op, 3, "item %d must be a topic name or {topic=, partition=}", i)
    end
  end
  return sel
end

local function resolve_partitions(self, op, sel, timeout)
  sel = check_selection(op, sel)
  local out, seen, need_md = {}, {}, false
  for _, s in ipairs(sel) do
    if type(s) == "string" then need_md = true end
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
local raw_group_offsets = P.group_offsets
local function group_offsets(self, kind, group, parts, t)
  local deadline = klua.now() + (t or P.timeout(self))
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
local raw_list_offsets = P.list_offsets

-- librdkafka's ListOffsets first asks the leaders of the partitions in a Metadata request and
-- drops the per-topic errors of its answer: when no partition has a leader it fails the whole
-- call with "_NOENT: No leaders found", also when the broker refused to describe the topics
-- (ACLs: TOPIC_AUTHORIZATION_FAILED). DescribeTopics tells which: tp_key -> result carrying each
-- topic's own error, or nil when no topic has one (the _NOENT stands then).
local function leaderless(self, parts, t)
  local names, seen = {}, {}
  for _, p in ipairs(parts) do
    if not seen[p.topic] then seen[p.topic] = true; names[#names + 1] = p.topic end
  end
  local d = self:describe_topics(names, { timeout_ms = t })
  if not d then return nil end
  local errs, any = {}, false
  for i, x in ipairs(d) do
    if x.error then errs[names[i]] = x.error; any = true end
  end
  if not any then return nil end
  local by = {}
  for _, p in ipairs(parts) do
    local e = errs[p.topic]
    by[tp_key(p.topic, p.partition)] = { topic = p.topic, partition = p.partition, error = e and
      kerr(e.code, ("topic \"%s\": %s"):format(p.topic, tostring(e.message)),
           { op = "admin:list_offsets", topic = p.topic, partition = p.partition }) or
      kerr(C._NOENT, "no leader found for this partition", { op = "admin:list_offsets", topic = p.topic,
                                                            partition = p.partition }) }
  end
  return by
end
local function list_offsets(self, parts, committed, t)
  local deadline = klua.now() + (t or P.timeout(self))
  while true do
    local r, err = raw_list_offsets(self, parts, committed, max(1, deadline - klua.now()))
    local moving = err and LEADER_MOVING[err.code]
    for _, p in ipairs(r or {}) do
      if p.error and LEADER_MOVING[p.error.code] then moving = true end
    end
    if not moving or klua.now() + 200 > deadline then
      if not r and err and err.code == C._NOENT and not P.embedded(self) then
        local by = leaderless(self, parts, max(1, deadline - klua.now()))
        if by then return by end
      end
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
  if type(spec) == "table" and type(spec.timestamp) == "string" then
    -- a time as klua.timespec reads it: "2024-05-01T12:00:00Z", "-2h", epoch ms
    local ms, perr = klua.timespec.time(spec.timestamp)
    if not ms then argerr(op, (i == 0 and 3 or 2), "item %d: 'spec' {timestamp=%s}: %s", i, spec.timestamp, perr) end
    spec = { timestamp = max(0, ms) }
  end
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
-- timestamp), or {timestamp=ms or a klua.timespec string} (the first record at or after it; offset nil
-- when there is none).
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
  local refused = {}  -- a named topic absent from the metadata: the broker's reason, when it has one
  if need_md then
    local err
    map, err = topic_map(self, opts.timeout_ms)
    if not map then return nil, err end
    local missing = {}
    for _, it in ipairs(names) do
      if type(it) == "string" and not map[it] then missing[#missing + 1] = it end
    end
    -- The metadata of all topics leaves out the ones this principal may not describe (ACLs): ask
    -- for them by name, so that a refusal is not reported as "does not exist".
    if #missing > 0 and not P.embedded(self) then
      local d = self:describe_topics(missing, { timeout_ms = opts.timeout_ms })
      for i, x in ipairs(d or {}) do
        if x.error and x.error.code ~= C.UNKNOWN_TOPIC_OR_PART then refused[missing[i]] = x.error end
      end
    end
  end
  local out, send, seen = {}, {}, {}
  local function add(topic, partition, spec, known)
    local item = { topic = topic, partition = partition }
    out[#out + 1] = item
    local k = tp_key(topic, partition)
    if not known and refused[topic] then
      item.error = kerr(refused[topic].code, ("topic \"%s\": %s"):format(topic, tostring(refused[topic].message)),
                        { op = "admin:list_offsets", topic = topic })
    elseif not known then
      item.error = kerr(C.UNKNOWN_TOPIC_OR_PART, ("topic \"%s\" does not exist"):format(topic),
                        { op = "admin:list_offsets", topic = topic })
    elseif seen[k] then
      item.error = item_invalid(op, ("%s [%d] is listed twice"):format(topic, partition), { topic = topic, partition = partition })
    elseif spec ~= SPEC_EARLIEST and spec ~= SPEC_LATEST and P.embedded(self) then
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
  local res, err = P.elect_leaders(self, election == "unclean", req, opts.timeout_ms)
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

H.check_selection = check_selection
H.resolve_partitions = resolve_partitions
H.check_group = check_group
H.group_offsets = group_offsets
H.list_offsets = list_offsets
H.watermarks = watermarks
