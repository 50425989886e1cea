// klua.http.serve: an HTTP/1.1 server on the script's loop, on h2o 2.2.5's libuv backend (Debian's
// libh2o-dev). h2o parses requests, enforces the body limit (max_request_entity_size: 413) and the
// request-read timeout, and writes responses with keep-alive; klua accepts the connections on its own
// uv_tcp_t listener, and one catch-all h2o handler copies each request into Lua and runs the script's
// dispatcher (bindings/lua/http_server.lua: routing, handler, response checks) in a task of its own.
//
// Lifetimes, since three parties hold on to a request:
// - h2o owns the h2o_req_t. Our per-request state (Request) lives in the request's own memory pool,
//   allocated with h2o_mem_alloc_shared and a dispose function: when h2o ends the request (the answer
//   was written, or the connection died), dispose unlinks it from everything, and cancels the handler's
//   task if the handler has not answered yet. Lua knows a request only by its id, so a late answer
//   (after a timeout, after the client left) finds no request and is dropped.
// - h2o 2.2.5 stops reading a connection while its request is handled, so it would notice a client that
//   leaves only when the answer is written. klua reads the socket meanwhile (h2o_socket_read_start with
//   its own callback): EOF ends the request at once (an answer h2o fails to write, which makes h2o close
//   the connection and dispose the request, which cancels the handler).
// - The server (Server) lives until the runtime's end: its h2o context can only be disposed outside
//   the loop's run (h2o_context_dispose runs the loop itself, which libuv forbids from a callback), so a
//   closed server waits, idle, for Runtime::shutdown (HttpServers in http_server_lua.cpp, a Closable of
//   priority 45).
//
// A listening server keeps the script running: serve() starts a keeper task (bindings/lua) that waits
// until the server is closed. SIGINT/SIGTERM cancel it like any task, and its wait's cleanup starts the
// graceful close: stop accepting, end idle keep-alive connections, let in-flight handlers (shielded
// tasks) answer within shutdown_timeout_ms, then answer 503 for the rest and cut what is left a second
// later. The loop then ends, and the usual shutdown follows (producers flush, consumers commit).
#include "bindings/http_server.hpp"
#include "host/log.hpp"

#include <sys/socket.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace klua::http_server {

namespace {

// Read callbacks get only the socket (h2o keeps sock->data for itself): connections by socket, for
// every server of the thread. thread_local, so that runtimes embedded on several threads (each its
// own loop) never share it.
thread_local std::unordered_map<h2o_socket_t*, Conn*> g_conns;

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
  }
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding; plus_space for query strings (form encoding). A bad escape stays as it is.
std::string decode(const char* s, size_t n, bool plus_space) {
  std::string out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
      i += 2;
    } else if (c == '+' && plus_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::string Server::start(lua_State* L) {
  uv_loop_t* loop = rt_.loop();
  h2o_config_init(&globconf_);
  globconf_.server_name = h2o_iovec_init(H2O_STRLIT("klua"));
  globconf_.max_request_entity_size = cfg_.max_body_size;
  globconf_.http1.req_timeout = cfg_.request_timeout_ms;
  // HTTP/1.1 only: h2o would upgrade to h2c (an Upgrade: h2c header, or the HTTP/2 preface) by
  // default; klua's tests do not cover HTTP/2, so it stays off (the preface is then a 400).
  globconf_.http1.upgrade_to_http2 = 0;
  h2o_hostconf_t* host = h2o_config_register_host(&globconf_, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t* path = h2o_config_register_path(host, "/", 0);
  auto* handler = reinterpret_cast<Handler*>(h2o_create_handler(path, sizeof(Handler)));
  handler->super.on_req = on_req;
  handler->srv = this;

  // h2o's context makes timers (armed until their deadline even when nothing waits on them any more)
  // and a uv_async_t for messages from its resolver threads (the proxy's, unused here). Referenced,
  // they would keep the loop alive after the server closed; the server's listener, its connections
  // and its keeper task are what keep the script running. The handles h2o_context_init adds are found
  // by a walk before and after, not by h2o's private layout.
  std::unordered_set<uv_handle_t*> before;
  uv_walk(loop, [](uv_handle_t* h, void* arg) { static_cast<std::unordered_set<uv_handle_t*>*>(arg)->insert(h); },
          &before);
  h2o_context_init(&ctx_, loop, &globconf_);
  h2o_timeout_init(loop, &handler_timeout_, cfg_.handler_timeout_ms);
  uv_walk(loop,
          [](uv_handle_t* h, void* arg) {
            if (!static_cast<std::unordered_set<uv_handle_t*>*>(arg)->count(h)) uv_unref(h);
          },
          &before);
  accept_ctx_.ctx = &ctx_;
  accept_ctx_.hosts = globconf_.hosts;
  uv_timer_init(loop, &shutdown_timer_);
  shutdown_timer_.data = this;
  uv_prepare_init(loop, &watch_prepare_);
  watch_prepare_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&watch_prepare_));
  started_ = true;

  struct sockaddr_storage addr {};
  bool v6 = cfg_.host.find(':') != std::string::npos;
  int rc = v6 ? uv_ip6_addr(cfg_.host.c_str(), cfg_.port, reinterpret_cast<sockaddr_in6*>(&addr))
              : uv_ip4_addr(cfg_.host.c_str(), cfg_.port, reinterpret_cast<sockaddr_in*>(&addr));
  std::string where = v6 ? fmt::format("[{}]:{}", cfg_.host, cfg_.port) : fmt::format("{}:{}", cfg_.host, cfg_.port);
  if (rc != 0) {
    state_ = Closed;
    return fmt::format("cannot listen on {}: the host is not an IP address ({})", where, uv_strerror(rc));
  }
  uv_tcp_init(loop, &listener_);
  listener_.data = this;
  listener_open_ = true;
  rc = uv_tcp_bind(&listener_, reinterpret_cast<sockaddr*>(&addr), 0);
  // A backlog for bursts of connections (the kernel caps it at net.core.somaxconn).
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 4096, on_connection);
  if (rc != 0) {
    state_ = Closing;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), [](uv_handle_t* h) {
      auto* s = static_cast<Server*>(h->data);
      s->listener_open_ = false;
      s->state_ = Closed;
    });
    return fmt::format("cannot listen on {}: {} ({})", where, uv_strerror(rc), uv_err_name(rc));
  }
  struct sockaddr_storage bound {};
  int len = sizeof bound;
  uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);
  bound_port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                  : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  rt_.add_closable(this);
  (void)L;
  return "";
}

