-- klua offsets TOPIC [-p N]... [--time T] [--json]: kcat -Q's job. Per partition the low and high
-- watermarks, or with --time the first offset whose timestamp is at or after T.
local common = require("klua.cli.common")
local util = require("klua.cli.admin_util")
local M = {}
local USAGE = [[
usage: klua offsets TOPIC [-p N]... [--time T] [--json]
  per partition: the low and high watermarks (the first offset kept, the next offset to be written)
  -p, --partition N   only this partition (repeatable)
  --time T            instead, the first offset whose timestamp is at or after T (epoch ms, ISO-8601,
                      -2h, now) and that record's timestamp; none when no record is that late
  --json              one object per line: {topic, partition, low, high} or, with --time,
                      {topic, partition, time, offset, timestamp} (offset and timestamp null when none)
exit: 0 ok, 2 usage, 3 a Kafka error (an unknown topic or partition)
]]

function M.main(...)
  local opts, pos = common.parse({ ... }, { ["--partition"] = "list", ["-p"] = "--partition", ["--time"] = "value",
                                            ["--json"] = "flag" }, USAGE)
  if #pos == 0 then common.usage_error(USAGE, "offsets needs a TOPIC") end
  util.no_extra(USAGE, pos, 1, "offsets")
  local topic = pos[1]
  local time
  if opts.time then
    local err
    time, err = common.parse_time(opts.time)
    if not time then common.usage_error(USAGE, "--time " .. opts.time .. ": " .. err) end
  end
  local admin = klua.admin()
  local sel = { topic }
  if opts.partition then
    sel = {}
    for i, p in ipairs(opts.partition) do
      local n = common.integer(USAGE, "--partition", p, 0, common.MAX_PARTITION)
      sel[i] = { topic = topic, partition = n }
    end
    -- a partition the topic does not have is an error naming it, not a broker timeout
    local d, derr = admin:describe_topics({ topic }, { configs = false })
    if not d then common.fail(derr) end
    if d[1].error then common.fail(d[1].error) end
    for _, s in ipairs(sel) do
      if s.partition >= #d[1].partitions then
        common.fail(klua.errors.new{ name = klua.errors.UNKNOWN_PARTITION, kafka = true,
          message = ("topic \"%s\" has no partition %d (it has %d)"):format(topic, s.partition, #d[1].partitions) })
      end
    end
  end
  local rows = {}
  if time then
    local res, err = admin:list_offsets(sel, { spec = { timestamp = math.max(0, time) } })
    if not res then common.fail(err) end
    for i, r in ipairs(res) do
      if r.error then common.fail(r.error) end
      rows[i] = { topic = r.topic, partition = r.partition, time = time, offset = r.offset, timestamp = r.timestamp }
    end
  else
    local low, err = admin:list_offsets(sel, { spec = "earliest" })
    if not low then common.fail(err) end
    local high, herr = admin:list_offsets(sel, { spec = "latest" })
    if not high then common.fail(herr) end
    for i, r in ipairs(low) do
      if r.error or high[i].error then common.fail(r.error or high[i].error) end
      rows[i] = { topic = r.topic, partition = r.partition, low = r.offset, high = high[i].offset }
    end
  end
  if opts.json then
    for _, r in ipairs(rows) do
      if time then
        common.json_line{ topic = r.topic, partition = r.partition, time = r.time,
                          offset = r.offset == nil and klua.json.null or r.offset,
                          timestamp = r.timestamp == nil and klua.json.null or r.timestamp }
      else
        common.json_line{ topic = r.topic, partition = r.partition, low = r.low, high = r.high }
      end
    end
  elseif time then
    common.print_table(rows, { { key = "topic", title = "TOPIC" }, { key = "partition", title = "PARTITION", right = true },
      { key = "offset", title = "OFFSET", right = true }, { key = "timestamp", title = "TIMESTAMP", right = true } })
  else
    common.print_table(rows, { { key = "topic", title = "TOPIC" }, { key = "partition", title = "PARTITION", right = true },
      { key = "low", title = "LOW", right = true }, { key = "high", title = "HIGH", right = true } })
  end
end

return M
