-- Tab completion for the REPL: globals, module members (`klua.json.en` -> `klua.json.encode`),
-- methods of the value before the cursor (`admin:li` -> `admin:list_topics`, found through the
-- userdata's metatable __index), REPL commands, and API names after `:help`.
-- Completion never runs script code: it reads tables with rawget and follows __index only when
-- it is a table (the klua table's lazy modules are the one exception: they load on first use).
local M = {}

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
  "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }
local COMMANDS = { ":help", ":connect", ":quit" }

local function index_table(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(rawget(mt, "__index")) == "table" then return rawget(mt, "__index") end
  return nil
end

-- v[name] without running code (the klua table loads its lazy modules).
local function field(v, name)
  if v == klua then return klua[name] end
  local seen = 0
  while v ~= nil and seen < 10 do
    if type(v) == "table" then
      local x = rawget(v, name)
      if x ~= nil then return x end
    end
    v = index_table(v)
    seen = seen + 1
  end
  return nil
end

local function lookup(path)
  local v = _G
  for name in path:gmatch("[^.:]+") do
    v = field(v, name)
    if v == nil then return nil end
  end
  return v
end

-- The names reachable from v (its own keys and those of its __index tables); methods_only keeps
-- functions and leaves out private names (a leading underscore).
local function names(v, methods_only)
  local out, seen, depth = {}, {}, 0
  local function add(k, x)
    if type(k) ~= "string" or seen[k] or not k:match("^[%a_][%w_]*$") then return end
    if methods_only and (type(x) ~= "function" or k:sub(1, 1) == "_") then return end
    if k:match("^__") then return end
    seen[k] = true
    out[#out + 1] = k
  end
  local t = v
  while t ~= nil and depth < 10 do
    if type(t) == "table" then
      for k, x in pairs(t) do add(k, x) end
    end
    t = index_table(t)
    depth = depth + 1
  end
  if v == klua then
    -- modules that load on first use are named in the docs (klua.provision, klua.lag, ...)
    for _, n in ipairs(require("klua.help").names()) do
      local m = n:match("^klua%.([%a_][%w_]*)")
      if m then add(m, klua[m]) end
    end
  end
  return out
end

local function starting_with(list, prefix, before)
  local out = {}
  for _, k in ipairs(list) do
    if k:sub(1, #prefix) == prefix then out[#out + 1] = before .. k end
  end
  table.sort(out)
  return out
end

-- Candidates replacing text (the word before the cursor); line is the whole input line.
function M.candidates(text, line, start, stop)
  if type(text) ~= "string" then error("candidates: text must be a string", 2) end
  line = line or text
  if start == 0 and text:sub(1, 1) == ":" then return starting_with(COMMANDS, text, "") end
  if line:match("^:help%s") then return starting_with(require("klua.help").names(), text, "") end
  local path, sep, partial = text:match("^(.-)([.:])([%w_]*)$")
  if path and path ~= "" then
    local v = lookup(path)
    if v == nil then return {} end
    return starting_with(names(v, sep == ":"), partial, path .. sep)
  end
  if text:find("[.:]") then return {} end
  local all = names(_G, false)
  for _, k in ipairs(KEYWORDS) do all[#all + 1] = k end
  return starting_with(all, text, "")
end

return M
