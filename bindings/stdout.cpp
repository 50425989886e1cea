// klua._stdout: the CLI's buffered standard output (`klua consume`), internal (scripts use
// io.write). One 64 KiB buffer per runtime in front of fd 1 (bindings/ffi.h's klua_outbuf):
// bindings/lua/stdout_fast.lua appends small pieces to it through the FFI, compiled into the
// caller's loop; the C functions here write it out, and append what needs a loop (pieces that do
// not fit, JSON string literals, base64).
//
// When it is written out, as kcat does: the caller flushes per message on a terminal (or with
// `-u`); otherwise the buffer goes out when full, every 100 ms while data waits (a timer on the
// loop, unreferenced), on SIGINT/SIGTERM (a signal watcher beside the runtime's: what was
// consumed reaches stdout even when a second signal ends the process at once, which the signal
// watchdog (host/signals.cpp) does with _exit), when the runtime closes, and at exit (atexit: every
// runtime's buffer still open).
#include <poll.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>

#include "bindings/base64.hpp"
#include "bindings/ffi.h"
#include "bindings/json_internal.hpp"
#include "bindings/lua_chunks.hpp"
#include "host/runtime.hpp"

namespace klua {

namespace {

constexpr int32_t kCapacity = 1 << 16;

// Writes n bytes to fd 1, waiting while a non-blocking descriptor is full. 0 or -1 (errno).
int write_all(const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(1, p, n);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{1, POLLOUT, 0};
      ::poll(&pfd, 1, -1);
    } else {
      return -1;
    }
  }
  return 0;
}

int out_flush(klua_outbuf* b) {
  if (b->len == 0) return b->error ? -1 : 0;
  int32_t n = b->len;
  b->len = 0;
  if (b->error) return -1;
  if (write_all(b->data, static_cast<size_t>(n)) != 0) {
    b->error = errno ? errno : EIO;
    return -1;
  }
  return 0;
}

int out_write(klua_outbuf* b, const char* s, size_t n) {
  if (n <= static_cast<size_t>(b->cap - b->len)) {
    std::memcpy(b->data + b->len, s, n);
    b->len += static_cast<int32_t>(n);
    return b->error ? -1 : 0;
  }
  if (out_flush(b) != 0) return -1;
  if (n < static_cast<size_t>(b->cap)) {
    std::memcpy(b->data, s, n);
    b->len = static_cast<int32_t>(n);
    return 0;
  }
  if (write_all(s, n) != 0) {
    b->error = errno ? errno : EIO;
    return -1;
  }
  return 0;
}

inline int put_byte(klua_outbuf* b, char c) {
  if (b->len == b->cap && out_flush(b) != 0) return -1;
  b->data[b->len++] = c;
  return 0;
}

// A JSON string literal of s (which must be valid UTF-8: bytes >= 0x80 pass through), escaped
// as klua.json.encode escapes.
int out_json_string(klua_outbuf* b, const char* s, size_t n) {
  if (!json_impl::utf8_valid(s, n)) return 1;
  if (put_byte(b, '"') != 0) return -1;
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    if (i > start && out_write(b, s + start, i - start) != 0) return -1;
    start = i + 1;
    char esc[6] = {'\\', 0, 0, 0, 0, 0};
    size_t len = 2;
    switch (c) {
      case '"': esc[1] = '"'; break;
      case '\\': esc[1] = '\\'; break;
      case '\b': esc[1] = 'b'; break;
      case '\f': esc[1] = 'f'; break;
      case '\n': esc[1] = 'n'; break;
      case '\r': esc[1] = 'r'; break;
      case '\t': esc[1] = 't'; break;
      default: {
        static const char hex[] = "0123456789abcdef";
        esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
        len = 6;
      }
    }
    if (out_write(b, esc, len) != 0) return -1;
  }
  if (n > start && out_write(b, s + start, n - start) != 0) return -1;
  return put_byte(b, '"');
}

// A quoted base64 string of s, encoded in pieces through the buffer.
int out_base64(klua_outbuf* b, const char* s, size_t n) {
  if (put_byte(b, '"') != 0) return -1;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(s);
  while (n > 0) {
    size_t room = static_cast<size_t>(b->cap - b->len) / 4 * 3;
    if (room < 3) {
      if (out_flush(b) != 0) return -1;
      continue;
    }
    size_t take = n < room ? n : room;
    if (take < n) take -= take % 3;  // only the last piece may be padded
    base64_encode(b->data + b->len, p, take);
    b->len += static_cast<int32_t>(base64_size(take));
    p += take;
    n -= take;
  }
  return put_byte(b, '"');
}

int utf8_ok(const char* s, size_t n) { return json_impl::utf8_valid(s, n) ? 1 : 0; }