void Server::on_connection(uv_stream_t* listener, int status) {
  auto* s = static_cast<Server*>(listener->data);
  if (status < 0) {
    // Out of file descriptors, typically (libuv's own reserve descriptor sheds the connection):
    // said once, the server goes on.
    if (!s->accept_error_logged_)
    {
      std::string msg = fmt::format("klua.http: accepting a connection on port {} failed: {} (raise `ulimit -n`?)",
                                    s->bound_port_, uv_strerror(status));
      log::diagnostic(log::Level::error, msg, {{"port", std::to_string(s->bound_port_), true}}, msg);
    }
    s->accept_error_logged_ = true;
    return;
  }
  auto* c = new Conn;
  c->srv = s;
  uv_tcp_init(listener->loop, &c->tcp);
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), [](uv_handle_t* h) { delete reinterpret_cast<Conn*>(h); });
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);  // small answers go out at once, not after a delayed ACK
  c->sock = h2o_uv_socket_create(reinterpret_cast<uv_stream_t*>(&c->tcp), on_conn_closed);
  g_conns[c->sock] = c;
  s->conns_.insert(c);
  h2o_accept(&s->accept_ctx_, c->sock);
}

void Server::on_conn_closed(uv_handle_t* h) {
  auto* c = reinterpret_cast<Conn*>(h);
  Server* s = c->srv;
  g_conns.erase(c->sock);  // h2o freed the socket just before: the pointer is only a key here
  s->conns_.erase(c);
  delete c;
  s->maybe_closed();
}

int Server::on_req(h2o_handler_t* self, h2o_req_t* req) {
  reinterpret_cast<Handler*>(self)->srv->handle(req);
  return 0;
}

void Server::send_error(h2o_req_t* req, int status, const char* body, bool close) {
  h2o_send_error_generic(req, status, reason_phrase(status), body, close ? H2O_SEND_ERROR_HTTP1_CLOSE_CONNECTION : 0);
}

