-- Build step (luajit extract_cdefs.lua bindings/ffi.h OUT.lua): copies every region between
-- "/* KLUA_CDEF_BEGIN */" and "/* KLUA_CDEF_END */" of the header into a Lua chunk that declares
-- them to LuaJIT's FFI once per Lua state and returns the ffi module. Fails the build when a
-- region is unterminated, or when a struct declared in one has no static_assert on its size.
local inp, out = arg[1], arg[2]
assert(inp and out, "usage: luajit extract_cdefs.lua ffi.h OUT.lua")
local f = assert(io.open(inp, "rb"))
local text = f:read("*a")
f:close()
local regions, pos = {}, 1
while true do
  local b, be = text:find("/%* KLUA_CDEF_BEGIN %*/\n", pos)
  if not b then break end
  local e, ee = text:find("/%* KLUA_CDEF_END %*/", be + 1)
  if not e then error(inp .. ": KLUA_CDEF_BEGIN without KLUA_CDEF_END", 0) end
  regions[#regions + 1] = text:sub(be + 1, e - 1)
  pos = ee + 1
end
if #regions == 0 then error(inp .. ": no KLUA_CDEF region", 0) end
local cdef = table.concat(regions, "\n")
for name in cdef:gmatch("typedef%s+struct%s+([%w_]+)") do
  if not text:find("static_assert%(sizeof%(" .. name .. "%)") then
    error(inp .. ": struct " .. name .. " has no static_assert on its size (see the convention at the top)", 0)
  end
end
local o = assert(io.open(out, "wb"))
o:write("-- generated from bindings/ffi.h by tools/extract_cdefs.lua: edit the header, not this\n",
  "local ffi = require(\"ffi\")\n",
  "local reg = debug.getregistry()\n",
  "if not reg[\"klua.ffi_cdefs\"] then\n",
  "  ffi.cdef(", string.format("%q", cdef), ")\n",
  "  reg[\"klua.ffi_cdefs\"] = true\n",
  "end\n",
  "return ffi\n")
o:close()
