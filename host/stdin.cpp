// klua.read_line(): the next line of standard input (without its newline), or nil at end of
// input. It yields only the calling task. Standard input is touched only at the first call.
//
// A terminal, a pipe or a socket is read as a libuv stream (uv_tty / uv_pipe / uv_tcp): the loop
// is told when data arrives, no thread waits on it, and reading stops while no task wants a line
// (the writer is held back, not buffered without bound). The stream is opened on a dup of fd 0,
// and the file status flags libuv changes (O_NONBLOCK, shared with whoever else holds the pipe)
// are put back when the runtime closes. A regular file (`klua ... < file`) is no stream for
// libuv: its reads are short and bounded, so each runs on the runtime's executor. Earlier a
// detached std::thread per read did both; klua's code now starts no thread besides the executor's.
#include <fcntl.h>
#include <unistd.h>
#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include <cerrno>

#include "host/error.hpp"
#include "host/runtime.hpp"

namespace klua {

namespace {
struct StdinReader {
  std::string buffer;
  bool eof = false;
  bool reading = false;
  bool opened = false;
  std::vector<WaitToken> waiters;
  std::vector<bool> wants_chunk;  // per waiter: klua._read_chunk (else a line)
  Runtime* rt = nullptr;
  uv_stream_t* stream = nullptr;  // null: read through the executor
  int fd = -1;                    // the dup of fd 0 the stream reads
  int saved_flags = -1;           // fd 0's file status flags before libuv changed them
  std::shared_ptr<bool> alive;    // false once the reader is collected (executor reads check it)
  char chunk[65536];              // the stream's read buffer
};

StdinReader& reader(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "klua.stdin");
  auto* r = static_cast<StdinReader*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return *r;
}

// Pushes the next complete line (or the last partial one at EOF); false when none is ready.
bool take_line(lua_State* co, StdinReader& r) {
  size_t nl = r.buffer.find('\n');
  if (nl == std::string::npos) {
    if (!r.eof) return false;
    if (r.buffer.empty()) {
      lua_pushnil(co);
      return true;
    }
    lua_pushlstring(co, r.buffer.data(), r.buffer.size());
    r.buffer.clear();
    return true;
  }
  size_t len = nl > 0 && r.buffer[nl - 1] == '\r' ? nl - 1 : nl;
  lua_pushlstring(co, r.buffer.data(), len);
  r.buffer.erase(0, nl + 1);
  return true;
}

void start_read(StdinReader& r);

// Pushes everything buffered (klua._read_chunk), nil at the end; false when nothing is ready.
bool take_chunk(lua_State* co, StdinReader& r) {
  if (r.buffer.empty()) {
    if (!r.eof) return false;
    lua_pushnil(co);
    return true;
  }
  lua_pushlstring(co, r.buffer.data(), r.buffer.size());
  r.buffer.clear();
  return true;
}

// New data (or EOF) is in the buffer: hand out lines to the waiting tasks in order.
void serve_waiters(StdinReader& r) {
  Scheduler& s = r.rt->scheduler();
  while (!r.waiters.empty()) {
    WaitToken t = r.waiters.front();
    lua_State* co = s.wake_begin(t);
    if (!co) {
      r.waiters.erase(r.waiters.begin());
      r.wants_chunk.erase(r.wants_chunk.begin());
      continue;
    }
    if (!(r.wants_chunk.front() ? take_chunk(co, r) : take_line(co, r))) break;
    r.waiters.erase(r.waiters.begin());
    r.wants_chunk.erase(r.wants_chunk.begin());
    s.wake_end(t, 1);
  }
  if (r.waiters.empty() || r.eof) {
    if (r.stream && r.reading) uv_read_stop(r.stream);
    r.reading = false;
  } else {
    start_read(r);
  }
}

void open_input(StdinReader& r) {
  r.opened = true;
  uv_loop_t* loop = r.rt->loop();
  uv_handle_type type = uv_guess_handle(0);
  if (type != UV_TTY && type != UV_NAMED_PIPE && type != UV_TCP) return;  // executor reads
  int fd = dup(0);
  if (fd < 0) return;
  int flags = fcntl(0, F_GETFL);
  int rc = -1;
  uv_stream_t* stream = nullptr;
  if (type == UV_TTY) {
    auto* h = new uv_tty_t;
    rc = uv_tty_init(loop, h, fd, 0);
    stream = reinterpret_cast<uv_stream_t*>(h);
  } else if (type == UV_NAMED_PIPE) {
    auto* h = new uv_pipe_t;
    uv_pipe_init(loop, h, 0);
    rc = uv_pipe_open(h, fd);
    stream = reinterpret_cast<uv_stream_t*>(h);
  } else {
    auto* h = new uv_tcp_t;
    uv_tcp_init(loop, h);
    rc = uv_tcp_open(h, fd);
    stream = reinterpret_cast<uv_stream_t*>(h);
  }
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(stream), [](uv_handle_t* h) { ::operator delete(h); });
    close(fd);
    return;  // executor reads
  }
  stream->data = &r;
  uv_unref(reinterpret_cast<uv_handle_t*>(stream));  // a waiting task keeps the loop alive, not stdin
  r.stream = stream;
  r.fd = fd;
  r.saved_flags = flags;
}