void Server::handle(h2o_req_t* req) {
  if (state_ != Open) {
    send_error(req, 503, "the server is shutting down\n", true);
    return;
  }
  // klua's header limit (h2o's own is ~408 KiB or 100 headers, answered 400): names and values.
  size_t header_bytes = 0;
  for (size_t i = 0; i < req->headers.size; ++i)
    header_bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len;
  if (header_bytes > cfg_.max_header_size) {
    send_error(req, 431, "request header fields too large\n", true);
    return;
  }
  if (req->path.len == 0 || req->path.base[0] != '/') {
    send_error(req, 400, "the request target must be a path\n", true);
    return;
  }
  h2o_socket_t* sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : nullptr;
  auto cit = sock ? g_conns.find(sock) : g_conns.end();
  Conn* conn = cit == g_conns.end() ? nullptr : cit->second;

  auto* r = new (h2o_mem_alloc_shared(&req->pool, sizeof(Request), on_request_dispose)) Request;
  r->srv = this;
  r->conn = conn;
  r->req = req;
  r->id = next_id_++;
  r->timeout.cb = on_handler_timeout;
  requests_[r->id] = r;
  if (conn) conn->busy = r;

  // The request, copied into Lua: dispatch(id, req, raw_path).
  lua_State* L = rt_.lua();
  lua_rawgeti(L, LUA_REGISTRYINDEX, dispatch_ref);
  lua_pushnumber(L, static_cast<lua_Number>(r->id));
  lua_createtable(L, 0, 8);
  lua_pushlstring(L, req->method.base, req->method.len);
  lua_setfield(L, -2, "method");
  size_t path_len = req->query_at == SIZE_MAX ? req->path.len : req->query_at;
  if (memchr(req->path.base, '%', path_len)) {
    std::string path = decode(req->path.base, path_len, false);
    lua_pushlstring(L, path.data(), path.size());
  } else {
    lua_pushlstring(L, req->path.base, path_len);
  }
  lua_setfield(L, -2, "path");
  if (req->query_at != SIZE_MAX) {  // without a query string, req.query is made on first use (bindings/lua)
    lua_newtable(L);
    // a=1&b=x+y&c: decoded; a repeated name keeps its first value (as Go's Query().Get does).
    const char* q = req->path.base + req->query_at + 1;
    const char* end = req->path.base + req->path.len;
    while (q < end) {
      const char* amp = static_cast<const char*>(memchr(q, '&', end - q));
      if (!amp) amp = end;
      if (amp > q) {
        const char* eq = static_cast<const char*>(memchr(q, '=', amp - q));
        std::string name = decode(q, (eq ? eq : amp) - q, true);
        std::string value = eq ? decode(eq + 1, amp - eq - 1, true) : std::string();
        lua_pushlstring(L, name.data(), name.size());
        lua_rawget(L, -2);
        bool seen = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (!seen) {
          lua_pushlstring(L, name.data(), name.size());
          lua_pushlstring(L, value.data(), value.size());
          lua_rawset(L, -3);
        }
      }
      q = amp + 1;
    }
    lua_setfield(L, -2, "query");
  }
  lua_createtable(L, 0, static_cast<int>(req->headers.size));
  for (size_t i = 0; i < req->headers.size; ++i) {
    const h2o_header_t& h = req->headers.entries[i];  // names are lower-case (h2o's parser)
    lua_pushlstring(L, h.name->base, h.name->len);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, h.value.base, h.value.len);
    } else {
      // Repeats joined as RFC 9110 allows (cookies with "; ", their own separator).
      bool cookie = h.name->len == 6 && memcmp(h.name->base, "cookie", 6) == 0;
      lua_pushstring(L, cookie ? "; " : ", ");
      lua_pushlstring(L, h.value.base, h.value.len);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "headers");
  if (req->entity.base)
    lua_pushlstring(L, req->entity.base, req->entity.len);
  else
    lua_pushliteral(L, "");
  lua_setfield(L, -2, "body");
  lua_pushlstring(L, req->path.base, path_len);
  Scheduler& sched = rt_.scheduler();
  r->task = sched.spawn(L, 3);
  // A signal does not cancel a handler in flight: the graceful close lets it answer (then cancels it
  // at shutdown_timeout_ms).
  sched.set_shielded(r->task);
  h2o_timeout_link(rt_.loop(), &handler_timeout_, &r->timeout);
  // The watch for the client leaving starts only if the handler waits: its task runs in the loop's
  // next idle phase, and the prepare phase after it starts the watch for the requests still
  // unanswered. A handler that answers in its first run never needs it, and h2o has just stopped
  // reading: with libuv, a read restarted after a stop costs two epoll_ctl (ADD fails with EEXIST,
  // then MOD), besides the two of h2o's own restart after the answer.
  if (conn) {
    to_watch_.push_back(r->id);
    uv_prepare_start(&watch_prepare_, on_watch_prepare);
  }
}

void Server::on_watch_prepare(uv_prepare_t* p) {
  auto* s = static_cast<Server*>(p->data);
  uv_prepare_stop(p);
  // (Nothing below adds to to_watch_: a read start calls nothing back at once.)
  for (uint64_t id : s->to_watch_) {
    auto it = s->requests_.find(id);
    if (it == s->requests_.end()) continue;  // answered and gone already
    Request* r = it->second;
    if (r->responded || r->watching || !r->conn || r->conn->busy != r) continue;
    h2o_socket_read_start(r->conn->sock, on_client_read);
    r->watching = true;
  }
  s->to_watch_.clear();
}

