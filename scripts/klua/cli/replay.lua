-- klua replay SOURCE TARGET [--from T|OFFSET] [--to T|OFFSET] [--since DURATION] ...: the one-liner
-- over klua.replay (read scripts/klua/replay.lua for the semantics).
local common = require("klua.cli.common")
local replay = require("klua.replay")
local M = {}

local USAGE = [[
usage: klua replay SOURCE TARGET [options]
  copies SOURCE's records in a range fixed at start into TARGET, keeping key, headers, timestamp
  --from WHERE          start: beginning (default), an offset, or a time (epoch ms, ISO-8601, -2h)
  --to WHERE            end (exclusive): end (default: the end offsets at start), an offset or a time
  --since DURATION      the last DURATION (2h, 15m, 30s, 1d, 1h30m, PT2H): --since 2h is --from -2h
  -p, --partition N     only this source partition (repeatable)
  --source-brokers LIST the source cluster (default: -b / KLUA_BROKERS)
  --target-brokers LIST the target cluster (default: the same as the source)
  --rate N              at most N records per second
  --batch N             records per transaction / checkpoint (default 2000)
  --group G             the consumer group holding the progress (resume a replay with the same G)
  --timeout MS          bound each wait of the start (fencing the group's previous run, reading its
                        committed offsets; default 60 s and 30 s); when one fails the replay stops
                        and exits 3, never starting again at --from
  --at-least-once       no transactions even within one cluster
  --keep-partition      write each record to its source partition number
  --no-timestamps       let the target assign timestamps
  --no-headers          drop the headers
  --quiet               no progress line and no summary
  --json                print the summary as JSON
Within one cluster the copy is exactly-once (transactions committing the source offsets);
across clusters it is at-least-once with an idempotent producer and a checkpoint.
]]

local function parse_where(name, v)
  if v == "beginning" or v == "end" then return v end
  if v:match("^%d+$") and not v:match("^%d%d%d%d%d%d%d%d%d%d%d%d") then return tonumber(v) end
  local ms, err = common.parse_time(v)
  if not ms then common.usage_error(USAGE, name .. " " .. v .. ": " .. err) end
  return { timestamp = ms }
end

function M.main(...)
  local opts, pos = common.parse({ ... }, {
    ["--from"] = "value", ["--to"] = "value", ["--since"] = "value", ["--partition"] = "list", ["-p"] = "--partition",
    ["--source-brokers"] = "value", ["--target-brokers"] = "value", ["--rate"] = "value", ["--batch"] = "value", ["--group"] = "value",
    ["--timeout"] = "value",
    ["--at-least-once"] = "flag", ["--keep-partition"] = "flag", ["--no-timestamps"] = "flag",
    ["--no-headers"] = "flag", ["--quiet"] = "flag", ["--json"] = "flag" }, USAGE)
  if #pos ~= 2 then common.usage_error(USAGE, "replay needs SOURCE and TARGET topics") end
  if opts.since and opts.from then common.usage_error(USAGE, "--since and --from both set the start; give one") end
  local from = opts.from and parse_where("--from", opts.from)
  if opts.since then
    local d, err = common.parse_duration(opts.since)
    if not d then common.usage_error(USAGE, "--since " .. opts.since .. ": " .. err) end
    from = { timestamp = klua.time() - math.abs(d) }
  end
  local to = opts.to and parse_where("--to", opts.to)
  local partitions
  for _, p in ipairs(opts.partition or {}) do
    partitions = partitions or {}
    partitions[#partitions + 1] = common.integer(USAGE, "--partition", p, 0, common.MAX_PARTITION)
  end
  local timeout = opts.timeout and common.number(USAGE, "--timeout", opts.timeout)
  if timeout and not (timeout > 0 and timeout < math.huge) then
    common.usage_error(USAGE, "--timeout must be a positive number of milliseconds, got " .. opts.timeout)
  end
  local args = {
    source = pos[1], target = pos[2], from = from, to = to, partitions = partitions,
    source_brokers = opts.source_brokers, target_brokers = opts.target_brokers or opts.source_brokers,
    rate = opts.rate and common.number(USAGE, "--rate", opts.rate, 0.001), group = opts.group,
    batch = opts.batch and common.integer(USAGE, "--batch", opts.batch, 1, 1e9),
    timeout_ms = timeout,
    mode = opts.at_least_once and "at_least_once" or nil, keep_partition = opts.keep_partition or nil,
    keep_timestamps = not opts.no_timestamps, keep_headers = not opts.no_headers,
    quiet = opts.quiet, progress = (opts.quiet or opts.json) and false or nil,
  }
  local ok, r, err = pcall(replay.run, args)
  if not ok then
    local detail = common.argument_detail(r)
    if detail then common.usage_error(USAGE, detail) end
    error(r, 0)
  end
  if not r then common.fail(err) end
  if opts.json then
    local parts = {}
    for i, p in ipairs(r.partitions) do
      parts[i] = { partition = p.partition, from = p.start, resumed_at = p.resumed and p.from or nil, to = p.to,
                   copied = p.copied, filtered = p.filtered }
    end
    common.json_line{ source = r.source, target = r.target, mode = r.mode, group = r.group, copied = r.copied,
                      filtered = r.filtered, read = r.read, elapsed_ms = math.floor(r.elapsed_ms),
                      partitions = klua.json.array(parts), guarantee = replay.describe_mode(r) }
  elseif not opts.quiet then
    print(string.format("replayed %d record(s) from %s to %s in %.1f s (%d filtered)", r.copied, r.source, r.target,
      r.elapsed_ms / 1000, r.filtered))
    for _, p in ipairs(r.partitions) do
      print(string.format("  partition %d: offsets [%d, %d)%s: %d copied", p.partition, p.start, p.to,
        p.resumed and string.format(" resumed at %d", p.from) or "", p.copied))
    end
    print(replay.describe_mode(r))
  end
end

return M
