// klua.process: programs run on the loop (libuv's uv_spawn), so the calling task waits and every
// other task goes on (io.popen in a handler froze every task for as long as the program ran).
// The policy (argument checks, defaults, shell) is bindings/lua/process.lua; this file has the one
// primitive run(...) and the per-runtime set of running children.
//
// One Child per run: the process handle, three pipes and a timer, freed when all five are closed.
// stdin is written while stdout and stderr are read, all by the loop, so a program that echoes
// more than a pipe holds cannot deadlock against klua. stdin is a socketpair of klua's own, written
// with send(MSG_NOSIGNAL): a program that exits without reading it all must give klua EPIPE, not
// the SIGPIPE that stops a klua script (host/signals.cpp), which a pipe's write() would raise. Output beyond max_output is read and dropped
// (the child is never blocked on a full pipe) and the result says it was truncated.
//
// The child runs in a session of its own (UV_PROCESS_DETACHED: setsid), so its pid is also its
// process group: a timeout or the task's cancellation kills the whole group (the children of
// `sh -c` too) with SIGTERM, then SIGKILL after kill_grace_ms. At klua's exit (the ProcessSet is a
// Closable) a child still running gets SIGKILL at once: no orphans outlive the script.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "bindings/lua_chunks.hpp"
#include "host/error.hpp"
#include "host/runtime.hpp"

extern char** environ;

namespace klua {

namespace {

constexpr const char* ERR_PROCESS_SPAWN = "KLUA_PROCESS_SPAWN";
constexpr int CODE_PROCESS_SPAWN = -1201;
constexpr const char* OP = "klua.process.run";

class ProcessSet;

struct Child {
  Runtime* rt = nullptr;
  ProcessSet* set = nullptr;  // nullptr once the set is gone (the Lua state closed)
  uint64_t id = 0;
  WaitToken tok;  // cleared when nobody waits any more (cancelled, or klua exiting)
  std::string cmd;
  pid_t pid = 0;

  uv_process_t proc;
  uv_poll_t in;  // klua's end of the stdin socketpair (in_fd), while there is input left
  int in_fd = -1;
  size_t in_off = 0;
  uv_pipe_t out, err;
  uv_timer_t timer;
  bool in_open = false, out_open = false, err_open = false;
  int open_handles = 0;  // initialised and not yet closed: the Child is freed at 0

  std::string input;

  struct Capture {
    std::string data;
    bool truncated = false;
  };
  Capture so, se;
  size_t max_output = 0;
  // One read buffer for both pipes: libuv calls alloc_cb and read_cb back to back for one stream.
  char buf[65536];

  double timeout_ms = -1;
  uint64_t grace_ms = 0;
  enum class Timer { Idle, Deadline, Grace } timer_stage = Timer::Idle;
  bool exited = false;
  int64_t exit_status = 0;
  int term_signal = 0;
  bool timed_out = false;
  bool killing = false;       // SIGTERM sent (timeout, cancel)
  bool shutting_down = false; // klua exits: finish at the child's exit, without waiting for EOF
  bool finished = false;

  void kill_group(int sig) {
    // pid is the group id (setsid in the child). ESRCH: the group is gone already.
    if (pid > 0) ::kill(-pid, sig);
  }
  void start_kill();
  void shutdown();
  void abandon();
  void maybe_finish();
  void finish();
  void close_handle(uv_handle_t* h);
  void close_stdin();
  void push_result(lua_State* L);
};

// The running children of one runtime; a Closable so that klua's exit kills what still runs.
class ProcessSet : public Closable {
 public:
  explicit ProcessSet(Runtime& rt) : rt_(rt) {}
  int close_priority() const override { return 5; }  // first: nothing reads their output any more
  void begin_close() override {
    // Runtime::shutdown unregisters a closed Closable: a run started later (a consumer's closing
    // hook) registers the set again.
    registered_ = false;
    std::vector<Child*> live;
    for (auto& [id, c] : children_) live.push_back(c);
    for (Child* c : live) c->shutdown();
  }
  bool is_closed() const override { return children_.empty(); }

