-- klua provision FILE [--apply] [--check] [--prune] [--json]: compare a desired topic state (a Lua file
-- returning the state table, or a .json file) with the cluster; see klua.provision for the format.
-- Without --apply it only shows the plan. --check exits 4 on drift (changes to make or refused ones),
-- for CI pipelines; --apply carries the plan out; --prune also resets overrides and deletes topics that
-- are not in the state (shown in the plan first).
local common = require("klua.cli.common")
local provision = require("klua.provision")
local M = {}
local USAGE = [[
usage: klua provision FILE [--apply] [--check] [--prune] [--json]
  FILE       the desired state: a Lua file returning a table, or a .json file
  (default)  print the plan: what --apply would change
  --apply    carry the plan out and verify it
  --check    exit 4 when the cluster drifted from FILE
  --prune    also reset config overrides and delete topics absent from FILE
  --json     print the plan (or the apply result) as one JSON line
]]

function M.main(...)
  local opts, pos = common.parse({ ... }, { ["--apply"] = "flag", ["--check"] = "flag", ["--prune"] = "flag",
                                            ["--json"] = "flag" }, USAGE)
  local file = pos[1]
  if not file or #pos > 1 then common.usage_error(USAGE, "provision needs exactly one FILE") end
  if opts.apply and opts.check then common.usage_error(USAGE, "--apply and --check do not go together") end
  local state, lerr = provision.load(file)
  if not state then common.fail(lerr) end
  local ok, normalized = pcall(provision.normalize, state)
  if not ok then
    io.stderr:write("klua: " .. file .. ": " .. (common.argument_detail(normalized) or tostring(normalized)) .. "\n")
    klua.exit(2)
  end
  if opts.apply then
    local res, err = provision.apply(normalized, { prune = opts.prune, quiet = opts.json })
    if not res then common.fail(err) end
    if opts.json then
      for _, c in ipairs(res.plan.changes) do if c.error then c.error = tostring(c.error) end end
      common.json_line({ plan = res.plan, applied = res.applied, failed = res.failed, converged = res.converged,
                         remaining = klua.json.array(res.remaining) })
    elseif not res.converged then
      io.stderr:write(("klua: %d change%s still pending after apply\n"):format(#res.remaining,
        #res.remaining == 1 and "" or "s"))
    end
    if res.failed > 0 then
      io.stderr:write(("klua: %d change%s failed\n"):format(res.failed, res.failed == 1 and "" or "s"))
      klua.exit(1)
    end
    return
  end
  local drift, plan = provision.check(normalized, { prune = opts.prune })
  if not drift then common.fail(plan) end
  if opts.json then
    common.json_line({ changes = klua.json.array(plan.changes), refused = klua.json.array(plan.refused),
                       unknown = klua.json.array(plan.unknown), notes = klua.json.array(plan.notes),
                       in_sync = klua.json.array(plan.in_sync), drift = #drift })
  else
    print(provision.format(plan))
  end
  if opts.check and #drift > 0 then
    io.stderr:write(("klua: %d drift%s from %s\n"):format(#drift, #drift == 1 and "" or "s", file))
    klua.exit(4)
  end
end

return M
