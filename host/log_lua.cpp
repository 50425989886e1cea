// klua.log: the Lua side of host/log.cpp. The policy (argument checks, the level check compiled
// into the caller's trace) is host/lua/log.lua; here are the primitives it calls, and the private
// diagnostic that klua's own Lua (the worker, the HTTP server...) writes its warnings through:
// debug.getregistry()["klua.private"].log.diagnostic(level, message [, fields [, text]]).
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "host/error.hpp"
#include "host/log.hpp"
#include "host/lua_chunks.hpp"
#include "host/runtime.hpp"

namespace klua {

namespace {

// The field table at idx as log fields, sorted by key (a stable order for readers and tests).
log::Fields read_fields(lua_State* L, int idx, const char* fn) {
  log::Fields out;
  if (lua_isnoneornil(L, idx)) return out;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      raise_bad_argument(L, 2, fn, fmt::format("field names must be strings, got {}", luaL_typename(L, -2)));
    log::Field f;
    size_t kn;
    const char* k = lua_tolstring(L, -2, &kn);
    f.key.assign(k, kn);
    switch (lua_type(L, -1)) {
      case LUA_TSTRING: {
        size_t n;
        const char* s = lua_tolstring(L, -1, &n);
        f.value.assign(s, n);
        break;
      }
      case LUA_TNUMBER: {
        double d = lua_tonumber(L, -1);
        if (!std::isfinite(d)) f.value = lua_tostring(L, -1);  // JSON has no nan/inf: a string
        else if (d == std::floor(d) && std::fabs(d) < 1e15) f.value = fmt::format("{}", static_cast<long long>(d)), f.json = true;
        else f.value = fmt::format("{}", d), f.json = true;
        break;
      }
      case LUA_TBOOLEAN:
        f.value = lua_toboolean(L, -1) ? "true" : "false";
        f.json = true;
        break;
      case LUA_TTABLE:
        // klua.json.encode (the upvalue is the klua table; bindings add json after klua.log opens)
        lua_getfield(L, lua_upvalueindex(1), "json");
        if (lua_istable(L, -1)) {
          lua_getfield(L, -1, "encode");
          lua_pushvalue(L, -3);
          lua_createtable(L, 0, 1);  // {invalid_utf8 = "replace"}: binary strings still give JSON
          lua_pushliteral(L, "replace");
          lua_setfield(L, -2, "invalid_utf8");
          bool ok = lua_pcall(L, 2, 1, 0) == 0 && lua_type(L, -1) == LUA_TSTRING;
          if (ok) f.value = lua_tostring(L, -1), f.json = true;
          lua_pop(L, 2);
          if (ok) break;
        } else {
          lua_pop(L, 1);
        }
        // not JSON (a function inside, a cycle): its tostring
        [[fallthrough]];
      default:
        f.value = to_display_string(L, -1);
    }
    out.push_back(std::move(f));
    lua_pop(L, 1);
  }
  std::sort(out.begin(), out.end(), [](const log::Field& a, const log::Field& b) { return a.key < b.key; });
  return out;
}

// emit(level, message, fields|nil, diagnostic, text|nil, fn): the checks are done in log.lua.
int l_emit(lua_State* L) {
  auto level = static_cast<log::Level>(luaL_checkinteger(L, 1) & 3);
  size_t mn;
  const char* msg = luaL_checklstring(L, 2, &mn);
  const char* fn = luaL_optstring(L, 6, "klua.log");
  log::Fields fields = read_fields(L, 3, fn);
  if (lua_toboolean(L, 4)) {
    size_t tn = 0;
    const char* text = lua_isstring(L, 5) ? lua_tolstring(L, 5, &tn) : "";
    log::diagnostic(level, {msg, mn}, fields, {text, tn});
  } else {
    log::write(level, {msg, mn}, fields);
  }
  return 0;
}

int l_set_level(lua_State* L) {
  log::set_level(static_cast<log::Level>(luaL_checkinteger(L, 1) & 3));
  return 0;
}

int l_format(lua_State* L) {
  lua_pushstring(L, log::format() == log::Format::json ? "json" : "text");
  return 1;
}

int l_add_secret(lua_State* L) {
  size_t n;
  const char* s = luaL_checklstring(L, 1, &n);
  log::add_secret({s, n});
  return 0;
}

int l_redact(lua_State* L) {
  size_t n;
  const char* s = luaL_checklstring(L, 1, &n);
  std::string r = log::redact({s, n});
  lua_pushlstring(L, r.data(), r.size());
  return 1;
}

}  // namespace

// Opens klua.log (host/runtime.cpp, before the binding modules, so that their Lua can log).
void open_log(Runtime& rt, lua_State* L, int klua_table) {
  load_lua_chunk(L, "host/lua/log.lua");
  lua_pushvalue(L, klua_table);
  lua_newtable(L);
  lua_pushvalue(L, klua_table);
  lua_pushcclosure(L, l_emit, 1);
  lua_setfield(L, -2, "emit");
  const luaL_Reg fns[] = {{"set_level", l_set_level}, {"format", l_format},
                          {"add_secret", l_add_secret}, {"redact", l_redact}, {nullptr, nullptr}};
  for (const luaL_Reg* r = fns; r->name; ++r) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  lua_pushlightuserdata(L, const_cast<int*>(log::threshold_address()));
  lua_call(L, 3, 2);  // -> klua.log, the private table
  lua_getfield(L, LUA_REGISTRYINDEX, "klua.private");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "klua.private");
  }
  lua_insert(L, -2);
  lua_setfield(L, -2, "log");
  lua_pop(L, 1);
  lua_setfield(L, klua_table, "log");
}

}  // namespace klua
