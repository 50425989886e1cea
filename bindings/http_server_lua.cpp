// klua.http.serve's primitives for bindings/lua/http_server.lua (P.listen, P.respond, P.wait, P.close,
// P.state), the servers' registry, and the module's opener.
#include <memory>
#include <string>
#include <vector>

#include "bindings/http_server.hpp"
#include "bindings/lua_chunks.hpp"
#include "host/error.hpp"

namespace klua {

namespace {

using http_server::Config;
using http_server::Server;

const char* const SERVER_MT = "klua.http.server";
const char* const SERVERS_KEY = "klua.http.servers";

// Every server of a runtime, kept until its end (see the top of the file); disposes their h2o contexts
// at exit, after the clusters (priority 40) are gone.
class HttpServers : public Closable {
 public:
  explicit HttpServers(Runtime& rt) : rt_(rt) { rt_.add_closable(this); }
  ~HttpServers() override {
    if (registered_) rt_.remove_closable(this);
    dispose_all();
  }
  int close_priority() const override { return 45; }
  void begin_close() override {
    dispose_all();
    registered_ = false;  // Runtime::shutdown removes the group once closed
    closed_ = true;
  }
  bool is_closed() const override { return closed_; }
  Server* add(std::unique_ptr<Server> s) {
    servers_.push_back(std::move(s));
    return servers_.back().get();
  }

 private:
  void dispose_all() {
    for (auto& s : servers_) {
      if (s->closed() && !s->disposed()) s->dispose();
      // A server that could not close (its connections outlived the shutdown) is left alone: freeing
      // it under h2o would be worse than the leak at exit.
      if (!s->disposed()) (void)s.release();
    }
    servers_.clear();
  }
  Runtime& rt_;
  bool registered_ = true;
  bool closed_ = false;
  std::vector<std::unique_ptr<Server>> servers_;
};

struct ServerBox {
  Server* srv;
};

Server* check_server(lua_State* L, int idx) {
  return static_cast<ServerBox*>(luaL_checkudata(L, idx, SERVER_MT))->srv;
}

HttpServers& servers_of(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, SERVERS_KEY);
  auto* box = static_cast<HttpServers**>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  if (box) return **box;
  box = static_cast<HttpServers**>(lua_newuserdata(L, sizeof(HttpServers*)));
  *box = new HttpServers(Runtime::from(L));
  lua_newtable(L);
  lua_pushcfunction(L, [](lua_State* L) -> int {
    auto* b = static_cast<HttpServers**>(lua_touserdata(L, 1));
    delete *b;
    *b = nullptr;
    return 0;
  });
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, SERVERS_KEY);
  return **box;
}

size_t int_field(lua_State* L, int t, const char* k) {
  lua_getfield(L, t, k);
  auto v = static_cast<size_t>(lua_tonumber(L, -1));
  lua_pop(L, 1);
  return v;
}

// P.listen(cfg, dispatch) -> server | nil, message. cfg's values are checked by the Lua side.
int l_listen(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  Runtime& rt = Runtime::from(L);
  Config cfg;
  lua_getfield(L, 1, "host");
  cfg.host = lua_tostring(L, -1) ? lua_tostring(L, -1) : "127.0.0.1";
  lua_pop(L, 1);
  cfg.port = static_cast<int>(int_field(L, 1, "port"));
  cfg.max_body_size = int_field(L, 1, "max_body_size");
  cfg.max_header_size = int_field(L, 1, "max_header_size");
  cfg.request_timeout_ms = int_field(L, 1, "request_timeout_ms");
  cfg.handler_timeout_ms = int_field(L, 1, "handler_timeout_ms");
  lua_getfield(L, 1, "shutdown_timeout_ms");
  cfg.shutdown_timeout_ms = lua_tonumber(L, -1);
  lua_pop(L, 1);
  Server* s = servers_of(L).add(std::make_unique<Server>(rt, cfg));
  std::string err = s->start(L);
  if (!err.empty()) {
    lua_pushnil(L);
    lua_pushlstring(L, err.data(), err.size());
    return 2;
  }
  lua_pushvalue(L, 2);
  s->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  auto* box = static_cast<ServerBox*>(lua_newuserdata(L, sizeof(ServerBox)));
  box->srv = s;
  luaL_getmetatable(L, SERVER_MT);
  lua_setmetatable(L, -2);
  lua_pushinteger(L, s->port());
  return 2;
}

