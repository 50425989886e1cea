// Base64 (RFC 4648, standard alphabet, padded): for the CLI's JSON lines (bindings/stdout.cpp)
// and klua.base64.encode/decode.
#pragma once
#include <lua.hpp>

#include <cstddef>

namespace klua {
// Encoded length of n bytes.
inline size_t base64_size(size_t n) { return (n + 2) / 3 * 4; }
// Writes base64_size(n) bytes to out.
void base64_encode(char* out, const unsigned char* in, size_t n);
// klua.base64 (a table of encode, decode) on the klua table.
void open_base64(lua_State* L, int klua_table);
}  // namespace klua