// Per runtime, in one userdata: the buffer and its bytes, the idle timer and the signal watchers
// (on the heap: their close callbacks free them, after the userdata is collected). The buffers
// still open are linked for the atexit flush.
struct Stdout {
  klua_outbuf out;
  uv_timer_t* timer = nullptr;
  uv_signal_t* sigint = nullptr;
  uv_signal_t* sigterm = nullptr;
  Stdout* prev = nullptr;
  Stdout* next = nullptr;
  char data[kCapacity];
};

std::mutex g_open_mutex;
Stdout* g_open = nullptr;

void flush_open_buffers() {
  std::lock_guard<std::mutex> lock(g_open_mutex);
  for (Stdout* s = g_open; s; s = s->next) out_flush(&s->out);
}

int l_start(lua_State* L) {
  auto* st = static_cast<Stdout*>(lua_touserdata(L, lua_upvalueindex(1)));
  if (st->timer) return 0;
  uv_loop_t* loop = Runtime::from(L).loop();
  st->timer = new uv_timer_t;
  uv_timer_init(loop, st->timer);
  st->timer->data = st;
  uv_timer_start(st->timer, [](uv_timer_t* h) { out_flush(&static_cast<Stdout*>(h->data)->out); }, 100, 100);
  uv_unref(reinterpret_cast<uv_handle_t*>(st->timer));
  st->sigint = new uv_signal_t;
  st->sigterm = new uv_signal_t;
  for (auto [h, sig] : {std::pair{st->sigint, SIGINT}, std::pair{st->sigterm, SIGTERM}}) {
    uv_signal_init(loop, h);
    h->data = st;
    uv_signal_start(h, [](uv_signal_t* h, int) { out_flush(&static_cast<Stdout*>(h->data)->out); }, sig);
    uv_unref(reinterpret_cast<uv_handle_t*>(h));
  }
  return 0;
}

int l_stdout_gc(lua_State* L) {
  auto* st = static_cast<Stdout*>(lua_touserdata(L, 1));
  {
    std::lock_guard<std::mutex> lock(g_open_mutex);
    out_flush(&st->out);
    (st->prev ? st->prev->next : g_open) = st->next;
    if (st->next) st->next->prev = st->prev;
    st->prev = st->next = nullptr;
  }
  if (!st->timer) return 0;
  uv_close(reinterpret_cast<uv_handle_t*>(st->timer), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  for (uv_signal_t* h : {st->sigint, st->sigterm})
    uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* h) { delete reinterpret_cast<uv_signal_t*>(h); });
  st->timer = nullptr;
  return 0;
}

int l_isatty(lua_State* L) {
  lua_pushboolean(L, isatty(1));
  return 1;
}

int l_strerror(lua_State* L) {
  lua_pushstring(L, std::strerror(static_cast<int>(luaL_checkinteger(L, 1))));
  return 1;
}

}  // namespace

void open_stdout(Runtime&, lua_State* L, int klua_table) {
  static std::once_flag at_exit;
  std::call_once(at_exit, [] { std::atexit(flush_open_buffers); });
  // The userdata never moves (LuaJIT), so the FFI may keep a pointer to its buffer; the start
  // closure keeps the userdata alive as long as the module.
  auto* st = static_cast<Stdout*>(lua_newuserdata(L, sizeof(Stdout)));
  new (st) Stdout;  // default-initialized: the 64 KiB of data are not zeroed
  st->out = {st->data, 0, kCapacity, 0, 0};
  {
    std::lock_guard<std::mutex> lock(g_open_mutex);
    st->next = g_open;
    if (g_open) g_open->prev = st;
    g_open = st;
  }
  lua_newtable(L);
  lua_pushcfunction(L, l_stdout_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  int st_idx = lua_gettop(L);
  load_binding_chunk(L, "stdout_fast");
  load_lua_chunk(L, "bindings/ffi.h");
  lua_call(L, 0, 1);
  lua_pushlightuserdata(L, &st->out);
  lua_pushlightuserdata(L, reinterpret_cast<void*>(static_cast<klua_out_flush_fn>(&out_flush)));
  lua_pushlightuserdata(L, reinterpret_cast<void*>(static_cast<klua_out_append_fn>(&out_write)));
  lua_pushlightuserdata(L, reinterpret_cast<void*>(static_cast<klua_out_append_fn>(&out_json_string)));
  lua_pushlightuserdata(L, reinterpret_cast<void*>(static_cast<klua_out_append_fn>(&out_base64)));
  lua_pushlightuserdata(L, reinterpret_cast<void*>(static_cast<klua_utf8_valid_fn>(&utf8_ok)));
  lua_pushinteger(L, sizeof(klua_outbuf));
  lua_pushvalue(L, st_idx);
  lua_pushcclosure(L, l_start, 1);
  lua_pushcfunction(L, l_isatty);
  lua_pushcfunction(L, l_strerror);
  lua_call(L, 11, 1);
  lua_setfield(L, klua_table, "_stdout");
  lua_pop(L, 1);  // the userdata
}

}  // namespace klua
