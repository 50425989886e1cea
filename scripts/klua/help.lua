-- klua.help: the reference documentation (docs/*.md, bundled into the binary at build time as the
-- module klua.docs, a table page name -> Markdown text), read by the REPL's :help and `klua help`.
-- docs/ is the single source, so the help can never disagree with the reference.
--
-- The layout every page follows (docs/index.md says it for writers; tests/lua/docs_test.lua
-- checks it):
--   # NAME                  the page (one per module); prose up to the first "## " or "### "
--   ## Section              prose about several entries (delivery semantics, limits, ...)
--   ### SIGNATURE           an entry: `c:poll([opts])`, `klua.json.encode(value [, opts])`,
--                           `klua topics [--json]`; consecutive headings share the body below
--                           them (one body for several close functions)
--   ```lua / ```lua broker / ```lua process / ```sh   examples, run by the test suite
-- An entry's name is its signature up to the first "(", "{", "[" or space (for `klua WORD ...`
-- headings, the two words): "c:poll", "klua.json.encode", "klua topics".
--
--   help.text([name]) -> string    help.lookup(name) -> list of entries (or nil)
--   help.names() -> sorted names   help.pages() -> parsed pages   help.show([name]) prints, paged
--   help.main(...): `klua help [NAME...]`
local M = {}

local index  -- built on first use

local function entry_name(sig)
  local cmd = sig:match("^(klua %-?%l[%w_-]*)")
  if cmd then return cmd end
  return sig:match("^([%a_][%w_%.:]*)")
end

local function short_of(name)
  return name:match("([%w_]+)$")
end

local function trim_blank(lines)
  while #lines > 0 and lines[#lines]:match("^%s*$") do lines[#lines] = nil end
  while #lines > 0 and lines[1]:match("^%s*$") do table.remove(lines, 1) end
  return lines
end

-- Parses one page: { name=, title=, text=, intro=, sections = {{title=, text=}}, entries = {...} }.
-- An entry: { page=, names = {...}, signatures = {...}, heading_lines=, text=, examples = {{kind=, code=, line=}} }.
local function parse_page(name, text)
  local page = { name = name, text = text, entries = {}, sections = {}, examples = {} }
  local entry, section
  local in_code, code_kind, code_lines, code_line
  local intro = {}
  local lineno = 0
  local heading_run = false  -- the previous non-blank line was an entry heading
  local function finish_entry()
    if entry then
      entry.text = table.concat(trim_blank(entry.lines), "\n")
      entry.lines = nil
      entry = nil
    end
  end
  local function finish_section()
    if section then
      section.text = table.concat(trim_blank(section.lines), "\n")
      section.lines = nil
      section = nil
    end
  end
  for line in (text .. "\n"):gmatch("(.-)\n") do
    lineno = lineno + 1
    local target = entry and entry.lines or section and section.lines or intro
    if in_code then
      if line:match("^```%s*$") then
        in_code = false
        if code_kind then
          local ex = { kind = code_kind, code = table.concat(code_lines, "\n"), line = code_line, page = name,
                       entry = entry and entry.names[1] }
          page.examples[#page.examples + 1] = ex
          if entry then entry.examples[#entry.examples + 1] = ex end
        end
      else
        code_lines[#code_lines + 1] = line
      end
      target[#target + 1] = line
      if section and entry then section.lines[#section.lines + 1] = line end
    elseif line:match("^```") then
      in_code = true
      local info = line:match("^```%s*(.-)%s*$")
      local lang, rest = info:match("^(%S*)%s*(.*)$")
      code_kind = nil
      if lang == "lua" then
        code_kind = rest == "" and "lua" or "lua " .. rest
      elseif lang == "sh" then
        code_kind = rest == "" and "sh" or "sh " .. rest
      end
      code_lines, code_line = {}, lineno
      target[#target + 1] = line
      if section and entry then section.lines[#section.lines + 1] = line end
      heading_run = false
    elseif line:match("^# ") and not page.title then
      page.title = line:sub(3)
      intro[#intro + 1] = line
    elseif line:match("^## ") then
      finish_entry()
      finish_section()
      section = { title = line:sub(4), lines = { line }, entries = {} }
      page.sections[#page.sections + 1] = section
      heading_run = false
    elseif line:match("^### ") then
      local sig = line:sub(5):gsub("^`(.*)`$", "%1")
      local n = entry_name(sig)
      if heading_run and entry then
        entry.signatures[#entry.signatures + 1] = sig
        if n then entry.names[#entry.names + 1] = n end
        entry.lines[#entry.lines + 1] = line
      else
        finish_entry()
        entry = { page = name, names = { n }, signatures = { sig }, lines = { line }, examples = {},
                  section = section and section.title, line = lineno }
        page.entries[#page.entries + 1] = entry
        if section then section.entries[#section.entries + 1] = entry end
      end
      if section then section.lines[#section.lines + 1] = line end
      heading_run = true
    else
      if not line:match("^%s*$") then heading_run = false end
      target[#target + 1] = line
      if section and entry then section.lines[#section.lines + 1] = line end
    end
  end
  finish_entry()
  finish_section()
  page.intro = table.concat(trim_blank(intro), "\n")
  page.title = page.title or name
  return page
end

local function add(map, key, item)
  if not key then return end
  local list = map[key]
  if not list then
    list = {}
    map[key] = list
  end
  for _, x in ipairs(list) do
    if x == item then return end
  end
  list[#list + 1] = item
end

local ORDER = { "index", "klua", "producer", "consumer", "admin", "lag", "json", "transactions", "provision",
                "worker", "replay", "envelope", "testkit", "cli" }

local function build()
  local docs = require("klua.docs")
  local pages, by_name = {}, {}
  local names, qualified, short, sections = {}, {}, {}, {}
  local seen = {}
  local function take(pname)
    if seen[pname] or not docs[pname] then return end
    seen[pname] = true
    local page = parse_page(pname, docs[pname])
    pages[#pages + 1] = page
    by_name[pname] = page
    for _, e in ipairs(page.entries) do
      for _, n in ipairs(e.names) do
        add(names, n, e)
        local s = short_of(n)
        add(short, s, e)
        add(qualified, pname .. "." .. s, e)
        add(qualified, pname .. ":" .. s, e)
      end
    end
    for _, s in ipairs(page.sections) do add(sections, s.title:lower(), s) end
  end
  for _, n in ipairs(ORDER) do take(n) end
  local rest = {}
  for n in pairs(docs) do rest[#rest + 1] = n end
  table.sort(rest)
  for _, n in ipairs(rest) do take(n) end
  index = { pages = pages, by_name = by_name, names = names, qualified = qualified, short = short,
            sections = sections }
  return index
end

-- The parsed pages, in reading order.
function M.pages()
  return (index or build()).pages
end

-- The entries documenting name: the name as written in a heading (`c:poll`, `klua.json.encode`,
-- `klua topics`), page.name (`consumer.poll`, `admin.list_topics`), or a bare name (`list_topics`,
-- every entry of that name). A receiver spelt differently from the docs' still matches by the
-- function's name.
function M.lookup(name)
  if type(name) ~= "string" or name == "" then error("help.lookup: name must be a non-empty string", 2) end
  local ix = index or build()
  name = name:gsub("%(%)$", "")
  if ix.names[name] then return ix.names[name] end
  if ix.qualified[name] then return ix.qualified[name] end
  local last = short_of(name)
  if last and name:find("[%.:]") then return ix.short[last] end
  return last and ix.short[last] or nil
end

-- Every documented name, sorted (for completion): the names in headings, their last part
-- (`list_topics`) and the page names.
function M.names()
  local ix = index or build()
  local out, seen = {}, {}
  for k in pairs(ix.names) do
    out[#out + 1] = k
    seen[k] = true
  end
  for k in pairs(ix.short) do
    if not seen[k] then
      out[#out + 1] = k
      seen[k] = true
    end
  end
  for _, p in ipairs(ix.pages) do
    if not seen[p.name] then out[#out + 1] = p.name end
  end
  table.sort(out)
  return out
end

local OVERVIEW = [[
REPL commands:
  :help              this text          :help NAME   a page or a function (:help consumer, :help c:poll)
  :connect BROKERS   new clients connect to BROKERS (without it: -b, the profile, KLUA_BROKERS, or the embedded cluster)
  :quit              leave (as does Ctrl-D); Ctrl-C cancels the running line
Lines: `=expr` or a bare expression prints its value; an incomplete chunk continues on the next line;
each chunk runs as a task while the loop goes on (klua.spawn keeps work running in the background).
Tab completes globals, module members (klua.json.en) and methods (admin:li).]]

-- The list of pages, one line each: name and the first line of its introduction.
local function topics()
  local out = {}
  for _, p in ipairs(M.pages()) do
    if p.name ~= "index" then
      local first = p.intro:gsub("^#[^\n]*\n*", ""):match("^[^\n]*") or ""
      if #first > 80 then first = first:sub(1, 77) .. "..." end
      out[#out + 1] = string.format("  %-13s %s", p.name, first)
    end
  end
  return "Reference pages (help NAME: a page, or one function as consumer.poll, c:poll, list_topics):\n"
    .. table.concat(out, "\n")
end

local function render_entries(list)
  local out, last = {}, nil
  for _, e in ipairs(list) do
    local text = e.text
    if e.page ~= last then text = "[" .. e.page .. "]\n" .. text end
    last = e.page
    out[#out + 1] = text
  end
  return table.concat(out, "\n\n")
end

-- The help text for name (a page such as "consumer", a function, or a section title), or the
-- overview. The REPL adds its own commands to the overview (opts.repl).
function M.text(name, opts)
  local ix = index or build()
  if name == nil or name == "" then
    if opts and opts.repl == false then return topics() end
    return OVERVIEW .. "\n" .. topics()
  end
  if type(name) ~= "string" then error("help.text: name must be a string", 2) end
  name = name:gsub("%(%)$", "")
  if ix.names[name] then return render_entries(ix.names[name]) end
  local page = ix.by_name[name] or ix.by_name[name:lower()]
  if page then return (page.text:gsub("%s+$", "")) end
  local found = M.lookup(name)
  if found then return render_entries(found) end
  local lower = name:lower()
  local secs = ix.sections[lower]
  if not secs then
    for title, list in pairs(ix.sections) do
      if title:find(lower, 1, true) then
        secs = list
        break
      end
    end
  end
  if secs then
    local out = {}
    for _, s in ipairs(secs) do out[#out + 1] = s.text end
    return table.concat(out, "\n\n")
  end
  return "no help for " .. name .. " (help lists the pages)"
end

-- Did a shell command exit 0?
local function sh_ok(cmd)
  local ok, how, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end  -- LuaJIT without 5.2 compatibility
  return ok == true and how == "exit" and code == 0
end

-- Is standard output a terminal? (the shell's test inherits klua's stdout)
local function stdout_is_terminal()
  return sh_ok("test -t 1")
end

local function terminal_lines()
  local n = tonumber(os.getenv("LINES") or "")
  if n then return n end
  local f = io.popen("stty size 2>/dev/null </dev/tty")
  if f then
    local s = f:read("*a") or ""
    f:close()
    n = tonumber(s:match("^(%d+)"))
  end
  return n or 24
end

-- Writes text to standard output, through a pager when it is longer than the terminal and
-- standard output is a terminal ($PAGER, else `less -FRX`; plain output when neither runs).
-- Never pages when stdout is piped. Returns true when a pager showed it.
local function page_out(text, out)
  out = out or io.stdout
  text = text:gsub("\n*$", "\n")
  local _, count = text:gsub("\n", "")
  if stdout_is_terminal() and count >= terminal_lines() - 1 then
    local pager = os.getenv("PAGER")
    if pager == nil or pager == "" then pager = "less -FRX" end
    -- LuaJIT's popen close gives no exit status, so a pager that is not there is found first
    local program = pager:match("^%s*(%S+)")
    if program and sh_ok("command -v '" .. program:gsub("'", "'\\''") .. "' >/dev/null 2>&1") then
      out:flush()
      local p = io.popen(pager, "w")
      if p then
        p:write(text)
        p:close()
        return true
      end
    end
  end
  out:write(text)
  return false
end

-- Shows the help for name (as text) on standard output, paged when long.
function M.show(name, opts)
  return page_out((M.text(name, opts)))
end

-- `klua help [NAME...]`: a page or an entry; without a name the list of pages. Exit 1 when there
-- is no help for a name.
function M.main(...)
  local args = { ... }
  if args[1] == "--help" or args[1] == "-h" then
    io.stdout:write("usage: klua help [NAME...]\n  the reference: a page (consumer) or an entry (consumer.poll, c:poll, list_topics)\n")
    return 0
  end
  if #args == 0 then
    io.stdout:write(topics(), "\n")
    return 0
  end
  local status = 0
  for _, name in ipairs(args) do
    local text = M.text(name, { repl = false })
    if text:match("^no help for ") then
      io.stderr:write("klua help: ", text, "\n")
      status = 1
    else
      page_out(text)
    end
  end
  if status ~= 0 then klua.exit(status) end
  return status
end

return M
