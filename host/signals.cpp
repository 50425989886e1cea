// SIGINT and SIGTERM for scripts: the first stops the script cleanly, the second exits at once.
//
// The loop hears a signal through libuv (Runtime::on_signal, on the loop thread): it cancels every
// task, and once they have unwound the clients close (producers flush, consumers commit) and klua
// exits 128+signum. That needs the loop to turn, which a task computing in a loop never lets it
// do. So a handler of our own runs first, in the signal's context, and chains to libuv's:
//
// - The first signal says so on stderr (write(2)) and sets a Lua count hook (lua_sethook is safe
//   there: LuaJIT's own luajit.c does it). The hook raises KLUA_CANCELLED in the task running
//   now, and only in user code of an unshielded task: never in klua's own chunks, never on the
//   main Lua state (where the loop runs inline callbacks and the scheduler its own calls). So an
//   interpreted loop ends, and so does a compiled loop once it exits to the interpreter or calls
//   a C function (a call hook). A compiled loop that never leaves its trace (a trace runs no
//   hooks: `while true do end`, arithmetic alone) ends at the second signal.
// - The second signal wakes the watchdog, a thread of ours that waits for nothing else. It counts
//   the messages the producers still hold (Closable::undelivered, under the closables lock, with
//   thread-safe librdkafka calls only: the loop thread may be stuck or still running), says how
//   many are lost and calls _exit(128+signum). Nothing of that runs in the signal handler, which
//   must not take librdkafka's locks or malloc's, both of which the interrupted thread may hold.
//
// SIGPIPE (a write to a pipe whose reader is gone: `klua script.lua | head`) stops the script as
// the first SIGINT does, quietly, with exit 141, instead of killing it before its producers
// flush; the later ones are ignored (the writes fail with EPIPE). Only a broken stdout or stderr
// counts: a SIGPIPE from a socket (an HTTP client that left mid-answer) or a child's stdin is
// ignored, and that write fails with EPIPE for its owner to handle.
//
// While the interactive REPL claims SIGINT (claim_sigint), a SIGINT is its own business (Ctrl-C
// cancels the running line: host/line_editor.cpp) and is not counted here.
#include <poll.h>
#include <semaphore.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fmt/format.h>
#include <thread>

#include "host/error.hpp"
#include "host/log.hpp"
#include "host/runtime.hpp"

