-- klua consume TOPIC [--from beginning|end|OFFSET|TIME] [-n COUNT] [-e] [-f FORMAT | --json]
local common = require("klua.cli.common")
local M = {}
local USAGE = [[
usage: klua consume TOPIC [--from WHERE] [-n COUNT] [-e] [-p PARTITION] [-f FORMAT | --json] [-g GROUP]
  --from beginning | end | OFFSET | TIME   where to start (default: end); TIME is epoch ms,
                                          ISO-8601 or relative (-2h, -15m)
  -n, --count N      stop after N messages
  -e, --exit         stop at the end: when every partition reached the end offset taken at start
                     (the last stable offset under read_committed), whatever the start; messages
                     produced later are not waited for
  -p, --partition P  only this partition (not with -g)
  -f, --format FMT   output template: %t topic, %p partition, %o offset, %k key, %v value,
                     %T timestamp, %h headers, %% a percent sign (default: %v)
  --json             one JSON object per message
  -g, --group GROUP  consume as a member of GROUP (subscribe; offsets are committed) instead of
                     reading partitions directly; --from beginning|end apply where the group has
                     no committed offset, an OFFSET or TIME starts every partition there
]]

local function format_message(fmt, m)
  return (fmt:gsub("%%(.)", function(c)
    if c == "t" then return m.topic
    elseif c == "p" then return tostring(m.partition)
    elseif c == "o" then return string.format("%d", m.offset)
    elseif c == "k" then return m.key or ""
    elseif c == "v" then return m.value or ""
    elseif c == "T" then return m.timestamp and string.format("%d", m.timestamp) or ""
    elseif c == "h" then
      local parts = {}
      for _, h in ipairs(m.headers) do parts[#parts + 1] = h[1] .. "=" .. (h[2] or "") end
      return table.concat(parts, ",")
    elseif c == "%" then return "%"
    end
    return "%" .. c
  end))
end

-- The consumer, assigned or subscribed where --from says (everything before the output loop).
-- The topic is looked up first: a subscription to a topic that does not exist would wait for an
-- assignment forever (under group.protocol=consumer the broker reports nothing at all).
local function open_consumer(topic, opts)
  local only = opts.partition and common.number(USAGE, "--partition", opts.partition)
  if only and opts.group then
    common.usage_error(USAGE, "-p and -g: a group member reads the partitions its group assigns it")
  end
  local from = opts.from or "end"
  local start
  if from == "beginning" or from == "end" then
    start = from
  elseif from:match("^%d+$") and not from:match("^%d%d%d%d%d%d%d%d%d%d%d%d") then
    start = tonumber(from)  -- an offset (epoch ms have 13 digits)
  else
    local ms, err = common.parse_time(from)
    if not ms then common.usage_error(USAGE, "--from " .. from .. ": " .. err) end
    start = { timestamp = ms }
  end
  local desc, err = klua.admin():describe_topics({ topic }, { configs = false })
  if not desc then common.fail(err) end
  if desc[1].error then common.fail(desc[1].error) end
  -- With -e, a partition starting at its end ends when the broker answers a fetch there, which
  -- it holds fetch.wait.max.ms (500 ms) for data; the end offsets, asked on that connection,
  -- wait behind it too. A consumer about to exit asks every 100 ms (unless -X or a profile sets it).
  local function tuned(conf)
    if opts.exit and klua.config()["fetch.wait.max.ms"] == nil then conf["fetch.wait.max.ms"] = 100 end
    return conf
  end

  local c
  if opts.group then
    -- beginning / end apply where the group has no committed offset (auto.offset.reset); an
    -- OFFSET or a TIME starts every assigned partition there, as kcat -G -o does.
    local on_assign
    if type(start) ~= "string" then
      on_assign = function(parts)
        local at = {}
        for i, p in ipairs(parts) do at[i] = { topic = p.topic, partition = p.partition } end
        if type(start) == "number" then
          for _, p in ipairs(at) do p.offset = start end
          return at
        end
        for _, p in ipairs(at) do p.offset = start.timestamp end
        local found, ferr = c:offsets_for_times(at)
        if not found then error(ferr, 0) end
        for i, p in ipairs(found) do at[i].offset = p.offset or "end" end  -- none at or after it
        return at
      end
    end
    c = klua.consumer(tuned{ group = opts.group, topics = { topic }, on_assign = on_assign,
                             ["auto.offset.reset"] = from == "beginning" and "earliest" or "latest" })
    return c
  end
  c = klua.consumer(tuned{ group = "klua-consume-" .. klua.uuid():sub(1, 8), ["enable.auto.commit"] = false })
  local parts = {}
  for _, p in ipairs(desc[1].partitions) do
    if not only or p.partition == only then parts[#parts + 1] = { topic = topic, partition = p.partition } end
  end
  if #parts == 0 then common.fail(klua.errors.new{ name = "UNKNOWN_PARTITION", message = "no partition " ..
    tostring(only) .. " in topic " .. topic }) end
  if type(start) == "table" then
    for _, p in ipairs(parts) do p.offset = start.timestamp end
    local found, ferr = c:offsets_for_times(parts)
    if not found then common.fail(ferr) end
    for i, p in ipairs(found) do parts[i].offset = p.offset or "end" end  -- none at or after it
  else
    for _, p in ipairs(parts) do p.offset = start end
  end
  assert(c:assign(parts))
  return c
end

function M.main(...)
  local opts, pos = common.parse({ ... }, {
    ["--from"] = "value", ["--count"] = "value", ["-n"] = "--count", ["--exit"] = "flag", ["-e"] = "--exit",
    ["--format"] = "value", ["-f"] = "--format", ["--json"] = "flag", ["--group"] = "value", ["-g"] = "--group",
    ["--partition"] = "value", ["-p"] = "--partition" }, USAGE)
  local topic = pos[1]
  if not topic or #pos > 1 then common.usage_error(USAGE, "consume needs exactly one TOPIC") end
  local count = opts.count and common.number(USAGE, "--count", opts.count)
  local fmt = opts.format or "%v"
  local c = open_consumer(topic, opts)

  local n = 0
  local ok, err = pcall(function()
    for msg in c:messages{ until_end = opts.exit or nil } do
      if opts.json then
        local headers = {}
        for i, h in ipairs(msg.headers) do headers[i] = { h[1], h[2] == nil and klua.json.null or h[2] } end
        common.json_line{ topic = msg.topic, partition = msg.partition, offset = msg.offset,
                          key = msg.key == nil and klua.json.null or msg.key,
                          value = msg.value == nil and klua.json.null or msg.value,
                          timestamp = msg.timestamp, headers = klua.json.array(headers) }
      else
        io.stdout:write(format_message(fmt, msg), "\n")
      end
      if opts.group then c:store(msg) end
      n = n + 1
      if count and n >= count then break end
    end
  end)
  c:close()
  if not ok then common.fail(err) end
end

return M
