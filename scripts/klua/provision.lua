-- klua.provision: declarative topics. Compare a desired state with the cluster, show the changes as
-- data, carry them out idempotently, and report drift.
--
--   local provision = require("klua.provision")      -- also reachable as klua.provision
--   local state = {
--     rules = { "{domain}.{event}" },                 -- optional naming rules ({x} = one dot-free segment)
--     defaults = { partitions = 3, replication_factor = 3, configs = { ["compression.type"] = "snappy" } },
--     cap_replication = true,                         -- cap replication_factor at the cluster's broker count
--     topics = {
--       { name = "task.created", configs = { ["retention.ms"] = 7 * 86400000 } },
--       { name = "user.authenticated", partitions = 1 },
--     },
--     -- or topics = { ["task.created"] = { partitions = 3 }, ... }
--     -- scope = { "^task%." },                      -- Lua patterns: the topics prune may delete
--   }
--   local plan = assert(provision.plan(state))        -- or a file: plan("topics.lua" | "topics.json")
--   print(provision.format(plan))                     -- the readable diff
--   local res = assert(provision.apply(state))        -- {dry_run=, prune=, quiet=}; prints the diff
--   local drift = assert(provision.check(state))      -- a list; empty when the cluster matches
--
-- plan.changes: {action = "create" | "add_partitions" | "set_config" | "reset_config" | "delete", topic, ...}
-- plan.refused: what provision will not do (partition decrease, replication change, a name that breaks a
-- rule), each with `reason`. plan.unknown: what could not be compared (configs on the embedded cluster,
-- which serves no DescribeConfigs), each with `reason`. Configs and topics absent from the state are left
-- alone unless {prune = true}: then dynamic overrides not in the state are reset to their defaults and
-- topics not in the state (within `scope`, else within the naming rules, else all non-internal ones) are
-- deleted. Runtime failures return nil, err; a malformed state raises.
local M = {}

local STATE_KEYS = { topics = true, defaults = true, rules = true, cap_replication = true, scope = true }
local TOPIC_KEYS = { name = true, partitions = true, replication_factor = true, configs = true }
local OPT_KEYS = { prune = true, dry_run = true, quiet = true, admin = true, timeout_ms = true, settle_ms = true,
                   cap_replication = true }

-- A malformed state or option raises KLUA_INVALID_ARGUMENT at the caller's line, naming the public
-- function (fn) and the argument (n: the state is #1, the options #2).
local function argerr(fn, n, fmt, ...)
  klua.errors.bad_argument(fn, n, fmt:format(...))
end

local function check_opts(opts, fn)
  opts = opts or {}
  if type(opts) ~= "table" then argerr(fn, 2, "options must be a table, got %s", type(opts)) end
  for k in pairs(opts) do
    if not OPT_KEYS[k] then argerr(fn, 2, "unknown option '%s'", tostring(k)) end
  end
  for _, k in ipairs({ "timeout_ms", "settle_ms" }) do  -- (NaN passes every `<` test: not (v >= 0))
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or not (v >= 0) or v == math.huge) then
      argerr(fn, 2, "'%s' must be a number of milliseconds >= 0, got %s", k, tostring(v))
    end
  end
  return opts
end

-- Config values are compared as Kafka writes them: integers without a decimal point.
local function config_string(fn, name, v)
  local t = type(v)
  if t == "string" then return v end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 63 then return ("%.0f"):format(v) end
    return tostring(v)
  end
  argerr(fn, 1, "config '%s' must be a string, number or boolean, got %s", name, t)
end

