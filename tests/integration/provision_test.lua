-- klua.provision against a real broker (KLUA_BROKERS): the first apply matches the state, a second apply
-- is empty, out-of-band changes (a config altered, partitions added by hand) are drift that check and
-- `klua provision --check` (exit 4) report and the next apply fixes, a partition decrease is refused,
-- and prune resets overrides and deletes topics within its scope.
local provision = require("klua.provision")
local proc = dofile("tests/integration/helpers/proc.lua")
local admin = klua.admin()

local fresh = klua.testkit.fresh
local function configs(name) return assert(admin:describe_configs({ name }))[1].configs end
local function partitions(name) return #assert(admin:describe_topics({ name }))[1].partitions end

local function state_for(a, b)
  return {
    cap_replication = true,
    defaults = { replication_factor = 3, configs = { ["compression.type"] = "snappy" } },
    topics = {
      { name = a, partitions = 3, configs = { ["retention.ms"] = 604800000 } },
      { name = b, partitions = 1, configs = { ["retention.ms"] = 86400000, ["cleanup.policy"] = "compact" } },
    },
  }
end

test("first apply matches the state; a second apply is empty", function()
  local a, b = fresh(), fresh()
  local state = state_for(a, b)
  local res = assert(provision.apply(state, { quiet = true }))
  assert_eq(res.failed, 0)
  assert_eq(res.applied, 2)
  assert_true(res.converged)
  assert_match(res.plan.notes[1], "replication_factor 3 capped to 1 %(the cluster has 1 broker%)")
  assert_eq(partitions(a), 3)
  assert_eq(partitions(b), 1)
  local ca, cb = configs(a), configs(b)
  assert_eq(ca["retention.ms"].value, "604800000")
  assert_eq(ca["compression.type"].value, "snappy")
  assert_eq(cb["cleanup.policy"].value, "compact")
  assert_eq(cb["retention.ms"].value, "86400000")
  local again = assert(provision.apply(state, { quiet = true }))
  assert_eq(again.plan.changes, {})
  assert_eq(again.plan.unknown, {})
  assert_eq(again.applied, 0)
  assert_eq(#again.plan.in_sync, 2)
  assert_eq(assert(provision.check(state)), {})
end, { timeout_ms = 60000 })

test("out-of-band changes are drift: check and the CLI report it (exit 4); the next apply fixes it", function()
  local a, b = fresh(), fresh()
  local state = state_for(a, b)
  assert(provision.apply(state, { quiet = true }))
  -- by hand: a config altered, partitions added
  assert_eq(assert(admin:alter_configs({ { name = a, set = { ["retention.ms"] = 1000 } } }))[1].error, nil)
  assert_eq(assert(admin:create_partitions({ { topic = b, partitions = 2 } }))[1].error, nil)
  local drift, plan = assert(provision.check(state))
  assert_eq(plan.changes, { { action = "set_config", topic = a, name = "retention.ms", from = "1000", to = "604800000" } })
  assert_eq(#drift, 2)
  assert_eq(drift[2].action, "remove_partitions")
  assert_match(drift[2].reason, "has 2 partitions and the state asks for 1: Kafka cannot decrease")

  -- the CLI: a state file, --check exits 4 naming the drift
  local dir = proc.tmpdir("prov")
  local path = dir .. "/state.lua"
  local f = assert(io.open(path, "w"))
  f:write("return " .. ("{ cap_replication = true, topics = { { name = %q, partitions = 3, "
    .. "configs = { [\"retention.ms\"] = 604800000, [\"compression.type\"] = \"snappy\" } } } }"):format(a))
  f:close()
  -- `klua provision` once host/main.cpp lists the subcommand; until then the same module through -e
  local probe = io.popen(proc.bin .. " provision --help >/dev/null 2>&1; echo $?")
  local wired = probe:read("*l") == "0"
  probe:close()
  local command = wired and "provision" or "-e 'require(\"klua.cli.provision\").main(...)'"
  local function cli(args)
    local p = io.popen(("KLUA_BROKERS=%s %s %s %s %s 2>&1; echo \"exit=$?\""):format(
      os.getenv("KLUA_BROKERS"), proc.bin, command, proc.quote(path), args))
    local out = p:read("*a")
    p:close()
    return out, tonumber(out:match("exit=(%d+)%s*$"))
  end
  local out, code = cli("--check")
  assert_eq(code, 4, out)
  assert_match(out, "~ " .. a:gsub("%-", "%%-") .. ": retention.ms 1000 %-> 604800000")
  out, code = cli("--apply")
  assert_eq(code, 0, out)
  out, code = cli("--check")
  assert_eq(code, 0, out)
  assert_match(out, "no changes %(1 topic in sync%)")
  proc.remove_dir(dir)

  -- the library's apply fixes the config; the partition decrease stays refused with its reason
  assert_eq(configs(a)["retention.ms"].value, "604800000")
  local res = assert(provision.apply(state, { quiet = true }))
  assert_eq(res.plan.changes, {})
  assert_eq(res.plan.refused[1].topic, b)
  assert_eq(partitions(b), 2)
  -- partitions added by hand beyond the state: raising the state to match clears the drift
  state.topics[2].partitions = 4
  res = assert(provision.apply(state, { quiet = true }))
  assert_eq(res.plan.changes, { { action = "add_partitions", topic = b, from = 2, to = 4 } })
  assert_true(res.converged)
  assert_eq(partitions(b), 4)
  assert_eq(assert(provision.check(state)), {})
end, { timeout_ms = 90000 })

test("prune resets overrides absent from the state and deletes topics within its scope", function()
  local prefix = "pr" .. klua.uuid():sub(1, 6)
  local keep, extra = prefix .. ".keep", prefix .. ".extra"
  local state = { scope = { "^" .. prefix .. "%." }, topics = { { name = keep, partitions = 1 } } }
  assert(provision.apply(state, { quiet = true }))
  assert_eq(assert(admin:create_topics({ { name = extra, partitions = 1, replication_factor = 1 } }))[1].error, nil)
  assert_eq(assert(admin:alter_configs({ { name = keep, set = { ["segment.ms"] = 600000 } } }))[1].error, nil)
  -- without prune both are left alone
  assert_eq(assert(provision.plan(state)).changes, {})
  local plan = assert(provision.plan(state, { prune = true }))
  assert_eq(plan.changes, {
    { action = "reset_config", topic = keep, name = "segment.ms", from = "600000", prune = true },
    { action = "delete", topic = extra, partitions = 1, prune = true } })
  local res = assert(provision.apply(state, { prune = true, quiet = true }))
  assert_eq(res.failed, 0)
  assert_true(res.converged)
  assert_eq(configs(keep)["segment.ms"].source, "default")
  assert_error(assert(admin:describe_topics({ extra }))[1].error, "UNKNOWN_TOPIC_OR_PART")
  assert_eq(assert(provision.plan(state, { prune = true })).changes, {})
end, { timeout_ms = 60000 })

test("replication changes are refused; unknown configs are refused with the broker's word", function()
  local t = fresh()
  assert(provision.apply({ topics = { { name = t, partitions = 1, replication_factor = 1 } } }, { quiet = true }))
  local plan = assert(provision.plan({ topics = { { name = t, partitions = 1, replication_factor = 2,
                                                     configs = { ["no.such.config"] = 1 } } } }))
  assert_eq(plan.changes, {})
  assert_eq(#plan.refused, 2)
  assert_eq(plan.refused[1].action, "change_replication")
  assert_match(plan.refused[1].reason, "replication factor 1 and the state asks for 2")
  assert_match(plan.refused[2].reason, "does not know config \"no.such.config\"")
end)
