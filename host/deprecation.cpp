#include "host/deprecation.hpp"
#include "host/log.hpp"

#include "host/error.hpp"

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
  std::string where = user_location(L);
  if (!where.empty()) where += ": ";
  log::diagnostic(log::Level::warn,
                  fmt::format("{}deprecated: {}; use {} (the old form goes in the next release)", where, what, instead));
}

}  // namespace klua
