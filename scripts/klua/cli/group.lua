-- klua group list|describe|delete|reset: kafka-consumer-groups.sh's jobs on klua.admin. `klua groups` is
-- `klua group list`.
local common = require("klua.cli.common")
local util = require("klua.cli.admin_util")
local M = {}
local USAGE = [[
usage: klua group list|describe|delete|reset ...
  klua group list [--json]
      consumer groups: group, state, type (classic | consumer), simple (also: klua groups)
  klua group describe GROUP [--json]
      state, type, assignor, coordinator, members with their assignments, and per partition the committed
      offset, high watermark, lag and owning member
  klua group delete GROUP... [--json]
      deletes groups that have no members (their committed offsets go with them)
  klua group reset GROUP (--topic T[:P,P...]... | --all-topics) TARGET [--execute] [--create] [--json]
      prints the plan (topic, partition, current offset, new offset) and changes nothing without --execute;
      refuses a group with members; --all-topics: the topics the group has committed offsets for;
      --create: a group that does not exist is made with the new offsets (else an error)
      TARGET, one of:
        --to-earliest | --to-latest | --to-offset N
        --to-datetime T    the first offset at or after T (epoch ms, ISO-8601, -2h)
        --by-duration D    the first offset at or after D ago (1h, 30m, 1d, PT1H)
        --shift-by N       the current offset + N (N may be negative)
      new offsets are clamped to the partition's [low, high] watermarks
  --json   list, delete: one object per line; describe, reset: one JSON document
exit: 0 ok, 2 usage, 3 a Kafka error (a group that does not exist, a group with members for reset)
]]

local function parse(args, spec, usage)
  spec["--json"] = "flag"
  return common.parse(args, spec, usage or USAGE)
end

-- list_with(usage, ...): group list, with the usage text of the command that runs it (group or groups).
function M.list_with(usage, ...)
  local opts, pos = parse({ ... }, {}, usage)
  util.no_extra(usage, pos, 0, usage == USAGE and "group list" or "groups")
  local groups, err = klua.admin():list_groups()
  if not groups then common.fail(err) end
  if opts.json then
    for _, g in ipairs(groups) do common.json_line{ group = g.group, state = g.state, type = g.type, simple = g.simple } end
  else
    common.print_table(groups, { { key = "group", title = "GROUP" }, { key = "state", title = "STATE" },
                                 { key = "type", title = "TYPE" }, { key = "simple", title = "SIMPLE" } })
  end
  -- a partial answer (some brokers did not answer): what could be listed, then the error
  if err then common.fail(err) end
end

function M.list(...) return M.list_with(USAGE, ...) end

local function tp(topic, partition) return topic .. "\0" .. partition end

