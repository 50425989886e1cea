-- klua config show [--json]: the effective configuration (command line, profile, environment)
-- with where each value comes from. Secret values are never printed.
local common = require("klua.cli.common")
local M = {}
local USAGE = [[
usage: klua config show [--json]
  prints every configured property, its value (secrets as ********) and its source, highest
  precedence first: -X, -b and --schema-registry, -F, the profile (--profile, KLUA_PROFILE or
  "default" in $XDG_CONFIG_HOME/klua/config.lua), KLUA_BROKERS and KLUA_SCHEMA_REGISTRY; without
  brokers, the embedded cluster
]]

-- Property names whose values are secrets: klua.secrets' rule (misspellings such as
-- sasl.pasword included), the same as the REPL's and klua.pretty's.
M.is_secret = require("klua.secrets").is_secret

-- The effective entries: one per key (the highest layer wins), sorted by key, with the sources
-- of the values it overrides.
function M.effective(entries)
  local by_key, order = {}, {}
  for _, e in ipairs(entries) do
    local cur = by_key[e.key]
    if not cur then
      cur = { key = e.key, overrides = {} }
      by_key[e.key] = cur
      order[#order + 1] = e.key
    else
      table.insert(cur.overrides, 1, cur.source)
    end
    cur.value, cur.source = e.value, e.source
  end
  table.sort(order)
  local out = {}
  for _, k in ipairs(order) do
    local e = by_key[k]
    local shown = require("klua.secrets").shown(k, e.value)
    if shown ~= e.value then e.value, e.redacted = shown, true end
    if #e.overrides == 0 then e.overrides = nil end
    out[#out + 1] = e
  end
  return out
end

local function config_file()
  local xdg = os.getenv("XDG_CONFIG_HOME")
  if xdg and xdg ~= "" then return xdg .. "/klua/config.lua" end
  local home = os.getenv("HOME")
  return home and home ~= "" and home .. "/.config/klua/config.lua" or nil
end

function M.main(...)
  local opts, pos = common.parse({ ... }, { ["--json"] = "flag" }, USAGE)
  if pos[1] ~= "show" or pos[2] then common.usage_error(USAGE, "expected: klua config show [--json]") end
  local entries = M.effective(klua.config_entries())
  local brokers = false
  for _, e in ipairs(entries) do
    if e.key == "bootstrap.servers" or e.key == "metadata.broker.list" then brokers = true end
  end
  if not brokers then
    table.insert(entries, 1, { key = "bootstrap.servers", value = "(embedded mock cluster, started by the first client)",
                               source = "no broker configured" })
    table.sort(entries, function(a, b) return a.key < b.key end)
  end
  local path = config_file()
  if opts.json then
    common.json_line{ config_file = path or klua.json.null, entries = klua.json.array(entries) }
    return
  end
  io.stdout:write("config file: ", path or "(none: neither XDG_CONFIG_HOME nor HOME is set)", "\n")
  local rows = {}
  for _, e in ipairs(entries) do
    local source = e.source
    if e.overrides then source = source .. " (over " .. table.concat(e.overrides, ", ") .. ")" end
    rows[#rows + 1] = { key = e.key, value = e.value, source = source }
  end
  common.print_table(rows, { { key = "key", title = "PROPERTY" }, { key = "value", title = "VALUE" },
                             { key = "source", title = "SOURCE" } })
end

return M