namespace klua {

namespace {

// Instructions between two calls of the stop hook: small enough to stop at once, cheap enough
// for a script that catches the cancellation and goes on computing.
constexpr int kHookCount = 1000;

struct SignalState {
  std::atomic<Runtime*> owner{nullptr};  // the runtime whose handlers are installed
  lua_State* L = nullptr;                // its main Lua state (hooks are per Lua state in LuaJIT)
  std::atomic<int> stop_signals{0};      // signals counted as requests to stop
  std::atomic<int> first_signum{0};
  std::atomic<int> last_signum{0};
  std::atomic<bool> announced{false};    // the first signal's message is out
  std::atomic<bool> sigint_claimed{false};
  std::atomic<bool> exit_claimed{false};  // one of the loop and the watchdog exits, not both
  std::atomic<bool> quit{false};
  struct sigaction chained_int {}, chained_term {}, chained_pipe {};
  sem_t wake;
  std::thread watchdog;
};
SignalState g;

const char* signal_name(int signum) {
  return signum == SIGINT ? "SIGINT" : signum == SIGTERM ? "SIGTERM" : signum == SIGPIPE ? "SIGPIPE" : "signal";
}

void write_stderr(const char* s) {
  size_t n = std::strlen(s);
  while (n > 0) {
    ssize_t w = write(2, s, n);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      return;
    }
    s += w;
    n -= static_cast<size_t>(w);
  }
}

void stop_hook(lua_State* L, lua_Debug* ar) {
  Runtime* rt = g.owner.load();
  if (!rt) {
    lua_sethook(L, nullptr, 0, 0);
    return;
  }
  if (L == rt->lua() || !rt->scheduler().cancel_for_signal(L, ar, rt->signal_seen_by_loop())) return;
  ErrorSpec e;
  e.code = CODE_CANCELLED;
  e.name = ERR_CANCELLED;
  e.message = fmt::format("the task was cancelled by {}", signal_name(g.first_signum.load()));
  raise_error(L, e);
}

void chain(const struct sigaction& to, int signum, siginfo_t* info, void* context) {
  if (to.sa_flags & SA_SIGINFO) {
    if (to.sa_sigaction) to.sa_sigaction(signum, info, context);
  } else if (to.sa_handler != SIG_DFL && to.sa_handler != SIG_IGN && to.sa_handler) {
    to.sa_handler(signum);
  }
}

// Whether stdout or stderr is a pipe (or socket) whose reader is gone: poll(2) says POLLERR/POLLHUP
// for it (async-signal-safe).
bool standard_stream_broken() {
  struct pollfd fds[2] = {{1, POLLOUT, 0}, {2, POLLOUT, 0}};
  if (poll(fds, 2, 0) <= 0) return false;
  for (const auto& f : fds)
    if (f.revents & (POLLERR | POLLHUP)) return true;
  return false;
}

void on_raw_signal(int signum, siginfo_t* info, void* context) {
  int saved_errno = errno;
  if (signum == SIGPIPE && !standard_stream_broken()) {
    // A write to a socket or pipe of the script's own (an HTTP client that left, a child's stdin)
    // fails with EPIPE where it was made; only a closed stdout/stderr stops the script.
    errno = saved_errno;
    return;
  }
  if (signum == SIGPIPE && g.stop_signals.load() > 0) {
    // Only the first SIGPIPE stops the script (quietly: `klua script | head`); the later ones
    // are the same closed pipe again, and those writes fail with EPIPE.
    errno = saved_errno;
    return;
  }
  if (g.owner.load() && !(signum == SIGINT && g.sigint_claimed.load())) {
    int n = ++g.stop_signals;
    g.last_signum = signum;
    if (n == 1) {
      g.first_signum = signum;
      g.announced = true;
      if (signum != SIGPIPE) {
        char line[512];  // (formatted here without allocating: a signal handler)
        size_t len = log::signal_safe_line(
            line, sizeof line - 1, log::Level::warn,
            signum == SIGINT ? "SIGINT received: stopping (flushing producers, committing processed offsets); "
                               "send it again to exit at once"
                             : "SIGTERM received: stopping (flushing producers, committing processed offsets); "
                               "send it again to exit at once");
        line[len] = 0;
        write_stderr(line);
      }
      // The count hook stops interpreted code; the call hook a compiled loop that calls a C
      // function (LuaJIT stitches traces around such a call, and the call itself is interpreted).
      if (g.L) lua_sethook(g.L, stop_hook, LUA_MASKCOUNT | LUA_MASKCALL, kHookCount);
    } else if (n == 2) {
      sem_post(&g.wake);
    }
  }
  // libuv's handler: the loop's on_signal, when the loop turns.
  chain(signum == SIGINT ? g.chained_int : signum == SIGTERM ? g.chained_term : g.chained_pipe, signum, info, context);
  errno = saved_errno;
}

void watchdog_main() {
  for (;;) {
    while (sem_wait(&g.wake) != 0 && errno == EINTR) {
    }
    if (g.quit.load()) return;
    Runtime* rt = g.owner.load();
    if (rt) rt->exit_at_once(128 + g.last_signum.load(), "second signal");
  }
}

}  // namespace

void Runtime::claim_sigint(bool claimed) { g.sigint_claimed = claimed; }

int Runtime::stop_signal() const { return g.owner.load() == this ? g.first_signum.load() : 0; }

