-- klua.provision on the embedded cluster: plans as data, apply and re-apply, refusals, naming rules,
-- configs reported as unknown (the embedded cluster serves no DescribeConfigs), state files and the CLI.
local provision = require("klua.provision")
local admin = klua.admin()

local fresh = klua.testkit.fresh
local function actions(plan)
  local out = {}
  for _, c in ipairs(plan.changes) do out[#out + 1] = c.action .. ":" .. c.topic end
  return out
end
local function partitions(name)
  return #assert(admin:describe_topics({ name }))[1].partitions
end

test("plan lists creations as data; apply creates; a second apply is empty", function()
  local a, b = fresh(), fresh()
  local state = { defaults = { partitions = 2 },
                  topics = { { name = a, partitions = 3, replication_factor = 3, configs = { ["retention.ms"] = 3600000 } },
                             b } }
  local plan = assert(provision.plan(state))
  assert_eq(actions(plan), { "create:" .. a, "create:" .. b })
  assert_eq(plan.changes[1], { action = "create", topic = a, partitions = 3, replication_factor = 3,
                               configs = { ["retention.ms"] = "3600000" } })
  assert_eq(plan.changes[2].partitions, 2)
  assert_match(provision.format(plan), "%+ create topic " .. a:gsub("%-", "%%-") .. " %(partitions 3, replication 3, retention.ms=3600000%)")
  local res = assert(provision.apply(state, { quiet = true }))
  assert_eq(res.applied, 2)
  assert_eq(res.failed, 0)
  assert_true(res.converged)
  assert_eq(partitions(a), 3)
  assert_eq(partitions(b), 2)
  assert_match(table.concat(res.plan.notes, "\n"), "does not keep topic configs")
  local again = assert(provision.apply(state, { quiet = true }))
  assert_eq(again.plan.changes, {})
  assert_eq(again.applied, 0)
  assert_true(again.plan.empty)
  -- configs can't be compared here, and the plan says so plainly
  assert_eq(#again.plan.unknown, 1)
  assert_eq(again.plan.unknown[1].topic, a)
  assert_match(again.plan.unknown[1].reason, "configs unknown: describe_configs is not supported by the embedded")
  assert_match(provision.format(again.plan), "no changes %(2 topics in sync%)")
end)

test("dry_run changes nothing; partitions grow; a decrease is refused with its reason", function()
  local t = fresh()
  local res = assert(provision.apply({ topics = { { name = t, partitions = 2 } } }, { dry_run = true, quiet = true }))
  assert_eq(actions(res.plan), { "create:" .. t })
  assert_eq(res.applied, 0)
  assert_eq(assert(admin:describe_topics({ t }))[1].error.name, "UNKNOWN_TOPIC_OR_PART")
  assert(provision.apply({ topics = { { name = t, partitions = 2 } } }, { quiet = true }))
  local grow = assert(provision.plan({ topics = { { name = t, partitions = 5 } } }))
  assert_eq(grow.changes, { { action = "add_partitions", topic = t, from = 2, to = 5 } })
  local drift = assert(provision.check({ topics = { { name = t, partitions = 1 } } }))
  assert_eq(#drift, 1)
  assert_eq(drift[1].action, "remove_partitions")
  assert_match(drift[1].reason, "has 2 partitions and the state asks for 1: Kafka cannot decrease")
  local r = assert(provision.apply({ topics = { { name = t, partitions = 1 } } }, { quiet = true }))
  assert_eq(r.applied, 0)
  assert_eq(#r.plan.refused, 1)
  assert_match(provision.format(r.plan), "! refused: topic \"" .. t:gsub("%-", "%%-") .. "\" has 2 partitions")
  assert_eq(partitions(t), 2)
end)

test("naming rules: a name that breaks them is refused with the rule, the others are created", function()
  local svc = "svc" .. klua.uuid():sub(1, 6)
  local good, bad = svc .. ".item.created", svc .. "_item_created"
  local plan = assert(provision.plan({ rules = { "{service}.{domain}.{event-type}" }, topics = { good, bad } }))
  assert_eq(actions(plan), { "create:" .. good })
  assert_eq(plan.refused[1].topic, bad)
  assert_match(plan.refused[1].reason, "breaks the naming rule {service}%.{domain}%.{event%-type}")
end)

test("replication capped to the cluster size, with a note", function()
  local t = fresh()
  local plan = assert(provision.plan({ cap_replication = true, topics = { { name = t, replication_factor = 5 } } }))
  assert_eq(plan.changes[1].replication_factor, 3)
  assert_match(plan.notes[1], "replication_factor 5 capped to 3 %(the cluster has 3 brokers%)")
end)

test("prune deletes only within the scope, and is shown in the plan first", function()
  local prefix = "pr" .. klua.uuid():sub(1, 6)
  local keep, extra = prefix .. ".keep", prefix .. ".extra"
  assert(admin:create_topics({ keep, extra }))
  local outside = fresh()
  assert(admin:create_topics({ outside }))
  local state = { scope = { "^" .. prefix .. "%." }, topics = { keep } }
  assert_eq(assert(provision.plan(state)).changes, {})
  local plan = assert(provision.plan(state, { prune = true }))
  assert_eq(actions(plan), { "delete:" .. extra })
  assert_match(provision.format(plan), "%- delete topic " .. extra:gsub("%.", "%%.") .. " %(4 partitions%) %[prune%]")
end)

test("state files (Lua and JSON), argument errors, and the CLI with --check and --json", function()
  local t = fresh()
  -- os.tmpname creates the file it names: remove it, keep the name with a suffix.
  local base = os.tmpname()
  os.remove(base)
  local lua_path = base .. ".lua"
  local f = assert(io.open(lua_path, "w"))
  f:write(("return { topics = { { name = %q, partitions = 2 } } }"):format(t))
  f:close()
  local json_path = base .. ".json"
  f = assert(io.open(json_path, "w"))
  f:write(('{"topics": {"%s": {"partitions": 2}}}'):format(t))
  f:close()
  assert_eq(assert(provision.plan(lua_path)).changes[1].partitions, 2)
  assert_eq(assert(provision.plan(json_path)).changes[1].topic, t)
  local r, err = provision.plan("/nonexistent/state.json")
  assert_eq(r, nil)
  assert_error(err, "KLUA_INVALID_ARGUMENT")
  assert_raises(function() provision.plan({ topics = { { name = t, partitions = 0 } } }) end, "positive whole number")
  assert_raises(function() provision.plan({ topic = {} }) end, "unknown state field 'topic'")
  assert_raises(function() provision.plan({ topics = { { name = t, partition = 1 } } }) end, "unknown field 'partition'")
  assert_raises(function() provision.plan({}, { force = true }) end, "unknown option 'force'")
  -- the CLI, as `klua provision` runs it (the embedded cluster is per process: each run starts empty)
  -- this klua binary: $KLUA_BIN, else the parent of the shell that popen starts
  local exe = os.getenv("KLUA_BIN")
  if not exe then
    local p = io.popen("readlink /proc/$PPID/exe")
    exe = p:read("*l")
    p:close()
  end
  local function run(args)
    local p = io.popen(("%s -e 'require(\"klua.cli.provision\").main(...)' %s 2>&1; echo \"exit=$?\""):format(
      exe, args))
    local out = p:read("*a")
    p:close()
    return out, tonumber(out:match("exit=(%d+)%s*$"))
  end
  do
    local out, code = run(lua_path .. " --check")
    assert_eq(code, 4, out)
    assert_match(out, "%+ create topic " .. t:gsub("%-", "%%-"))
    out, code = run(lua_path .. " --json")
    assert_eq(code, 0, out)
    local doc = assert(klua.json.decode(out:match("\n?({[^\n]*)")))
    assert_eq(doc.changes[1].action, "create")
    assert_eq(doc.drift, 1)
    out, code = run(lua_path .. " --apply")
    assert_eq(code, 0, out)
    out, code = run("--bogus")
    assert_eq(code, 2, out)
  end
  os.remove(lua_path)
  os.remove(json_path)
end)
