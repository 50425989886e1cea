// klua.http's client primitives: libcurl's multi interface driven by the runtime's libuv loop
// (curl's multi-socket pattern, as in its multi-uv.c example). The policy (options, defaults,
// argument checks, error wording, the response object) is bindings/lua/http_client.lua; this file
// only moves bytes and reports what curl said.
//
// One Client is one curl multi handle: its connection cache (keep-alive reuse), its DNS cache and
// its per-host connection limit. klua.http.request uses a shared one made at the first call;
// klua.http.client{} makes another with its own limit. The loop side is one uv_timer per multi
// (CURLMOPT_TIMERFUNCTION) and one uv_poll per socket curl asks about (CURLMOPT_SOCKETFUNCTION),
// kept across socket callbacks with curl_multi_assign. A connection's socket (opened and closed
// through CURLOPT_OPENSOCKETFUNCTION / CURLOPT_CLOSESOCKETFUNCTION) keeps its uv_poll for its
// whole life, across the transfers that reuse it. Nothing runs curl_easy_perform, nothing polls:
// the only thread is curl's own threaded resolver.
#include <curl/curl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "bindings/lua_chunks.hpp"
#include "host/log.hpp"
#include "host/error.hpp"
#include "host/runtime.hpp"

namespace klua {

namespace {

const char* const CLIENT_MT = "klua.http.client_handle";

// Error names of the client (klua.errors.KLUA_HTTP_*), below the range of klua's other codes.
struct HttpError {
  const char* name;
  int code;
  bool retriable;
  const char* description;
};
constexpr HttpError E_CONNECT{"KLUA_HTTP_CONNECT", -1101, true, "klua.http: could not connect (refused, unreachable)"};
constexpr HttpError E_DNS{"KLUA_HTTP_DNS", -1102, true, "klua.http: the host name could not be resolved"};
constexpr HttpError E_TLS{"KLUA_HTTP_TLS", -1103, false, "klua.http: TLS failed (certificate, handshake, key)"};
constexpr HttpError E_TOO_LARGE{"KLUA_HTTP_TOO_LARGE", -1104, false, "klua.http: the response is over the size limit"};
constexpr HttpError E_REDIRECTS{"KLUA_HTTP_REDIRECTS", -1105, false, "klua.http: too many redirects"};
constexpr HttpError E_PROTOCOL{"KLUA_HTTP_PROTOCOL", -1106, true,
                               "klua.http: the exchange failed (connection lost, bad response)"};

// curl's own timeout (the connect timeout) reads like the wait's: klua's _TIMED_OUT.
constexpr HttpError E_TIMEOUT{ERR_TIMED_OUT, CODE_TIMED_OUT, true, ""};

// Response headers beyond this many bytes in all are refused (curl 7.88 bounds one header line at
// 100 KiB, not their sum).
constexpr size_t MAX_HEADER_BYTES = 1 << 20;

struct Client;

// One per socket curl watches; freed in its uv_poll's close callback.
struct SocketWatch {
  uv_poll_t poll;
  curl_socket_t fd;
  Client* client;
  int events = 0;      // what the poll watches now (0: stopped)
  bool owned = false;  // a connection's socket, opened by open_socket_cb: closed by close_socket_cb
  bool idle = false;   // curl said CURL_POLL_REMOVE: no transfer uses the connection now
};

// One request in flight: the easy handle and everything curl reads from or writes into.
struct Transfer {
  Client* client = nullptr;
  CURL* easy = nullptr;
  WaitToken tok;
  curl_slist* headers = nullptr;
  std::string request_body;  // CURLOPT_POSTFIELDS points into it (not copied by curl)
  std::string body;
  std::vector<std::pair<std::string, std::string>> response_headers;  // of the last response
  size_t header_bytes = 0;
  size_t max_size = 0;
  bool too_large = false;
  bool headers_too_large = false;
  bool started = false;                // in the multi (else still in Client::starting)
  std::list<Transfer*>::iterator pos;  // in Client::transfers or Client::starting
  char errbuf[CURL_ERROR_SIZE] = {0};

