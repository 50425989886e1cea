// The public embedding facade (include/klua/*.hpp) over host/Runtime: options become configuration
// layers, modules become package.preload entries, and a runtime given the caller's libuv loop is
// driven from it. klua keeps its own loop (Runtime owns it and closes every handle on it at the
// end); the caller's loop watches that loop's backend fd (epoll) with a uv_poll, wakes for its
// next timer with a uv_timer (a uv_idle when it has work ready now), and runs it without blocking
// (UV_RUN_NOWAIT) from those and from a uv_prepare hook on every turn, so that watchers started by
// a callback are registered before the caller's loop blocks. The caller's loop is kept alive exactly while klua's is (running tasks and
// pending operations; Kafka handles alone do not).
#include <uv.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fmt/format.h>
#include <unordered_map>

#include "bindings/modules.hpp"
#include "host/log.hpp"
#include "host/profiles.hpp"
#include "host/runtime.hpp"
#include "klua/runtime.hpp"

namespace klua::embed {

namespace {

void push_value(lua_State* L, const Value& v) {
  if (std::holds_alternative<bool>(v))
    lua_pushboolean(L, std::get<bool>(v));
  else if (std::holds_alternative<double>(v))
    lua_pushnumber(L, std::get<double>(v));
  else if (std::holds_alternative<std::string>(v))
    lua_pushlstring(L, std::get<std::string>(v).data(), std::get<std::string>(v).size());
  else
    lua_pushnil(L);
}

// The value at idx; false for a type Value cannot hold.
bool to_value(lua_State* L, int idx, Value& out) {
  switch (lua_type(L, idx)) {
    case LUA_TNIL: out = std::monostate{}; return true;
    case LUA_TBOOLEAN: out = static_cast<bool>(lua_toboolean(L, idx)); return true;
    case LUA_TNUMBER: out = static_cast<double>(lua_tonumber(L, idx)); return true;
    case LUA_TSTRING: {
      size_t n;
      const char* s = lua_tolstring(L, idx, &n);
      out = std::string(s, n);
      return true;
    }
    default: return false;
  }
}

// Results handed back to C++: a value Value cannot hold becomes its tostring().
Values results(lua_State* L, int from, int to) {
  Values out;
  for (int i = from; i <= to; ++i) {
    Value v;
    if (!to_value(L, i, v)) {
      lua_getglobal(L, "tostring");
      lua_pushvalue(L, i);
      v = lua_pcall(L, 1, 1, 0) == 0 && lua_isstring(L, -1) ? std::string(lua_tostring(L, -1)) : luaL_typename(L, i);
      lua_pop(L, 1);
    }
    out.push_back(std::move(v));
  }
  return out;
}

// A C++ Function as a Lua C closure (upvalue 1: the Function).
int call_function(lua_State* L) {
  auto* fn = static_cast<Function*>(lua_touserdata(L, lua_upvalueindex(1)));
  int n = lua_gettop(L);
  {
    std::string err;
    Values args;
    args.reserve(static_cast<size_t>(n));
    for (int i = 1; i <= n && err.empty(); ++i) {
      Value v;
      if (!to_value(L, i, v))
        err = fmt::format("bad argument #{} ({} given; a C++ function takes nil, booleans, numbers and strings)", i,
                          luaL_typename(L, i));
      args.push_back(std::move(v));
    }
    if (err.empty()) {
      try {
        Values out = (*fn)(args);
        luaL_checkstack(L, static_cast<int>(out.size()), "too many results");
        for (const auto& v : out) push_value(L, v);
        return static_cast<int>(out.size());
      } catch (const std::exception& e) {
        err = e.what();
      } catch (...) {
        err = "unknown C++ exception";
      }
    }
    luaL_where(L, 1);
    lua_pushlstring(L, err.data(), err.size());
    lua_concat(L, 2);
  }
  return lua_error(L);
}

// Runs fn(...) as a task body and reports how it ended to the C function report:
// report(id, traceback, ok, results or error...).
const char* const RUNNER_SRC = R"(
local report = ...
local xpcall, traceback = xpcall, debug.traceback
return function(id, fn, ...)
  local tb
  local function on_error(e) tb = traceback("", 2) return e end
  local function finish(ok, ...) return report(id, tb or "", ok, ...) end
  return finish(xpcall(fn, on_error, ...))
end
)";

const char* const BROKER_KEYS[] = {"bootstrap.servers", "metadata.broker.list"};

}  // namespace

