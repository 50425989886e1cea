// Opens klua.protobuf: the primitives of bindings/protobuf.cpp under the policy of bindings/lua/protobuf.lua.
#include "bindings/lua_chunks.hpp"
#include "bindings/protobuf.hpp"
#include "host/runtime.hpp"

namespace klua {

void open_protobuf(Runtime&, lua_State* L, int klua_table) {
  lua_newtable(L);  // klua.protobuf
  lua_pushvalue(L, -1);
  lua_setfield(L, klua_table, "protobuf");
  int module = lua_gettop(L);
  push_protobuf_primitives(L);
  int P = lua_gettop(L);
  load_binding_chunk(L, "protobuf");
  lua_pushvalue(L, klua_table);
  lua_pushvalue(L, module);
  lua_pushvalue(L, P);
  lua_call(L, 3, 0);
  lua_pop(L, 2);
}

}  // namespace klua
