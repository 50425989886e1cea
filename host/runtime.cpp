#include "host/runtime.hpp"
#include "host/lua_next.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fmt/format.h>

#include "host/bundled_scripts.hpp"
#include "host/error.hpp"
#include "host/log.hpp"

namespace klua {

void open_stdin(Runtime& rt, lua_State* L, int klua_table);        // host/stdin.cpp
void open_log(Runtime& rt, lua_State* L, int klua_table);          // host/log_lua.cpp
void open_line_editor(Runtime& rt, lua_State* L, int klua_table);  // host/line_editor.cpp

namespace {
const char* const TRACEBACK_KEY = "klua.last_traceback";

void fill_random(void* buf, size_t n) {
  auto* p = static_cast<unsigned char*>(buf);
  while (n > 0) {
    ssize_t r = getrandom(p, n, 0);
    if (r < 0) continue;
    p += r;
    n -= static_cast<size_t>(r);
  }
}

int traceback_handler(lua_State* L) {
  std::string msg = to_display_string(L, 1);
  luaL_traceback(L, L, nullptr, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, TRACEBACK_KEY);
  if (is_error(L, 1)) {
    lua_getfield(L, LUA_REGISTRYINDEX, TRACEBACK_KEY);
    lua_setfield(L, 1, "traceback");
  }
  lua_settop(L, 1);
  return 1;
}

// ---- klua.* basics --------------------------------------------------------------

int l_now(lua_State* L) {
  // Monotonic milliseconds with sub-millisecond resolution (uv_hrtime is nanoseconds).
  lua_pushnumber(L, static_cast<double>(uv_hrtime()) / 1e6);
  return 1;
}

int l_time(lua_State* L) {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  lua_pushnumber(L, static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(now).count()));
  return 1;
}

int l_random_bytes(lua_State* L) {
  check_arg_type(L, 1, LUA_TNUMBER, "klua.random_bytes");
  lua_Integer n = lua_tointeger(L, 1);
  if (!(n >= 0 && n <= (1 << 24))) raise_bad_argument(L, 1, "klua.random_bytes", "byte count must be between 0 and 16777216");
  std::string buf(static_cast<size_t>(n), '\0');
  fill_random(buf.data(), buf.size());
  lua_pushlstring(L, buf.data(), buf.size());
  return 1;
}

// klua.uuid([version]): version 4 (random, default) or 7 (time-ordered, RFC 9562).
int l_uuid(lua_State* L) {
  lua_Integer version = lua_isnoneornil(L, 1) ? 4 : lua_tointeger(L, 1);
  if (version != 4 && version != 7) raise_bad_argument(L, 1, "klua.uuid", "uuid version must be 4 or 7");
  unsigned char b[16];
  fill_random(b, sizeof b);
  if (version == 7) {
    auto ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
    for (int i = 0; i < 6; ++i) b[i] = static_cast<unsigned char>(ms >> (40 - 8 * i));
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | (version << 4));
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  char out[37];
  static const char* hex = "0123456789abcdef";
  int j = 0;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[j++] = '-';
    out[j++] = hex[b[i] >> 4];
    out[j++] = hex[b[i] & 15];
  }
  lua_pushlstring(L, out, 36);
  return 1;
}

int l_config(lua_State* L) {
  // The layered configuration from the command line and environment, key -> value.
  Runtime& rt = Runtime::from(L);
  lua_newtable(L);
  for (const auto& e : rt.config()) {
    lua_pushlstring(L, e.value.data(), e.value.size());
    lua_setfield(L, -2, e.key.c_str());
  }
  return 1;
}

// klua.config_entries(): every layered property with its source, lowest precedence first
// (klua config show prints them).
int l_config_entries(lua_State* L) {
  Runtime& rt = Runtime::from(L);
  lua_createtable(L, static_cast<int>(rt.config().size()), 0);
  int i = 1;
  for (const auto& e : rt.config()) {
    lua_createtable(L, 0, 3);
    lua_pushlstring(L, e.key.data(), e.key.size());
    lua_setfield(L, -2, "key");
    lua_pushlstring(L, e.value.data(), e.value.size());
    lua_setfield(L, -2, "value");
    lua_pushlstring(L, e.source.data(), e.source.size());
    lua_setfield(L, -2, "source");
    lua_rawseti(L, -2, i++);
  }
  return 1;
}