  void add(Child* c) {
    c->id = next_id_++;
    children_[c->id] = c;
    if (!registered_) {
      rt_.add_closable(this);
      registered_ = true;
    }
  }
  void remove(uint64_t id) { children_.erase(id); }
  Child* find(uint64_t id) {
    auto it = children_.find(id);
    return it == children_.end() ? nullptr : it->second;
  }
  // The Lua state closes: a child still here (only when shutdown could not finish it) is killed
  // and its handles closed; it no longer refers to the set.
  void detach_all() {
    std::vector<Child*> live;
    for (auto& [id, c] : children_) live.push_back(c);
    children_.clear();
    for (Child* c : live) {
      c->set = nullptr;
      c->tok = {};
      c->kill_group(SIGKILL);
      c->finish();
    }
    rt_.remove_closable(this);
  }

 private:
  Runtime& rt_;
  std::unordered_map<uint64_t, Child*> children_;
  uint64_t next_id_ = 1;
  bool registered_ = false;
};

void on_close(uv_handle_t* h) {
  auto* c = static_cast<Child*>(h->data);
  if (--c->open_handles == 0) delete c;
}

void Child::close_handle(uv_handle_t* h) {
  if (!uv_is_closing(h)) uv_close(h, on_close);
}

void Child::close_stdin() {
  if (in_open) {
    in_open = false;
    close_handle(reinterpret_cast<uv_handle_t*>(&in));  // stops the poll: the fd may go now
  }
  if (in_fd >= 0) {
    ::close(in_fd);  // the program's EOF
    in_fd = -1;
  }
}

void Child::start_kill() {
  if (killing) return;
  killing = true;
  close_stdin();
  if (grace_ms == 0) {
    kill_group(SIGKILL);
    return;
  }
  kill_group(SIGTERM);
  timer_stage = Timer::Grace;
  uv_timer_start(&timer, [](uv_timer_t* t) { static_cast<Child*>(t->data)->kill_group(SIGKILL); }, grace_ms, 0);
}

// The waiting task was cancelled: nobody wants the result; the group goes, the Child finishes alone.
void Child::abandon() {
  tok = {};
  start_kill();
}

// klua exits: SIGKILL at once, and the Child finishes at the leader's exit.
void Child::shutdown() {
  tok = {};
  shutting_down = true;
  kill_group(SIGKILL);
  if (exited) finish();  // only a pipe held open by another process was left
}

void Child::maybe_finish() {
  if (exited && (shutting_down || (!out_open && !err_open))) finish();
}

void Child::finish() {
  if (finished) return;
  finished = true;
  uv_timer_stop(&timer);
  if (set) set->remove(id);
  lua_State* co = tok ? rt->scheduler().wake_begin(tok) : nullptr;
  if (co) {
    if (timed_out) {
      ErrorSpec e;
      e.code = CODE_TIMED_OUT;
      e.name = ERR_TIMED_OUT;
      e.retriable = true;
      e.op = OP;
      e.timeout_ms = timeout_ms;
      e.message = fmt::format("'{}' did not finish within {} ms; its process group was killed", cmd, timeout_ms);
      lua_pushnil(co);
      push_error(co, e);
      // What it wrote before it was killed, and who it was.
      push_result(co);
      lua_getfield(co, -1, "stdout");
      lua_setfield(co, -3, "stdout");
      lua_getfield(co, -1, "stderr");
      lua_setfield(co, -3, "stderr");
      lua_pop(co, 1);
      lua_pushlstring(co, cmd.data(), cmd.size());
      lua_setfield(co, -2, "cmd");
      lua_pushinteger(co, pid);
      lua_setfield(co, -2, "pid");
      rt->scheduler().wake_end(tok, 2);
    } else {
      push_result(co);
      rt->scheduler().wake_end(tok, 1);
    }
  }
  tok = {};
  close_stdin();
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&out), reinterpret_cast<uv_handle_t*>(&err)}) {
    // Only pipes that were initialised count in open_handles; closing one twice is guarded.
    if (h->data) close_handle(h);
  }
  out_open = err_open = false;
  close_handle(reinterpret_cast<uv_handle_t*>(&timer));
  close_handle(reinterpret_cast<uv_handle_t*>(&proc));
}

