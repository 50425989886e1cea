// libFuzzer target: klua.json.decode on arbitrary bytes, then encode and decode again.
// Properties checked beyond "no crash, no sanitizer report":
//   - decode never raises on bad input (it returns nil, err);
//   - what decodes is valid JSON to nlohmann::json::accept as well (an independent parser);
//   - what decodes encodes without error, and that text decodes and encodes to itself
//     (encode sorts object keys, so the text is a fixed point).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <lua.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "bindings/json.hpp"
#include "host/error.hpp"

namespace {

lua_State* state() {
  static lua_State* L = [] {
    lua_State* s = luaL_newstate();
    luaL_openlibs(s);
    lua_newtable(s);  // klua
    klua::open_errors(s, lua_gettop(s));
    klua::open_json(s);
    lua_setglobal(s, "json");
    lua_setglobal(s, "klua");
    return s;
  }();
  return L;
}

[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "json_fuzz: %s: %s\n", what, detail.c_str());
  std::abort();
}

// json.<fn>(arg) under pcall; leaves its results on the stack and returns the pcall status.
int call(lua_State* L, const char* fn, int arg_index) {
  lua_getglobal(L, "json");
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_pushvalue(L, arg_index);
  return lua_pcall(L, 1, 2, 0);
}

std::string top_text(lua_State* L) {
  const char* s = lua_tostring(L, -1);
  return s ? s : luaL_typename(L, -1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lua_State* L = state();
  int base = lua_gettop(L);
  lua_pushlstring(L, reinterpret_cast<const char*>(data), size);
  int input = lua_gettop(L);
  if (call(L, "decode", input) != 0) fail("decode raised", top_text(L));
  if (lua_isnil(L, -2)) {  // nil, err: a runtime failure, as documented
    lua_settop(L, base);
    return 0;
  }
  std::string text(reinterpret_cast<const char*>(data), size);
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);  // klua skips a BOM; nlohmann's accept does too, but be plain
  if (!nlohmann::json::accept(text)) fail("decoded what nlohmann rejects", text);
  lua_pop(L, 1);
  int value = lua_gettop(L);
  if (call(L, "encode", value) != 0) fail("encode of a decoded value raised", top_text(L));
  lua_pop(L, 1);
  int first = lua_gettop(L);
  if (call(L, "decode", first) != 0 || lua_isnil(L, -2)) fail("encoded text does not decode", top_text(L));
  lua_pop(L, 1);
  if (call(L, "encode", lua_gettop(L)) != 0) fail("second encode raised", top_text(L));
  lua_pop(L, 1);
  size_t n1, n2;
  const char* s1 = lua_tolstring(L, first, &n1);
  const char* s2 = lua_tolstring(L, -1, &n2);
  if (n1 != n2 || std::memcmp(s1, s2, n1) != 0) fail("encode(decode(encode(x))) differs", std::string(s1, n1));
  lua_settop(L, base);
  return 0;
}