void Server::on_client_read(h2o_socket_t* sock, const char* err) {
  auto it = g_conns.find(sock);
  Request* r = it == g_conns.end() ? nullptr : it->second->busy;
  if (!r || !r->watching) {
    h2o_socket_read_stop(sock);
    return;
  }
  if (!err && sock->bytes_read == 0) return;  // a wake-up with nothing read
  h2o_socket_read_stop(sock);
  r->watching = false;
  // Bytes: the next pipelined request, left in h2o's buffer for after this answer (the connection is
  // no longer watched). EOF or an error: the client left before its answer.
  if (err && !r->responded) r->srv->abort(r, 503, "the client closed the connection\n");
}

// Ends a request that the handler has not answered: an answer that closes the connection (h2o then
// disposes the request, which cancels the handler's task).
void Server::abort(Request* r, int status, const char* body) {
  if (r->responded) return;
  r->responded = true;
  if (r->watching && r->conn) h2o_socket_read_stop(r->conn->sock);
  r->watching = false;
  if (h2o_timeout_is_linked(&r->timeout)) h2o_timeout_unlink(&r->timeout);
  send_error(r->req, status, body, true);
}

void Server::on_handler_timeout(h2o_timeout_entry_t* entry) {
  auto* r = reinterpret_cast<Request*>(reinterpret_cast<char*>(entry) - offsetof(Request, timeout));
  Server* s = r->srv;
  std::string path(r->req->path.base, r->req->query_at == SIZE_MAX ? r->req->path.len : r->req->query_at);
  {
    std::string method(r->req->method.base, r->req->method.len);
    std::string msg = fmt::format("klua.http: {} {}: the handler did not answer within handler_timeout_ms ({} ms): "
                                  "answered 503, the handler is cancelled",
                                  method, path, s->cfg_.handler_timeout_ms);
    log::diagnostic(log::Level::warn, msg, {{"method", method}, {"path", path}}, msg);
  }
  // Keep-alive stays: the request was read whole. The request's end (dispose) cancels the task.
  r->responded = true;
  if (r->watching && r->conn) h2o_socket_read_stop(r->conn->sock);
  r->watching = false;
  if (s->state_ != Open) r->req->http1_is_persistent = 0;
  s->send_error(r->req, 503, "the handler did not answer in time\n", false);
}

void Server::on_request_dispose(void* p) {
  auto* r = static_cast<Request*>(p);
  Server* s = r->srv;
  if (h2o_timeout_is_linked(&r->timeout)) h2o_timeout_unlink(&r->timeout);
  s->requests_.erase(r->id);
  if (r->conn && r->conn->busy == r) {
    r->conn->busy = nullptr;
    // Closing: a keep-alive connection whose request just ended goes too (its answer was complete).
    if (s->state_ != Open) s->shutdown_conn(r->conn);
  }
  if (!r->handler_done) s->rt_.scheduler().cancel(r->task);
  r->~Request();  // the memory is the pool's
}

bool Server::respond(uint64_t id, int status, lua_State* L, int headers_idx, const char* body, size_t len) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  Request* r = it->second;
  r->handler_done = true;
  if (r->responded) return false;
  r->responded = true;
  // klua's watch (if the handler waited) is not stopped: h2o takes the reading over once the answer
  // is written (its read start is then no change for libuv, where a stop and a restart cost two
  // epoll_ctl). Bytes or EOF meanwhile stop it (on_client_read: watching is off).
  r->watching = false;
  if (h2o_timeout_is_linked(&r->timeout)) h2o_timeout_unlink(&r->timeout);
  h2o_req_t* req = r->req;
  if (state_ != Open) req->http1_is_persistent = 0;
  req->res.status = status;
  req->res.reason = reason_phrase(status);
  // headers: a flat array {name, value, name, value, ...}, checked by the Lua side.
  int n = static_cast<int>(lua_objlen(L, headers_idx));
  for (int i = 1; i + 1 <= n; i += 2) {
    size_t nl, vl;
    lua_rawgeti(L, headers_idx, i);
    lua_rawgeti(L, headers_idx, i + 1);
    const char* name = lua_tolstring(L, -2, &nl);
    const char* value = lua_tolstring(L, -1, &vl);
    if (name && value) {
      h2o_iovec_t orig = h2o_strdup(&req->pool, name, nl);
      h2o_iovec_t lower = h2o_strdup(&req->pool, name, nl);
      h2o_strtolower(lower.base, lower.len);
      h2o_iovec_t v = h2o_strdup(&req->pool, value, vl);
      h2o_add_header_by_str(&req->pool, &req->res.headers, lower.base, lower.len, 1, orig.base, v.base, v.len);
    }
    lua_pop(L, 2);
  }
  // 204 and 304 carry no body and no Content-Length (RFC 9110).
  bool no_body = status == 204 || status == 304;
  req->res.content_length = no_body ? SIZE_MAX : len;
  h2o_send_inline(req, no_body || !body ? "" : body, no_body ? 0 : len);
  return true;
}