// klua.set_config(key, value [, source]): a property for every client created after the call,
// above the command-line layers (the REPL's :connect sets bootstrap.servers with it).
int l_set_config(lua_State* L) {
  size_t klen, vlen;
  check_arg_type(L, 1, LUA_TSTRING, "klua.set_config");
  const char* key = lua_tolstring(L, 1, &klen);
  if (klen == 0) raise_bad_argument(L, 1, "klua.set_config", "property name must not be empty");
  if (lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
    raise_bad_argument(L, 2, "klua.set_config", "value must be a string or a number");
  const char* value = lua_tolstring(L, 2, &vlen);
  const char* source = luaL_optstring(L, 3, "klua.set_config");
  Runtime::from(L).set_config({std::string(key, klen), std::string(value, vlen), source});
  return 0;
}

// klua.<name> for a bundled module klua.<name> (scripts/klua/<name>.lua) loads it on first use,
// so the library costs nothing at startup: klua.provision is require("klua.provision").
int lazy_module(lua_State* L) {
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  std::string name = std::string("klua.") + lua_tostring(L, 2);
  for (const BundledScript* s = bundled_scripts; s->module; ++s) {
    if (name == s->module) {
      lua_getglobal(L, "require");
      lua_pushlstring(L, name.data(), name.size());
      lua_call(L, 1, 1);
      lua_pushvalue(L, 2);
      lua_pushvalue(L, -2);
      lua_rawset(L, 1);
      return 1;
    }
  }
  return 0;
}

// package.loaders entry for the bundled library.
int bundled_loader(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  if (!Runtime::from(L).load_bundled(L, name)) {
    lua_pushfstring(L, "\n\tno bundled module '%s'", name);
  }
  return 1;
}
}  // namespace

namespace {
// The text of a plain value (a string or a number), else its type: for what a failed
// __tostring raised, whose own __tostring is not trusted either.
std::string plain_text(lua_State* L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER) {
    size_t n;
    const char* s = lua_tolstring(L, idx, &n);
    return std::string(s, n);
  }
  return fmt::format("({} value)", luaL_typename(L, idx));
}
}  // namespace

std::string to_display_string(lua_State* L, int idx) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  // The error reporter must not fail: __tostring runs protected (an unprotected call was a
  // PANIC that exited before any producer was flushed).
  if (lua_getmetatable(L, idx)) {
    lua_pushliteral(L, "__tostring");
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (!lua_isnil(L, -1)) {
      lua_pushvalue(L, idx);
      std::string out;
      if (lua_pcall(L, 1, 1, 0) != 0)
        out = fmt::format("error object ({}) whose __tostring raised: {}", luaL_typename(L, idx), plain_text(L, -1));
      else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
        out = plain_text(L, -1);
      else
        out = fmt::format("error object ({}) whose __tostring returned a {}", luaL_typename(L, idx),
                          luaL_typename(L, -1));
      lua_pop(L, 1);
      return out;
    }
    lua_pop(L, 1);
  }
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
    case LUA_TNUMBER: {
      size_t n;
      const char* s = lua_tolstring(L, idx, &n);
      return std::string(s, n);
    }
    case LUA_TNIL:
      return "nil";
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx) ? "true" : "false";
    default:
      return fmt::format("({} error object)", luaL_typename(L, idx));
  }
}

int protected_call(lua_State* L, int nargs, int nresults, std::string* traceback) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback_handler);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  if (status != 0 && traceback) {
    lua_getfield(L, LUA_REGISTRYINDEX, TRACEBACK_KEY);
    *traceback = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
    lua_pop(L, 1);
  }
  return status;
}

bool call_hook(lua_State* L, int nargs, int nresults) {
  std::string tb;
  if (protected_call(L, nargs, nresults, &tb) == 0) return true;
  Runtime::from(L).fail(L, tb);
  return false;
}