void Child::push_result(lua_State* L) {
  lua_createtable(L, 0, 8);
  if (term_signal != 0) {
    lua_pushinteger(L, term_signal);
    lua_setfield(L, -2, "signal");
  } else {
    lua_pushinteger(L, exit_status);
    lua_setfield(L, -2, "status");
  }
  lua_pushlstring(L, so.data.data(), so.data.size());
  lua_setfield(L, -2, "stdout");
  lua_pushlstring(L, se.data.data(), se.data.size());
  lua_setfield(L, -2, "stderr");
  lua_pushboolean(L, so.truncated);
  lua_setfield(L, -2, "stdout_truncated");
  lua_pushboolean(L, se.truncated);
  lua_setfield(L, -2, "stderr_truncated");
  lua_pushinteger(L, pid);
  lua_setfield(L, -2, "pid");
}

void on_alloc(uv_handle_t* h, size_t, uv_buf_t* b) {
  auto* c = static_cast<Child*>(h->data);
  *b = uv_buf_init(c->buf, sizeof c->buf);
}

void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
  auto* c = static_cast<Child*>(s->data);
  bool is_out = s == reinterpret_cast<uv_stream_t*>(&c->out);
  Child::Capture& cap = is_out ? c->so : c->se;
  if (n > 0) {
    size_t room = c->max_output > cap.data.size() ? c->max_output - cap.data.size() : 0;
    size_t take = std::min(room, static_cast<size_t>(n));
    cap.data.append(b->base, take);
    if (take < static_cast<size_t>(n)) cap.truncated = true;  // the rest is read and dropped
    return;
  }
  if (n == 0) return;  // EAGAIN
  // EOF or a read error: this stream is done.
  if (is_out) c->out_open = false; else c->err_open = false;
  c->close_handle(reinterpret_cast<uv_handle_t*>(s));
  c->maybe_finish();
}

void on_exit(uv_process_t* p, int64_t status, int sig) {
  auto* c = static_cast<Child*>(p->data);
  c->exited = true;
  c->exit_status = status;
  c->term_signal = sig;
  c->maybe_finish();
}

void on_stdin_writable(uv_poll_t* p, int status, int) {
  auto* c = static_cast<Child*>(p->data);
  while (status == 0 && c->in_off < c->input.size()) {
    ssize_t n = ::send(c->in_fd, c->input.data() + c->in_off, c->input.size() - c->in_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c->in_off += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;  // full: the next writable event goes on
    } else {
      break;  // EPIPE: the program does not read any more (it exited, or closed its stdin)
    }
  }
  // All written, or failed: either way stdin is done.
  c->close_stdin();
  c->input = std::string();  // the memory goes now, not when the program ends
}

ProcessSet* set_of(lua_State* L) {
  return *static_cast<ProcessSet**>(lua_touserdata(L, lua_upvalueindex(1)));
}

// The environment the child gets: klua's (unless clear) with the table's names set (a string) or
// removed (false). Values are never printed anywhere.
std::vector<std::string> build_env(lua_State* L, int idx, bool clear) {
  std::vector<std::string> env;
  std::unordered_map<std::string, size_t> where;
  auto name_of = [](const std::string& kv) { return kv.substr(0, kv.find('=')); };
  if (!clear)
    for (char** e = environ; e && *e; ++e) {
      env.emplace_back(*e);
      where[name_of(env.back())] = env.size() - 1;
    }
  std::vector<bool> removed(env.size(), false);
  if (lua_istable(L, idx)) {
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
      std::string name = lua_tostring(L, -2);  // checked to be a string by process.lua
      auto it = where.find(name);
      if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        const char* v = lua_tolstring(L, -1, &n);
        std::string kv = name + "=" + std::string(v, n);
        if (it != where.end()) {
          env[it->second] = std::move(kv);
          removed[it->second] = false;
        } else {
          env.push_back(std::move(kv));
          removed.push_back(false);
          where[name] = env.size() - 1;
        }
      } else if (it != where.end()) {
        removed[it->second] = true;
      }
      lua_pop(L, 1);
    }
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < env.size(); ++i)
    if (!removed[i]) out.push_back(std::move(env[i]));
  return out;
}