struct Runtime::Impl {
  // The caller's-loop driver: four handles on the caller's loop; freed after the last one closed.
  struct Driver {
    Impl* impl = nullptr;
    uv_poll_t poll;
    uv_timer_t timer;
    uv_prepare_t prepare;
    uv_idle_t idle;
    int open = 0;
  };

  std::unique_ptr<klua::Runtime> rt;
  Driver* driver = nullptr;
  bool stopped = false;
  bool in_pump = false;
  bool stop_requested = false;
  std::function<void(int)> on_exit;
  std::deque<Module> modules;      // stable addresses: the loaders' upvalues
  std::deque<Function> functions;  // the same for C++ functions
  std::unordered_map<uint64_t, Done> pending;
  uint64_t next_id = 1;
  int runner_ref = LUA_NOREF;
  Values args;  // Options::args, the `...` of a started script

  lua_State* L() const { return rt->lua(); }
  uv_loop_t* inner() const { return rt->loop(); }

  void check_running(const char* what) const {
    if (stopped) throw Error(fmt::format("klua::embed::Runtime::{}: the runtime is stopped", what));
  }

  static int loader(lua_State* L) {
    auto* impl = static_cast<Impl*>(lua_touserdata(L, lua_upvalueindex(1)));
    auto* m = static_cast<const Module*>(lua_touserdata(L, lua_upvalueindex(2)));
    lua_newtable(L);
    for (const auto& [name, fn] : m->functions_) {
      impl->functions.push_back(fn);
      lua_pushlightuserdata(L, &impl->functions.back());
      lua_pushcclosure(L, call_function, 1);
      lua_setfield(L, -2, name.c_str());
    }
    for (const auto& [name, fn] : m->raw_) {
      lua_pushcfunction(L, fn);
      lua_setfield(L, -2, name.c_str());
    }
    if (m->source_.empty()) return 1;
    std::string chunkname = "=" + m->name_;
    if (luaL_loadbuffer(L, m->source_.data(), m->source_.size(), chunkname.c_str()) != 0) return lua_error(L);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    return 1;
  }

  // report(id, traceback, ok, ...): a spawned call ended.
  static int report(lua_State* L) {
    auto* impl = static_cast<Impl*>(lua_touserdata(L, lua_upvalueindex(1)));
    auto it = impl->pending.find(static_cast<uint64_t>(lua_tonumber(L, 1)));
    if (it == impl->pending.end()) return 0;
    Done done = std::move(it->second);
    impl->pending.erase(it);
    Result r;
    r.ok = lua_toboolean(L, 3);
    if (r.ok) {
      r.values = results(L, 4, lua_gettop(L));
    } else {
      r.error = klua::to_display_string(L, 4);
      r.traceback = lua_tostring(L, 2) ? lua_tostring(L, 2) : "";
    }
    try {
      done(r);
    } catch (const std::exception& e) {
      log::diagnostic(log::Level::error, fmt::format("a Done callback threw: {}", e.what()));
    }
    return 0;
  }

  // Pushes the function at a dotted global path ("a.b.c"); throws when there is none.
  void push_function(const std::string& path) {
    lua_State* L = this->L();
    // The first part is a global, else a module: "orders.run" is require("orders").run when there
    // is no global orders.
    size_t first_end = path.find('.');
    std::string first = path.substr(0, first_end);
    lua_getglobal(L, first.c_str());
    if (lua_isnil(L, -1) && first_end != std::string::npos) {
      lua_pop(L, 1);
      lua_getglobal(L, "require");
      lua_pushlstring(L, first.data(), first.size());
      if (klua::protected_call(L, 1, 1) != 0) {
        std::string err = klua::to_display_string(L, -1);
        lua_pop(L, 1);
        throw Error(fmt::format("klua::embed: {}: {}", path, err));
      }
    }
    if (first_end == std::string::npos) first_end = path.size();
    size_t start = first_end + 1;
    while (start <= path.size()) {
      size_t dot = path.find('.', start);
      std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        throw Error(fmt::format("klua::embed: no function {} (a part before '{}' is not a table)", path, part));
      }
      lua_getfield(L, -1, part.c_str());
      lua_remove(L, -2);
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    if (!lua_isfunction(L, -1)) {
      std::string type = luaL_typename(L, -1);
      lua_pop(L, 1);
      throw Error(fmt::format("klua::embed: {} is a {}, not a function", path, type));
    }
  }