  ~Transfer();
};

// New transfers join the multi at most this many per loop turn: curl connects every transfer
// added since its last timeout in one call, and 1,000 connects at once held the loop (and every
// timer) for 80-90 ms; in batches of 64 a turn stays within a few milliseconds.
constexpr int STARTS_PER_TURN = 64;

struct Client {
  Runtime* rt = nullptr;
  CURLM* multi = nullptr;
  uv_timer_t timer;
  uv_idle_t starter;                       // active while `starting` is not empty
  std::list<Transfer*> starting;           // waiting for their turn to join the multi
  std::list<Transfer*> transfers;          // added to the multi, not completed
  std::unordered_set<SocketWatch*> watches;  // uv_polls not yet closed
  // The connections' sockets (open_socket_cb to close_socket_cb) and their watch, once curl asked
  // for one (nullptr before): a watch outlives CURL_POLL_REMOVE, and curl's next transfer on the
  // connection finds it here.
  std::unordered_map<curl_socket_t, SocketWatch*> sockets;
  // Easy handles of finished transfers, reset (every option back to its default) and reused:
  // curl_easy_init's allocations and their frees (its 16 KiB receive buffer among them, which
  // makes glibc consolidate its heap when freed) were ~9% of the client's CPU time.
  std::vector<CURL*> idle_easy;
  static constexpr size_t MAX_IDLE_EASY = 128;
  bool closed = false;
  int open_handles = 2;  // timer and starter

  void check_done();
  CURL* take_easy();
  void give_back(CURL* e);
  void start(Transfer* t);
  void start_some();
  void finish(Transfer* t, CURLcode result);
  void drop(Transfer* t);
  void close();
};

// The userdata Lua holds; the Client itself outlives it until its handles' close callbacks.
struct ClientBox {
  Client* c;
};

Transfer::~Transfer() {
  if (easy) client->give_back(easy);
  curl_slist_free_all(headers);
}

CURL* Client::take_easy() {
  if (idle_easy.empty()) return curl_easy_init();
  CURL* e = idle_easy.back();
  idle_easy.pop_back();
  return e;
}

// (Called once the handle is out of the multi.)
void Client::give_back(CURL* e) {
  if (closed || idle_easy.size() >= MAX_IDLE_EASY) {
    curl_easy_cleanup(e);
    return;
  }
  curl_easy_reset(e);  // every option back to its default; the multi keeps connections and DNS
  idle_easy.push_back(e);
}

// ---- the loop side ------------------------------------------------------------------------

void on_poll(uv_poll_t* h, int status, int events) {
  auto* w = static_cast<SocketWatch*>(h->data);
  Client* c = w->client;
  if (w->idle) {
    // An idle kept-alive connection became readable: the server closed it (or sent what it
    // should not). Curl is not watching it, so it is not told; the watch stops (the event would
    // repeat every turn), and curl's liveness check finds the connection dead at its next use.
    uv_poll_stop(&w->poll);
    w->events = 0;
    return;
  }
  int flags = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;  // curl then finds the socket's error itself
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  int running = 0;
  curl_multi_socket_action(c->multi, w->fd, flags, &running);
  c->check_done();
}

void on_timer(uv_timer_t* h) {
  auto* c = static_cast<Client*>(h->data);
  int running = 0;
  curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  c->check_done();
}

void close_watch(Client* c, SocketWatch* w) {
  c->watches.erase(w);
  // Closed now, while the fd is still open (curl closes it after this returns): uv_close stops
  // the poll, and epoll forgets the fd before the number can be reused; the memory goes in the
  // close callback.
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), [](uv_handle_t* h) { delete static_cast<SocketWatch*>(h->data); });
}

// Every uv_poll_start and uv_poll_stop costs libuv 1.44 an epoll_ctl(DEL) and the next turn an
// epoll_ctl(ADD): a watch already watching the events curl asks for is left alone.
void watch_events(SocketWatch* w, int events) {
  if (events == w->events) return;
  if (events == 0)
    uv_poll_stop(&w->poll);
  else
    uv_poll_start(&w->poll, events, on_poll);
  w->events = events;
}

