-- klua topic list|describe|create|delete|alter: kafka-topics.sh's jobs (and kafka-configs.sh's for a
-- topic) on klua.admin. `klua topics` is `klua topic list`.
local common = require("klua.cli.common")
local util = require("klua.cli.admin_util")
local M = {}
local USAGE = [[
usage: klua topic list|describe|create|delete|alter ...
  klua topic list [--internal] [--json]
      topics with partition counts and replication factors (also: klua topics); --internal adds __ topics
  klua topic describe TOPIC... [--all] [--json]
      partitions (leader, replicas, ISR) and the topic's config overrides; --all: every config with its source
  klua topic create TOPIC... [--partitions N] [--replication-factor N] [--config k=v]... [--if-not-exists] [--json]
      creates topics (the broker's defaults where not given); --if-not-exists: an existing topic is no error
  klua topic delete TOPIC... [--json]
  klua topic alter TOPIC [--partitions N] [--config k=v]... [--delete-config k]... [--json]
      raises the partition count to N; sets (--config) or removes (--delete-config) config overrides
  --json   list: one object per line; describe: one object per topic per line; create, delete, alter: one
           result per topic per line ({name, error})
exit: 0 ok, 2 usage, 3 a Kafka error (for any topic: the others are still done)
]]

local function parse(args, spec, usage)
  spec["--json"] = "flag"
  return common.parse(args, spec, usage or USAGE)
end

local function count(name, v)
  -- Kafka's partition count and replication factor are int32 and int16 on the wire
  return common.integer(USAGE, name, v, 1, name == "--replication-factor" and 32767 or common.MAX_PARTITION)
end

local function configs(list)
  local out
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then common.usage_error(USAGE, "--config " .. kv .. ": expected key=value") end
    out = out or {}
    out[k] = v
  end
  return out
end

local function result_line(name, err, extra)
  local r = { name = name, error = util.error_json(err) }
  for k, v in pairs(extra or {}) do r[k] = v end
  common.json_line(r)
end

-- list_with(usage, ...): topic list, with the usage text of the command that runs it (topic or topics).
function M.list_with(usage, ...)
  local opts, pos = parse({ ... }, { ["--internal"] = "flag" }, usage)
  util.no_extra(usage, pos, 0, usage == USAGE and "topic list" or "topics")
  local topics, err = klua.admin():list_topics{ internal = opts.internal }
  if not topics then common.fail(err) end
  if opts.json then
    for _, t in ipairs(topics) do
      common.json_line{ name = t.name, partitions = t.partitions, replication_factor = t.replication_factor,
                        internal = t.internal }
    end
  else
    common.print_table(topics, {
      { key = "name", title = "TOPIC" }, { key = "partitions", title = "PARTITIONS", right = true },
      { key = "replication_factor", title = "REPLICAS", right = true } })
  end
end

-- Configs of a describe_configs result as a sorted list of {name, value, source, default, override,
-- sensitive, read_only}.
local function config_list(r)
  local out = {}
  for name, e in pairs(r.configs or {}) do
    out[#out + 1] = { name = name, value = e.value, source = e.source, default = e.default, override = e.override,
                      sensitive = e.sensitive, read_only = e.read_only }
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

function M.describe(...)
  local opts, names = parse({ ... }, { ["--all"] = "flag" })
  if #names == 0 then common.usage_error(USAGE, "topic describe needs a TOPIC") end
  local admin = klua.admin()
  local d, err = admin:describe_topics(names, { configs = false })
  if not d then common.fail(err) end
  local found = {}
  for _, t in ipairs(d) do
    if not t.error then found[#found + 1] = { type = "topic", name = t.name } end
  end
  local cfg_by, cfg_err = {}, nil
  if #found > 0 then
    local res, cerr = admin:describe_configs(found, { overrides_only = not opts.all })
    if res then
      for _, r in ipairs(res) do cfg_by[r.name] = r end
    else
      cfg_err = cerr  -- the embedded cluster serves no DescribeConfigs: partitions alone
    end
  end
  local failed = false
  for i, t in ipairs(d) do
    local cr = cfg_by[t.name]
    local cerr = cfg_err or (cr and cr.error)
    if t.error then
      failed = util.report("topic \"" .. t.name .. "\"", t.error) or failed
      if opts.json then result_line(t.name, t.error) end
    elseif opts.json then
      local cfg = klua.json.null
      if cr and not cr.error then
        cfg = {}
        for _, e in ipairs(config_list(cr)) do
          cfg[#cfg + 1] = { name = e.name, value = e.value == nil and klua.json.null or e.value, source = e.source,
                            default = e.default, override = e.override, sensitive = e.sensitive, read_only = e.read_only }
        end
        cfg = klua.json.array(cfg)
      end
      common.json_line{ name = t.name, topic_id = t.topic_id, internal = t.internal,
                        replication_factor = t.replication_factor, partitions = util.partitions_json(t.partitions), configs = cfg,
                        configs_error = util.error_json(cerr) }
    else
      if i > 1 then print() end
      print(("topic %s  id %s  partitions %d  replication factor %d%s"):format(t.name, tostring(t.topic_id),
        #t.partitions, t.replication_factor, t.internal and "  internal" or ""))
      local rows = {}
      for j, p in ipairs(t.partitions) do
        rows[j] = { partition = p.partition, leader = p.leader, replicas = util.ids(p.replicas), isr = util.ids(p.isr) }
      end
      common.print_table(rows, { { key = "partition", title = "PARTITION", right = true },
        { key = "leader", title = "LEADER", right = true }, { key = "replicas", title = "REPLICAS" },
        { key = "isr", title = "ISR" } })
      if cerr then
        print("configs: " .. tostring(cerr))
      else
        local list = config_list(cr)
        for _, e in ipairs(list) do
          if e.value == nil then e.value = e.sensitive and "(sensitive)" or "(null)" end
        end
        if opts.all then
          print(("configs (%d, with their source):"):format(#list))
          common.print_table(list, { { key = "name", title = "CONFIG" }, { key = "value", title = "VALUE" },
                                     { key = "source", title = "SOURCE" } })
        elseif #list == 0 then
          print("configs: no overrides (--all shows every config)")
        else
          print(("configs (%d override%s; --all shows every config):"):format(#list, #list == 1 and "" or "s"))
          for _, e in ipairs(list) do print(("  %s=%s"):format(e.name, e.value)) end
        end
      end
    end
  end
  if failed then klua.exit(3) end
end

function M.create(...)
  local opts, names = parse({ ... }, { ["--partitions"] = "value", ["--replication-factor"] = "value",
                                       ["--config"] = "list", ["--if-not-exists"] = "flag" })
  if #names == 0 then common.usage_error(USAGE, "topic create needs a TOPIC") end
  local partitions = opts.partitions and count("--partitions", opts.partitions)
  local rf = opts.replication_factor and count("--replication-factor", opts.replication_factor)
  local cfg = configs(opts.config)
  local specs = {}
  for i, name in ipairs(names) do
    specs[i] = { name = name, partitions = partitions, replication_factor = rf, configs = cfg }
  end
  local res, err = klua.admin():create_topics(specs, { if_not_exists = opts.if_not_exists })
  if not res then common.fail(err) end
  local failed = false
  for _, r in ipairs(res) do
    if opts.json then result_line(r.name, r.error, { existed = r.existed or false }) end
    if r.error then
      failed = util.report("topic \"" .. r.name .. "\"", r.error) or failed
    elseif not opts.json then
      print(r.existed and ("topic %s already exists"):format(r.name) or ("created topic %s"):format(r.name))
    end
  end
  if failed then klua.exit(3) end
end

function M.delete(...)
  local opts, names = parse({ ... }, {})
  if #names == 0 then common.usage_error(USAGE, "topic delete needs a TOPIC") end
  local res, err = klua.admin():delete_topics(names)
  if not res then common.fail(err) end
  local failed = false
  for _, r in ipairs(res) do
    if opts.json then result_line(r.name, r.error) end
    if r.error then
      failed = util.report("topic \"" .. r.name .. "\"", r.error) or failed
    elseif not opts.json then
      print(("deleted topic %s"):format(r.name))
    end
  end
  if failed then klua.exit(3) end
end

-- Kafka answers an alter once the controller has committed it; the broker that serves the next
-- describe applies the metadata a moment later. Wait (bounded) until a describe shows the change, so
-- that `klua topic alter` followed by `klua topic describe` in a script reads what was written.
local SETTLE_MS = 10000
local function settle(admin, name, partitions, set, deleted)
  local deadline = klua.now() + SETTLE_MS
  while true do
    local ok = true
    if partitions then
      local d = admin:describe_topics({ name }, { configs = false })
      ok = d and not d[1].error and #d[1].partitions >= partitions
    end
    if ok and (set or deleted) then
      local r = admin:describe_configs({ { type = "topic", name = name } })
      local cfg = r and not r[1].error and r[1].configs
      if not cfg then return true end  -- no DescribeConfigs here (the embedded cluster): nothing to wait for
      for k, v in pairs(set or {}) do
        if not (cfg[k] and cfg[k].value == tostring(v)) then ok = false end
      end
      for _, k in ipairs(deleted or {}) do
        if cfg[k] and cfg[k].override then ok = false end
      end
    end
    if ok then return true end
    if klua.now() >= deadline then return false end
    klua.sleep(50)
  end
end

function M.alter(...)
  local opts, pos = parse({ ... }, { ["--partitions"] = "value", ["--config"] = "list", ["--delete-config"] = "list" })
  if #pos == 0 then common.usage_error(USAGE, "topic alter needs a TOPIC") end
  util.no_extra(USAGE, pos, 1, "topic alter")
  local name = pos[1]
  local partitions = opts.partitions and count("--partitions", opts.partitions)
  local set = configs(opts.config)
  if not partitions and not set and not opts.delete_config then
    common.usage_error(USAGE, "topic alter changes nothing: give --partitions, --config or --delete-config")
  end
  local admin = klua.admin()
  local done, failed = {}, nil
  if partitions then
    local res, err = admin:create_partitions({ { topic = name, partitions = partitions } })
    failed = err or res[1].error
    if not failed then done[#done + 1] = ("%d partitions"):format(partitions) end
  end
  if not failed and (set or opts.delete_config) then
    local res, err = admin:alter_configs({ { type = "topic", name = name, set = set, delete = opts.delete_config } })
    failed = err or res[1].error
    if not failed then
      local keys = {}
      for k in pairs(set or {}) do keys[#keys + 1] = k .. "=" .. set[k] end
      table.sort(keys)
      for _, k in ipairs(opts.delete_config or {}) do keys[#keys + 1] = "-" .. k end
      done[#done + 1] = "configs " .. table.concat(keys, " ")
    end
  end
  if opts.json then result_line(name, failed) end
  if failed then
    util.report("topic \"" .. name .. "\"", failed)
    klua.exit(3)
  end
  local visible = settle(admin, name, partitions, set, opts.delete_config)
  if not opts.json then
    print(("altered topic %s: %s%s"):format(name, table.concat(done, ", "),
      visible and "" or " (not yet visible to describe after " .. SETTLE_MS / 1000 .. " s)"))
  end
end

local ORDER = { "list", "describe", "create", "delete", "alter" }
function M.list(...) return M.list_with(USAGE, ...) end

local SUBS = { list = M.list, describe = M.describe, create = M.create, delete = M.delete, alter = M.alter }

function M.main(...)
  return util.dispatch(USAGE, "topic", ORDER, SUBS, { ... })
end

return M
