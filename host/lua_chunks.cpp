#include "host/lua_chunks.hpp"

#include <cstring>
#include <string>

namespace klua {

void load_lua_chunk(lua_State* L, const char* path) {
  for (const LuaChunk* c = lua_chunks; c->path; ++c) {
    if (std::strcmp(c->path, path) != 0) continue;
    // The bytecode keeps its debug information: the chunk name is "@" followed by the path.
    if (luaL_loadbuffer(L, reinterpret_cast<const char*>(c->bytecode), c->size, path) != 0) lua_error(L);
    if (!c->source) return;
    lua_call(L, 0, 1);  // the source text
    size_t len;
    const char* text = lua_tolstring(L, -1, &len);
    std::string chunkname = std::string("@") + path;
    if (luaL_loadbuffer(L, text, len, chunkname.c_str()) != 0) lua_error(L);
    lua_remove(L, -2);
    return;
  }
  luaL_error(L, "klua: no bundled Lua chunk '%s'", path);
}

}  // namespace klua
