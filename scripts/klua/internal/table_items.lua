-- Table traversal for klua's per-message Lua paths (klua.avro's encoders and JSON mapping,
-- klua.json_schema's object keywords and deep equality), which never iterate with pairs/next:
-- Debian's LuaJIT 2.1.0-beta3 (git 20220320) can miscompile a compiled next() into a truncated
-- pointer and crash (bindings/table_items.cpp says how). Its two helpers are classic C functions,
-- which the JIT stitches around instead of compiling:
--   table_items(t) -> { k1, v1, k2, v2, ... }, n   (a copy of the entries, in next's order)
--   count(t) -> n                                   (no copy)
local reg = debug.getregistry()
local table_items, table_count = reg["klua.table_items"], reg["klua.table_count"]
assert(table_items and table_count, "klua.internal.table_items needs the host's klua.table_items (bindings/table_items.cpp)")

local M = { table_items = table_items, count = table_count }

-- for _, k, v in items(t) do ... end: pairs(t) without next (a stateless iterator over the copy,
-- so a loop that returns early leaves nothing behind).
local function items_next(kv, i)
  i = i + 2
  local k = kv[i]
  if k ~= nil then return i, k, kv[i + 1] end
end
function M.items(t)
  return items_next, (table_items(t)), -1
end

function M.is_empty(t)
  return table_count(t) == 0
end

return M
