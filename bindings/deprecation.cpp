#include "bindings/deprecation.hpp"

#include <fmt/format.h>

#include <cstdio>

namespace klua {

void warn_deprecated(lua_State* L, const char* what, const char* instead) {
  lua_getfield(L, LUA_REGISTRYINDEX, "klua.deprecations");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "klua.deprecations");
  }
  lua_getfield(L, -1, what);
  bool seen = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (seen) {
    lua_pop(L, 1);
    return;
  }
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, what);
  lua_pop(L, 1);
  // The script's line: level 1 is the C function, level 2 the method wrapper or the script.
  std::string where;
  for (int level = 1; level <= 3 && where.empty(); ++level) {
    lua_Debug ar;
    if (!lua_getstack(L, level, &ar) || !lua_getinfo(L, "Sl", &ar)) break;
    if (ar.currentline > 0 && ar.source[0] == '@' && std::string(ar.source).find("bindings/") == std::string::npos &&
        std::string(ar.source).find("host/") == std::string::npos)
      where = fmt::format("{}:{}: ", ar.short_src, ar.currentline);
  }
  fmt::print(stderr, "klua: {}deprecated: {}; use {} (the old form goes in the next release)\n", where, what, instead);
}

}  // namespace klua
