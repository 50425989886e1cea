-- Build step: writes a Lua chunk returning a text file's content (luajit embed_text.lua IN OUT),
-- so the file can be compiled to bytecode and bundled like the scripts (README.md for :help).
local inp, out = arg[1], arg[2]
assert(inp and out, "usage: luajit embed_text.lua IN OUT")
local f = assert(io.open(inp, "rb"))
local s = f:read("*a")
f:close()
local o = assert(io.open(out, "wb"))
o:write("return ", string.format("%q", s), "\n")
o:close()