-- "orders[0,1] audit[2]" for a partition list.
local function assignment_text(list)
  if not list or #list == 0 then return "-" end
  local by, order = {}, {}
  for _, p in ipairs(list) do
    if not by[p.topic] then by[p.topic] = {}; order[#order + 1] = p.topic end
    table.insert(by[p.topic], p.partition)
  end
  table.sort(order)
  local out = {}
  for i, t in ipairs(order) do
    table.sort(by[t])
    out[i] = t .. "[" .. util.ids(by[t]) .. "]"
  end
  return table.concat(out, " ")
end

function M.describe(...)
  local opts, pos = parse({ ... }, {})
  if #pos == 0 then common.usage_error(USAGE, "group describe needs a GROUP") end
  util.no_extra(USAGE, pos, 1, "group describe")
  local group = pos[1]
  local admin = klua.admin()
  local d, err = admin:describe_groups({ group })
  if not d then common.fail(err) end
  local g = d[1]
  if g.error then common.fail(g.error) end
  -- Partitions: those with committed offsets and those assigned to a member.
  local snap, lerr = admin:lag(group)
  -- admin:lag refuses a group with nothing to measure (no commits, no assignment); describe has
  -- just shown that this one exists: it simply has no partitions yet.
  if not snap and lerr.name == klua.errors.GROUP_ID_NOT_FOUND then snap, lerr = { partitions = {}, lag = 0 }, nil end
  if not snap then common.fail(lerr) end
  local owner, have, extra = {}, {}, {}
  for _, m in ipairs(g.members or {}) do
    for _, p in ipairs(m.assignment or {}) do owner[tp(p.topic, p.partition)] = m end
  end
  for _, p in ipairs(snap.partitions) do have[p.topic] = true end
  for _, m in ipairs(g.members or {}) do
    for _, p in ipairs(m.assignment or {}) do
      if not have[p.topic] then have[p.topic] = true; extra[#extra + 1] = p.topic end
    end
  end
  local partitions, total = snap.partitions, snap.lag
  if #extra > 0 then
    local more, merr = admin:lag(group, extra)
    if not more then common.fail(merr) end
    for _, p in ipairs(more.partitions) do partitions[#partitions + 1] = p end
    total = total + more.lag
    table.sort(partitions, function(a, b)
      if a.topic ~= b.topic then return a.topic < b.topic end
      return a.partition < b.partition
    end)
  end
  local c = g.coordinator
  if opts.json then
    local members, parts = {}, {}
    for i, m in ipairs(g.members or {}) do
      local a = {}
      for j, p in ipairs(m.assignment or {}) do a[j] = { topic = p.topic, partition = p.partition } end
      members[i] = { member_id = m.member_id, client_id = m.client_id, host = m.host,
                     group_instance_id = m.group_instance_id, assignment = klua.json.array(a) }
    end
    for i, p in ipairs(partitions) do
      local m = owner[tp(p.topic, p.partition)]
      parts[i] = { topic = p.topic, partition = p.partition, committed = p.committed, low = p.low, high = p.high,
                   ["end"] = p["end"], lag = p.lag, member_id = m and m.member_id, error = util.error_json(p.error) }
    end
    common.json_line{ group = g.group, state = g.state, type = g.type, simple = g.simple, assignor = g.assignor,
                      coordinator = c and { id = c.id, host = c.host, port = c.port },
                      members = klua.json.array(members), partitions = klua.json.array(parts), lag = total }
    return
  end
  print(("group %s  state %s  type %s  assignor %s  coordinator %s  members %d"):format(g.group, g.state,
    tostring(g.type), (g.assignor and g.assignor ~= "") and g.assignor or "-",
    c and ("%d (%s:%d)"):format(c.id, c.host, c.port) or "-", #(g.members or {})))
  print()
  local rows = {}
  for i, p in ipairs(partitions) do
    local m = owner[tp(p.topic, p.partition)]
    rows[i] = { topic = p.topic, partition = p.partition, committed = p.committed, high = p.high, lag = p.lag,
                member = m and m.member_id, client = m and m.client_id, host = m and m.host }
  end
  common.print_table(rows, {
    { key = "topic", title = "TOPIC" }, { key = "partition", title = "PARTITION", right = true },
    { key = "committed", title = "COMMITTED", right = true }, { key = "high", title = "HIGH", right = true },
    { key = "lag", title = "LAG", right = true }, { key = "member", title = "MEMBER" },
    { key = "client", title = "CLIENT" }, { key = "host", title = "HOST" } })
  print(("total lag %d"):format(total))
  if #(g.members or {}) > 0 then
    print()
    local mrows = {}
    for i, m in ipairs(g.members) do
      mrows[i] = { member = m.member_id, client = m.client_id, host = m.host, instance = m.group_instance_id,
                   assignment = assignment_text(m.assignment) }
    end
    common.print_table(mrows, { { key = "member", title = "MEMBER" }, { key = "client", title = "CLIENT" },
      { key = "host", title = "HOST" }, { key = "instance", title = "INSTANCE" },
      { key = "assignment", title = "ASSIGNMENT" } })
  end
end

function M.delete(...)
  local opts, groups = parse({ ... }, {})
  if #groups == 0 then common.usage_error(USAGE, "group delete needs a GROUP") end
  local res, err = klua.admin():delete_groups(groups)
  if not res then common.fail(err) end
  local failed = false
  for _, r in ipairs(res) do
    if opts.json then common.json_line{ group = r.group, error = util.error_json(r.error) } end
    if r.error then
      failed = util.report("group \"" .. r.group .. "\"", r.error) or failed
    elseif not opts.json then
      print(("deleted group %s"):format(r.group))
    end
  end
  if failed then klua.exit(3) end
end

-- "orders" or "orders:0,2" -> a topic name or {topic=, partition=} records.
local function selection(list)
  local out = {}
  for _, s in ipairs(list) do
    local topic, parts = s:match("^(.+):(.*)$")
    if topic then
      -- topic names cannot hold ':' (Kafka allows [a-zA-Z0-9._-]): what follows is the partitions
      for p in (parts .. ","):gmatch("([^,]*),") do
        if not p:match("^%d+$") or tonumber(p) > common.MAX_PARTITION then
          common.usage_error(USAGE, "--topic " .. s .. ": expected TOPIC or TOPIC:P,P... (partitions are whole numbers >= 0)")
        end
        out[#out + 1] = { topic = topic, partition = tonumber(p) }
      end
    else
      out[#out + 1] = s
    end
  end
  return out
end

local TARGETS = { "--to-earliest", "--to-latest", "--to-offset", "--to-datetime", "--by-duration", "--shift-by" }

function M.reset(...)
  local opts, pos = parse({ ... }, { ["--topic"] = "list", ["--all-topics"] = "flag", ["--to-earliest"] = "flag",
    ["--to-latest"] = "flag", ["--to-offset"] = "value", ["--to-datetime"] = "value", ["--by-duration"] = "value",
    ["--shift-by"] = "value", ["--execute"] = "flag", ["--create"] = "flag" })
  if #pos == 0 then common.usage_error(USAGE, "group reset needs a GROUP") end
  util.no_extra(USAGE, pos, 1, "group reset")
  local group = pos[1]
  if opts.topic and opts.all_topics then common.usage_error(USAGE, "give --topic or --all-topics, not both") end
  if not opts.topic and not opts.all_topics then common.usage_error(USAGE, "group reset needs --topic T or --all-topics") end
  local given = {}
  for _, t in ipairs(TARGETS) do
    if opts[t:gsub("^%-%-", ""):gsub("%-", "_")] ~= nil then given[#given + 1] = t end
  end
  if #given ~= 1 then
    common.usage_error(USAGE, #given == 0 and "group reset needs a target: " .. table.concat(TARGETS, ", ")
      or "give one target, not " .. table.concat(given, " and "))
  end
  local to
  if opts.to_earliest then to = "earliest"
  elseif opts.to_latest then to = "latest"
  elseif opts.to_offset then
    to = common.integer(USAGE, "--to-offset", opts.to_offset, 0)
  elseif opts.shift_by then
    local n = common.integer(USAGE, "--shift-by", opts.shift_by)
    to = { shift = n }
  elseif opts.to_datetime then
    local ms, perr = common.parse_time(opts.to_datetime)
    if not ms then common.usage_error(USAGE, "--to-datetime " .. opts.to_datetime .. ": " .. perr) end
    to = { timestamp = ms }
  else
    local ms, perr = common.parse_duration(opts.by_duration)
    if not ms then common.usage_error(USAGE, "--by-duration " .. opts.by_duration .. ": " .. perr) end
    to = { duration = math.abs(ms) }
  end
  local topics = opts.topic and selection(opts.topic) or nil
  local plan, err = klua.admin():reset_group_offsets(group, topics, to,
                                                     { dry_run = not opts.execute, create = opts.create })
  if not plan then
    if err.name == klua.errors.GROUP_ID_NOT_FOUND then
      io.stderr:write(("klua: group \"%s\" does not exist (--create makes it with the new offsets)\n"):format(group))
      klua.exit(3)
    end
    common.fail(err)
  end
  local failed = false
  for _, p in ipairs(plan) do
    if p.error then failed = util.report(("group \"%s\": %s [%d]"):format(group, p.topic, p.partition), p.error) or failed end
  end
  if opts.json then
    local parts = {}
    for i, p in ipairs(plan) do
      parts[i] = { topic = p.topic, partition = p.partition, current = p.current, new = p.new, error = util.error_json(p.error) }
    end
    common.json_line{ group = group, executed = opts.execute or false, partitions = klua.json.array(parts) }
  else
    common.print_table(plan, { { key = "topic", title = "TOPIC" },
      { key = "partition", title = "PARTITION", right = true }, { key = "current", title = "CURRENT", right = true },
      { key = "new", title = "NEW", right = true } })
    if opts.execute then
      print(("group %s: offsets reset on %d partition%s"):format(group, #plan, #plan == 1 and "" or "s"))
    else
      print(("group %s: nothing changed (a plan): add --execute to reset these offsets"):format(group))
    end
  end
  if failed then klua.exit(3) end
end

local ORDER = { "list", "describe", "delete", "reset" }
local SUBS = { list = M.list, describe = M.describe, delete = M.delete, reset = M.reset }

function M.main(...)
  return util.dispatch(USAGE, "group", ORDER, SUBS, { ... })
end

return M