Runtime::Runtime(RuntimeOptions opts) : opts_(std::move(opts)) {
  uv_loop_init(&loop_);
  L_ = luaL_newstate();
  if (!L_) throw std::runtime_error("cannot create Lua state");
  // Registry slot RUNTIME_SLOT, set before anything takes a luaL_ref (refs then start above it).
  lua_pushlightuserdata(L_, this);
  lua_rawseti(L_, LUA_REGISTRYINDEX, RUNTIME_SLOT);
  scheduler_ = std::make_unique<Scheduler>(*this);
  executor_ = std::make_unique<Executor>(&loop_);
  // The configuration's secrets (-X sasl.password=..., a profile's) are masked in every log record.
  for (const auto& e : opts_.config)
    if (log::is_secret_name(e.key)) log::add_secret(e.value);
  open_libs();
  if (opts_.install_signal_handlers) install_signals();
}


Runtime::~Runtime() {
  shutdown();
  // Off-loop work still running (bounded by its timeouts) finishes, and its completions run,
  // while the Lua state is still open.
  executor_->stop();
  // The signal handlers, hook and watchdog go before the Lua state (a signal from here on has
  // its default effect: every client is closed already).
  uninstall_signals();
  lua_close(L_);
  scheduler_.reset();
  uv_run(&loop_, UV_RUN_NOWAIT);
  uv_walk(&loop_, [](uv_handle_t* h, void*) { if (!uv_is_closing(h)) uv_close(h, nullptr); }, nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

// Every waiting call asks for its runtime: an integer slot of the registry (one per Lua state,
// shared by its coroutines), no string hashing and no per-thread cache. (Wrapping the Lua
// allocator to carry the runtime cost every allocation an indirect call: about 5% of an
// allocation-heavy loop.)
Runtime& Runtime::from(lua_State* L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, RUNTIME_SLOT);
  auto* rt = static_cast<Runtime*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return *rt;
}

void Runtime::set_config(ConfigEntry e) {
  if (log::is_secret_name(e.key)) log::add_secret(e.value);
  opts_.config.push_back(std::move(e));
}

std::optional<std::string> Runtime::config_value(const std::string& key) const {
  std::optional<std::string> v;
  for (const auto& e : opts_.config)
    if (e.key == key) v = e.value;
  return v;
}

void Runtime::open_libs() {
  lua_State* L = L_;
  luaL_openlibs(L);
  install_uncompiled_next(L);  // on a LuaJIT that miscompiles them, before any chunk captures next or pairs

  // math.random: LuaJIT seeds every process identically; seed from the OS.
  uint32_t seed[2];
  fill_random(seed, sizeof seed);
  lua_getglobal(L, "math");
  lua_getfield(L, -1, "randomseed");
  lua_pushnumber(L, static_cast<double>(seed[0]) + static_cast<double>(seed[1] & 0xfffff) * 4294967296.0);
  lua_call(L, 1, 0);
  lua_pop(L, 1);

  lua_newtable(L);  // klua
  int klua = lua_gettop(L);
  lua_pushliteral(L, KLUA_VERSION);
  lua_setfield(L, klua, "version");
  lua_pushcfunction(L, l_now);
  lua_setfield(L, klua, "now");
  lua_pushcfunction(L, l_time);
  lua_setfield(L, klua, "time");
  lua_pushcfunction(L, l_uuid);
  lua_setfield(L, klua, "uuid");
  lua_pushcfunction(L, l_random_bytes);
  lua_setfield(L, klua, "random_bytes");
  lua_pushcfunction(L, l_exit);
  lua_setfield(L, klua, "exit");
  lua_pushcfunction(L, l_config);
  lua_setfield(L, klua, "config");
  lua_pushcfunction(L, l_config_entries);
  lua_setfield(L, klua, "config_entries");
  lua_pushcfunction(L, l_set_config);
  lua_setfield(L, klua, "set_config");
  open_errors(L, klua);
  open_log(*this, L, klua);
  scheduler_->open(L, klua);
  open_stdin(*this, L, klua);
  open_line_editor(*this, L, klua);
  for (auto& m : opts_.modules) m(*this, L, klua);

  // require("klua") returns the same table; os.exit flushes and closes like klua.exit.
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_pushvalue(L, klua);
  lua_setfield(L, -2, "klua");
  lua_pop(L, 1);
  // Bundled modules are searched right after package.preload.
  lua_getfield(L, -1, "loaders");
  int n = static_cast<int>(lua_objlen(L, -1));
  for (int i = n; i >= 2; --i) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushcfunction(L, bundled_loader);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);

  // dofile written in Lua, so that a file it runs can wait (the C dofile is a yield barrier).
  static const char* dofile_src =
      "local loadfile, error = loadfile, error\n"
      "return function(path) local f, err = loadfile(path) if not f then error(err, 2) end return f() end";
  if (luaL_loadbuffer(L, dofile_src, strlen(dofile_src), "=dofile") == 0) {
    lua_call(L, 0, 1);
    lua_setglobal(L, "dofile");
  }

  lua_getglobal(L, "os");
  lua_pushcfunction(L, l_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);

  lua_newtable(L);
  lua_pushcfunction(L, lazy_module);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, klua);

  lua_pushvalue(L, klua);
  lua_setglobal(L, "klua");
  lua_pop(L, 1);
  push_args();
}