// run(cmd, args, stdin, env, env_clear, cwd, timeout_ms, max_output, kill_grace_ms), checked by
// process.lua. Yields; resumes with the result table, or nil, err.
int l_run(lua_State* L) {
  ProcessSet* set = set_of(L);
  Runtime& rt = Runtime::from(L);
  Scheduler& s = rt.scheduler();
  size_t cmd_len;
  const char* cmd = lua_tolstring(L, 1, &cmd_len);
  bool has_stdin = lua_type(L, 3) == LUA_TSTRING;
  bool env_given = lua_istable(L, 4) || lua_toboolean(L, 5);
  const char* cwd = lua_tostring(L, 6);
  // Times past 1e15 ms (31,000 years, math.huge) mean no limit: no timer, and no cast out of range.
  double timeout_ms = lua_tonumber(L, 7);
  if (timeout_ms >= 1e15) timeout_ms = -1;
  auto max_output = static_cast<size_t>(lua_tonumber(L, 8));
  // (a number of bytes checked by process.lua: a whole number from 0 to 2^40)
  auto grace = static_cast<uint64_t>(std::min(lua_tonumber(L, 9), 1e15));

  // Everything that may raise comes before the spawn, so that a raise leaves no child behind.
  std::vector<std::string> args{std::string(cmd, cmd_len)};
  for (int i = 1, n = static_cast<int>(lua_objlen(L, 2)); i <= n; ++i) {
    lua_rawgeti(L, 2, i);
    size_t len;
    const char* a = lua_tolstring(L, -1, &len);
    args.emplace_back(a, len);
    lua_pop(L, 1);
  }
  std::vector<std::string> env;
  if (env_given) env = build_env(L, 4, lua_toboolean(L, 5));
  WaitToken tok = s.prepare_wait(L, OP, -1);  // raises when cancelled or not in a task
  // stdin: [0] klua's end, [1] the program's (both close-on-exec, so that no other child started
  // meanwhile inherits them and holds the program's EOF back; libuv's dup2 onto fd 0 clears it).
  int sv[2] = {-1, -1};
  if (has_stdin && ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    int rc = uv_translate_sys_error(errno);
    s.abandon_wait(tok);
    ErrorSpec e;
    e.code = CODE_PROCESS_SPAWN;
    e.name = ERR_PROCESS_SPAWN;
    e.op = OP;
    e.message = fmt::format("cannot start '{}': no socket for its stdin: {} ({})", std::string(cmd, cmd_len),
                            uv_strerror(rc), uv_err_name(rc));
    return nil_error(L, e);
  }

  auto* c = new Child;
  c->rt = &rt;
  c->cmd = args[0];
  c->max_output = max_output;
  c->timeout_ms = timeout_ms;
  c->grace_ms = grace;
  if (has_stdin) {
    size_t n;
    const char* p = lua_tolstring(L, 3, &n);
    c->input.assign(p, n);
  }
  uv_loop_t* loop = rt.loop();
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&c->proc), reinterpret_cast<uv_handle_t*>(&c->in),
                         reinterpret_cast<uv_handle_t*>(&c->out), reinterpret_cast<uv_handle_t*>(&c->err),
                         reinterpret_cast<uv_handle_t*>(&c->timer)})
    h->data = nullptr;
  auto init = [c](uv_handle_t* h) {
    h->data = c;
    ++c->open_handles;
  };
  uv_pipe_init(loop, &c->out, 0);
  init(reinterpret_cast<uv_handle_t*>(&c->out));
  uv_pipe_init(loop, &c->err, 0);
  init(reinterpret_cast<uv_handle_t*>(&c->err));
  uv_timer_init(loop, &c->timer);
  init(reinterpret_cast<uv_handle_t*>(&c->timer));

  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  uv_stdio_container_t stdio[3];
  if (has_stdin) {
    stdio[0].flags = UV_INHERIT_FD;
    stdio[0].data.fd = sv[1];
  } else {
    stdio[0].flags = UV_IGNORE;  // /dev/null: never klua's own stdin (the REPL, `klua consume -`)
  }
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&c->out);
  stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&c->err);

  uv_process_options_t o;
  std::memset(&o, 0, sizeof o);
  o.exit_cb = on_exit;
  o.file = argv[0];
  o.args = argv.data();
  o.env = env_given ? envp.data() : nullptr;
  o.cwd = cwd;
  o.flags = UV_PROCESS_DETACHED;  // setsid: the child's pid is its process group, killed as one
  o.stdio_count = 3;
  o.stdio = stdio;
  int rc = uv_spawn(loop, &c->proc, &o);
  if (sv[1] >= 0) ::close(sv[1]);  // the program has its copy
  // The process handle is initialised even when uv_spawn fails, and must be closed.
  init(reinterpret_cast<uv_handle_t*>(&c->proc));
  if (rc != 0) {
    if (sv[0] >= 0) ::close(sv[0]);
    s.abandon_wait(tok);
    c->finish();  // closes the handles; the Child frees itself
    ErrorSpec e;
    e.code = CODE_PROCESS_SPAWN;
    e.name = ERR_PROCESS_SPAWN;
    e.op = OP;
    std::string what = fmt::format("'{}'", args[0]);
    const char* hint = "";
    if (rc == UV_ENOENT && args[0].find('/') == std::string::npos) hint = ", searched PATH";
    struct stat st;
    if ((rc == UV_ENOENT || rc == UV_ENOTDIR || rc == UV_EACCES) && cwd &&
        (::stat(cwd, &st) != 0 || !S_ISDIR(st.st_mode) || ::access(cwd, X_OK) != 0)) {
      // libuv reports a bad cwd and a missing program alike: tell them apart.
      what = fmt::format("'{}' in cwd '{}' (not a usable directory)", args[0], cwd);
      hint = "";
    }
    e.message = fmt::format("cannot start {}: {} ({}{})", what, uv_strerror(rc), uv_err_name(rc), hint);
    lua_pushnil(L);
    push_error(L, e);
    lua_pushlstring(L, args[0].data(), args[0].size());
    lua_setfield(L, -2, "cmd");
    lua_pushstring(L, uv_err_name(rc));
    lua_setfield(L, -2, "errno");
    return 2;
  }
  c->pid = c->proc.pid;
  c->tok = tok;
  set->add(c);
  c->set = set;
  uint64_t id = c->id;
  s.on_wait_end(tok, [set, id] {
    if (Child* ch = set->find(id)) ch->abandon();
  });
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->out), on_alloc, on_read);
  c->out_open = true;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->err), on_alloc, on_read);
  c->err_open = true;
  if (has_stdin) {
    c->in_fd = sv[0];
    if (c->input.empty()) {
      c->close_stdin();  // EOF at once
    } else {
      uv_poll_init_socket(loop, &c->in, c->in_fd);
      init(reinterpret_cast<uv_handle_t*>(&c->in));
      c->in_open = true;
      uv_poll_start(&c->in, UV_WRITABLE, on_stdin_writable);
    }
  }
  if (timeout_ms >= 0) {
    c->timer_stage = Child::Timer::Deadline;
    uv_timer_start(&c->timer, [](uv_timer_t* t) {
      auto* ch = static_cast<Child*>(t->data);
      if (ch->timer_stage != Child::Timer::Deadline) return;
      ch->timed_out = true;
      ch->start_kill();
    }, static_cast<uint64_t>(timeout_ms + 0.999), 0);
  }
  return lua_yield(L, 0);
}

