#include "host/error.hpp"

#include <fmt/format.h>

#include <cstring>

namespace klua {

namespace {
// Registry key of the shared error metatable.
const char* const ERROR_MT = "klua.error";

void set_string(lua_State* L, const char* key, const std::string& v) {
  if (v.empty()) return;
  lua_pushlstring(L, v.data(), v.size());
  lua_setfield(L, -2, key);
}

std::string field_string(lua_State* L, int idx, const char* key) {
  lua_getfield(L, idx, key);
  std::string out;
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t n;
    const char* s = lua_tolstring(L, -1, &n);
    out.assign(s, n);
  } else if (lua_type(L, -1) == LUA_TNUMBER) {
    out = fmt::format("{}", lua_tonumber(L, -1));
  }
  lua_pop(L, 1);
  return out;
}

// tostring(err): "NAME: message (topic t [partition p], group g, op o)"
int error_tostring(lua_State* L) {
  std::string name = field_string(L, 1, "name");
  std::string msg = field_string(L, 1, "message");
  std::string out = name.empty() ? msg : name + ": " + msg;
  std::string where = field_string(L, 1, "where");
  if (!where.empty()) out = where + ": " + out;
  std::string ctx;
  auto add = [&](const std::string& s) {
    if (!ctx.empty()) ctx += ", ";
    ctx += s;
  };
  std::string topic = field_string(L, 1, "topic");
  std::string partition = field_string(L, 1, "partition");
  std::string group = field_string(L, 1, "group");
  std::string op = field_string(L, 1, "op");
  bool topic_named = !topic.empty() && msg.find("\"" + topic + "\"") != std::string::npos;
  if (!topic.empty() && (!topic_named || !partition.empty())) add(partition.empty() ? "topic " + topic : "topic " + topic + " [" + partition + "]");
  if (!group.empty()) add("group " + group);
  if (!op.empty()) add("in " + op);
  if (!ctx.empty() && msg.find(ctx) == std::string::npos) out += " (" + ctx + ")";
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

int error_eq(lua_State* L) {
  // Two errors compare equal when their names do (err == klua.errors.X is not meaningful
  // since constants are strings, but err1 == err2 is).
  lua_pushboolean(L, field_string(L, 1, "name") == field_string(L, 2, "name") &&
                         field_string(L, 1, "message") == field_string(L, 2, "message"));
  return 1;
}

void push_metatable(lua_State* L) {
  if (luaL_newmetatable(L, ERROR_MT)) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, error_eq);
    lua_setfield(L, -2, "__eq");
    lua_pushliteral(L, "klua.error");
    lua_setfield(L, -2, "__name");
  }
}
}  // namespace

void push_error(lua_State* L, const ErrorSpec& spec) {
  lua_createtable(L, 0, 8);
  lua_pushnumber(L, spec.code);
  lua_setfield(L, -2, "code");
  set_string(L, "name", spec.name);
  lua_pushlstring(L, spec.message.data(), spec.message.size());
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, spec.retriable);
  lua_setfield(L, -2, "retriable");
  lua_pushboolean(L, spec.fatal);
  lua_setfield(L, -2, "fatal");
  lua_pushboolean(L, spec.txn_requires_abort);
  lua_setfield(L, -2, "txn_requires_abort");
  if (spec.kafka) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "kafka");
  }
  set_string(L, "op", spec.op);
  set_string(L, "topic", spec.topic);
  if (spec.partition) {
    lua_pushinteger(L, *spec.partition);
    lua_setfield(L, -2, "partition");
  }
  set_string(L, "group", spec.group);
  if (spec.timeout_ms) {
    lua_pushnumber(L, *spec.timeout_ms);
    lua_setfield(L, -2, "timeout_ms");
  }
  set_string(L, "where", spec.where);
  push_metatable(L);
  lua_setmetatable(L, -2);
}

int nil_error(lua_State* L, const ErrorSpec& spec) {
  lua_pushnil(L);
  push_error(L, spec);
  return 2;
}

void raise_error(lua_State* L, const ErrorSpec& spec) {
  push_error(L, spec);
  lua_error(L);
  __builtin_unreachable();
}

bool is_error(lua_State* L, int idx) {
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return false;
  luaL_getmetatable(L, ERROR_MT);
  bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

std::string error_field(lua_State* L, int idx, const char* field) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  return field_string(L, idx, field);
}

