-- klua produce TOPIC [-k SEP] [-p PARTITION] [-H name=value]...: one message per stdin line.
local common = require("klua.cli.common")
local M = {}
local USAGE = [[
usage: klua produce TOPIC [-k SEP] [-p PARTITION] [-H name=value]... [-Z] [--keep-empty] [--json]
  sends each line of standard input as a message, as kcat does: the line without its "\n"
  (a "\r" before it stays part of the message), empty lines skipped
  -k, -K, --key-separator SEP   the text before the first SEP is the key (no SEP: no key)
  -p, --partition P             send to partition P (default: the partitioner's choice)
  -H, --header name=value       a header on every message (repeatable)
  -Z, --null                    an empty key or value (around SEP; an empty line with
                                --keep-empty) is sent as null
  --keep-empty                  send empty lines as empty messages instead of skipping them
  --json                        one delivery report per line: {"offset":..,"partition":..,"topic":..}
]]

function M.main(...)
  local opts, pos = common.parse({ ... }, {
    ["--key-separator"] = "value", ["-k"] = "--key-separator", ["-K"] = "--key-separator",
    ["--partition"] = "value", ["-p"] = "--partition", ["--header"] = "list", ["-H"] = "--header",
    ["--json"] = "flag", ["--null"] = "flag", ["-Z"] = "--null", ["--keep-empty"] = "flag" }, USAGE)
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

  local out = klua._stdout
  local put, put_int = out.put, out.put_int
  local quoted = klua.json.encode(topic, { invalid_utf8 = "replace" })
  local sent, failed, first_err = 0, 0, nil
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
  local function send_kv(key, value)
    if null then
      if key == "" then key = nil end
      if value == "" then value = nil end
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
      if line ~= "" or keep_empty then send(line) end
      from = nl + 1
      nl = find(chunk, "\n", from, true)
    end
    while nl do
      if nl > from then
        send_part(chunk, from, nl - 1)
      elseif keep_empty then
        send("")
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
end

return M
