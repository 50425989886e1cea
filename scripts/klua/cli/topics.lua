-- klua topics [--internal] [--json]: the short form of `klua topic list` (scripts/klua/cli/topic.lua).
local M = {}
local USAGE = [[
usage: klua topics [--internal] [--json]
  lists topics (name, partitions, replication factor); --internal shows __ topics too; the same as
  `klua topic list` (klua topic --help: describe, create, delete, alter)
  --json   one object per line: {name, partitions, replication_factor, internal}
exit: 0 ok, 2 usage, 3 a Kafka error
]]

function M.main(...)
  return require("klua.cli.topic").list_with(USAGE, ...)
end

return M