-- Turns a rule like "{service}.{domain}.{event-type}" into an anchored Lua pattern.
local function rule_pattern(rule)
  local out = { "^" }
  local i = 1
  while i <= #rule do
    local s, e = rule:find("%b{}", i)
    local lit = rule:sub(i, (s or #rule + 1) - 1)
    out[#out + 1] = (lit:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
    if not s then break end
    out[#out + 1] = "[%w_%-]+"
    i = e + 1
  end
  out[#out + 1] = "$"
  return table.concat(out)
end

-- A state file describes data: one that runs longer than this (an endless loop) fails instead of
-- hanging the command, as a config file does. It runs interpreted (jit.off), so that the budget's
-- hook, and a signal's, always run (a compiled loop runs no hook).
M.STATE_FILE_BUDGET_MS = 10000
local function run_state_file(chunk, path)
  jit.off(chunk, true)
  local deadline = klua.now() + M.STATE_FILE_BUDGET_MS
  local function budget()
    if klua.now() > deadline then
      error(string.format("%s runs too long (over %d ms): a state file should only return the desired state",
        path, M.STATE_FILE_BUDGET_MS), 0)
    end
  end
  -- Lua's hooks are one per Lua state: a signal's hook (host/signals.cpp), set before or during the
  -- run, is left in place.
  if debug.gethook() == nil then debug.sethook(budget, "", 100000) end
  local ok, v = pcall(chunk)
  if debug.gethook() == budget then debug.sethook() end
  return ok, v
end

-- Reads a state file: Lua (returns the table) or JSON (by the .json extension).
function M.load(path)
  if type(path) ~= "string" then argerr("klua.provision.load", 1, "load expects a file path, got %s", type(path)) end
  if path:match("%.json$") then
    local f, ferr = io.open(path, "rb")
    if not f then return nil, klua.errors.new { name = "KLUA_INVALID_ARGUMENT", message = ferr } end
    local text = f:read("*a")
    f:close()
    local v, err = klua.json.decode(text)
    if not v then
      return nil, klua.errors.new { name = "KLUA_JSON", message = path .. ": " .. tostring(err.message or err) }
    end
    return v
  end
  local chunk, err = loadfile(path)
  if not chunk then return nil, klua.errors.new { name = "KLUA_INVALID_ARGUMENT", message = err } end
  local ok, v = run_state_file(chunk, path)
  if not ok and klua.errors.is(v) and v.name == "KLUA_CANCELLED" then error(v, 0) end -- a signal: stop
  if not ok then return nil, klua.errors.new { name = "KLUA_INVALID_ARGUMENT", message = tostring(v) } end
  if type(v) ~= "table" then
    return nil, klua.errors.new { name = "KLUA_INVALID_ARGUMENT", message = path .. " must return a table" }
  end
  return v
end

-- Checks and normalizes a state: topics as a list (input order, or by name for a map) with the defaults
-- merged in and config values as strings.
local function normalize(state, fn)
  if type(state) ~= "table" then argerr(fn, 1, "the state must be a table or a file path, got %s", type(state)) end
  for k in pairs(state) do
    if not STATE_KEYS[k] then
      argerr(fn, 1, "unknown state field '%s' (fields: topics, defaults, rules, cap_replication, scope)", tostring(k))
    end
  end
  local d = state.defaults or {}
  if type(d) ~= "table" then argerr(fn, 1, "'defaults' must be a table") end
  for k in pairs(d) do
    if k ~= "partitions" and k ~= "replication_factor" and k ~= "configs" then
      argerr(fn, 1, "unknown defaults field '%s' (fields: partitions, replication_factor, configs)", tostring(k))
    end
  end
  local raw = state.topics or {}
  if type(raw) ~= "table" then argerr(fn, 1, "'topics' must be a list or a map of topics") end
  local list = {}
  if raw[1] ~= nil or next(raw) == nil then
    for i, t in ipairs(raw) do
      if type(t) == "string" then t = { name = t } end
      if type(t) ~= "table" then argerr(fn, 1, "topic %d must be a table or a name", i) end
      list[#list + 1] = t
    end
  else
    local names = {}
    for name in pairs(raw) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local t = raw[name]
      if type(t) ~= "table" then argerr(fn, 1, "topic '%s' must be a table", tostring(name)) end
      local copy = { name = name }
      for k, v in pairs(t) do copy[k] = v end
      list[#list + 1] = copy
    end
  end
  local out, seen = {}, {}
  for i, t in ipairs(list) do
    for k in pairs(t) do
      if not TOPIC_KEYS[k] then
        argerr(fn, 1, "topic %d: unknown field '%s' (fields: name, partitions, replication_factor, configs)", i, tostring(k))
      end
    end
    if type(t.name) ~= "string" or t.name == "" then argerr(fn, 1, "topic %d: 'name' must be a non-empty string", i) end
    -- Kafka's rule for topic names (the broker refuses others only at --apply)
    if not t.name:match("^[%w._-]+$") or #t.name > 249 or t.name == "." or t.name == ".." then
      argerr(fn, 1, "topic %d: invalid name '%s' (up to 249 characters of a-z, A-Z, 0-9, '.', '_', '-')", i, t.name)
    end
    if seen[t.name] then argerr(fn, 1, "topic '%s' is listed twice", t.name) end
    seen[t.name] = true
    local n = { name = t.name, partitions = t.partitions or d.partitions,
                replication_factor = t.replication_factor or d.replication_factor, configs = {} }
    for _, f in ipairs { "partitions", "replication_factor" } do
      local v = n[f]
      if v ~= nil and (type(v) ~= "number" or v < 1 or v ~= math.floor(v)) then
        argerr(fn, 1, "topic '%s': '%s' must be a positive whole number", t.name, f)
      end
    end
    for k, v in pairs(d.configs or {}) do n.configs[k] = config_string(fn, k, v) end
    if t.configs ~= nil and type(t.configs) ~= "table" then argerr(fn, 1, "topic '%s': 'configs' must be a table", t.name) end
    for k, v in pairs(t.configs or {}) do n.configs[k] = config_string(fn, k, v) end
    out[#out + 1] = n
  end
  local rules = state.rules or {}
  if type(rules) == "string" then rules = { rules } end
  local scope = state.scope or {}
  if type(scope) == "string" then scope = { scope } end
  return { topics = out, rules = rules, scope = scope, cap_replication = state.cap_replication }
end

function M.normalize(state) return normalize(state, "klua.provision.normalize") end

local function resolve(state, fn)
  if type(state) == "string" then
    local v, err = M.load(state)
    if not v then return nil, err end
    state = v
  end
  return normalize(state, fn)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function is_embedded(admin)
  return tostring(admin):match("embedded%)") ~= nil
end

-- plan(state [, {prune=, admin=, timeout_ms=}]) -> plan or nil, err
local function plan(state, opts, fn)
  opts = check_opts(opts, fn)
  local s, lerr = resolve(state, fn)
  if not s then return nil, lerr end
  local admin = opts.admin or klua.admin()
  local embedded = is_embedded(admin)
  local plan = { changes = {}, refused = {}, unknown = {}, notes = {}, in_sync = {}, prune = opts.prune and true or false }
  local function change(c) plan.changes[#plan.changes + 1] = c end
  local function refuse(c) plan.refused[#plan.refused + 1] = c end

  local cap
  if s.cap_replication or opts.cap_replication then
    local cl, err = admin:describe_cluster { timeout_ms = opts.timeout_ms }
    if not cl then return nil, err end
    cap = #cl.brokers
  end
  local listed, err = admin:list_topics { internal = true, timeout_ms = opts.timeout_ms }
  if not listed then return nil, err end
  local existing = {}
  for _, t in ipairs(listed) do existing[t.name] = t end

  -- Naming rules: a name must match at least one.
  local patterns = {}
  for i, r in ipairs(s.rules) do patterns[i] = rule_pattern(r) end
  local function name_ok(name)
    if #patterns == 0 then return true end
    for _, p in ipairs(patterns) do if name:match(p) then return true end end
    return false
  end

  local wanted, present, capped = {}, {}, {}
  for _, t in ipairs(s.topics) do
    wanted[t.name] = t
    if not name_ok(t.name) then
      refuse { action = "name", topic = t.name,
               reason = ("topic name \"%s\" breaks the naming rule%s %s"):format(t.name, #s.rules > 1 and "s" or "",
                 table.concat(s.rules, ", ")) }
    else
      if cap and t.replication_factor and t.replication_factor > cap then
        local from = t.replication_factor
        capped[from] = capped[from] or {}
        table.insert(capped[from], t.name)
        t.replication_factor = cap
      end
      local e = existing[t.name]
      if not e then
        change { action = "create", topic = t.name, partitions = t.partitions,
                 replication_factor = t.replication_factor, configs = t.configs }
      else
        present[#present + 1] = t
        if t.partitions and e.partitions < t.partitions then
          change { action = "add_partitions", topic = t.name, from = e.partitions, to = t.partitions }
        elseif t.partitions and e.partitions > t.partitions then
          refuse { action = "remove_partitions", topic = t.name, from = e.partitions, to = t.partitions,
                   reason = ("topic \"%s\" has %d partitions and the state asks for %d: Kafka cannot decrease a "
                     .. "topic's partitions (recreate the topic, or raise the state to %d)")
                     :format(t.name, e.partitions, t.partitions, e.partitions) }
        end
        if t.replication_factor and t.replication_factor ~= e.replication_factor then
          if embedded then
            plan.unknown[#plan.unknown + 1] = { topic = t.name, what = "replication_factor",
              reason = "the embedded cluster places every partition on all its brokers whatever the replication factor" }
          else
            refuse { action = "change_replication", topic = t.name, from = e.replication_factor,
                     to = t.replication_factor,
                     reason = ("topic \"%s\" has replication factor %d and the state asks for %d: provision does not "
                       .. "reassign replicas (use kafka-reassign-partitions)")
                       :format(t.name, e.replication_factor, t.replication_factor) }
          end
        end
      end
    end
  end

  for _, from in ipairs(sorted_keys(capped)) do
    local names = capped[from]
    plan.notes[#plan.notes + 1] = ("replication_factor %d capped to %d (the cluster has %d broker%s) for %s")
      :format(from, cap, cap, cap == 1 and "" or "s", #names == 1 and "topic " .. names[1] or #names .. " topics")
  end

  -- Configs of the existing topics.
  local need_configs = {}
  for _, t in ipairs(present) do
    if next(t.configs) or opts.prune then need_configs[#need_configs + 1] = t.name end
  end
  if #need_configs > 0 then
    local res, cerr = admin:describe_configs(need_configs, { timeout_ms = opts.timeout_ms })
    if not res then
      if cerr.name ~= "KLUA_EMBEDDED_UNSUPPORTED" then return nil, cerr end
      for _, name in ipairs(need_configs) do
        plan.unknown[#plan.unknown + 1] = { topic = name, what = "configs",
          reason = "configs unknown: " .. tostring(cerr.message) }
      end
    else
      for _, r in ipairs(res) do
        local t = wanted[r.name]
        if r.error then
          plan.unknown[#plan.unknown + 1] = { topic = r.name, what = "configs",
            reason = "configs unknown: " .. tostring(r.error) }
        else
          for _, k in ipairs(sorted_keys(t.configs)) do
            local cur = r.configs[k]
            local want = t.configs[k]
            if not cur then
              refuse { action = "set_config", topic = r.name, name = k, to = want,
                       reason = ("topic \"%s\": the broker does not know config \"%s\""):format(r.name, k) }
            elseif cur.value ~= want then
              change { action = "set_config", topic = r.name, name = k, from = cur.value, to = want }
            end
          end
          if opts.prune then
            for _, k in ipairs(sorted_keys(r.configs)) do
              local e = r.configs[k]
              if e.source == "dynamic_topic" and t.configs[k] == nil then
                change { action = "reset_config", topic = r.name, name = k, from = e.value, prune = true }
              end
            end
          end
        end
      end
    end
  end

  -- Topics absent from the state (prune only).
  if opts.prune then
    local scope = s.scope
    local function in_scope(name)
      if name:sub(1, 1) == "_" then return false end
      if #scope > 0 then
        for _, p in ipairs(scope) do if name:match(p) then return true end end
        return false
      end
      if #patterns > 0 then return name_ok(name) end
      return true
    end
    for _, t in ipairs(listed) do
      if not wanted[t.name] and not t.internal and in_scope(t.name) then
        change { action = "delete", topic = t.name, partitions = t.partitions, prune = true }
      end
    end
  end

  local touched = {}
  for _, c in ipairs(plan.changes) do touched[c.topic] = true end
  for _, c in ipairs(plan.refused) do touched[c.topic] = true end
  for _, t in ipairs(present) do
    if not touched[t.name] then plan.in_sync[#plan.in_sync + 1] = t.name end
  end
  plan.empty = #plan.changes == 0
  return plan
end

function M.plan(state, opts) return plan(state, opts, "klua.provision.plan") end

local function fmt_configs(configs)
  local parts = {}
  for _, k in ipairs(sorted_keys(configs or {})) do parts[#parts + 1] = k .. "=" .. configs[k] end
  return table.concat(parts, ", ")
end

-- One line per change, refusal, unknown and note; "no changes" when there is nothing to do.
function M.format(plan)
  local lines = {}
  local function add(s) lines[#lines + 1] = s end
  for _, c in ipairs(plan.changes) do
    local err = c.error and ("   FAILED: " .. tostring(c.error)) or ""
    if c.action == "create" then
      local attrs = {}
      if c.partitions then attrs[#attrs + 1] = "partitions " .. c.partitions end
      if c.replication_factor then attrs[#attrs + 1] = "replication " .. c.replication_factor end
      local cfg = fmt_configs(c.configs)
      if cfg ~= "" then attrs[#attrs + 1] = cfg end
      add(("+ create topic %s%s%s"):format(c.topic, #attrs > 0 and " (" .. table.concat(attrs, ", ") .. ")" or "", err))
    elseif c.action == "add_partitions" then
      add(("~ %s: partitions %d -> %d%s"):format(c.topic, c.from, c.to, err))
    elseif c.action == "set_config" then
      add(("~ %s: %s %s -> %s%s"):format(c.topic, c.name, tostring(c.from), c.to, err))
    elseif c.action == "reset_config" then
      add(("- %s: %s %s (override removed: back to the default) [prune]%s"):format(c.topic, c.name, c.from, err))
    elseif c.action == "delete" then
      add(("- delete topic %s (%d partitions) [prune]%s"):format(c.topic, c.partitions or 0, err))
    end
  end
  for _, r in ipairs(plan.refused) do add("! refused: " .. r.reason) end
  -- Unknowns sharing a reason (configs on the embedded cluster) make one line.
  local by_reason, reasons = {}, {}
  for _, u in ipairs(plan.unknown) do
    if not by_reason[u.reason] then by_reason[u.reason] = {}; reasons[#reasons + 1] = u.reason end
    table.insert(by_reason[u.reason], u.topic)
  end
  for _, r in ipairs(reasons) do
    local names = by_reason[r]
    add(("? %s: %s"):format(#names <= 3 and table.concat(names, ", ") or #names .. " topics", r))
  end
  for _, n in ipairs(plan.notes) do add("  note: " .. n) end
  if #plan.changes == 0 then
    add(("no changes (%d topic%s in sync%s)"):format(#plan.in_sync, #plan.in_sync == 1 and "" or "s",
      #plan.refused > 0 and (", %d refused"):format(#plan.refused) or ""))
  end
  return table.concat(lines, "\n")
end

-- check(state [, opts]) -> drift (a list: plan changes and refusals; empty when in sync), plan
function M.check(state, opts)
  local plan, err = plan(state, opts, "klua.provision.check")
  if not plan then return nil, err end
  local drift = {}
  for _, c in ipairs(plan.changes) do drift[#drift + 1] = c end
  for _, r in ipairs(plan.refused) do drift[#drift + 1] = r end
  return drift, plan
end

-- apply(state [, {dry_run=, prune=, quiet=, settle_ms=}]) -> result or nil, err
-- result = {plan=, applied=n, failed=n, converged=bool, remaining=drift after the apply}; each change in
-- plan.changes carries `error` when it failed. Refusals are reported, never carried out.
function M.apply(state, opts)
  opts = check_opts(opts, "klua.provision.apply")
  local s, lerr = resolve(state, "klua.provision.apply")
  if not s then return nil, lerr end
  local admin = opts.admin or klua.admin()
  local popts = { prune = opts.prune, admin = admin, timeout_ms = opts.timeout_ms, cap_replication = opts.cap_replication }
  local plan, err = M.plan(s, popts)
  if not plan then return nil, err end
  local result = { plan = plan, applied = 0, failed = 0, dry_run = opts.dry_run and true or false }
  local function done(c, e)
    c.error = e
    if e then result.failed = result.failed + 1 else result.applied = result.applied + 1 end
  end
  if not opts.dry_run and #plan.changes > 0 then
    local creates, parts, deletes, alters, alter_index = {}, {}, {}, {}, {}
    for _, c in ipairs(plan.changes) do
      if c.action == "create" then creates[#creates + 1] = c
      elseif c.action == "add_partitions" then parts[#parts + 1] = c
      elseif c.action == "delete" then deletes[#deletes + 1] = c
      else
        local a = alter_index[c.topic]
        if not a then
          a = { name = c.topic, set = {}, delete = {}, items = {} }
          alter_index[c.topic] = a
          alters[#alters + 1] = a
        end
        if c.action == "set_config" then a.set[c.name] = c.to else a.delete[#a.delete + 1] = c.name end
        a.items[#a.items + 1] = c
      end
    end
    local function batch(list, call, each)
      if #list == 0 then return true end
      local res, berr = call()
      if not res then
        for _, c in ipairs(list) do done(c, berr) end
        return
      end
      for i, c in ipairs(list) do each(c, res[i]) end
    end
    local noted = {}
    batch(creates, function()
      local specs = {}
      for i, c in ipairs(creates) do
        specs[i] = { name = c.topic, partitions = c.partitions, replication_factor = c.replication_factor,
                     configs = next(c.configs or {}) and c.configs or nil }
      end
      return admin:create_topics(specs, { timeout_ms = opts.timeout_ms })
    end, function(c, r)
      done(c, r.error)
      if r.note then
        c.note = r.note
        noted[r.note] = noted[r.note] or {}
        table.insert(noted[r.note], c.topic)
      end
    end)
    for _, note in ipairs(sorted_keys(noted)) do
      local names = noted[note]
      plan.notes[#plan.notes + 1] = ("%s: %s"):format(#names <= 3 and table.concat(names, ", ") or #names .. " topics", note)
    end
    batch(parts, function()
      local req = {}
      for i, c in ipairs(parts) do req[i] = { topic = c.topic, partitions = c.to } end
      return admin:create_partitions(req, { timeout_ms = opts.timeout_ms })
    end, function(c, r) done(c, r.error) end)
    batch(alters, function()
      local req = {}
      for i, a in ipairs(alters) do
        req[i] = { name = a.name, set = next(a.set) and a.set or nil, delete = #a.delete > 0 and a.delete or nil }
      end
      return admin:alter_configs(req, { timeout_ms = opts.timeout_ms })
    end, function(a, r) for _, c in ipairs(a.items) do done(c, r.error) end end)
    batch(deletes, function()
      local names = {}
      for i, c in ipairs(deletes) do names[i] = c.topic end
      return admin:delete_topics(names, { timeout_ms = opts.timeout_ms })
    end, function(c, r) done(c, r.error) end)
    -- A second batch error path: batch() above marks every item failed when the request failed.
  end
  if not opts.quiet then print(M.format(plan)) end
  -- Verify: metadata takes a moment to show new topics and partitions; re-plan until in sync.
  result.remaining = {}
  if opts.dry_run then
    result.converged = #plan.changes == 0
    return result
  end
  local deadline = klua.now() + (opts.settle_ms or 10000)
  while true do
    local drift, derr = M.check(s, popts)
    if not drift then return nil, derr end
    local pending = {}
    for _, d in ipairs(drift) do
      if d.reason == nil then pending[#pending + 1] = d end   -- refusals are reported, not waited for
    end
    result.remaining = pending
    if #pending == 0 or result.failed > 0 or klua.now() >= deadline then break end
    klua.sleep(200)
  end
  result.converged = #result.remaining == 0
  return result
end

return M