  // Spawns the function on top of the stack with args as a task; done (if any) gets the outcome.
  void spawn_top(const Values& args, Done done) {
    lua_State* L = this->L();
    int nargs = static_cast<int>(args.size());
    if (done) {
      if (runner_ref == LUA_NOREF) {
        if (luaL_loadbuffer(L, RUNNER_SRC, std::strlen(RUNNER_SRC), "=klua.embed") != 0)
          throw Error(lua_tostring(L, -1));
        lua_pushlightuserdata(L, this);
        lua_pushcclosure(L, report, 1);
        lua_call(L, 1, 1);
        runner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
      }
      uint64_t id = next_id++;
      pending.emplace(id, std::move(done));
      lua_rawgeti(L, LUA_REGISTRYINDEX, runner_ref);
      lua_insert(L, -2);
      lua_pushnumber(L, static_cast<double>(id));
      lua_insert(L, -2);
      nargs += 2;
    }
    luaL_checkstack(L, static_cast<int>(args.size()), "too many arguments");
    for (const auto& v : args) push_value(L, v);
    // runner(id, fn, ...) or fn(...): the function is below its nargs arguments.
    rt->scheduler().spawn(L, nargs);
    rearm();
  }

  // ---- the caller's loop -------------------------------------------------------

  void attach(uv_loop_t* outer) {
    driver = new Driver;
    driver->impl = this;
    uv_poll_init(outer, &driver->poll, uv_backend_fd(inner()));
    uv_timer_init(outer, &driver->timer);
    uv_prepare_init(outer, &driver->prepare);
    uv_idle_init(outer, &driver->idle);
    driver->open = 4;
    for (uv_handle_t* h : handles()) h->data = driver;
    uv_poll_start(&driver->poll, UV_READABLE, [](uv_poll_t* h, int, int) { pump_from(h); });
    uv_prepare_start(&driver->prepare, [](uv_prepare_t* h) { pump_from(h); });
    uv_unref(reinterpret_cast<uv_handle_t*>(&driver->prepare));
    rearm();
  }

  template <class H>
  static void pump_from(H* h) {
    auto* d = static_cast<Driver*>(h->data);
    if (d->impl) d->impl->pump();
  }

  void pump() {
    if (stopped || in_pump) return;
    in_pump = true;
    uv_run(inner(), UV_RUN_NOWAIT);
    in_pump = false;
    if (rt->exiting()) {
      // klua.exit, a task's unhandled error, or stop() from inside a callback: close every client.
      bool by_host = stop_requested;
      finish();
      if (!by_host && on_exit) on_exit(rt->exit_code());  // may destroy this runtime: nothing after it
      return;
    }
    rearm();
  }

  std::array<uv_handle_t*, 4> handles() const {
    std::array<uv_handle_t*, 4> hs;
    hs[0] = reinterpret_cast<uv_handle_t*>(&driver->poll);
    hs[1] = reinterpret_cast<uv_handle_t*>(&driver->timer);
    hs[2] = reinterpret_cast<uv_handle_t*>(&driver->prepare);
    hs[3] = reinterpret_cast<uv_handle_t*>(&driver->idle);
    return hs;
  }

  // Keeps the caller's loop alive while klua's is, and wakes it for klua's next timer: an idle
  // handle when klua has work ready now (ready tasks, pending callbacks: the caller's loop must not
  // block), a timer when its next timer is due later. (Not a 0 ms timer re-armed from its own
  // callback: libuv 1.44 runs such a timer again in the same pass, for ever.)
  void rearm() {
    if (!driver) return;
    bool alive = uv_loop_alive(inner()) != 0;
    int timeout = alive ? uv_backend_timeout(inner()) : -1;
    if (timeout == 0)
      uv_idle_start(&driver->idle, [](uv_idle_t* h) { pump_from(h); });
    else
      uv_idle_stop(&driver->idle);
    if (timeout > 0)
      uv_timer_start(&driver->timer, [](uv_timer_t* h) { pump_from(h); }, static_cast<uint64_t>(timeout), 0);
    else
      uv_timer_stop(&driver->timer);
    uv_handle_t* poll = reinterpret_cast<uv_handle_t*>(&driver->poll);
    if (alive)
      uv_ref(poll);
    else
      uv_unref(poll);
  }

  void detach() {
    if (!driver) return;
    driver->impl = nullptr;
    auto closed = [](uv_handle_t* h) {
      auto* d = static_cast<Driver*>(h->data);
      if (--d->open == 0) delete d;
    };
    for (uv_handle_t* h : handles()) uv_close(h, closed);
    driver = nullptr;
  }

