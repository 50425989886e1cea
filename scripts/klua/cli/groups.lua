-- klua groups [--json]: consumer groups with their state and type (classic or consumer, KIP-848).
local common = require("klua.cli.common")
local M = {}
local USAGE = [[
usage: klua groups [--json]
  lists consumer groups (group, state, type: classic | consumer, simple)
]]

function M.main(...)
  local opts = common.parse({ ... }, { ["--json"] = "flag" }, USAGE, 0)
  local admin = klua.admin()
  local groups, err = admin:list_groups()
  if not groups then common.fail(err) end
  if err then io.stderr:write("klua: warning: " .. tostring(err) .. "\n") end
  if opts.json then
    for _, g in ipairs(groups) do common.json_line(g) end
  else
    common.print_table(groups, { { key = "group", title = "GROUP" }, { key = "state", title = "STATE" },
                                 { key = "type", title = "TYPE" }, { key = "simple", title = "SIMPLE" } })
  end
end

return M
