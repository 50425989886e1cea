-- klua produce TOPIC [-k SEP] [-p PARTITION] [-H name=value]...: one message per stdin line.
local common = require("klua.cli.common")
local M = {}
local USAGE = [=[
usage: klua produce TOPIC [-k SEP] [-p PARTITION] [-H name=value]... [-Z] [--keep-empty] [--json]
                          [--value-format F [--value-schema FILE | --value-schema-id N] [--value-message M]]
                          [--key-format F [--key-schema FILE | --key-schema-id N] [--key-message M]]
  sends each line of standard input as a message, as kcat does: the line without its "\n"
  (a "\r" before it stays part of the message), empty lines skipped
  -k, -K, --key-separator SEP   the text before the first SEP is the key (no SEP: no key)
  -p, --partition P             send to partition P (default: the partitioner's choice)
  -H, --header name=value       a header on every message (repeatable)
  -Z, --null                    an empty key or value (around SEP; an empty line with
                                --keep-empty) is sent as null
  --keep-empty                  send empty lines as empty messages instead of skipping them
  --json                        one delivery report per line: {"offset":..,"partition":..,"topic":..}
  --value-format F              each value is a line of JSON to encode: string (default: sent as it
                                is), json (checked, sent as it is), or in the schema registry's wire
                                format: avro (the line in the Avro JSON encoding), protobuf (proto3
                                JSON), json-schema (validated); the schema is --value-schema FILE
                                (registered under the subject TOPIC-value), --value-schema-id N, or
                                else the latest version of TOPIC-value (--schema-registry URL)
  --value-message M             protobuf: the message type of the values (default: the first)
  --key-format F, --key-schema FILE, --key-schema-id N, --key-message M
                                the same for keys (subject TOPIC-key; needs -k)
  A line that does not fit its schema is reported on stderr (its line number, key or value, the
  field path) and not sent; the others are, and produce exits 1 at the end.
]=]

function M.main(...)
  local opts, pos = common.parse({ ... }, {
    ["--key-separator"] = "value", ["-k"] = "--key-separator", ["-K"] = "--key-separator",
    ["--partition"] = "value", ["-p"] = "--partition", ["--header"] = "list", ["-H"] = "--header",
    ["--json"] = "flag", ["--null"] = "flag", ["-Z"] = "--null", ["--keep-empty"] = "flag",
    ["--value-format"] = "value", ["--key-format"] = "value", ["--value-schema"] = "value", ["--key-schema"] = "value",
    ["--value-schema-id"] = "value", ["--key-schema-id"] = "value", ["--value-message"] = "value",
    ["--key-message"] = "value" }, USAGE)
  local topic = pos[1]
  if not topic or #pos > 1 then common.usage_error(USAGE, "produce needs exactly one TOPIC") end
  local partition = opts.partition and common.integer(USAGE, "--partition", opts.partition, 0, common.MAX_PARTITION)
  local headers
  for _, h in ipairs(opts.header or {}) do
    local name, value = h:match("^([^=]+)=(.*)$")
    if not name then common.usage_error(USAGE, "-H expects name=value, got " .. h) end
    headers = headers or {}
    headers[#headers + 1] = { name, value }
  end
  local sep = opts.key_separator
  if sep == "" then common.usage_error(USAGE, "--key-separator must not be empty") end
  local null, keep_empty = opts.null, opts.keep_empty

  -- Formats: checked, and their schemas resolved (registered) before a line is read.
  local venc, kenc
  do
    local formats
    local function encoder(field)
      local fmt_opt = "--" .. field .. "-format"
      local fmt = opts[field .. "_format"]
      local file, id, message = opts[field .. "_schema"], opts[field .. "_schema_id"], opts[field .. "_message"]
      formats = formats or require("klua.cli.serde_formats")
      fmt = formats.check(USAGE, fmt_opt, fmt)
      local framed = fmt and formats.FRAMED[fmt]
      if (file or id) and not framed then
        common.usage_error(USAGE, ("--%s-schema%s needs --%s-format avro, protobuf or json-schema"):format(field,
          file and "" or "-id", field))
      end
      if file and id then common.usage_error(USAGE, ("--%s-schema and --%s-schema-id are exclusive"):format(field, field)) end
      if message and fmt ~= "protobuf" then
        common.usage_error(USAGE, ("--%s-message needs --%s-format protobuf"):format(field, field))
      end
      if not fmt then return nil end
      if field == "key" and not sep then common.usage_error(USAGE, "--key-format needs -k SEP (where the key ends)") end
      local reg = framed and formats.registry(USAGE, fmt_opt, fmt)
      return (formats.encoder{ fmt = fmt, reg = reg, topic = topic, field = field, usage = USAGE,
                               option = "--" .. field, schema_file = file, message = message,
                               schema_id = id and common.integer(USAGE, "--" .. field .. "-schema-id", id, 0, 2 ^ 31 - 1) })
    end
    venc, kenc = encoder("value"), encoder("key")
  end

  local out = klua._stdout
  local put, put_int = out.put, out.put_int
  local quoted = klua.json.encode(topic, { invalid_utf8 = "replace" })
  local sent, failed, first_err = 0, 0, nil
  local lineno, rejected = 0, 0  -- lines read; lines not sent (their key or value did not encode)
  -- Without --json nobody listens to delivery reports: p:flush returns the failure then (no
  -- report table and call per message).
  local p = klua.producer{ on_delivery = opts.json and function(report, err)
    if err then
      failed = failed + 1
      first_err = first_err or err
    else
      put('{"offset":')
      put_int(report.offset)
      put(',"partition":')
      put_int(report.partition)
      put(',"topic":')
      put(quoted)
      put("}\n")
    end
  end or nil }
  if opts.json then out.start() end

  -- One table for every send (p:send copies the data): the fields of a plain message take
  -- p:send's FFI path.
  local msg = { topic = topic, partition = partition, headers = headers }
  local find, sub = string.find, string.sub
  local function reject(field, err)
    rejected = rejected + 1
    local text = common.error_text(err)
    if type(err) == "table" and err.path and not text:find(err.path, 1, true) then text = err.path .. ": " .. text end
    io.stderr:write(("klua: line %d: %s: %s\n"):format(lineno, field, text))
  end
  local function send_kv(key, value)
    if null then
      if key == "" then key = nil end
      if value == "" then value = nil end
    end
    if kenc and key ~= nil then
      local k, err = kenc(key)
      if k == nil then return reject("key", err) end
      key = k
    end
    if venc and value ~= nil then
      local v, err = venc(value)
      if v == nil then return reject("value", err) end
      value = v
    end
    msg.key, msg.value = key, value
    local ok, err = p:send(msg)
    if not ok then common.fail(err) end
    sent = sent + 1
  end
  local nsep = sep and #sep
  -- The line chunk[from..to], key and value cut from the chunk directly. sep_at: where the next
  -- SEP at or after the line starts (false: none in the rest of the chunk), so the search is
  -- not repeated over the following lines (nil: search; reset per chunk).
  local sep_at
  local function send_part(chunk, from, to)
    if sep then
      if sep_at ~= false and (sep_at == nil or sep_at < from) then sep_at = find(chunk, sep, from, true) or false end
      if sep_at and sep_at + nsep - 1 <= to then
        return send_kv(sub(chunk, from, sep_at - 1), sub(chunk, sep_at + nsep, to))
      end
    end
    send_kv(nil, sub(chunk, from, to))
  end
  local function send(line)
    lineno = lineno + 1
    sep_at = nil
    send_part(line, 1, #line)
    sep_at = nil
  end

  -- Lines are split here rather than by klua.read_line, which drops a "\r" before the "\n".
  local pending = {}  -- the start of a line that continues in the next chunk
  while true do
    local chunk = klua._read_chunk()
    if not chunk then break end
    sep_at = nil
    local from = 1
    local nl = find(chunk, "\n", 1, true)
    if nl and #pending > 0 then
      pending[#pending + 1] = sub(chunk, 1, nl - 1)
      local line = table.concat(pending)
      pending = {}
      if line ~= "" or keep_empty then send(line) else lineno = lineno + 1 end
      from = nl + 1
      nl = find(chunk, "\n", from, true)
    end
    while nl do
      if nl > from then
        lineno = lineno + 1
        send_part(chunk, from, nl - 1)
      elseif keep_empty then
        send("")
      else
        lineno = lineno + 1
      end
      from = nl + 1
      nl = find(chunk, "\n", from, true)
    end
    if from <= #chunk then pending[#pending + 1] = sub(chunk, from) end
  end
  if #pending > 0 then send(table.concat(pending)) end  -- the last line, without a "\n"

  local ok, err = p:flush()
  out.flush()
  if failed > 0 or not ok then
    common.fail(first_err or err)
  end
  io.stderr:write(string.format("klua: %d message(s) delivered to %s\n", sent, topic))
  if rejected > 0 then
    io.stderr:write(string.format("klua: %d line(s) not sent (reported above)\n", rejected))
    klua.exit(1)
  end
end

return M
