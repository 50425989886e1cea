// klua.protobuf's C++ primitives (bindings/protobuf.cpp): .proto text and FileDescriptorProtos compiled at
// run time into a DescriptorPool, Lua tables <-> DynamicMessage, proto3 JSON, Confluent message indexes.
// The policy (argument checks, error tables, objects) is bindings/lua/protobuf.lua.
#pragma once
#include <lua.hpp>

namespace klua {
// Pushes the table of primitives (compile, encode, decode, ...). Also used by tests/fuzz/protobuf_fuzz.cpp.
void push_protobuf_primitives(lua_State* L);
}  // namespace klua
