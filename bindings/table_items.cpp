// debug.getregistry()["klua.table_items"](t) -> { k1, v1, k2, v2, ... }, n: a table's entries (raw,
// in next's order) copied out by a C function, for klua's Lua libraries' per-message traversals
// (scripts/klua/internal/table_items.lua wraps it: avro's encoders and JSON mapping, json_schema's
// object keywords and deep equality). debug.getregistry()["klua.table_count"](t) -> n: how many
// entries, without the copy (emptiness, min/maxProperties, telling arrays from objects).
//
// Why not pairs/next: the LuaJIT klua is built against on Debian 12 (2.1.0-beta3+git20220320)
// compiles next()/pairs() loops to a call of lj_vm_next returning a pointer and an index in
// RAX:RDX, and when the register allocator wants them the other way round it swaps them with a
// 32-bit XCHG, which cuts the pointer to its low 32 bits: the trace then reads a wild address
// and klua segfaults (upstream LuaJIT 5e3c45c4 "x64: Fix RETHI/RETLO swap after call", April
// 2022). LuaJIT does not compile calls of a classic C function like this one (it stitches the
// trace around it), so the traversal is never compiled code.
#include <lua.hpp>

#include "host/error.hpp"

namespace klua {

namespace {

int count_entries(lua_State* L) {
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    lua_pop(L, 1);
    n++;
  }
  return n;
}

int l_table_count(lua_State* L) {
  check_arg_type(L, 1, LUA_TTABLE, "klua.table_count");
  lua_pushinteger(L, count_entries(L));
  return 1;
}

int l_table_items(lua_State* L) {
  check_arg_type(L, 1, LUA_TTABLE, "klua.table_items");
  int n = count_entries(L);
  lua_createtable(L, 2 * n, 0);
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    lua_pushvalue(L, -2);
    lua_rawseti(L, 2, ++i);  // key
    lua_rawseti(L, 2, ++i);  // value (pops it, leaves the key for lua_next)
  }
  lua_pushinteger(L, n);
  return 2;
}

}  // namespace

void open_table_items(lua_State* L) {
  lua_pushcfunction(L, l_table_items);
  lua_setfield(L, LUA_REGISTRYINDEX, "klua.table_items");
  lua_pushcfunction(L, l_table_count);
  lua_setfield(L, LUA_REGISTRYINDEX, "klua.table_count");
}

}  // namespace klua
