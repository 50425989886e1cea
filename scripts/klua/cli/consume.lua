-- klua consume TOPIC [--from beginning|end|OFFSET|TIME] [-n COUNT] [-e] [-f FORMAT | --json]
local common = require("klua.cli.common")
local M = {}
local USAGE = [[
usage: klua consume TOPIC [--from WHERE] [-n COUNT] [-e] [-p PARTITION] [-f FORMAT | --json] [-g GROUP]
                          [--filter EXPR] [--grep TEXT] [-Z] [-u] [--value-format F] [--key-format F]
  --from beginning | end | OFFSET | TIME   where to start (default: end); TIME is epoch ms,
                                          ISO-8601 or relative (-2h, -15m)
  -n, --count N      stop after N printed messages
  -e, --exit         stop at the end: when every partition reached the end offset taken at start
                     (the last stable offset under read_committed), whatever the start; messages
                     produced later are not waited for
  -p, --partition P  only this partition (not with -g)
  -f, --format FMT   output template, as kcat's -f (no newline is added: end it with \n):
                     %s value, %S value size, %R value size as 4 bytes big-endian, %k key,
                     %K key size (sizes are -1 for null), %T timestamp (-1: none), %h headers
                     (name=value,... a null value as name=NULL), %t topic, %p partition,
                     %o offset, %v value, %% a percent sign; escapes \n \t \r \\ \xHH
                     (default: "%s\n")
  -Z, --null         print NULL for a null key or value in -f (kcat also does for empty ones)
  --json             one JSON object per line: {"headers":[{"name":..,"value":..}],"key":..,
                     "offset":..,"partition":..,"timestamp":..,"topic":..,"value":..}; a key,
                     value or header that is not UTF-8 comes as base64 in "key_b64",
                     "value_b64", "name_b64" instead
  --json-binary auto|base64   base64: every key, value and header value in its _b64 field
  --filter EXPR      print only messages for which the Lua expression is true; it sees key,
                     value, headers (name -> value, and a list of {name, value}), json (the
                     value decoded, nil when not JSON), topic, partition, offset, timestamp,
                     and string and math functions
  --grep TEXT        print only messages whose key or value contains TEXT (plain text; Lua
                     patterns through --filter 'value:find("...")')
  -u, --unbuffered   write every message out at once (default: per line on a terminal; to a
                     pipe or file when 64 KiB are buffered, after 100 ms idle, at exit)
  -g, --group GROUP  consume as a member of GROUP (subscribe; offsets are committed) instead of
                     reading partitions directly; --from beginning|end apply where the group has
                     no committed offset, an OFFSET or TIME starts every partition there
  --value-format F   decode each value and print it as one line of JSON (in -f's %s and --json's
                     "value"): string (default: the bytes as they are), json (JSON text, checked),
                     or the schema registry's wire format: avro (printed in the Avro JSON encoding),
                     protobuf (proto3 canonical JSON), json-schema (the JSON); the schema comes
                     from the registry by the id in each message (--schema-registry URL)
  --key-format F     the same for keys (%k, "key")
  A message that cannot be decoded is reported on stderr (topic/partition@offset and why) and
  skipped; consume goes on and exits 1 at the end when any was skipped.
]]

-- The printer of the loop below (scripts/klua/cli/format.lua): emit(msg), and keep(msg) or nil.
-- Bad -f, --filter or --json-binary exit 2 before anything connects.
local function output(opts, key_json, value_json)
  local format = require("klua.cli.format")
  if opts.json and opts.format then common.usage_error(USAGE, "-f and --json are exclusive") end
  local binary = opts.json_binary or "auto"
  if binary ~= "auto" and binary ~= "base64" then
    common.usage_error(USAGE, "--json-binary must be auto or base64, got " .. binary)
  end
  local emit, err
  if opts.json then
    emit = format.json(binary, key_json, value_json)
  else
    emit, err = format.template(opts.format or "%s\\n", opts.null and "NULL" or nil)
    if not emit then common.usage_error(USAGE, "-f " .. opts.format .. ": " .. err) end
  end
  local keep
  if opts.filter then
    keep, err = format.filter(opts.filter)
    if not keep then common.usage_error(USAGE, "--filter " .. opts.filter .. ": " .. err) end
  end
  if opts.grep then
    local grep, filter = format.grep(opts.grep), keep
    keep = filter and function(m) return grep(m) and filter(m) end or grep
  end
  return emit, keep
end