void Runtime::push_args() {
  lua_createtable(L_, static_cast<int>(opts_.script_args.size()), 1);
  lua_pushstring(L_, opts_.script_name.c_str());
  lua_rawseti(L_, -2, 0);
  int i = 1;
  for (const auto& a : opts_.script_args) {
    lua_pushlstring(L_, a.data(), a.size());
    lua_rawseti(L_, -2, i++);
  }
  lua_setglobal(L_, "arg");
}

bool Runtime::load_bundled(lua_State* L, const char* name) {
  for (const BundledScript* s = bundled_scripts; s->module; ++s) {
    if (std::strcmp(s->module, name) == 0) {
      if (luaL_loadbuffer(L, reinterpret_cast<const char*>(s->bytecode), s->size, s->chunkname) != 0)
        lua_error(L);
      return true;
    }
  }
  return false;
}

int Runtime::l_exit(lua_State* L) {
  int code = 0;
  if (lua_isboolean(L, 1))
    code = lua_toboolean(L, 1) ? 0 : 1;
  else if (!lua_isnoneornil(L, 1)) {
    // NaN, 1.5 or 300 would exit with something else (0, 1, 44): a status is 0..255.
    lua_Number n = lua_isnumber(L, 1) ? lua_tonumber(L, 1) : -1;  // "3" too, as os.exit takes it
    if (!(n >= 0 && n <= 255 && n == static_cast<int>(n)))
      raise_bad_argument(L, 1, "klua.exit",
                         fmt::format("exit code must be a whole number from 0 to 255 or a boolean, got {} {}",
                                     luaL_typename(L, 1), to_display_string(L, 1)));
    code = static_cast<int>(n);
  }
  Runtime& rt = Runtime::from(L);
  if (!rt.exiting_) rt.script_exit_ = true;
  rt.request_exit(code);
  Scheduler& s = rt.scheduler();
  if (s.can_wait(L)) {
    // Park this task for good: nothing of the script runs after klua.exit.
    s.prepare_wait(L, "klua.exit", -1);
    return lua_yield(L, 0);
  }
  return 0;
}

void Runtime::request_exit(int code) {
  if (exiting_) return;
  exiting_ = true;
  exit_code_ = code;
  uv_stop(&loop_);
}

