-- klua completion bash: prints a bash completion script for klua (subcommands, options, files).
--   source <(klua completion bash)        or save it as ~/.local/share/bash-completion/completions/klua
-- The script is written from the tables below; tests/cli_test.sh checks them against every
-- subcommand's --help, so a new option or command that is not listed here fails the tests.
local common = require("klua.cli.common")
local M = {}
local USAGE = [[
usage: klua completion bash
  prints a bash completion script: source <(klua completion bash)
]]

M.GLOBAL_OPTIONS = { "-b", "--brokers", "--embedded", "-X", "-F", "-d", "--debug", "-p", "--profile", "--metrics", "-e",
  "-h", "--help", "--version", "--log-format", "--log-level", "--schema-registry" }
-- Global options that also go after a command (with a value: all but --embedded); -p is left out,
-- since after produce, consume and replay it is their partition.
M.GLOBAL_AFTER = { "-b", "--brokers", "--embedded", "-X", "-F", "-d", "--debug", "--profile", "--log-format",
  "--log-level", "--schema-registry" }
M.GLOBAL_AFTER_VALUES = { "-b", "--brokers", "-X", "-d", "--debug", "--profile", "--log-format", "--log-level",
  "--schema-registry" }
-- Global options followed by a value, and which values complete as file names.
M.GLOBAL_VALUES = { "-b", "--brokers", "-X", "-F", "-d", "--debug", "-p", "--profile", "--metrics", "-e",
  "--log-format", "--log-level", "--schema-registry" }
M.GLOBAL_FILES = { "-F" }

-- The values of --value-format and --key-format (scripts/klua/cli/serde_formats.lua).
local FORMATS = { "string", "json", "avro", "protobuf", "json-schema" }

-- Subcommands: their options, the options taking a value, and whether their arguments are files;
-- words_after: the values an option completes to; files_after: options whose value is a file.
M.COMMANDS = {
  run = { files = true, options = {} },
  repl = { options = {} },
  test = { files = true, options = { "--filter", "--tap", "--junit", "--timeout" },
           values = { "--filter", "--junit", "--timeout" } },
  topics = { options = { "--internal", "--json" } },
  groups = { options = { "--json" } },
  topic = { words = { "list", "describe", "create", "delete", "alter" },
            options = { "--internal", "--all", "--partitions", "--replication-factor", "--config", "--delete-config",
                        "--if-not-exists", "--json" },
            values = { "--partitions", "--replication-factor", "--config", "--delete-config" } },
  group = { words = { "list", "describe", "delete", "reset" },
            options = { "--topic", "--all-topics", "--to-earliest", "--to-latest", "--to-offset", "--to-datetime",
                        "--by-duration", "--shift-by", "--execute", "--create", "--json" },
            values = { "--topic", "--to-offset", "--to-datetime", "--by-duration", "--shift-by" } },
  offsets = { options = { "-p", "--partition", "--time", "--json" }, values = { "-p", "--partition", "--time" } },
  metadata = { options = { "--json" } },
  lag = { options = { "--max-lag", "--json" }, values = { "--max-lag" } },
  produce = { options = { "-k", "-K", "--key-separator", "-p", "--partition", "-H", "--header", "-Z", "--null",
                          "--keep-empty", "--json", "--value-format", "--key-format", "--value-schema", "--key-schema",
                          "--value-schema-id", "--key-schema-id", "--value-message", "--key-message" },
              values = { "-k", "-K", "--key-separator", "-p", "--partition", "-H", "--header", "--value-format",
                         "--key-format", "--value-schema", "--key-schema", "--value-schema-id", "--key-schema-id",
                         "--value-message", "--key-message" },
              words_after = { ["--value-format"] = FORMATS, ["--key-format"] = FORMATS },
              files_after = { "--value-schema", "--key-schema" } },
  consume = { options = { "--from", "-n", "--count", "-e", "--exit", "-f", "--format", "--json", "--json-binary",
                          "-g", "--group", "-p", "--partition", "--filter", "--grep", "-Z", "--null", "-u",
                          "--unbuffered", "--value-format", "--key-format" },
              values = { "--from", "-n", "--count", "-f", "--format", "-g", "--group", "-p", "--partition",
                         "--json-binary", "--filter", "--grep", "--value-format", "--key-format" },
              words_after = { ["--value-format"] = FORMATS, ["--key-format"] = FORMATS } },
  provision = { files = true, options = { "--apply", "--check", "--prune", "--json" } },
  replay = { options = { "--from", "--to", "--since", "-p", "--partition", "--source-brokers", "--target-brokers",
                         "--rate", "--batch", "--group", "--at-least-once", "--keep-partition", "--no-timestamps",
                         "--no-headers", "--quiet", "--json", "--timeout" },
             values = { "--from", "--to", "--since", "-p", "--partition", "--source-brokers", "--target-brokers",
                        "--rate", "--batch", "--group", "--timeout" } },
  config = { words = { "show" }, options = { "--json" } },
  completion = { words = { "bash" }, options = {} },
  version = { options = {} },
  help = { options = {} },
}

