-- klua topics [--internal] [--json]: the cluster's topics with partition counts.
local common = require("klua.cli.common")
local M = {}
local USAGE = [[
usage: klua topics [--internal] [--json]
  lists topics (name, partitions, replication factor); --internal shows __ topics too
]]

function M.main(...)
  local opts = common.parse({ ... }, { ["--internal"] = "flag", ["--json"] = "flag" }, USAGE, 0)
  local admin = klua.admin()
  local topics, err = admin:list_topics{ internal = opts.internal }
  if not topics then common.fail(err) end
  if opts.json then
    for _, t in ipairs(topics) do common.json_line(t) end
  else
    common.print_table(topics, {
      { key = "name", title = "TOPIC" }, { key = "partitions", title = "PARTITIONS", right = true },
      { key = "replication_factor", title = "REPLICAS", right = true } })
  end
end

return M
