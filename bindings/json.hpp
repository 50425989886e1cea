// klua.json: JSON encode/decode for Lua values (see the behaviour notes in json.cpp).
#pragma once
#include <lua.hpp>

namespace klua {

// Pushes the module table (encode, decode, array, object, null) and returns 1.
int open_json(lua_State* L);

}  // namespace klua
