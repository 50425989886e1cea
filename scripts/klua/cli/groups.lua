-- klua groups [--json]: the short form of `klua group list` (scripts/klua/cli/group.lua).
local M = {}
local USAGE = [[
usage: klua groups [--json]
  lists consumer groups (group, state, type: classic | consumer, simple); the same as `klua group list`
  (klua group --help: describe, delete, reset)
  --json   one object per line: {group, state, type, simple}
exit: 0 ok, 2 usage, 3 a Kafka error (also when some brokers did not answer: the groups listed, then the error)
]]

function M.main(...)
  return require("klua.cli.group").list_with(USAGE, ...)
end

return M