  // Closes every client in klua's order (producers flush first) and lets go of the caller's loop.
  void finish() {
    stopped = true;
    detach();
    rt->shutdown();
  }

  int stop(int timeout_ms) {
    if (stopped) return rt->exit_code();
    if (in_pump) {
      // Inside a callback of klua's loop: that run ends at once and pump() closes the clients.
      stop_requested = true;
      rt->request_exit(rt->exit_code());
      return rt->exit_code();
    }
    Scheduler& s = rt->scheduler();
    if (!rt->exiting() && !s.all_done()) {
      s.cancel_all();
      // Let the cancelled tasks unwind (a task may catch KLUA_CANCELLED and finish its work).
      struct Deadline {
        uv_timer_t timer;
        bool hit = false;
      } deadline;
      uv_timer_init(inner(), &deadline.timer);
      deadline.timer.data = &deadline;
      uv_timer_start(&deadline.timer, [](uv_timer_t* h) {
        static_cast<Deadline*>(h->data)->hit = true;
        uv_stop(h->loop);
      }, static_cast<uint64_t>(timeout_ms < 0 ? 0 : timeout_ms), 0);
      in_pump = true;
      while (!s.all_done() && !rt->exiting() && !deadline.hit)
        if (uv_run(inner(), UV_RUN_ONCE) == 0) break;
      in_pump = false;
      uv_close(reinterpret_cast<uv_handle_t*>(&deadline.timer), nullptr);
      uv_run(inner(), UV_RUN_NOWAIT);  // the close callback, before `deadline` goes out of scope
      if (!s.all_done() && !rt->exiting())
        log::diagnostic(log::Level::warn, fmt::format("stop: {} task(s) still running after {} ms; closing clients under them",
                                                      s.live_tasks(), timeout_ms));
    }
    stop_requested = true;
    rt->request_exit(rt->exit_code());
    finish();
    return rt->exit_code();
  }
};

namespace {

std::vector<klua::ConfigEntry> config_layers(const Options& o) {
  std::vector<klua::ConfigEntry> cfg;
  if (o.use_environment)
    if (const char* b = std::getenv("KLUA_BROKERS"); b && *b) cfg.push_back({"bootstrap.servers", b, "KLUA_BROKERS"});
  if (o.use_environment)
    if (const char* r = std::getenv("KLUA_SCHEMA_REGISTRY"); r && *r)
      cfg.push_back({"schema.registry.url", r, "KLUA_SCHEMA_REGISTRY"});
  if (!o.profile.empty() || o.use_environment) {
    klua::ProfileChoice choice;
    if (!o.profile.empty())
      choice = {o.profile, "Options::profile"};
    else if (const char* p = std::getenv("KLUA_PROFILE"); p && *p)
      choice = {p, "KLUA_PROFILE"};
    std::string err;
    if (!klua::load_profile(klua::config_file_path(), choice, cfg, err)) throw Error(err);
  }
  if (!o.brokers.empty()) cfg.push_back({"bootstrap.servers", o.brokers, "Options::brokers"});
  for (const auto& [k, v] : o.properties) {
    if (k.empty()) throw Error("klua::embed::Options::properties: a property name is empty");
    cfg.push_back({k, v, "Options::properties"});
  }
  if (o.embedded_cluster) {
    for (const auto& e : cfg)
      for (const char* key : BROKER_KEYS)
        if (e.key == key)
          throw Error(fmt::format("klua::embed::Options::embedded_cluster: {} names brokers ({}={})", e.source, e.key,
                                  e.value));
  }
  return cfg;
}

std::unique_ptr<klua::Runtime> make_runtime(const Options& o) {
  klua::RuntimeOptions ro;
  ro.config = config_layers(o);
  ro.modules = klua::standard_modules();
  ro.script_args = o.args;
  ro.script_name = o.script_name;
  ro.install_signal_handlers = o.handle_signals;
  return std::make_unique<klua::Runtime>(std::move(ro));
}

}  // namespace

Runtime::Runtime(Options options) : impl_(std::make_unique<Impl>()) {
  impl_->rt = make_runtime(options);
  impl_->args.assign(options.args.begin(), options.args.end());
}

Runtime::Runtime(uv_loop_s* loop, Options options) : impl_(std::make_unique<Impl>()) {
  if (!loop) throw Error("klua::embed::Runtime: the loop is null");
  impl_->rt = make_runtime(options);
  impl_->args.assign(options.args.begin(), options.args.end());
  impl_->attach(loop);
}