-- The consumer, assigned or subscribed where --from says (everything before the output loop).
-- The topic is looked up first: a subscription to a topic that does not exist would wait for an
-- assignment forever (under group.protocol=consumer the broker reports nothing at all).
local function open_consumer(topic, opts)
  local only = opts.partition and common.integer(USAGE, "--partition", opts.partition, 0, common.MAX_PARTITION)
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
    ["--partition"] = "value", ["-p"] = "--partition",
    ["--json-binary"] = "value", ["--filter"] = "value", ["--grep"] = "value", ["--null"] = "flag", ["-Z"] = "--null",
    ["--unbuffered"] = "flag", ["-u"] = "--unbuffered", ["--value-format"] = "value", ["--key-format"] = "value" },
    USAGE)
  local topic = pos[1]
  if not topic or #pos > 1 then common.usage_error(USAGE, "consume needs exactly one TOPIC") end
  local count = opts.count and common.integer(USAGE, "--count", opts.count, 1)
  local formats = require("klua.cli.serde_formats")
  local vfmt = formats.check(USAGE, "--value-format", opts.value_format)
  local kfmt = formats.check(USAGE, "--key-format", opts.key_format)
  local vdec, kdec
  if vfmt then vdec = formats.decoder(vfmt, formats.FRAMED[vfmt] and formats.registry(USAGE, "--value-format", vfmt)) end
  if kfmt then kdec = formats.decoder(kfmt, formats.FRAMED[kfmt] and formats.registry(USAGE, "--key-format", kfmt)) end
  local emit, keep = output(opts, kdec ~= nil, vdec ~= nil)
  local c = open_consumer(topic, opts)
  -- With a format, the printer and the filter see a view of the message whose key and value are the
  -- decoded JSON text (one table, refilled per message: neither keeps it); a message that cannot be
  -- decoded is reported and skipped.
  local skipped = 0
  local decoded
  if vdec or kdec then
    local fatal = formats.fatal
    local view, NO_HEADERS = {}, {}
    decoded = function(msg)
      local key, value, err, field = msg.key, msg.value, nil, nil
      if kdec and key ~= nil then
        key, err = kdec(key)
        field = "key"
      end
      if err == nil and vdec and value ~= nil then
        value, err = vdec(value)
        field = "value"
      end
      if err ~= nil then
        if fatal(err) then error(err, 0) end
        skipped = skipped + 1
        klua._stdout.flush()  -- what came before this message is printed before its report
        io.stderr:write(("klua: %s/%d@%d: %s: %s\n"):format(msg.topic, msg.partition, msg.offset, field,
          common.error_text(err)))
        return nil
      end
      view.topic, view.partition, view.offset, view.timestamp = msg.topic, msg.partition, msg.offset, msg.timestamp
      view.timestamp_type, view.headers = msg.timestamp_type, rawget(msg, "headers") or NO_HEADERS
      view.key, view.value = key, value
      return view
    end
  end

  local out = klua._stdout
  local each = opts.unbuffered or out.isatty()  -- a terminal sees each message at once
  out.start()  -- else: flushed when full, after 100 ms idle, on SIGINT/SIGTERM and at exit
  local n, at = 0, nil
  local ok, err = pcall(function()
    for raw in c:messages{ until_end = opts.exit or nil } do
      at = raw
      local msg = raw
      if decoded then msg = decoded(raw) end
      if msg == nil then
        -- skipped: reported by decoded
      elseif keep == nil or keep(msg) then
        emit(msg)
        if each then out.flush() end
        if out.failed() then break end
        n = n + 1
      end
      if opts.group then c:store(raw) end
      if count and n >= count then break end
    end
  end)
  out.flush()  -- before the close, which may take a while: what was consumed is out
  c:close()
  local werr, errno = out.error()
  if werr and errno ~= 32 then  -- EPIPE: the reader is gone (`| head`), a normal end
    io.stderr:write("klua: standard output: " .. werr .. "\n")
    klua.exit(1)
  end
  if ok and skipped > 0 then
    io.stderr:write(("klua: %d message(s) could not be decoded (reported above)\n"):format(skipped))
    klua.exit(1)
  end
  if not ok then
    if type(err) == "string" and err:find("^%-%-filter:") then
      io.stderr:write(string.format("klua: --filter %s: %s (at %s/%d@%d)\n", opts.filter,
        err:gsub("^%-%-filter:%d+: ", ""), at.topic, at.partition, at.offset))
      klua.exit(1)
    end
    if klua.errors.is(err) and err.name == klua.errors.KLUA_CANCELLED then return end  -- 130/143
    common.fail(err)
  end
end

return M