void start_read(StdinReader& r) {
  if (r.reading || r.eof) return;
  if (!r.opened) open_input(r);
  r.reading = true;
  if (r.stream) {
    uv_read_start(
        r.stream,
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
          auto* r = static_cast<StdinReader*>(h->data);  // consumed at once by the read callback
          *buf = uv_buf_init(r->chunk, sizeof r->chunk);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          auto* r = static_cast<StdinReader*>(s->data);
          if (!r) return;
          if (n > 0) {
            r->buffer.append(buf->base, static_cast<size_t>(n));
          } else if (n < 0) {
            r->eof = true;  // UV_EOF, or an error: the input ends either way
          } else {
            return;  // EAGAIN
          }
          serve_waiters(*r);
        });
    return;
  }
  // A regular file: one bounded read(2) on the executor.
  auto data = std::make_shared<std::string>();
  auto at_eof = std::make_shared<bool>(false);
  std::shared_ptr<bool> alive = r.alive;
  StdinReader* rp = &r;
  r.rt->executor().submit(
      [data, at_eof] {
        char chunk[65536];
        ssize_t n;
        do n = ::read(0, chunk, sizeof chunk);
        while (n < 0 && errno == EINTR);
        if (n > 0) data->assign(chunk, static_cast<size_t>(n)); else *at_eof = true;
      },
      [data, at_eof, alive, rp] {
        if (!*alive) return;
        rp->reading = false;
        rp->buffer += *data;
        if (*at_eof) rp->eof = true;
        serve_waiters(*rp);
      });
}

int l_read_line(lua_State* L) {
  StdinReader& r = reader(L);
  if (r.waiters.empty() && take_line(L, r)) return 1;
  Scheduler& s = Runtime::from(L).scheduler();
  r.waiters.push_back(s.prepare_wait(L, "klua.read_line", -1));
  r.wants_chunk.push_back(false);
  start_read(r);
  return lua_yield(L, 0);
}

// klua._read_chunk(): the bytes of standard input as they come (everything buffered, at least
// one byte; a line may be split between chunks), nil at the end. Internal: `klua produce` splits
// lines itself, keeping the '\r' that read_line drops.
int l_read_chunk(lua_State* L) {
  StdinReader& r = reader(L);
  if (r.waiters.empty() && take_chunk(L, r)) return 1;
  Scheduler& s = Runtime::from(L).scheduler();
  r.waiters.push_back(s.prepare_wait(L, "klua._read_chunk", -1));
  r.wants_chunk.push_back(true);
  start_read(r);
  return lua_yield(L, 0);
}

int l_reader_gc(lua_State* L) {
  auto* r = static_cast<StdinReader*>(lua_touserdata(L, 1));
  *r->alive = false;
  if (r->stream) {
    r->stream->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(r->stream), [](uv_handle_t* h) {
      switch (h->type) {
        case UV_TTY: delete reinterpret_cast<uv_tty_t*>(h); break;
        case UV_NAMED_PIPE: delete reinterpret_cast<uv_pipe_t*>(h); break;
        default: delete reinterpret_cast<uv_tcp_t*>(h); break;
      }
    });
    // The dup shares fd 0's open file description: give it back its flags (blocking mode).
    if (r->saved_flags >= 0) fcntl(0, F_SETFL, r->saved_flags);
  }
  r->~StdinReader();
  return 0;
}
}  // namespace

void open_stdin(Runtime& rt, lua_State* L, int klua_table) {
  auto* r = static_cast<StdinReader*>(lua_newuserdata(L, sizeof(StdinReader)));
  new (r) StdinReader();
  r->rt = &rt;
  r->alive = std::make_shared<bool>(true);
  lua_newtable(L);
  lua_pushcfunction(L, l_reader_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "klua.stdin");
  rt.scheduler().push_waiting(L, l_read_line);
  lua_setfield(L, klua_table, "read_line");
  rt.scheduler().push_waiting(L, l_read_chunk);
  lua_setfield(L, klua_table, "_read_chunk");
}

}  // namespace klua