int l_set_gc(lua_State* L) {
  auto** p = static_cast<ProcessSet**>(lua_touserdata(L, 1));
  if (*p) {
    (*p)->detach_all();
    delete *p;
    *p = nullptr;
  }
  return 0;
}

}  // namespace

void open_process(Runtime& rt, lua_State* L, int klua_table) {
  lua_getfield(L, klua_table, "errors");
  register_error_code(L, -1, ERR_PROCESS_SPAWN, CODE_PROCESS_SPAWN, "klua: a program could not be started");
  lua_pop(L, 1);
  // The set lives as long as the Lua state (its __gc runs at lua_close, after Runtime::shutdown).
  auto** box = static_cast<ProcessSet**>(lua_newuserdata(L, sizeof(ProcessSet*)));
  *box = new ProcessSet(rt);
  lua_newtable(L);
  lua_pushcfunction(L, l_set_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushcclosure(L, l_run, 1);
  rt.scheduler().wrap_waiting(L);
  // process.lua(klua, run) returns the module table.
  load_binding_chunk(L, "process");
  lua_insert(L, -2);
  lua_pushvalue(L, klua_table);
  lua_insert(L, -2);
  lua_call(L, 2, 1);
  lua_setfield(L, klua_table, "process");
}

}  // namespace klua
