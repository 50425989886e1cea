// Shared by the files of klua.json: json.cpp (the module, options, markers), json_encode.cpp and
// json_decode.cpp. Not installed; nothing outside bindings/json*.cpp includes it.
#pragma once
#include <lua.hpp>
#include <string>

namespace klua::json_impl {

extern char null_sentinel;  // its address is klua.json.null

constexpr int kDefaultMaxDepth = 128;
constexpr int kMaxMaxDepth = 1000;
constexpr int kMaxIndent = 64;
constexpr double kMaxSafeInt = 9007199254740992.0;  // 2^53

// Upvalues shared by the module functions: the two marker metatables.
constexpr int UV_ARRAY_MT = 1;
constexpr int UV_OBJECT_MT = 2;

enum class Utf8Mode { error, replace, ignore };

struct Options {
  int max_depth = kDefaultMaxDepth;
  int indent = -1;  // < 0: compact
  Utf8Mode utf8 = Utf8Mode::error;
};

// Reads the options table at index `opts` (none/nil: defaults); raises on a bad or unknown option.
Options read_options(lua_State* L, int opts, bool encode);

// Pushes a klua error (name KLUA_JSON) carrying `message` (consumed).
void push_json_error(lua_State* L, std::string message);

// True when s[0..n) is valid UTF-8 by the encoder's rule (strict: no overlongs, surrogates or
// values past U+10FFFF). The CLI's JSON lines (bindings/stdout.cpp) use it to choose between a
// string and its base64 twin.
bool utf8_valid(const char* s, size_t n);

// klua.json.encode and klua.json.decode (closures over the UV_* upvalues).
int l_encode(lua_State* L);
int l_decode(lua_State* L);

}  // namespace klua::json_impl
