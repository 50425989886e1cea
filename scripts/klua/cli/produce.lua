-- klua produce TOPIC [-k SEP] [-p PARTITION] [-H name=value]...: one message per stdin line.
local common = require("klua.cli.common")
local M = {}
local USAGE = [[
usage: klua produce TOPIC [-k SEP] [-p PARTITION] [-H name=value]... [--json]
  sends each line of standard input as a message; with -k SEP, the text before the first
  SEP is the key; -H adds a header to every message; --json prints one delivery report per line
]]

function M.main(...)
  local opts, pos = common.parse({ ... }, {
    ["--key-separator"] = "value", ["-k"] = "--key-separator", ["--partition"] = "value", ["-p"] = "--partition",
    ["--header"] = "list", ["-H"] = "--header", ["--json"] = "flag" }, USAGE)
  local topic = pos[1]
  if not topic or #pos > 1 then common.usage_error(USAGE, "produce needs exactly one TOPIC") end
  local partition = opts.partition and common.number(USAGE, "--partition", opts.partition)
  local headers
  for _, h in ipairs(opts.header or {}) do
    local name, value = h:match("^([^=]+)=(.*)$")
    if not name then common.usage_error(USAGE, "-H expects name=value, got " .. h) end
    headers = headers or {}
    headers[#headers + 1] = { name, value }
  end
  local sep = opts.key_separator
  local sent, failed, first_err = 0, 0, nil
  local p = klua.producer{ on_delivery = function(report, err)
    if err then
      failed = failed + 1
      first_err = first_err or err
    elseif opts.json then
      common.json_line{ topic = report.topic, partition = report.partition, offset = report.offset }
    end
  end }
  while true do
    local line = klua.read_line()
    if not line then break end
    local key, value = nil, line
    if sep then
      local at = line:find(sep, 1, true)
      if at then key, value = line:sub(1, at - 1), line:sub(at + #sep) end
    end
    local ok, err = p:send{ topic = topic, key = key, value = value, partition = partition, headers = headers }
    if not ok then common.fail(err) end
    sent = sent + 1
  end
  local ok, err = p:flush()
  if failed > 0 or not ok then
    common.fail(first_err or err)
  end
  io.stderr:write(string.format("klua: %d message(s) delivered to %s\n", sent, topic))
end

return M
