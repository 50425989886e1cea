// The Lua halves of binding modules (bindings/lua/NAME.lua), bundled into the binary.
#pragma once
#include <string>

#include "host/lua_chunks.hpp"

namespace klua {
// Pushes bindings/lua/NAME.lua as a function; raises if it is missing (a build error).
inline void load_binding_chunk(lua_State* L, const char* name) {
  load_lua_chunk(L, ("bindings/lua/" + std::string(name) + ".lua").c_str());
}
}  // namespace klua
