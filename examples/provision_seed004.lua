-- Seed 004: provision the Todo app's topic table (examples/seed004_topics.lua) and show that applying
-- it twice changes nothing the second time.
--   klua -b localhost:9092 run examples/provision_seed004.lua [PREFIX]
--   klua run examples/provision_seed004.lua                   (embedded cluster: configs not comparable)
-- PREFIX (default: a fresh "s004-xxxxxx.") is put before every topic name so that runs don't collide;
-- pass "" to provision the seed's own names.
local provision = require("klua.provision")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "examples"
local state = assert(provision.load(dir .. "/seed004_topics.lua"))
local prefix = ... or ("s004-" .. klua.uuid():sub(1, 6) .. ".")
for _, t in ipairs(state.topics) do t.name = prefix .. t.name end
if prefix ~= "" then state.rules = { prefix:gsub("[{}]", "") .. "{domain}.{event}" } end

print("== first apply")
local first = assert(provision.apply(state))
assert(first.failed == 0, "a change failed")
assert(first.converged, "the cluster does not match the state after the first apply")

-- The cluster now matches the table: partitions, and configs where the cluster can report them.
local admin = klua.admin()
local names = {}
for _, t in ipairs(state.topics) do names[#names + 1] = t.name end
local described = assert(admin:describe_topics(names))
for i, d in ipairs(described) do
  local want = state.topics[i].partitions or state.defaults.partitions
  assert(not d.error, tostring(d.error))
  assert(#d.partitions == want, ("%s has %d partitions, want %d"):format(d.name, #d.partitions, want))
  if d.configs then
    local retention = (state.topics[i].configs or {})["retention.ms"] or state.defaults.configs["retention.ms"]
    assert(d.configs["retention.ms"] == ("%d"):format(retention), d.name .. " retention.ms")
    assert(d.configs["compression.type"] == "snappy", d.name .. " compression.type")
  end
end

print("== second apply")
local second = assert(provision.apply(state))
assert(#second.plan.changes == 0, "the second apply was not empty")
assert(second.applied == 0)
print(("seed 004: %d topics provisioned; second apply changed nothing"):format(#state.topics))