local function words(list) return table.concat(list, " ") end

local function sorted_names()
  local names = {}
  for name in pairs(M.COMMANDS) do names[#names + 1] = name end
  table.sort(names)
  return names
end

function M.bash()
  local out = {}
  local function add(s) out[#out + 1] = s end
  add("# bash completion for klua (generated by `klua completion bash`)")
  add("_klua() {")
  add("  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd='' i")
  add("  COMPREPLY=()")
  add("  for ((i = 1; i < COMP_CWORD; i++)); do")
  add("    case ${COMP_WORDS[i]} in")
  add("      " .. table.concat(M.GLOBAL_VALUES, "|") .. ") ((i++)) ;;")
  add("      -*) ;;")
  add("      *) cmd=${COMP_WORDS[i]}; break ;;")
  add("    esac")
  add("  done")
  add("  if [[ -z $cmd ]]; then")
  add("    case $prev in")
  add("      " .. table.concat(M.GLOBAL_FILES, "|") .. ") COMPREPLY=($(compgen -f -- \"$cur\")); return ;;")
  add("      " .. table.concat(M.GLOBAL_VALUES, "|") .. ") return ;;")
  add("    esac")
  add("    if [[ $cur == -* ]]; then")
  add("      COMPREPLY=($(compgen -W '" .. words(M.GLOBAL_OPTIONS) .. "' -- \"$cur\"))")
  add("    else")
  add("      COMPREPLY=($(compgen -W '" .. words(sorted_names()) .. "' -- \"$cur\") $(compgen -f -- \"$cur\"))")
  add("    fi")
  add("    return")
  add("  fi")
  add("  case $prev in")
  add("    -F) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;")
  add("    " .. table.concat(M.GLOBAL_AFTER_VALUES, "|") .. ") return ;;")
  add("  esac")
  add("  case $cmd in")
  for _, name in ipairs(sorted_names()) do
    local c = M.COMMANDS[name]
    local values = c.values and #c.values > 0 and table.concat(c.values, "|") or nil
    add("    " .. name .. ")")
    if values then
      local cases = {}
      for _, o in ipairs(c.files_after or {}) do
        cases[#cases + 1] = o .. ") COMPREPLY=($(compgen -f -- \"$cur\")); return ;;"
      end
      local after = {}
      for o in pairs(c.words_after or {}) do after[#after + 1] = o end
      table.sort(after)
      for _, o in ipairs(after) do
        cases[#cases + 1] = o .. ") COMPREPLY=($(compgen -W '" .. words(c.words_after[o]) .. "' -- \"$cur\")); return ;;"
      end
      cases[#cases + 1] = values .. ") return ;;"
      add("      case $prev in " .. table.concat(cases, " ") .. " esac")
    end
    local opts = c.options
    if name ~= "run" then  -- after run FILE, arguments are the script's
      opts = {}
      for _, o in ipairs(c.options) do opts[#opts + 1] = o end
      for _, o in ipairs(M.GLOBAL_AFTER) do opts[#opts + 1] = o end
    end
    add("      if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W '" .. words(opts) .. " --help' -- \"$cur\"))")
    if c.words then
      add("      elif [[ $prev == " .. name .. " ]]; then COMPREPLY=($(compgen -W '" .. words(c.words) .. "' -- \"$cur\"))")
    end
    if c.files then add("      else COMPREPLY=($(compgen -f -- \"$cur\"))") end
    add("      fi ;;")
  end
  add("    *) COMPREPLY=($(compgen -f -- \"$cur\")) ;;  # klua FILE args")
  add("  esac")
  add("}")
  add("complete -o filenames -F _klua klua")
  return table.concat(out, "\n") .. "\n"
end

function M.main(...)
  local _, pos = common.parse({ ... }, {}, USAGE)
  if pos[1] == nil then common.usage_error(USAGE, "completion needs a shell: klua completion bash") end
  if pos[1] ~= "bash" then common.usage_error(USAGE, "no completion for the shell '" .. pos[1] .. "': klua completion bash is the one there is") end
  if pos[2] then common.usage_error(USAGE, "unexpected argument '" .. pos[2] .. "' to completion") end
  io.stdout:write(M.bash())
end

return M
