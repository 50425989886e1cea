// klua.read_line(): the next line of standard input (without its newline), or nil at end of
// input. It yields only the calling task: each read(2) runs on a detached thread of its own
// (it works the same for files, pipes and terminals, and a read still blocked at exit does not
// hold the process, as it would on libuv's thread pool), and an async handle brings the data
// back to the loop.
#include <unistd.h>
#include <uv.h>

#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <cerrno>

#include "host/error.hpp"
#include "host/runtime.hpp"

namespace klua {

namespace {
// Shared with the reading thread, which may outlive the runtime.
struct ReadChannel {
  std::mutex mu;
  std::string data;
  bool eof = false;
  uv_async_t* async = nullptr;  // null once the runtime is gone
};

struct StdinReader {
  std::string buffer;
  bool eof = false;
  bool reading = false;
  std::vector<WaitToken> waiters;
  std::shared_ptr<ReadChannel> channel;
  Runtime* rt = nullptr;
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

void on_read(uv_async_t* h) {
  auto* r = static_cast<StdinReader*>(h->data);
  {
    std::lock_guard<std::mutex> lock(r->channel->mu);
    r->buffer += r->channel->data;
    r->channel->data.clear();
    if (r->channel->eof) r->eof = true;
  }
  r->reading = false;
  Scheduler& s = r->rt->scheduler();
  while (!r->waiters.empty()) {
    WaitToken t = r->waiters.front();
    lua_State* co = s.wake_begin(t);
    if (!co) {
      r->waiters.erase(r->waiters.begin());
      continue;
    }
    if (!take_line(co, *r)) break;
    r->waiters.erase(r->waiters.begin());
    s.wake_end(t, 1);
  }
  if (!r->waiters.empty() && !r->eof) start_read(*r);
}

void start_read(StdinReader& r) {
  if (r.reading) return;
  r.reading = true;
  std::thread([ch = r.channel] {
    char chunk[65536];
    ssize_t n;
    do n = ::read(0, chunk, sizeof chunk);
    while (n < 0 && errno == EINTR);
    std::lock_guard<std::mutex> lock(ch->mu);
    if (n > 0) ch->data.append(chunk, static_cast<size_t>(n)); else ch->eof = true;
    if (ch->async) uv_async_send(ch->async);
  }).detach();
}

int l_read_line(lua_State* L) {
  StdinReader& r = reader(L);
  if (r.waiters.empty() && take_line(L, r)) return 1;
  Scheduler& s = Runtime::from(L).scheduler();
  r.waiters.push_back(s.prepare_wait(L, "klua.read_line", -1));
  start_read(r);
  return lua_yield(L, 0);
}
}  // namespace

void open_stdin(Runtime& rt, lua_State* L, int klua_table) {
  auto* r = static_cast<StdinReader*>(lua_newuserdata(L, sizeof(StdinReader)));
  new (r) StdinReader();
  r->rt = &rt;
  r->channel = std::make_shared<ReadChannel>();
  r->channel->async = new uv_async_t;
  uv_async_init(rt.loop(), r->channel->async, on_read);
  r->channel->async->data = r;
  uv_unref(reinterpret_cast<uv_handle_t*>(r->channel->async));
  lua_newtable(L);
  lua_pushcfunction(L, [](lua_State* L) -> int {
    auto* r = static_cast<StdinReader*>(lua_touserdata(L, 1));
    {
      std::lock_guard<std::mutex> lock(r->channel->mu);
      uv_close(reinterpret_cast<uv_handle_t*>(r->channel->async),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
      r->channel->async = nullptr;
    }
    r->~StdinReader();
    return 0;
  });
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "klua.stdin");
  rt.scheduler().push_waiting(L, l_read_line);
  lua_setfield(L, klua_table, "read_line");
}

}  // namespace klua