int socket_cb(CURL*, curl_socket_t s, int what, void* userp, void* socketp) {
  auto* c = static_cast<Client*>(userp);
  auto* w = static_cast<SocketWatch*>(socketp);
  if (!w) {  // curl's first word on this socket, or its first since a CURL_POLL_REMOVE
    auto it = c->sockets.find(s);
    if (it != c->sockets.end()) w = it->second;
  }
  if (what == CURL_POLL_REMOVE) {
    if (!w) return 0;
    if (w->owned) {
      // The transfer is done, the connection goes back to curl's cache: the watch stays for the
      // next transfer on it (close_socket_cb closes it with the socket). It keeps watching for
      // readable (a server closing the idle connection), not for writable, which would fire at
      // once and repeat.
      w->idle = true;
      watch_events(w, w->events & UV_READABLE);
    } else {
      // A socket curl closes itself (the threaded resolver's socket pair), right after this.
      close_watch(c, w);
    }
    return 0;
  }
  if (!w) {
    w = new SocketWatch;
    w->fd = s;
    w->client = c;
    w->poll.data = w;
    if (uv_poll_init_socket(c->rt->loop(), &w->poll, s) != 0) {
      delete w;
      return -1;  // curl fails the transfers on this socket
    }
    // A waiting task keeps the loop alive (the scheduler's keepalive), not an idle socket.
    uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll));
    c->watches.insert(w);
    auto it = c->sockets.find(s);
    if (it != c->sockets.end()) {
      w->owned = true;
      it->second = w;
    }
  }
  if (!socketp) curl_multi_assign(c->multi, s, w);
  w->idle = false;
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  watch_events(w, events);
  return 0;
}

// CURLOPT_OPENSOCKETFUNCTION: curl's own socket(), marked as a connection's (closed by
// close_socket_cb, so its watch can outlive CURL_POLL_REMOVE). CLOEXEC from the start: a
// klua.process child must not inherit a connection.
curl_socket_t open_socket_cb(void* clientp, curlsocktype, curl_sockaddr* a) {
  auto* c = static_cast<Client*>(clientp);
  curl_socket_t fd = ::socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  if (fd == CURL_SOCKET_BAD) return fd;
  auto [it, fresh] = c->sockets.emplace(fd, nullptr);
  if (!fresh && it->second) {
    // The number was closed behind close_socket_cb's back (not a path curl 7.88 takes for HTTP):
    // the old watch goes before the new socket is watched (the kernel dropped the old file from
    // epoll when it closed).
    close_watch(c, it->second);
    it->second = nullptr;
  }
  return fd;
}

// CURLOPT_CLOSESOCKETFUNCTION: the connection's watch is closed (and epoll forgets the fd)
// before the fd is.
int close_socket_cb(void* clientp, curl_socket_t fd) {
  auto* c = static_cast<Client*>(clientp);
  auto it = c->sockets.find(fd);
  if (it != c->sockets.end()) {
    if (it->second) close_watch(c, it->second);
    c->sockets.erase(it);
  }
  return ::close(fd);
}

int timer_cb(CURLM*, long timeout_ms, void* userp) {
  auto* c = static_cast<Client*>(userp);
  if (timeout_ms < 0)
    uv_timer_stop(&c->timer);
  else  // 0: as soon as the loop turns (curl must not be re-entered from its own callback)
    uv_timer_start(&c->timer, on_timer, static_cast<uint64_t>(timeout_ms), 0);
  return 0;
}

// ---- transfers ----------------------------------------------------------------------------

size_t write_cb(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  size_t len = size * n;
  // Enforced here: curl 7.88 applies CURLOPT_MAXFILESIZE only to a length announced up front,
  // not to a chunked or close-delimited body. A short count makes curl stop with
  // CURLE_WRITE_ERROR and close the connection.
  if (t->body.size() + len > t->max_size) {
    t->too_large = true;
    return 0;
  }
  t->body.append(data, len);
  return len;
}

