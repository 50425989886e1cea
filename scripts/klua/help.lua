-- klua.help: the REPL's :help, read from README.md, which is bundled into the binary at build
-- time (the module klua.readme). The README is the single source: a block (table row, bullet,
-- paragraph) documents every call written in it as `name(...)` or `name{...}`, so help can
-- never disagree with the README, and tests/lua/help_test.lua checks that every public function
-- has a block.
--   help.text([name]) -> string    help.lookup(name) -> list of {section=, text=}    help.names()
local M = {}

local index  -- built on first use: { names = {full name -> blocks}, short = {...}, sections = {...} }

local function add(map, key, block)
  local list = map[key]
  if not list then
    list = {}
    map[key] = list
  end
  for _, b in ipairs(list) do
    if b == block then return end
  end
  list[#list + 1] = block
end

-- Splits the README into blocks under their "## " section.
local function blocks_of(readme)
  local blocks, sections = {}, {}
  local section, current, in_code = nil, nil, false
  local function close() current = nil end
  for line in (readme .. "\n"):gmatch("(.-)\n") do
    if line:match("^```") then
      in_code = not in_code
      close()
    elseif in_code then
      -- code samples are not documentation blocks
    elseif line:match("^## ") then
      section = { title = line:sub(4), blocks = {} }
      sections[#sections + 1] = section
      close()
    elseif line:match("^%s*$") or line:match("^| %-%-%-") then
      close()
    elseif section then
      if line:match("^%- ") or line:match("^| ") or not current then
        current = { section = section.title, text = line }
        blocks[#blocks + 1] = current
        section.blocks[#section.blocks + 1] = current
        if line:match("^| ") then close() end  -- a table row is a block of its own
      else
        current.text = current.text .. "\n" .. line
      end
    end
  end
  return blocks, sections
end

local function build()
  local readme = require("klua.readme")
  local blocks, sections = blocks_of(readme)
  -- calls (`name(...)`, `name{...}`) first; names written without a call (`delete_groups`,
  -- `klua.provision`) document them too, but only where no call does
  local names, short, mentions, short_mentions = {}, {}, {}, {}
  for _, b in ipairs(blocks) do
    for code in b.text:gmatch("`([^`]+)`") do
      for name in code:gmatch("([%a_][%w_%.:]*)[%({]") do
        add(names, name, b)
        add(short, name:match("([%w_]+)$"), b)
      end
      if code:match("^[%a_][%w_%.:]*$") and code:find("[_%.:]") then
        add(mentions, code, b)
        add(short_mentions, code:match("([%w_]+)$"), b)
      end
    end
  end
  for map, extra in pairs({ [names] = mentions, [short] = short_mentions }) do
    for k, list in pairs(extra) do
      if not map[k] then map[k] = list end
    end
  end
  index = { names = names, short = short, sections = sections }
  return index
end

-- The blocks documenting name: `klua.json.encode`, `p:produce`, `admin:list_topics`, or a bare
-- method name (`list_topics`); a receiver spelt differently from the README's still matches by
-- the method's name.
function M.lookup(name)
  if type(name) ~= "string" or name == "" then error("help.lookup: name must be a non-empty string", 2) end
  local ix = index or build()
  name = name:gsub("%(%)$", "")
  if ix.names[name] then return ix.names[name] end
  local last = name:match("([%w_]+)$")
  return last and ix.short[last] or nil
end

-- Every documented call name, sorted (for completion).
function M.names()
  local ix = index or build()
  local out = {}
  for k in pairs(ix.names) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function strip(text)
  if not text:match("^| ") then return text end
  return (text:gsub("^| ", ""):gsub(" |$", ""):gsub("` | ", "`  --  "))
end

local OVERVIEW = [[
REPL commands:
  :help              this text          :help NAME   a function's documentation (:help list_topics)
  :connect BROKERS   new clients connect to BROKERS (without it: -b, the profile, KLUA_BROKERS, or the embedded cluster)
  :quit              leave (as does Ctrl-D); Ctrl-C cancels the running line
Lines: `=expr` or a bare expression prints its value; an incomplete chunk continues on the next line;
each chunk runs as a task while the loop goes on (klua.spawn keeps work running in the background).
Tab completes globals, module members (klua.json.en) and methods (admin:li).
Topics (:help TOPIC):]]

-- The help text for name (a function or a README section such as "consumer"), or an overview.
function M.text(name)
  local ix = index or build()
  if name == nil or name == "" then
    local titles = {}
    for _, s in ipairs(ix.sections) do titles[#titles + 1] = "  " .. s.title end
    return OVERVIEW .. "\n" .. table.concat(titles, "\n")
  end
  if type(name) ~= "string" then error("help.text: name must be a string", 2) end
  local found = M.lookup(name)
  if found then
    local out, last = {}, nil
    for _, b in ipairs(found) do
      if b.section ~= last then out[#out + 1] = "[" .. b.section .. "]" end
      last = b.section
      out[#out + 1] = strip(b.text)
    end
    return table.concat(out, "\n")
  end
  local lower = name:lower()
  for _, s in ipairs(ix.sections) do
    if s.title:lower():find(lower, 1, true) then
      local out = { "[" .. s.title .. "]" }
      for _, b in ipairs(s.blocks) do out[#out + 1] = strip(b.text) end
      return table.concat(out, "\n")
    end
  end
  return "no help for " .. name .. " (:help lists the topics)"
end

return M