// P.respond(server, id, status, headers_flat, body) -> true | false (the request is gone: dropped)
int l_respond(lua_State* L) {
  Server* s = check_server(L, 1);
  auto id = static_cast<uint64_t>(luaL_checknumber(L, 2));
  int status = static_cast<int>(luaL_checkinteger(L, 3));
  luaL_checktype(L, 4, LUA_TTABLE);
  size_t len = 0;
  const char* body = lua_tolstring(L, 5, &len);
  lua_pushboolean(L, s->respond(id, status, L, 4, body, len));
  return 1;
}

// P.wait(server, timeout_ms, keeper) -> true | nil, err (timed out). The keeper's wait, when cancelled
// (SIGINT/SIGTERM), starts the graceful close.
int l_wait(lua_State* L) {
  Server* s = check_server(L, 1);
  double timeout = luaL_optnumber(L, 2, -1);
  bool keeper = lua_toboolean(L, 3);
  if (s->closed()) {
    lua_pushboolean(L, 1);
    return 1;
  }
  Scheduler& sched = Runtime::from(L).scheduler();
  WaitToken t = sched.prepare_wait(L, keeper ? "klua.http.serve" : "srv:wait", timeout);
  s->add_waiter({t, keeper});
  sched.on_wait_end(t, [s, t, keeper] {
    s->remove_waiter(t);
    if (keeper) s->begin_graceful(s->config().shutdown_timeout_ms);
  });
  return lua_yield(L, 0);
}

// P.close(server, timeout_ms) -> "closed" | "closing": starts the graceful close (bounded by timeout_ms).
int l_close(lua_State* L) {
  Server* s = check_server(L, 1);
  double timeout = luaL_checknumber(L, 2);
  s->begin_graceful(timeout);
  if (s->closed()) {
    lua_pushliteral(L, "closed");
    return 1;
  }
  lua_pushstring(L, "closing");
  return 1;
}

int l_state(lua_State* L) {
  Server* s = check_server(L, 1);
  lua_pushstring(L, s->closed() ? "closed" : s->open() ? "open" : "closing");
  return 1;
}

}  // namespace

void open_http_server(Runtime& rt, lua_State* L, int klua_table) {
  if (klua_table < 0) klua_table = lua_gettop(L) + klua_table + 1;
  luaL_newmetatable(L, SERVER_MT);
  lua_pushliteral(L, "klua.http.server");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);

  // klua.http, shared with the client (bindings/http_client.cpp): whichever opener runs first makes it.
  lua_pushliteral(L, "http");
  lua_rawget(L, klua_table);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushliteral(L, "http");
    lua_pushvalue(L, -2);
    lua_rawset(L, klua_table);
  }
  int http = lua_gettop(L);

  Scheduler& sched = rt.scheduler();
  lua_newtable(L);  // P
  lua_pushcfunction(L, l_listen);
  lua_setfield(L, -2, "listen");
  lua_pushcfunction(L, l_respond);
  lua_setfield(L, -2, "respond");
  sched.push_waiting(L, l_wait);
  lua_setfield(L, -2, "wait");
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "close");
  lua_pushcfunction(L, l_state);
  lua_setfield(L, -2, "state");

  load_binding_chunk(L, "http_server");
  lua_pushvalue(L, klua_table);
  lua_pushvalue(L, -3);  // P
  lua_call(L, 2, 1);     // serve
  lua_setfield(L, http, "serve");
  lua_settop(L, http - 1);
}

}  // namespace klua