std::string trim(const char* b, const char* e) {
  while (b < e && (*b == ' ' || *b == '\t')) ++b;
  while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) --e;
  return std::string(b, e);
}

size_t header_cb(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  size_t len = size * n;
  t->header_bytes += len;
  if (t->header_bytes > MAX_HEADER_BYTES) {
    t->headers_too_large = true;
    return 0;
  }
  const char* end = data + len;
  if (len >= 5 && std::memcmp(data, "HTTP/", 5) == 0) {
    // A new response (after a redirect, a 100 Continue or a proxy's CONNECT): only the last
    // one's headers are returned.
    t->response_headers.clear();
    t->header_bytes = len;
    return len;
  }
  if (len > 0 && (data[0] == ' ' || data[0] == '\t')) {  // obsolete line folding
    if (!t->response_headers.empty()) {
      std::string more = trim(data, end);
      if (!more.empty()) t->response_headers.back().second += " " + more;
    }
    return len;
  }
  const char* colon = static_cast<const char*>(std::memchr(data, ':', len));
  if (!colon) return len;  // the blank line ending the headers
  std::string name(static_cast<const char*>(data), colon);
  for (char& ch : name) ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
  t->response_headers.emplace_back(std::move(name), trim(colon + 1, end));
  return len;
}

const HttpError& classify(CURLcode r, const Transfer& t) {
  switch (r) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return E_DNS;
    case CURLE_COULDNT_CONNECT:
      return E_CONNECT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
      return E_TLS;
    case CURLE_FILESIZE_EXCEEDED:
      return E_TOO_LARGE;
    case CURLE_WRITE_ERROR:
      return t.too_large ? E_TOO_LARGE : E_PROTOCOL;
    case CURLE_TOO_MANY_REDIRECTS:
      return E_REDIRECTS;
    case CURLE_OPERATION_TIMEDOUT:
      return E_TIMEOUT;
    default:
      if (t.headers_too_large) return E_TOO_LARGE;
      // A server that refuses the client's certificate does so after the TLS 1.3 handshake: the
      // alert comes with the first read (CURLE_RECV_ERROR, "OpenSSL SSL_read: ... alert ...").
      if (std::strstr(t.errbuf, "SSL") || std::strstr(t.errbuf, "TLS")) return E_TLS;
      return E_PROTOCOL;
  }
}

void push_http_error(lua_State* L, const HttpError& e, CURLcode r, const std::string& message) {
  ErrorSpec spec;
  spec.code = e.code;
  spec.name = e.name;
  spec.retriable = e.retriable;
  spec.message = message;
  push_error(L, spec);
  lua_pushinteger(L, r);
  lua_setfield(L, -2, "curl_code");
}

// The cause in words: curl's error buffer when it has one (it names the host, port and the
// system's or TLS library's reason), else curl's generic text for the code.
std::string cause(CURLcode r, const Transfer& t) {
  if (r == CURLE_FILESIZE_EXCEEDED || t.too_large)
    return fmt::format("the response body is over max_response_size ({} bytes)", t.max_size);
  if (t.headers_too_large) return fmt::format("the response headers are over {} bytes", MAX_HEADER_BYTES);
  std::string detail = t.errbuf[0] ? t.errbuf : curl_easy_strerror(r);
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == '\r')) detail.pop_back();
  // curl 7.88 says "Couldn't connect to server" for every connect failure: the system's reason
  // (Connection refused, Network is unreachable) tells them apart.
  long os_errno = 0;
  if (curl_easy_getinfo(t.easy, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK && os_errno != 0)
    detail += fmt::format(" ({})", std::strerror(static_cast<int>(os_errno)));
  return detail;
}

