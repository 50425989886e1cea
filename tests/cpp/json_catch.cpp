// C++-level tests for klua.json (bindings/json.cpp): stack discipline of open_json and the
// module functions when called from C, and the null sentinel shared across states.
#include <catch2/catch.hpp>

#include <string>

#include "bindings/json.hpp"
#include "host/error.hpp"

namespace {

struct State {
  lua_State* L = luaL_newstate();
  State() {
    luaL_openlibs(L);
    klua::open_json(L);
    lua_setglobal(L, "json");
  }
  ~State() { lua_close(L); }
  // Calls json.<fn>(arg) with the argument given as Lua source; returns the result count.
  int call(const char* fn, const char* arg_src) {
    lua_getglobal(L, "json");
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    std::string chunk = std::string("return ") + arg_src;
    REQUIRE(luaL_loadstring(L, chunk.c_str()) == 0);
    REQUIRE(lua_pcall(L, 0, 1, 0) == 0);
    int top = lua_gettop(L) - 2;
    int rc = lua_pcall(L, 1, LUA_MULTRET, 0);
    if (rc != 0) return -1;
    return lua_gettop(L) - top;
  }
};

}  // namespace

TEST_CASE("open_json pushes one table with the module functions", "[json]") {
  lua_State* L = luaL_newstate();
  luaL_openlibs(L);
  int top = lua_gettop(L);
  REQUIRE(klua::open_json(L) == 1);
  REQUIRE(lua_gettop(L) == top + 1);
  REQUIRE(lua_istable(L, -1));
  for (const char* f : {"encode", "decode", "array", "object"}) {
    lua_getfield(L, -1, f);
    CHECK(lua_iscfunction(L, -1));
    lua_pop(L, 1);
  }
  lua_getfield(L, -1, "null");
  CHECK(lua_islightuserdata(L, -1));
  lua_close(L);
}

TEST_CASE("encode and decode leave exactly their results on the stack", "[json]") {
  State s;
  REQUIRE(s.call("encode", "{a = {1, 2}, b = 'x'}") == 1);
  CHECK(std::string(lua_tostring(s.L, -1)) == R"({"a":[1,2],"b":"x"})");
  lua_settop(s.L, 0);

  REQUIRE(s.call("decode", "'[1, {\"k\": null}]'") == 1);
  CHECK(lua_istable(s.L, -1));
  lua_settop(s.L, 0);

  REQUIRE(s.call("decode", "'[1, }'") == 2);
  CHECK(lua_isnil(s.L, -2));
  CHECK(klua::is_error(s.L, -1));
  CHECK(klua::error_field(s.L, -1, "name") == klua::ERR_JSON);
  CHECK(klua::error_field(s.L, -1, "message") == "json decode: syntax error at byte 4: expected value, found '}'");
  lua_settop(s.L, 0);
}

TEST_CASE("encode raises a klua error table", "[json]") {
  State s;
  REQUIRE(s.call("encode", "{f = print}") == -1);
  REQUIRE(klua::is_error(s.L, -1));
  CHECK(klua::error_field(s.L, -1, "name") == klua::ERR_JSON);
  CHECK(klua::error_field(s.L, -1, "message") == "klua.json.encode: cannot encode a function at $.f");
}

TEST_CASE("json.null is the same value in every state", "[json]") {
  State a, b;
  lua_getglobal(a.L, "json");
  lua_getfield(a.L, -1, "null");
  lua_getglobal(b.L, "json");
  lua_getfield(b.L, -1, "null");
  CHECK(lua_touserdata(a.L, -1) == lua_touserdata(b.L, -1));
  CHECK(lua_touserdata(a.L, -1) != nullptr);
}

TEST_CASE("a 1 MB document round-trips", "[json]") {
  State s;
  const char* src = R"(
    local t = {}
    for i = 1, 8000 do t[i] = {id = i, name = "item " .. i, v = i / 3, tags = {"a", "b"}} end
    local enc = json.encode(t)
    local back = json.decode(enc)
    return #enc, json.encode(back) == enc, back[8000].v == 8000 / 3)";
  REQUIRE(luaL_dostring(s.L, src) == 0);
  CHECK(lua_tonumber(s.L, -3) > 400000);
  CHECK(lua_toboolean(s.L, -2));
  CHECK(lua_toboolean(s.L, -1));
}