void Runtime::install_signals() {
  // libuv's watchers first (they install libuv's handler), then ours in front of it.
  uv_signal_init(&loop_, &sigint_);
  uv_signal_init(&loop_, &sigterm_);
  sigint_.data = this;
  sigterm_.data = this;
  auto cb = [](uv_signal_t* h, int signum) { static_cast<Runtime*>(h->data)->on_signal(signum); };
  uv_signal_init(&loop_, &sigpipe_);
  sigpipe_.data = this;
  uv_signal_start(&sigint_, cb, SIGINT);
  uv_signal_start(&sigterm_, cb, SIGTERM);
  uv_signal_start(&sigpipe_, cb, SIGPIPE);
  for (uv_signal_t* h : {&sigint_, &sigterm_, &sigpipe_}) uv_unref(reinterpret_cast<uv_handle_t*>(h));
  signals_installed_ = true;
  Runtime* none = nullptr;
  if (!g.owner.compare_exchange_strong(none, this)) return;  // another runtime of this process has them
  g.L = L_;
  g.stop_signals = 0;
  g.first_signum = g.last_signum = 0;
  g.announced = false;
  g.exit_claimed = false;
  g.quit = false;
  sem_init(&g.wake, 0, 0);
  {
    // The watchdog blocks every signal (they belong to the loop thread), like the executor's threads.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    g.watchdog = std::thread(watchdog_main);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  struct sigaction sa {};
  sa.sa_sigaction = on_raw_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &g.chained_int);
  sigaction(SIGTERM, &sa, &g.chained_term);
  sigaction(SIGPIPE, &sa, &g.chained_pipe);
}

void Runtime::uninstall_signals() {
  if (g.owner.load() == this) {
    // Back to libuv's handlers before libuv's watchers go (which sets the default ones).
    sigaction(SIGINT, &g.chained_int, nullptr);
    sigaction(SIGTERM, &g.chained_term, nullptr);
    sigaction(SIGPIPE, &g.chained_pipe, nullptr);
    if (lua_gethook(L_) == stop_hook) lua_sethook(L_, nullptr, 0, 0);
    g.quit = true;
    sem_post(&g.wake);
    if (g.watchdog.joinable()) g.watchdog.join();
    sem_destroy(&g.wake);
    g.L = nullptr;
    g.owner = nullptr;
  }
  if (signals_installed_) {
    for (uv_signal_t* h : {&sigint_, &sigterm_, &sigpipe_}) uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
    signals_installed_ = false;
  }
}

void Runtime::on_signal(int signum) {
  if (signum == SIGPIPE && signal_count_ > 0) return;  // only the first SIGPIPE stops (see on_raw_signal)
  if (signum == SIGINT && interrupt_hook_ && signal_count_ == 0 && interrupt_hook_()) return;
  int code = 128 + signum;
  if (++signal_count_ > 1) exit_at_once(code, "second signal");
  if (!g.announced.exchange(true) && signum != SIGPIPE)
    log::diagnostic(log::Level::warn, fmt::format("{} received: stopping (flushing producers, committing processed "
                                                  "offsets); send it again to exit at once", signal_name(signum)));
  exit_code_ = code;
  scheduler_->cancel_all();
  // Cancelled tasks unwind on the loop; when they are done the loop ends and shutdown() closes
  // handles. A task that ignores the cancellation keeps running until the second signal.
  if (scheduler_->all_done()) request_exit(code);
}

void Runtime::exit_at_once(int code, const char* why) {
  if (g.exit_claimed.exchange(true)) {
    // The other of the loop thread and the watchdog is exiting the process: wait for it.
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  long lost = undelivered_messages();
  log::diagnostic(log::Level::error,
                  fmt::format("{}: exiting at once; {} message(s) not delivered{}", why, lost,
                              lost > 0 ? " (queued, in flight or failed: they are lost)" : ""),
                  {{"undelivered", std::to_string(lost), true}});
  _exit(code);
}

long Runtime::undelivered_messages() {
  auto lock = lock_closables();
  long n = 0;
  for (Closable* c : closables_) n += c->undelivered();
  return n;
}

}  // namespace klua