void push_response(lua_State* co, Transfer* t) {
  lua_createtable(co, 0, 4);
  long status = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  lua_pushinteger(co, status);
  lua_setfield(co, -2, "status");
  // Lowercase names; a repeated header's values joined with ", " (RFC 9110's list rule).
  lua_createtable(co, 0, static_cast<int>(t->response_headers.size()));
  for (const auto& [name, value] : t->response_headers) {
    lua_getfield(co, -1, name.c_str());
    if (lua_isstring(co, -1)) {
      lua_pushliteral(co, ", ");
      lua_pushlstring(co, value.data(), value.size());
      lua_concat(co, 3);
    } else {
      lua_pop(co, 1);
      lua_pushlstring(co, value.data(), value.size());
    }
    lua_setfield(co, -2, name.c_str());
  }
  lua_setfield(co, -2, "headers");
  lua_pushlstring(co, t->body.data(), t->body.size());
  lua_setfield(co, -2, "body");
  char* url = nullptr;
  curl_easy_getinfo(t->easy, CURLINFO_EFFECTIVE_URL, &url);
  lua_pushstring(co, url ? url : "");
  lua_setfield(co, -2, "url");
}

void Client::finish(Transfer* t, CURLcode result) {
  Scheduler& s = rt->scheduler();
  if (lua_State* co = s.wake_begin(t->tok)) {
    lua_checkstack(co, 8);
    if (result == CURLE_OK) {
      push_response(co, t);
      s.wake_end(t->tok, 1);
    } else {
      lua_pushnil(co);
      push_http_error(co, classify(result, *t), result, cause(result, *t));
      s.wake_end(t->tok, 2);
    }
  }
  drop(t);
}

// Takes the transfer out of the multi and frees it. Removing a transfer that has not completed
// closes its connection (the server sees it go).
void Client::drop(Transfer* t) {
  if (t->started) {
    curl_multi_remove_handle(multi, t->easy);
    transfers.erase(t->pos);
  } else {
    starting.erase(t->pos);
    if (starting.empty()) uv_idle_stop(&starter);
  }
  delete t;
}

void Client::start(Transfer* t) {
  t->pos = starting.insert(starting.end(), t);
  if (starting.size() == 1) {
    uv_idle_start(&starter, [](uv_idle_t* h) { static_cast<Client*>(h->data)->start_some(); });
  }
}

void Client::start_some() {
  for (int i = 0; i < STARTS_PER_TURN && !starting.empty(); ++i) {
    Transfer* t = starting.front();
    starting.pop_front();
    CURLMcode mc = curl_multi_add_handle(multi, t->easy);
    t->started = true;
    t->pos = transfers.insert(transfers.end(), t);
    if (mc != CURLM_OK) {  // (out of memory): answered like a failed transfer
      Scheduler& s = rt->scheduler();
      if (lua_State* co = s.wake_begin(t->tok)) {
        lua_pushnil(co);
        push_http_error(co, E_PROTOCOL, CURLE_FAILED_INIT, curl_multi_strerror(mc));
        s.wake_end(t->tok, 2);
      }
      transfers.erase(t->pos);
      delete t;
    }
  }
  if (starting.empty()) uv_idle_stop(&starter);
}

void Client::check_done() {
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
    if (m->msg != CURLMSG_DONE) continue;
    Transfer* t = nullptr;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &t);
    CURLcode result = m->data.result;  // m is invalid once the handle is removed
    if (t) finish(t, result);
  }
}

void Client::close() {
  if (closed) return;
  closed = true;
  while (!starting.empty()) drop(starting.front());
  while (!transfers.empty()) drop(transfers.front());
  for (CURL* e : idle_easy) curl_easy_cleanup(e);
  idle_easy.clear();
  curl_multi_cleanup(multi);
  multi = nullptr;
  // curl_multi_cleanup closed the cached connections through close_socket_cb; whatever watch is
  // left (a socket curl closed without a word) goes now.
  for (SocketWatch* w : std::vector<SocketWatch*>(watches.begin(), watches.end())) close_watch(this, w);
  sockets.clear();
  // The Client goes with the last of its two handles' close callbacks (libuv runs them in no
  // promised order).
  auto closed_one = [](uv_handle_t* h) {
    auto* c = static_cast<Client*>(h->data);
    if (--c->open_handles == 0) delete c;
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&starter), closed_one);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), closed_one);
}

