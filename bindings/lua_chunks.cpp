#include "bindings/lua_chunks.hpp"

#include <cstring>
#include <string>

namespace klua {

void load_binding_chunk(lua_State* L, const char* name) {
  for (const BindingChunk* c = binding_chunks; c->name; ++c) {
    if (std::strcmp(c->name, name) != 0) continue;
    // The bytecode keeps its debug information: the chunk name is "@bindings/lua/NAME.lua".
    if (luaL_loadbuffer(L, reinterpret_cast<const char*>(c->bytecode), c->size, name) != 0) lua_error(L);
    if (!c->source) return;
    lua_call(L, 0, 1);  // the source text
    size_t len;
    const char* text = lua_tolstring(L, -1, &len);
    std::string chunkname = std::string("@bindings/lua/") + name + ".lua";
    if (luaL_loadbuffer(L, text, len, chunkname.c_str()) != 0) lua_error(L);
    lua_remove(L, -2);
    return;
  }
  luaL_error(L, "klua: no bundled binding chunk '%s'", name);
}

}  // namespace klua