bool error_is_kafka(lua_State* L, int idx) {
  if (!is_error(L, idx)) return false;
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  lua_getfield(L, idx, "kafka");
  bool k = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return k;
}

// klua.errors: a name -> name table for comparisons (`err.name == klua.errors.KLUA_CANCELLED`),
// plus klua.errors.new{...} for scripts and the library to create errors of the same type.
static int errors_new(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  ErrorSpec s;
  s.name = field_string(L, 1, "name");
  s.message = field_string(L, 1, "message");
  lua_getfield(L, 1, "code");
  if (lua_isnil(L, -1) && !s.name.empty()) {
    // No code given: the name's, when klua.errors knows it (so Lua never spells a number).
    lua_pop(L, 1);
    lua_getfield(L, lua_upvalueindex(1), "codes");
    lua_getfield(L, -1, s.name.c_str());
    lua_remove(L, -2);
  }
  s.code = static_cast<int>(lua_tonumber(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, 1, "retriable");
  s.retriable = lua_toboolean(L, -1);
  lua_pop(L, 1);
  // `kafka = true` marks an error carrying a Kafka code (with `code`, librdkafka's), so that
  // uncaught it exits 3 like the bindings' own
  lua_getfield(L, 1, "kafka");
  s.kafka = lua_toboolean(L, -1);
  lua_pop(L, 1);
  s.op = field_string(L, 1, "op");
  s.where = field_string(L, 1, "where");
  s.topic = field_string(L, 1, "topic");
  s.group = field_string(L, 1, "group");
  lua_getfield(L, 1, "partition");
  if (lua_isnumber(L, -1)) s.partition = static_cast<int>(lua_tointeger(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, 1, "timeout_ms");
  if (lua_isnumber(L, -1)) s.timeout_ms = lua_tonumber(L, -1);
  lua_pop(L, 1);
  push_error(L, s);
  return 1;
}

// klua.errors.bad_argument(fn, arg, detail): raises the programmer error of raise_bad_argument, located
// at the user's call. klua.errors.misuse(fn, detail): the same without an argument number.
static int errors_bad_argument(lua_State* L) {
  std::string fn = luaL_checkstring(L, 1);
  int arg = static_cast<int>(luaL_checkinteger(L, 2));
  std::string detail = luaL_optstring(L, 3, "invalid value");
  raise_bad_argument(L, arg, fn, detail);
}

static int errors_misuse(lua_State* L) {
  std::string fn = luaL_checkstring(L, 1);
  std::string detail = luaL_checkstring(L, 2);
  raise_misuse(L, fn, detail);
}

static int errors_is(lua_State* L) {
  lua_pushboolean(L, is_error(L, 1));
  return 1;
}

bool is_klua_source(const char* src) {
  if (!src) return false;
  for (const char* prefix : {"@scripts/klua/", "@bindings/lua/", "@host/lua/", "=klua", "=dofile", "=README"})
    if (std::strncmp(src, prefix, std::strlen(prefix)) == 0) return true;
  return false;
}

std::string user_location(lua_State* L) {
  lua_Debug ar;
  std::string first;
  for (int level = 0; lua_getstack(L, level, &ar); ++level) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) continue;  // C functions have no line
    std::string here = fmt::format("{}:{}", ar.short_src, ar.currentline);
    if (!is_klua_source(ar.source)) return here;
    if (first.empty()) first = here;
  }
  return first;  // only klua's own code on the stack (a bundled command): its innermost line
}

void raise_bad_argument(lua_State* L, int arg, const std::string& fn, const std::string& detail) {
  raise_misuse(L, fn, fmt::format("bad argument #{} to '{}' ({})", arg, fn, detail));
}

void check_arg_type(lua_State* L, int arg, int type, const std::string& fn) {
  if (lua_type(L, arg) == type) return;
  const char* got = lua_isnone(L, arg) ? "no value" : luaL_typename(L, arg);
  raise_bad_argument(L, arg, fn, fmt::format("{} expected, got {}", lua_typename(L, type), got));
}