// client:close(): the requests still waiting get KLUA_CLOSED, then everything goes.
void close_answering(Client* c) {
  Scheduler& s = c->rt->scheduler();
  for (std::list<Transfer*>* l : {&c->starting, &c->transfers}) {
    for (Transfer* t : *l) {
      if (lua_State* co = s.wake_begin(t->tok)) {
        lua_checkstack(co, 4);
        ErrorSpec e;
        e.code = CODE_CLOSED;
        e.name = ERR_CLOSED;
        e.message = "the HTTP client was closed while the request waited";
        nil_error(co, e);
        s.wake_end(t->tok, 2);
      }
    }
  }
  c->close();
}

// ---- Lua primitives -----------------------------------------------------------------------

Client* check_client(lua_State* L, int idx) {
  auto* box = static_cast<ClientBox*>(luaL_checkudata(L, idx, CLIENT_MT));
  if (!box->c || box->c->closed) {
    ErrorSpec e;
    e.code = CODE_CLOSED;
    e.name = ERR_CLOSED;
    e.message = "the HTTP client is closed";
    raise_error(L, e);
  }
  return box->c;
}

// P.new_client(max_per_host) -> handle
int l_new_client(lua_State* L) {
  long max_per_host = static_cast<long>(luaL_checkinteger(L, 1));
  Runtime& rt = Runtime::from(L);
  auto* box = static_cast<ClientBox*>(lua_newuserdata(L, sizeof(ClientBox)));
  box->c = nullptr;
  luaL_getmetatable(L, CLIENT_MT);
  lua_setmetatable(L, -2);
  static bool warned = false;
  if (!warned && !(curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_ASYNCHDNS)) {
    // Without curl's threaded (or c-ares) resolver every name lookup would block the loop.
    warned = true;
    const char* msg = "klua.http: warning: this libcurl resolves host names synchronously (no AsynchDNS): "
                      "a slow DNS server stalls every task";
    log::diagnostic(log::Level::warn, msg, {}, msg);
  }
  CURLM* multi = curl_multi_init();
  if (!multi) luaL_error(L, "klua.http: curl_multi_init failed");
  auto* c = new Client;
  c->rt = &rt;
  c->multi = multi;
  uv_timer_init(rt.loop(), &c->timer);
  c->timer.data = c;
  uv_unref(reinterpret_cast<uv_handle_t*>(&c->timer));
  uv_idle_init(rt.loop(), &c->starter);
  c->starter.data = c;
  uv_unref(reinterpret_cast<uv_handle_t*>(&c->starter));
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(multi, CURLMOPT_TIMERDATA, c);
  // Transfers beyond the limit wait inside curl for a connection to that host to free up.
  curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_per_host);
  // The connection cache's bound. curl's default is 4 x the transfers added at the time a
  // connection comes back: when 100 responses arrive in one loop turn, each removal lowers it
  // before the tasks add their next requests, and idle connections were closed (10,000 GETs,
  // 100 at a time, opened ~1,150 connections instead of 100).
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 4 * max_per_host);
  box->c = c;
  return 1;
}

// P.close(handle): idempotent.
int l_close(lua_State* L) {
  auto* box = static_cast<ClientBox*>(luaL_checkudata(L, 1, CLIENT_MT));
  if (box->c) close_answering(box->c);
  box->c = nullptr;
  return 0;
}

int l_client_gc(lua_State* L) {
  auto* box = static_cast<ClientBox*>(luaL_checkudata(L, 1, CLIENT_MT));
  if (box->c) box->c->close();
  box->c = nullptr;
  return 0;
}

// Spec readers: the spec table was built and checked by http_client.lua. Each field is looked up
// once (a request reads ~18 of them).

