-- klua lag GROUP [TOPIC...] [--max-lag N] [--json]: per-partition lag of a consumer group.
-- With --max-lag, exits 4 when the group's total lag is over N (an alert for cron or CI).
local common = require("klua.cli.common")
local util = require("klua.cli.admin_util")
local M = {}
local USAGE = [[
usage: klua lag GROUP [TOPIC...] [--max-lag N] [--json]
  per partition: committed offset, low and high watermarks, end (last stable offset), lag; without
  TOPICs, the topics the group has committed offsets for
  --max-lag N   exit 4 when the total lag is over N
  --json        one JSON document: {group, time, lag, topics = [{topic, partitions, lag}],
                partitions = [{topic, partition, committed, low, high, end, lag}]}
exit: 0 ok, 2 usage, 3 a Kafka error (also a GROUP that does not exist), 4 over --max-lag
]]

function M.main(...)
  local opts, pos = common.parse({ ... }, { ["--max-lag"] = "value", ["--json"] = "flag" }, USAGE)
  local group = pos[1]
  if not group then common.usage_error(USAGE, "lag needs a GROUP") end
  local topics = #pos > 1 and { select(2, unpack(pos)) } or nil
  local max_lag = opts.max_lag and common.integer(USAGE, "--max-lag", opts.max_lag, 0)
  local snap, err = klua.lag(group, topics)
  if not snap then common.fail(err) end
  -- No committed offset: a typo'd group reads as lag 0. It must exist (the cluster knows it).
  local any = false
  for _, p in ipairs(snap.partitions) do any = any or p.committed ~= nil end
  if not any then
    local missing, merr = util.missing_group(klua.admin(), group)
    if missing or merr then common.fail(missing or merr) end
  end
  if opts.json then
    common.json_line(snap)
  else
    common.print_table(snap.partitions, {
      { key = "topic", title = "TOPIC" }, { key = "partition", title = "PARTITION", right = true },
      { key = "committed", title = "COMMITTED", right = true }, { key = "low", title = "LOW", right = true },
      { key = "high", title = "HIGH", right = true }, { key = "end", title = "END", right = true },
      { key = "lag", title = "LAG", right = true } })
    print(string.format("group %s: total lag %d", group, snap.lag))
  end
  if max_lag and snap.lag > max_lag then
    io.stderr:write(string.format("klua: group %s lag %d is over --max-lag %d\n", group, snap.lag, max_lag))
    klua.exit(4)
  end
end

return M
