// next and pairs as classic C functions, on a LuaJIT that can miscompile LuaJIT's own.
//
// Why: Debian 12's `luajit` package (2.1.0-beta3, git 20220320) compiles next() and pairs() loops
// (BC_ITERN, and next called directly) into a call of lj_vm_next, which returns a node pointer and
// an index in RAX:RDX. When the register allocator wants the two the other way round, it swaps them
// with a 32-bit XCHG that cuts the pointer to its low half; the trace then reads a wild address and
// the process dies of SIGSEGV (upstream LuaJIT 5e3c45c4 "x64: Fix RETHI/RETLO swap after call",
// April 2022). Whether a loop meets it depends on the trace's register allocation, so any script's
// pairs() loop may: klua's own Avro encoder did under fuzzing (tests/fuzz/avro_jit_replay.lua).
//
// klua builds against Debian's `luajit2` instead (OpenResty's LuaJIT, 2.1-20230119, which carries
// the fix; tools/dev, CMakeLists.txt). Both provide libluajit-5.1.so.2, so a klua can still meet
// the old library at run time; there, and on any LuaJIT without OpenResty's extensions, next and
// pairs become these C functions. LuaJIT compiles no call of a classic C function (the trace is
// stitched around it), and BC_ISNEXT turns a `for k, v in pairs(t)` whose iterator is not the fast
// function into a plain BC_ITERC, so no next() is ever compiled. Measured on the old LuaJIT: a
// pairs() loop costs 30-80 ns per entry instead of 4-15, and p:send 75 ns more per message.
//
// Told apart by OpenResty's table.nkeys module (lib_table.c registers it in package.preload): no
// version string separates the two (both say "LuaJIT 2.1.0-beta3"). KLUA_UNCOMPILED_NEXT=1 forces
// the C functions anyway (tests/lua/runtime_test.lua runs the fallback so; or to rule the JIT's
// next() out while chasing a crash).
//
// Same behaviour otherwise: raw traversal (neither LuaJIT honours __pairs), the same errors
// ("invalid key to 'next'" from lua_next, a table expected as argument 1).
#include "host/lua_next.hpp"

#include <lua.hpp>

#include <cstdlib>
#include <cstring>

namespace klua {

namespace {

int l_next(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_next(L, 1)) return 2;
  lua_pushnil(L);
  return 1;
}

int l_pairs(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

bool is_openresty_luajit(lua_State* L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_getfield(L, -1, "table.nkeys");
  bool found = !lua_isnil(L, -1);
  lua_pop(L, 3);
  return found;
}

}  // namespace

bool install_uncompiled_next(lua_State* L) {
  const char* force = std::getenv("KLUA_UNCOMPILED_NEXT");
  if (!(force && std::strcmp(force, "1") == 0) && is_openresty_luajit(L)) return false;
  lua_pushcfunction(L, l_next);
  lua_pushvalue(L, -1);
  lua_setglobal(L, "next");
  lua_pushcclosure(L, l_pairs, 1);
  lua_setglobal(L, "pairs");
  return true;
}

}  // namespace klua
