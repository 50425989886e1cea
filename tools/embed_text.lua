-- Build step: writes a Lua chunk returning a text file's content (luajit embed_text.lua IN OUT),
-- so the file can be compiled to bytecode and bundled like the scripts; or, with --pages, a chunk
-- returning a table of several files by base name without ".md" (luajit embed_text.lua --pages
-- OUT FILE...: docs/*.md as klua.docs, the reference that :help and `klua help` read).
local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
if arg[1] == "--pages" then
  local out = arg[2]
  assert(out and arg[3], "usage: luajit embed_text.lua --pages OUT FILE...")
  local names = {}
  for i = 3, #arg do names[#names + 1] = arg[i] end
  table.sort(names)
  local o = assert(io.open(out, "wb"))
  o:write("return {\n")
  for _, path in ipairs(names) do
    local name = path:match("([^/]+)%.md$") or path:match("([^/]+)$")
    o:write("[", string.format("%q", name), "] = ", string.format("%q", slurp(path)), ",\n")
  end
  o:write("}\n")
  o:close()
  return
end
local inp, out = arg[1], arg[2]
assert(inp and out, "usage: luajit embed_text.lua IN OUT")
local o = assert(io.open(out, "wb"))
o:write("return ", string.format("%q", slurp(inp)), "\n")
o:close()