// spec[key] when it is a string, else nullptr. The pointer stays valid after the pop: the spec
// table, on the stack until the call returns, holds the string.
const char* str_field(lua_State* L, int idx, const char* key, size_t* len = nullptr) {
  lua_getfield(L, idx, key);
  const char* s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : nullptr;
  lua_pop(L, 1);
  return s;
}

double num_field(lua_State* L, int idx, const char* key, double dflt) {
  lua_getfield(L, idx, key);
  double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

// A string option when the spec has it (curl copies string options).
void set_str(CURL* e, CURLoption opt, lua_State* L, int spec, const char* key) {
  if (const char* v = str_field(L, spec, key)) curl_easy_setopt(e, opt, v);
}

// Configures the easy handle from the spec. Returns false (with the reason) when curl refused.
bool configure(lua_State* L, int spec, Transfer* t, std::string* why) {
  CURL* e = t->easy;
  curl_easy_setopt(e, CURLOPT_PRIVATE, t);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
  // The connection keeps the callbacks of the transfer that opened it: their data is the Client,
  // which outlives every connection (curl_multi_cleanup closes them before it goes).
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t->client);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket_cb);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, t->client);
  // HTTP only, also after a redirect (no file://, no gopher:// from a Location header).
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "klua/" KLUA_VERSION);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");  // every encoding curl decodes; bodies arrive decoded

  const char* url = str_field(L, spec, "url");
  CURLcode rc = curl_easy_setopt(e, CURLOPT_URL, url ? url : "");
  if (rc != CURLE_OK) {
    *why = curl_easy_strerror(rc);
    return false;
  }
  const char* m = str_field(L, spec, "method");
  std::string_view method = m ? m : "";
  size_t body_len = 0;
  const char* body = str_field(L, spec, "body", &body_len);
  bool has_body = body != nullptr;
  if (has_body) {
    t->request_body.assign(body, body_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->request_body.size()));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->request_body.data());
  }
  if (method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (method == "GET" && !has_body) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (method != "POST") {
    // POST stays curl's own, so that a 301/302/303 turns it into a GET as browsers do; another
    // method is kept across redirects.
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
  } else if (!has_body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
  }

  lua_getfield(L, spec, "headers");  // a list of "Name: value" lines
  int n = static_cast<int>(lua_objlen(L, -1));
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, -1, i);
    t->headers = curl_slist_append(t->headers, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (t->headers) curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);

  long redirects = static_cast<long>(num_field(L, spec, "max_redirects", 5));
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, redirects > 0 ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, redirects);
  double connect_ms = num_field(L, spec, "connect_timeout_ms", -1);
  if (connect_ms >= 0) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_ms < 1 ? 1 : connect_ms));
  t->max_size = static_cast<size_t>(num_field(L, spec, "max_response_size", 64.0 * 1024 * 1024));
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(t->max_size));

  lua_getfield(L, spec, "verify");
  bool verify = !lua_isboolean(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 1);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
  set_str(e, CURLOPT_CAINFO, L, spec, "ca_file");
  set_str(e, CURLOPT_CAPATH, L, spec, "ca_path");
  set_str(e, CURLOPT_SSLCERT, L, spec, "cert_file");
  set_str(e, CURLOPT_SSLKEY, L, spec, "key_file");
  set_str(e, CURLOPT_KEYPASSWD, L, spec, "key_password");

  if (const char* user = str_field(L, spec, "user")) {
    curl_easy_setopt(e, CURLOPT_USERNAME, user);
    set_str(e, CURLOPT_PASSWORD, L, spec, "password");
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
  } else if (const char* bearer = str_field(L, spec, "bearer")) {
    curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, bearer);
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BEARER));
  }
  // Unset, curl reads http_proxy, https_proxy and no_proxy from the environment itself.
  set_str(e, CURLOPT_PROXY, L, spec, "proxy");
  set_str(e, CURLOPT_NOPROXY, L, spec, "no_proxy");
  return true;
}