double check_timeout_opts(lua_State* L, int arg, const std::string& fn, double dflt) {
  if (lua_isnoneornil(L, arg)) return dflt;
  if (!lua_istable(L, arg))
    raise_bad_argument(L, arg, fn, fmt::format("options table {{timeout_ms=}} expected, got {}", luaL_typename(L, arg)));
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING || std::strcmp(lua_tostring(L, -1), "timeout_ms") != 0) {
      std::string key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1);
      raise_bad_argument(L, arg, fn, fmt::format("unknown option '{}' (allowed: timeout_ms)", key));
    }
  }
  lua_getfield(L, arg, "timeout_ms");
  double timeout = dflt;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      raise_bad_argument(L, arg, fn, fmt::format("timeout_ms must be a number, got {}", luaL_typename(L, -1)));
    timeout = lua_tonumber(L, -1);
    // (NaN fails every comparison: a NaN timeout would arm no timer and wait forever unasked)
    if (!(timeout >= 0))
      raise_bad_argument(L, arg, fn, fmt::format("timeout_ms must be >= 0 (math.huge waits without a limit), got {}",
                                                 lua_tostring(L, -1)));
  }
  lua_pop(L, 1);
  return timeout;
}

void raise_misuse(lua_State* L, const std::string& fn, const std::string& detail) {
  ErrorSpec e;
  e.code = CODE_INVALID_ARGUMENT;
  e.name = ERR_INVALID_ARGUMENT;
  e.message = fn.empty() || detail.rfind("bad argument #", 0) == 0 ? detail : fn + ": " + detail;
  e.where = user_location(L);
  raise_error(L, e);
}

void register_error_code(lua_State* L, int errors, const char* name, int code, const char* description) {
  if (errors < 0) errors = lua_gettop(L) + errors + 1;
  lua_pushstring(L, name);
  lua_setfield(L, errors, name);
  lua_getfield(L, errors, "codes");
  lua_pushinteger(L, code);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
  lua_getfield(L, errors, "names");
  lua_pushstring(L, name);
  lua_rawseti(L, -2, code);
  lua_pop(L, 1);
  lua_getfield(L, errors, "descriptions");
  lua_pushstring(L, description);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

// klua.errors: NAME -> "NAME" for comparisons (`err.name == klua.errors.UNKNOWN_TOPIC_OR_PART`), and every
// code by name and number: codes.NAME -> number, names[number] -> "NAME", descriptions.NAME -> text
// (librdkafka's codes are added by open_kafka_common).
void open_errors(lua_State* L, int klua_table) {
  if (klua_table < 0) klua_table = lua_gettop(L) + klua_table + 1;
  push_metatable(L);
  lua_pop(L, 1);
  lua_newtable(L);
  for (const char* t : {"codes", "names", "descriptions"}) {
    lua_newtable(L);
    lua_setfield(L, -2, t);
  }
  struct Own {
    const char* name;
    int code;
    const char* description;
  };
  static const Own own[] = {
      {ERR_CANCELLED, CODE_CANCELLED, "klua: the task was cancelled (task:cancel, SIGINT, SIGTERM)"},
      {ERR_INVALID_ARGUMENT, CODE_INVALID_ARGUMENT, "klua: invalid argument (a programmer error)"},
      {ERR_EMBEDDED_UNSUPPORTED, CODE_EMBEDDED_UNSUPPORTED, "klua: not supported by the embedded mock cluster"},
      {ERR_JSON, CODE_JSON, "klua: invalid JSON"},
      {ERR_CLOSED, CODE_CLOSED, "klua: the client is closed"},
      {ERR_NO_REGISTRY, CODE_NO_REGISTRY, "klua: no schema registry is configured (schema.registry.url)"},
      {ERR_REGISTRY, CODE_REGISTRY, "klua: the schema registry answered an error or could not be reached"},
      {ERR_SCHEMA, CODE_SCHEMA, "klua: a schema does not parse, compile or resolve"},
      {ERR_SERIALIZATION, CODE_SERIALIZATION, "klua: a value does not match its schema"},
      {ERR_DESERIALIZATION, CODE_DESERIALIZATION, "klua: bytes that cannot be decoded with their schema"},
      {ERR_TIMED_OUT, CODE_TIMED_OUT, "Local: Timed out"},
  };
  for (const Own& o : own) register_error_code(L, -1, o.name, o.code, o.description);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, errors_new, 1);
  lua_setfield(L, -2, "new");
  lua_pushcfunction(L, errors_bad_argument);
  lua_setfield(L, -2, "bad_argument");
  lua_pushcfunction(L, errors_misuse);
  lua_setfield(L, -2, "misuse");
  lua_pushcfunction(L, errors_is);
  lua_setfield(L, -2, "is");
  lua_setfield(L, klua_table, "errors");
}

}  // namespace klua
