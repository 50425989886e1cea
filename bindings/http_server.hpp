// klua.http.serve's server (bindings/http_server.cpp: h2o on the loop) and the Lua primitives over it
// (bindings/http_server_lua.cpp). See the top of http_server.cpp for the lifetimes.
#pragma once
#include <uv.h>

extern "C" {
#include <h2o.h>
}

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "host/runtime.hpp"

namespace klua::http_server {

class Server;

// One accepted connection. h2o owns its socket; klua keeps the uv_tcp_t (h2o's close callback hands it
// back) and which request, if any, is being handled on it.
struct Conn {
  uv_tcp_t tcp;  // first: on_conn_closed gets &tcp
  Server* srv = nullptr;
  h2o_socket_t* sock = nullptr;
  struct Request* busy = nullptr;
};

// A request from the handler's call to h2o's dispose of its pool (allocated in that pool).
struct Request {
  Server* srv = nullptr;
  Conn* conn = nullptr;
  h2o_req_t* req = nullptr;
  uint64_t id = 0;
  uint64_t task = 0;
  bool responded = false;     // an answer (the handler's or klua's 4xx/5xx) has been started
  bool handler_done = false;  // the handler answered: nothing to cancel
  bool watching = false;      // klua's read callback watches for the client leaving
  h2o_timeout_entry_t timeout{};  // handler_timeout_ms
};

struct Handler {
  h2o_handler_t super;
  Server* srv;
};

struct Config {
  std::string host;
  int port = 0;
  size_t max_body_size = 1 << 20;
  size_t max_header_size = 16 << 10;
  uint64_t request_timeout_ms = 10000;
  uint64_t handler_timeout_ms = 30000;
  double shutdown_timeout_ms = 10000;
};

struct Waiter {
  WaitToken tok;
  bool keeper;
};

class Server : public Closable {
 public:
  Server(Runtime& rt, Config cfg) : rt_(rt), cfg_(std::move(cfg)) {}
  ~Server() override = default;

  int close_priority() const override { return 5; }  // before producers flush: in-flight handlers may produce
  void begin_close() override { begin_graceful(0); }
  bool is_closed() const override { return state_ == Closed; }

  // Binds and listens; on failure returns the reason (the server is then unused).
  std::string start(lua_State* L);
  int port() const { return bound_port_; }
  bool closed() const { return state_ == Closed; }
  bool open() const { return state_ == Open; }
  void begin_graceful(double timeout_ms);
  // The handler's answer; false when the request is gone or already answered (the answer is dropped).
  bool respond(uint64_t id, int status, lua_State* L, int headers_idx, const char* body, size_t len);
  void add_waiter(Waiter w) { waiters_.push_back(w); }
  void remove_waiter(WaitToken t) {
    waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(),
                                  [&](const Waiter& w) { return w.tok.task == t.task && w.tok.seq == t.seq; }),
                   waiters_.end());
  }
  // After the close: disposes h2o's context (outside the loop's run only: see the top of the file).
  void dispose();
  bool disposed() const { return disposed_; }
  int dispatch_ref = LUA_NOREF;
  const Config& config() const { return cfg_; }

 private:
  enum State { Open, Closing, Closed };
  static int on_req(h2o_handler_t* self, h2o_req_t* req);
  static void on_connection(uv_stream_t* listener, int status);
  static void on_conn_closed(uv_handle_t* h);
  static void on_request_dispose(void* p);
  static void on_client_read(h2o_socket_t* sock, const char* err);
  static void on_handler_timeout(h2o_timeout_entry_t* entry);
  static void on_shutdown_timer(uv_timer_t* t);
  static void on_watch_prepare(uv_prepare_t* p);
  void handle(h2o_req_t* req);
  void send_error(h2o_req_t* req, int status, const char* body, bool close);
  void abort(Request* r, int status, const char* body);
  void shutdown_conn(Conn* c);
  void maybe_closed();
  void finish_close();

  Runtime& rt_;
  Config cfg_;
  State state_ = Open;
  bool started_ = false;
  bool disposed_ = false;
  bool listener_open_ = false;
  bool forced_ = false;  // the second phase of the close: connections are being cut
  bool accept_error_logged_ = false;
  int bound_port_ = 0;
  h2o_globalconf_t globconf_{};
  h2o_context_t ctx_{};
  h2o_accept_ctx_t accept_ctx_{};
  h2o_timeout_t handler_timeout_{};
  uv_tcp_t listener_{};
  uv_timer_t shutdown_timer_{};
  // Requests whose handler has had its first run: those still unanswered then (the handler waits)
  // get klua's read watch (see handle()).
  uv_prepare_t watch_prepare_{};
  std::vector<uint64_t> to_watch_;
  std::unordered_set<Conn*> conns_;
  std::unordered_map<uint64_t, Request*> requests_;
  uint64_t next_id_ = 1;
  std::vector<Waiter> waiters_;
};

}  // namespace klua::http_server
