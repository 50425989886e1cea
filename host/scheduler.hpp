// Tasks: every piece of script code runs in a coroutine (a task) resumed by the
// loop. A C function that must wait (delivery report, poll, sleep) calls
// prepare_wait() and returns lua_yield(); whoever completes the operation later
// calls wake_begin()/wake_end() with the token, pushing the results onto the
// task's stack. Tokens carry a sequence number so a late completion (after a
// timeout or a cancellation) is ignored instead of resuming the wrong wait.
#pragma once
#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <lua.hpp>

namespace klua {

class Runtime;

struct WaitToken {
  uint64_t task = 0;
  uint64_t seq = 0;
  explicit operator bool() const { return task != 0; }
};

// What a wait's timer means when it fires.
enum class OnTimeout {
  TimedOutError,  // resume with nil, _TIMED_OUT error naming the op (default for every Kafka wait)
  ResumeEmpty,    // resume with no values (sleep, poll returning nil)
};

class Scheduler {
 public:
  explicit Scheduler(Runtime& rt);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;
  // The coroutine of the task running now (nullptr between tasks); read by the REPL's SIGINT
  // handler to tell a chunk that computes from one that waits.
  lua_State* running_coroutine() const;

  // Creates a task running the function at stack index -(nargs+1) with the nargs values above it
  // (all popped from L). It starts on a later loop turn. Returns the task id.
  uint64_t spawn(lua_State* L, int nargs, bool is_main = false);
  // Pushes the Lua task object for id (a userdata with join/cancel/status).
  void push_task_object(lua_State* L, uint64_t id);

  // For a lua_CFunction about to wait. Raises a Lua error when L is not a task's coroutine or
  // when the task was cancelled. timeout_ms < 0 means no timeout.
  WaitToken prepare_wait(lua_State* L, const char* op, double timeout_ms,
                         OnTimeout on_timeout = OnTimeout::TimedOutError);
  // Abandons a prepared wait that will not be yielded after all.
  void abandon_wait(WaitToken t);
  // Per-wait cleanup: `cleanup` runs once when the wait ends without its owner's wake (timeout,
  // cancellation, abandon_wait), so that the owner drops what it kept for the wait (a timed-out
  // c:poll leaves no token behind). The owner's own wake_end drops it unrun; so does the end of
  // the task. Keep it small (a pointer and an iterator fit std::function without allocating).
  void on_wait_end(WaitToken t, std::function<void()> cleanup);
  // Returns the coroutine to push results onto, or nullptr when the token is stale.
  lua_State* wake_begin(WaitToken t);
  // Schedules the task to resume with the nresults values pushed since wake_begin.
  void wake_end(WaitToken t, int nresults);
  // Convenience: wake with no values.
  void wake(WaitToken t);

  // True when L is a task's coroutine that can wait.
  bool can_wait(lua_State* L) const;
  // Raises KLUA_CANCELLED if the current task was cancelled (used by calls that do not wait).
  void check_cancelled(lua_State* L);

  // Whether some unfinished task was cancelled: fast paths that cannot raise (FFI calls) leave
  // the work to the checking C functions while this is true.
  bool any_cancelled() const { return cancelled_live_ > 0; }
  void cancel(uint64_t id);
  // Cancels every task except the shielded ones (on SIGINT/SIGTERM).
  void cancel_all();
  // For the stop hook of a signal (host/signals.cpp), running in L: true when L runs user code
  // (not klua's own chunks, not a C function) of an unshielded task, which is then marked
  // cancelled and the hook raises KLUA_CANCELLED there. Once the loop has cancelled the tasks
  // (only_cancelled), only those: a task started afterwards (a rebalance hook run by a closing
  // consumer) is the shutdown's own work.
  bool cancel_for_signal(lua_State* L, lua_Debug* ar, bool only_cancelled);
  void set_shielded(uint64_t id);
  bool all_done() const { return live_tasks_ == 0; }
  bool main_done() const { return main_done_; }
  size_t live_tasks() const { return live_tasks_; }

  // Pushes the Lua function that wraps a waiting C function so that a cancellation raises
  // KLUA_CANCELLED from the call site. Wrapped: fn(...) -> check(fn(...)).
  void push_waiting(lua_State* L, lua_CFunction fn);
  // The same for the function on top of the stack (a C closure with upvalues); replaces it.
  void wrap_waiting(lua_State* L);

  void open(lua_State* L, int klua_table);  // spawn, sleep, task metatable

 private:
  struct Task;
  // The waits of one timeout duration, in deadline order (each new one is due last): one uv
  // timer per distinct duration instead of one armed and stopped per wait, and an O(1) unlink
  // when a wait completes (thousands of waiting tasks made uv_timer_start/stop's heap the cost).
  struct TimerList {
    Scheduler* sched = nullptr;
    uint64_t duration = 0;
    Task* head = nullptr;
    Task* tail = nullptr;
    uv_timer_t timer;
  };
  Task* find(uint64_t id) const;
  void arm_timeout(Task& t, uint64_t duration_ms);
  void disarm_timeout(Task& t);
  void sweep_timer_lists();
  static constexpr size_t kMaxIdleTimerLists = 64;
  Task* task_of(lua_State* L) const;
  void make_ready(Task& t, int nargs);
  void resume(Task& t);
  void finish(Task& t, int status);
  void run_ready();
  void release(Task& t);
  void update_keepalive();
  static void on_idle(uv_idle_t* h);
  static void on_timer(uv_timer_t* h);
  void fire_timeout(Task& t);

  static int l_spawn(lua_State* L);
  static int l_spawn_shielded(lua_State* L);
  static int l_sleep(lua_State* L);
  static int l_join(lua_State* L);
  static int l_cancel(lua_State* L);
  static int l_status(lua_State* L);
  static int l_task_gc(lua_State* L);
  static int l_task_tostring(lua_State* L);
  static int l_current(lua_State* L);

  Runtime& rt_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Task>> tasks_;
  std::unordered_map<lua_State*, Task*> by_thread_;
  // Lookup shortcuts (10,000 tasks make every hash lookup a cache miss): the task being resumed
  // (prepare_wait, can_wait and check_cancelled all ask for it) and the last task found by id
  // (wake_begin is followed by wake_end on the same token). Cleared when the task is released.
  Task* running_ = nullptr;
  mutable Task* found_ = nullptr;
  std::deque<uint64_t> ready_;
  size_t live_tasks_ = 0;
  size_t waiting_ = 0;
  size_t cancelled_live_ = 0;  // unfinished tasks with cancelled set
  bool main_done_ = false;
  uv_idle_t idle_;
  uv_async_t keepalive_;  // referenced while a task waits, so the loop does not end under it
  int wrap_ref_ = LUA_NOREF;  // Lua function(fn) -> wrapped fn
  std::unordered_map<uint64_t, std::unique_ptr<TimerList>> timer_lists_;  // by duration
  TimerList* last_list_ = nullptr;  // most waits share one duration: skip the map lookup
};

// Sentinel pushed as the first resume value when a wait is cancelled.
void* cancel_sentinel();

}  // namespace klua