void Runtime::fail(lua_State* L, const std::string& traceback) {
  std::string msg = to_display_string(L, -1);
  bool kafka = error_is_kafka(L, -1);
  bool cancelled = is_error(L, -1) && error_field(L, -1, "name") == ERR_CANCELLED;
  lua_pop(L, 1);
  if (cancelled && stop_signal() != 0) {
    // A callback cancelled by the signal that stops the script: not a failure of its own.
    request_exit(128 + stop_signal());
    return;
  }
  if (exiting_ && failed_) return;  // report only the first failure
  // One record: the text format prints the traceback on the lines below the message, as Lua does;
  // the JSON format keeps it in a field. (A closed stderr is no failure of its own: the exit code
  // still says it, and the clients still close below.)
  bool own_traceback = !traceback.empty() && msg.find("stack traceback:") == std::string::npos;
  log::Fields fields;
  if (own_traceback) fields.push_back({"traceback", traceback});
  log::diagnostic(log::Level::error, msg, fields,
                  own_traceback ? fmt::format("klua: {}\n{}", msg, traceback) : std::string());
  failed_ = true;
  bool was_exiting = exiting_;
  request_exit(kafka ? EXIT_KAFKA_ERROR : EXIT_SCRIPT_ERROR);
  if (was_exiting && exit_code_ < 128) exit_code_ = kafka ? EXIT_KAFKA_ERROR : EXIT_SCRIPT_ERROR;
}

int Runtime::run_file(const std::string& path) {
  int st = luaL_loadfile(L_, path.c_str());
  if (st != 0) {
    log::diagnostic(log::Level::error, lua_tostring(L_, -1));
    lua_pop(L_, 1);
    return EXIT_SCRIPT_ERROR;
  }
  return run_main_chunk();
}

int Runtime::run_string(const std::string& code, const std::string& chunkname) {
  int st = luaL_loadbuffer(L_, code.data(), code.size(), chunkname.c_str());
  if (st != 0) {
    log::diagnostic(log::Level::error, lua_tostring(L_, -1));
    lua_pop(L_, 1);
    return EXIT_SCRIPT_ERROR;
  }
  return run_main_chunk();
}

int Runtime::run_main_chunk() {
  int nargs = 0;
  for (const auto& a : opts_.script_args) {
    lua_pushlstring(L_, a.data(), a.size());
    ++nargs;
  }
  scheduler_->spawn(L_, nargs, true);
  return run_loop();
}

int Runtime::run_loop() {
  while (!exiting_) {
    uv_run(&loop_, UV_RUN_DEFAULT);
    if (exiting_) break;
    if (scheduler_->all_done()) break;
    if (uv_loop_alive(&loop_) == 0) {
      log::diagnostic(log::Level::error, fmt::format("{} task(s) wait for something that can never happen (a join cycle?)",
                                                     scheduler_->live_tasks()));
      exit_code_ = EXIT_SCRIPT_ERROR;
      break;
    }
  }
  shutdown();
  // A signal whose hook ended the tasks before the loop heard of it still sets the exit code
  // (unless the script chose its own with klua.exit).
  if (stop_signal() != 0 && !failed_ && !script_exit_ && exit_code_ == 0) exit_code_ = 128 + stop_signal();
  return exit_code_;
}

void Runtime::run_once() { uv_run(&loop_, UV_RUN_NOWAIT); }

void Runtime::add_closable(Closable* c) {
  auto lock = lock_closables();
  closables_.push_back(c);
}

void Runtime::remove_closable(Closable* c) {
  auto lock = lock_closables();
  closables_.erase(std::remove(closables_.begin(), closables_.end(), c), closables_.end());
}

void Runtime::shutdown() {
  // Close in priority order; a group is fully closed before the next starts, so producers have
  // flushed before consumers leave and before the embedded cluster goes away. Closables may be
  // destroyed while the loop runs (they unregister themselves), so the group is re-read from
  // closables_ each time instead of being kept as a list of pointers.
  while (!closables_.empty()) {
    int prio = closables_.front()->close_priority();
    for (Closable* c : closables_) prio = std::min(prio, c->close_priority());
    auto pending = [&] {
      std::vector<Closable*> out;
      for (Closable* c : closables_)
        if (c->close_priority() == prio && !c->is_closed()) out.push_back(c);
      return out;
    };
    for (Closable* c : pending()) c->begin_close();
    while (!pending().empty()) {
      if (uv_run(&loop_, UV_RUN_ONCE) == 0 && !pending().empty()) break;  // nothing could finish it
    }
    std::vector<Closable*> done;
    for (Closable* c : closables_)
      if (c->close_priority() == prio) done.push_back(c);
    for (Closable* c : done) remove_closable(c);
  }
}

}  // namespace klua
