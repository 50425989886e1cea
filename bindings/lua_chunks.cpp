#include "bindings/lua_chunks.hpp"

#include <cstring>

namespace klua {

void load_binding_chunk(lua_State* L, const char* name) {
  for (const BindingChunk* c = binding_chunks; c->name; ++c) {
    if (std::strcmp(c->name, name) != 0) continue;
    // The bytecode keeps its debug information: the chunk name is "@bindings/lua/NAME.lua".
    if (luaL_loadbuffer(L, reinterpret_cast<const char*>(c->bytecode), c->size, name) != 0) lua_error(L);
    return;
  }
  luaL_error(L, "klua: no bundled binding chunk '%s'", name);
}

}  // namespace klua
