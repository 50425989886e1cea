#include "host/profiles.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <memory>
#include <sstream>

#include <lua.hpp>

namespace klua {

namespace {

// The file is data: it runs with no libraries and a small instruction budget, so a mistake
// (an endless loop) fails instead of hanging every klua command.
void budget_hook(lua_State* L, lua_Debug*) { luaL_error(L, "the config file runs too long (it should only return data)"); }

std::string lua_value_text(lua_State* L, int idx) {
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
      return lua_tostring(L, idx);
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx) ? "true" : "false";
    case LUA_TNUMBER: {
      double d = lua_tonumber(L, idx);
      // Whole numbers as integers, but only inside long long's range: converting 5e28 (or NaN)
      // is undefined behaviour (profile_fuzz found it), and such values print as doubles anyway.
      if (d >= -9.2e18 && d <= 9.2e18 && d == std::floor(d)) return std::to_string(static_cast<long long>(d));
      return fmt::format("{}", d);
    }
    default:
      return "";
  }
}

// A secret given as { env = "NAME" } or { file = "/path" } (the table at idx).
bool resolve_secret(lua_State* L, int idx, const std::string& where, std::string& value, std::string& source,
                    std::string& err) {
  lua_getfield(L, idx, "env");
  lua_getfield(L, idx, "file");
  bool has_env = lua_type(L, -2) == LUA_TSTRING, has_file = lua_type(L, -1) == LUA_TSTRING;
  std::string env = has_env ? lua_tostring(L, -2) : "", file = has_file ? lua_tostring(L, -1) : "";
  lua_pop(L, 2);
  int keys = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    ++keys;
    lua_pop(L, 1);
  }
  if (has_env == has_file || keys != 1) {
    err = fmt::format("{}: a table value must be {{ env = \"NAME\" }} or {{ file = \"/path\" }}", where);
    return false;
  }
  if (has_env) {
    const char* v = std::getenv(env.c_str());
    if (!v) {
      err = fmt::format("{}: environment variable {} is not set", where, env);
      return false;
    }
    value = v;
    source = "env " + env;
    return true;
  }
  struct stat st;
  if (::stat(file.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {  // it opens, reads nothing: not an empty secret
    err = fmt::format("{}: {} is a directory, not a secret file", where, file);
    return false;
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    err = fmt::format("{}: cannot read {}: {}", where, file, std::strerror(errno));
    return false;
  }
  // Bounded: a secret is small, and a device that never ends (/dev/zero) must not hang the start.
  constexpr size_t max_secret = 1 << 20;
  value.clear();
  char buf[4096];
  while (value.size() <= max_secret && in.read(buf, sizeof buf).gcount() > 0)
    value.append(buf, static_cast<size_t>(in.gcount()));
  if (value.size() > max_secret) {
    err = fmt::format("{}: {} is larger than 1 MiB, not a secret", where, file);
    value.clear();
    return false;
  }
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();  // as `echo x > file`
  source = "file " + file;
  return true;
}

std::string profile_names(lua_State* L, int profiles) {
  std::vector<std::string> names;
  lua_pushnil(L);
  while (lua_next(L, profiles) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING) names.emplace_back(lua_tostring(L, -2));
    lua_pop(L, 1);
  }
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}

}  // namespace

std::string config_file_path() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/klua/config.lua";
  const char* home = std::getenv("HOME");
  if (home && *home) return std::string(home) + "/.config/klua/config.lua";
  return "";
}

bool load_profile(const std::string& path, const ProfileChoice& choice, std::vector<ConfigEntry>& out,
                  std::string& err) {
  if (path.empty() || access(path.c_str(), F_OK) != 0) {
    if (choice.name.empty()) return true;
    err = fmt::format("profile {} ({}): no config file at {}", choice.name, choice.chosen_by,
                      path.empty() ? "$XDG_CONFIG_HOME/klua/config.lua (neither XDG_CONFIG_HOME nor HOME is set)" : path);
    return false;
  }
  std::unique_ptr<lua_State, void (*)(lua_State*)> state(luaL_newstate(), lua_close);
  lua_State* L = state.get();
  if (luaL_loadfile(L, path.c_str()) != 0) {
    err = fmt::format("config file: {}", lua_tostring(L, -1));
    return false;
  }
  lua_newtable(L);  // an empty environment: the file can only build data
  lua_setfenv(L, -2);
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1000000);
  if (lua_pcall(L, 0, 1, 0) != 0) {
    err = fmt::format("config file {}: {}", path, lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
    return false;
  }
  lua_sethook(L, nullptr, 0, 0);
  if (!lua_istable(L, -1)) {
    err = fmt::format("config file {}: must return a table {{ profiles = {{ NAME = {{ ... }} }} }}, got {}", path,
                      luaL_typename(L, -1));
    return false;
  }
  int root = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, root) != 0) {
    std::string k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2);
    if (k != "profiles") {
      err = fmt::format("config file {}: unknown key '{}' (expected profiles)", path, k);
      return false;
    }
    lua_pop(L, 1);
  }
  lua_getfield(L, root, "profiles");
  if (!lua_istable(L, -1)) {
    err = fmt::format("config file {}: 'profiles' must be a table of named profiles", path);
    return false;
  }
  int profiles = lua_gettop(L);
  std::string name = choice.name.empty() ? "default" : choice.name;
  lua_getfield(L, profiles, name.c_str());
  if (lua_isnil(L, -1)) {
    if (choice.name.empty()) return true;  // no default profile: nothing to add
    err = fmt::format("unknown profile '{}' ({}); {} has: {}", name, choice.chosen_by, path, profile_names(L, profiles));
    return false;
  }
  if (!lua_istable(L, -1)) {
    err = fmt::format("config file {}: profile '{}' must be a table", path, name);
    return false;
  }
  int profile = lua_gettop(L);
  std::string label = fmt::format("profile {} ({})", name, path);
  std::vector<ConfigEntry> entries;
  lua_pushnil(L);
  while (lua_next(L, profile) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      err = fmt::format("{}: keys must be strings, got a {} key", label, luaL_typename(L, -2));
      return false;
    }
    std::string key = lua_tostring(L, -2);
    std::string where = fmt::format("{}: '{}'", label, key);
    if (key == "brokers") {
      key = "bootstrap.servers";
    } else if (key.find('.') == std::string::npos) {
      err = fmt::format("{}: unknown key '{}' (librdkafka properties contain a dot; klua's: brokers)", label, key);
      return false;
    }
    std::string value, source = label;
    int t = lua_type(L, -1);
    if (t == LUA_TTABLE) {
      std::string secret_source;
      if (!resolve_secret(L, lua_gettop(L), where, value, secret_source, err)) return false;
      source = label + ", " + secret_source;
    } else if (t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
      value = lua_value_text(L, -1);
    } else {
      err = fmt::format("{}: value must be a string, number, boolean or {{ env = }} / {{ file = }}, got {}", where,
                        luaL_typename(L, -1));
      return false;
    }
    entries.push_back({key, value, source});
    lua_pop(L, 1);
  }
  // A stable order (the file's table order is not), so `klua config show` reads the same each time.
  std::sort(entries.begin(), entries.end(), [](const ConfigEntry& a, const ConfigEntry& b) { return a.key < b.key; });
  out.insert(out.end(), entries.begin(), entries.end());
  return true;
}

}  // namespace klua