void Server::shutdown_conn(Conn* c) {
  // Ends the connection from below h2o: its read (h2o's, or klua's watch) sees EOF, or its write
  // fails, and h2o closes it as it would for a client that left.
  int fd = c->sock ? h2o_socket_get_fd(c->sock) : -1;
  if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
}

void Server::begin_graceful(double timeout_ms) {
  if (state_ == Closed || !started_) return;
  if (state_ == Open) {
    state_ = Closing;
    // Answers from now on say Connection: close. (The flag alone: h2o_context_request_shutdown would
    // also start HTTP/2's GOAWAY timer, left armed with nothing to say it to.)
    ctx_.shutdown_requested = 1;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), [](uv_handle_t* h) {
      auto* s = static_cast<Server*>(h->data);
      s->listener_open_ = false;
      s->maybe_closed();
    });
    // Idle keep-alive connections (and requests still being read) end now; busy ones after their answer.
    for (Conn* c : conns_)
      if (!c->busy) shutdown_conn(c);
    if (timeout_ms < 1e15) uv_timer_start(&shutdown_timer_, on_shutdown_timer, static_cast<uint64_t>(timeout_ms), 0);
  } else if (!forced_ && timeout_ms < 1e15) {
    // A second close with a shorter bound (the exit's, after a graceful srv:close) takes it.
    uint64_t due = uv_now(rt_.loop()) + static_cast<uint64_t>(timeout_ms);
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&shutdown_timer_)) ||
        due < uv_now(rt_.loop()) + uv_timer_get_due_in(&shutdown_timer_))
      uv_timer_start(&shutdown_timer_, on_shutdown_timer, static_cast<uint64_t>(timeout_ms), 0);
  }
  maybe_closed();
}

void Server::on_shutdown_timer(uv_timer_t* t) {
  auto* s = static_cast<Server*>(t->data);
  if (!s->forced_) {
    // shutdown_timeout_ms is over: the handlers still running are answered 503 (and cancelled by the
    // requests' end); a second later, connections still open (a client slow to read) are cut.
    s->forced_ = true;
    std::vector<Request*> pending;
    for (auto& [id, r] : s->requests_)
      if (!r->responded) pending.push_back(r);
    for (Request* r : pending) s->abort(r, 503, "the server is shutting down\n");
    uv_timer_start(&s->shutdown_timer_, on_shutdown_timer, 1000, 0);
    return;
  }
  for (Conn* c : s->conns_) s->shutdown_conn(c);
}

void Server::maybe_closed() {
  if (state_ == Closing && !listener_open_ && conns_.empty()) finish_close();
}

void Server::finish_close() {
  state_ = Closed;
  uv_timer_stop(&shutdown_timer_);
  rt_.remove_closable(this);
  lua_State* L = rt_.lua();
  luaL_unref(L, LUA_REGISTRYINDEX, dispatch_ref);
  dispatch_ref = LUA_NOREF;
  Scheduler& sched = rt_.scheduler();
  auto waiters = std::move(waiters_);
  waiters_.clear();
  for (const Waiter& w : waiters) {
    if (lua_State* co = sched.wake_begin(w.tok)) {
      lua_pushboolean(co, 1);
      sched.wake_end(w.tok, 1);
    }
  }
}

void Server::dispose() {
  if (disposed_ || !started_) {
    disposed_ = true;
    return;
  }
  disposed_ = true;
  uv_loop_t* loop = rt_.loop();
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&shutdown_timer_)))
    uv_close(reinterpret_cast<uv_handle_t*>(&shutdown_timer_), nullptr);
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&watch_prepare_)))
    uv_close(reinterpret_cast<uv_handle_t*>(&watch_prepare_), nullptr);
  h2o_timeout_dispose(loop, &handler_timeout_);
  // Runs the loop once (NOWAIT) so that the handles closed above and h2o's own are freed before
  // their memory (this object) goes.
  h2o_context_dispose(&ctx_);
  h2o_config_dispose(&globconf_);
}

}  // namespace klua::http_server
