// next and pairs as classic C functions when the LuaJIT klua runs on can miscompile them
// (host/lua_next.cpp says why and how that is told).
#pragma once

struct lua_State;

namespace klua {

// Replaces the globals next and pairs unless the LuaJIT is OpenResty's; runs after luaL_openlibs,
// before any chunk can capture them. Returns true when it replaced them.
bool install_uncompiled_next(lua_State* L);

}  // namespace klua