// P.perform(handle, spec) -> response | nil, err (waits; the timeout is the scheduler's)
int l_perform(lua_State* L) {
  Client* c = check_client(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  Scheduler& s = c->rt->scheduler();
  double timeout = num_field(L, 2, "timeout_ms", 30000);
  // May raise (not in a task, cancelled): before anything is allocated.
  WaitToken tok = s.prepare_wait(L, "klua.http.request", timeout >= 1e15 ? -1 : timeout);
  auto t = std::make_unique<Transfer>();
  t->response_headers.reserve(16);  // one allocation for a usual response's headers, not five
  t->client = c;
  t->tok = tok;
  t->easy = c->take_easy();
  std::string why = "curl_easy_init failed";
  if (!t->easy || !configure(L, 2, t.get(), &why)) {
    s.abandon_wait(tok);
    lua_pushnil(L);
    push_http_error(L, E_PROTOCOL, CURLE_FAILED_INIT, why);
    return 2;
  }
  Transfer* raw = t.release();
  c->start(raw);
  // A timeout or a cancellation ends the wait: the transfer leaves the multi (its connection is
  // closed) and nothing is left for a later completion to find.
  s.on_wait_end(tok, [raw] { raw->client->drop(raw); });
  return lua_yield(L, 0);
}

// P.check_url(url) -> nil | reason: what curl's URL parser says of the URL before anything waits
// (a malformed URL is the caller's mistake, not a failure of the exchange).
int l_check_url(lua_State* L) {
  const char* url = luaL_checkstring(L, 1);
  CURLU* u = curl_url();
  CURLUcode rc = u ? curl_url_set(u, CURLUPART_URL, url, 0) : CURLUE_OUT_OF_MEMORY;
  curl_url_cleanup(u);
  if (rc == CURLUE_OK) return 0;
  lua_pushstring(L, curl_url_strerror(rc));
  return 1;
}

// P.info() -> {version=, async_dns=, ssl=}
int l_info(lua_State* L) {
  curl_version_info_data* v = curl_version_info(CURLVERSION_NOW);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, v->version);
  lua_setfield(L, -2, "version");
  lua_pushboolean(L, (v->features & CURL_VERSION_ASYNCHDNS) != 0);
  lua_setfield(L, -2, "async_dns");
  lua_pushstring(L, v->ssl_version ? v->ssl_version : "");
  lua_setfield(L, -2, "ssl");
  return 1;
}

}  // namespace

// Opens the client half of klua.http (the table is shared with the server: get or create).
void open_http_client(Runtime& rt, lua_State* L, int klua_table) {
  // Thread-safe in this curl (feature "threadsafe"); librdkafka may have called it too (it counts).
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (luaL_newmetatable(L, CLIENT_MT)) {
    lua_pushcfunction(L, l_client_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);

  lua_getfield(L, klua_table, "errors");
  for (const HttpError* e : {&E_CONNECT, &E_DNS, &E_TLS, &E_TOO_LARGE, &E_REDIRECTS, &E_PROTOCOL})
    register_error_code(L, -1, e->name, e->code, e->description);
  lua_pop(L, 1);

  lua_getfield(L, klua_table, "http");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, klua_table, "http");
  }
  int http = lua_gettop(L);

  lua_newtable(L);  // P: the primitives, private to http_client.lua
  lua_pushcfunction(L, l_new_client);
  lua_setfield(L, -2, "new_client");
  rt.scheduler().push_waiting(L, l_perform);
  lua_setfield(L, -2, "perform");
  lua_pushcfunction(L, l_info);
  lua_setfield(L, -2, "info");
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "close");
  lua_pushcfunction(L, l_check_url);
  lua_setfield(L, -2, "check_url");
  int P = lua_gettop(L);

  load_binding_chunk(L, "http_client");
  lua_pushvalue(L, klua_table);
  lua_pushvalue(L, http);
  lua_pushvalue(L, P);
  lua_call(L, 3, 0);
  lua_settop(L, http - 1);
}

}  // namespace klua
