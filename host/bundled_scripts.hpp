// The Lua library from scripts/, compiled to LuaJIT bytecode at build time.
#pragma once
#include <cstddef>

namespace klua {
struct BundledScript {
  const char* module;     // "klua.test"
  const char* chunkname;  // "@scripts/klua/test.lua"
  const unsigned char* bytecode;
  size_t size;
};
extern const BundledScript bundled_scripts[];  // ends with a null entry
}  // namespace klua