Runtime::~Runtime() {
  if (!impl_->stopped) impl_->stop(10000);
  impl_->detach();
}

void Runtime::add_module(const Module& module) {
  impl_->check_running("add_module");
  if (module.name_.empty()) throw Error("klua::embed::Runtime::add_module: the module has no name");
  impl_->modules.push_back(module);
  lua_State* L = impl_->L();
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushlightuserdata(L, impl_.get());
  lua_pushlightuserdata(L, &impl_->modules.back());
  lua_pushcclosure(L, Impl::loader, 2);
  lua_setfield(L, -2, module.name_.c_str());
  lua_pop(L, 2);
}

void Runtime::add_lua_module(const std::string& name, const std::string& source) {
  impl_->check_running("add_lua_module");
  lua_State* L = impl_->L();
  std::string chunkname = "=" + name;
  if (luaL_loadbuffer(L, source.data(), source.size(), chunkname.c_str()) != 0) {
    std::string err = lua_tostring(L, -1);
    lua_pop(L, 1);
    throw Error(err);
  }
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, name.c_str());
  lua_pop(L, 3);
}

int Runtime::run_file(const std::string& path) {
  impl_->check_running("run_file");
  if (impl_->driver) throw Error("klua::embed::Runtime::run_file: the runtime runs on the caller's loop (start_file)");
  int code = impl_->rt->run_file(path);
  impl_->stopped = true;
  return code;
}

int Runtime::run_string(const std::string& code, const std::string& chunkname) {
  impl_->check_running("run_string");
  if (impl_->driver) throw Error("klua::embed::Runtime::run_string: the runtime runs on the caller's loop (start_string)");
  int rc = impl_->rt->run_string(code, chunkname);
  impl_->stopped = true;
  return rc;
}

void Runtime::start_file(const std::string& path, Done done) {
  impl_->check_running("start_file");
  lua_State* L = impl_->L();
  if (luaL_loadfile(L, path.c_str()) != 0) {
    std::string err = lua_tostring(L, -1);
    lua_pop(L, 1);
    throw Error(err);
  }
  impl_->spawn_top(impl_->args, std::move(done));
}

void Runtime::start_string(const std::string& code, const std::string& chunkname, Done done) {
  impl_->check_running("start_string");
  lua_State* L = impl_->L();
  if (luaL_loadbuffer(L, code.data(), code.size(), chunkname.c_str()) != 0) {
    std::string err = lua_tostring(L, -1);
    lua_pop(L, 1);
    throw Error(err);
  }
  impl_->spawn_top(impl_->args, std::move(done));
}

void Runtime::spawn(const std::string& function, Values args, Done done) {
  impl_->check_running("spawn");
  impl_->push_function(function);
  impl_->spawn_top(args, std::move(done));
}

Values Runtime::call(const std::string& function, const Values& args) {
  impl_->check_running("call");
  lua_State* L = impl_->L();
  int base = lua_gettop(L);
  impl_->push_function(function);
  luaL_checkstack(L, static_cast<int>(args.size()), "too many arguments");
  for (const auto& v : args) push_value(L, v);
  std::string tb;
  if (klua::protected_call(L, static_cast<int>(args.size()), LUA_MULTRET, &tb) != 0) {
    std::string err = klua::to_display_string(L, -1);
    lua_settop(L, base);
    throw Error(err);
  }
  Values out = results(L, base + 1, lua_gettop(L));
  lua_settop(L, base);
  impl_->rearm();
  return out;
}

int Runtime::run() {
  impl_->check_running("run");
  if (impl_->driver) throw Error("klua::embed::Runtime::run: the runtime runs on the caller's loop");
  int code = impl_->rt->run_loop();
  impl_->stopped = true;
  return code;
}

int Runtime::stop(int timeout_ms) { return impl_->stop(timeout_ms); }

bool Runtime::stopped() const { return impl_->stopped; }

void Runtime::on_exit(std::function<void(int)> callback) { impl_->on_exit = std::move(callback); }

lua_State* Runtime::lua_state() { return impl_->L(); }

std::string Runtime::versions() { return klua::versions_text(); }

std::string Runtime::librdkafka_version() {
  std::string v = klua::versions_text();
  size_t at = v.find("\nlibrdkafka ");
  if (at == std::string::npos) return "";
  at += 12;
  return v.substr(at, v.find_first_of(" \n", at) - at);
}

}  // namespace klua::embed
