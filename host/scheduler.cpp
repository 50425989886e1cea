#include "host/scheduler.hpp"

#include <fmt/format.h>

#include <cstring>

#include "host/deprecation.hpp"
#include "host/error.hpp"
#include "host/lua_chunks.hpp"
#include "host/runtime.hpp"

namespace klua {

namespace {
char cancel_marker;
const char* const TASK_MT = "klua.task";

struct TaskHandle {
  uint64_t id;
};

}  // namespace

void* cancel_sentinel() { return &cancel_marker; }

struct Scheduler::Task {
  uint64_t id = 0;
  lua_State* co = nullptr;
  int thread_ref = LUA_NOREF;
  enum State { Ready, Running, Waiting, Done, Failed } state = Ready;
  bool is_main = false;
  bool cancelled = false;
  bool shielded = false;    // not cancelled by cancel_all (signals); task:cancel() still works
  bool has_handle = false;  // a Lua task object exists; results are kept for join
  bool finishing = false;   // inside finish(): a GC of the handle must not free the task
  int ready_nargs = 0;
  uint64_t seq = 0;  // current wait's sequence
  const char* wait_op = "";
  double wait_timeout_ms = -1;
  OnTimeout on_timeout = OnTimeout::TimedOutError;
  // Linked into a TimerList while a wait with a timeout is pending.
  TimerList* tlist = nullptr;
  Task* tprev = nullptr;
  Task* tnext = nullptr;
  uint64_t deadline = 0;  // loop time (ms) at which the wait times out
  Scheduler* sched = nullptr;
  int result_ref = LUA_NOREF;  // table {n=, ...} of results, or the error
  std::vector<WaitToken> joiners;
  std::function<void()> wait_cleanup;  // see on_wait_end
  void run_wait_cleanup() {
    if (!wait_cleanup) return;
    auto fn = std::move(wait_cleanup);
    wait_cleanup = nullptr;
    fn();
  }
};

Scheduler::Scheduler(Runtime& rt) : rt_(rt) {
  uv_idle_init(rt_.loop(), &idle_);
  idle_.data = this;
  uv_async_init(rt_.loop(), &keepalive_, nullptr);
  uv_unref(reinterpret_cast<uv_handle_t*>(&keepalive_));
}

Scheduler::~Scheduler() {
  for (auto& [id, t] : tasks_) t->tlist = nullptr;
  for (auto& [d, l] : timer_lists_) {
    // The handle lives inside the list: hand the list's ownership to the close callback.
    TimerList* list = l.release();
    uv_close(reinterpret_cast<uv_handle_t*>(&list->timer),
             [](uv_handle_t* h) { delete static_cast<TimerList*>(h->data); });
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&keepalive_), nullptr);
}

Scheduler::Task* Scheduler::find(uint64_t id) const {
  if (found_ && found_->id == id) return found_;
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return nullptr;
  return found_ = it->second.get();
}

Scheduler::Task* Scheduler::task_of(lua_State* L) const {
  if (running_ && running_->co == L) return running_;
  auto it = by_thread_.find(L);
  return it == by_thread_.end() ? nullptr : it->second;
}

uint64_t Scheduler::spawn(lua_State* L, int nargs, bool is_main) {
  auto t = std::make_unique<Task>();
  t->id = next_id_++;
  t->is_main = is_main;
  t->sched = this;
  t->co = lua_newthread(L);
  t->thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_xmove(L, t->co, nargs + 1);
  by_thread_[t->co] = t.get();
  uint64_t id = t->id;
  Task& ref = *t;
  tasks_[id] = std::move(t);
  ++live_tasks_;
  make_ready(ref, nargs);
  return id;
}

void Scheduler::make_ready(Task& t, int nargs) {
  t.state = Task::Ready;
  t.ready_nargs = nargs;
  ready_.push_back(t.id);
  uv_idle_start(&idle_, on_idle);
}

void Scheduler::on_idle(uv_idle_t* h) { static_cast<Scheduler*>(h->data)->run_ready(); }

void Scheduler::run_ready() {
  // Only the tasks ready at the start of this pass run now: a task that yields straight back
  // (sleep(0)) runs again on the next loop turn, after I/O.
  size_t n = ready_.size();
  for (size_t i = 0; i < n && !ready_.empty() && !rt_.exiting(); ++i) {
    uint64_t id = ready_.front();
    ready_.pop_front();
    Task* t = find(id);
    if (t && t->state == Task::Ready) resume(*t);
  }
  if (ready_.empty() || rt_.exiting()) uv_idle_stop(&idle_);
  update_keepalive();
}

lua_State* Scheduler::running_coroutine() const { return running_ ? running_->co : nullptr; }

void Scheduler::resume(Task& t) {
  t.state = Task::Running;
  Task* outer = running_;
  running_ = &t;
  int status = lua_resume(t.co, t.ready_nargs);
  running_ = outer;
  t.ready_nargs = 0;
  if (status == LUA_YIELD) {
    if (t.state == Task::Running) {
      // A plain coroutine.yield() in a task: give the other tasks a turn.
      lua_settop(t.co, 0);
      if (!rt_.exiting()) make_ready(t, 0);
    } else {
      // Waiting: the C function yielded no values; keep the stack clean for the results.
      lua_settop(t.co, 0);
    }
    return;
  }
  finish(t, status);
}

void Scheduler::finish(Task& t, int status) {
  lua_State* L = rt_.lua();
  // finish() allocates (results, errors, joiners' values): a GC step may collect this task's
  // handle meanwhile, and its __gc must not free the task under us.
  t.finishing = true;
  --live_tasks_;
  if (t.cancelled) --cancelled_live_;
  if (t.is_main) main_done_ = true;
  if (status == 0 && !t.has_handle && t.joiners.empty()) {
    // Nobody can ask for the results (no task object, so no join): the task is released below
    // without them. A server's handler task, a worker's: a table and a registry ref saved each.
    t.state = Task::Done;
  } else if (status == 0) {
    t.state = Task::Done;
    int n = lua_gettop(t.co);
    lua_createtable(L, n, 1);
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    for (int i = 1; i <= n; ++i) {
      lua_pushvalue(t.co, i);
      lua_xmove(t.co, L, 1);
      lua_rawseti(L, -2, i);
    }
    t.result_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    t.state = Task::Failed;
    // Keep the error object; build the traceback from the dead coroutine's frames.
    lua_pushvalue(t.co, -1);
    lua_xmove(t.co, L, 1);
    bool cancelled = is_error(L, -1) && error_field(L, -1, "name") == ERR_CANCELLED;
    std::string msg = to_display_string(L, -1);
    luaL_traceback(L, t.co, nullptr, 0);
    std::string tb = lua_tostring(L, -1) ? lua_tostring(L, -1) : "";
    lua_pop(L, 1);
    if (is_error(L, -1) && !tb.empty()) {
      lua_pushlstring(L, tb.data(), tb.size());
      lua_setfield(L, -2, "traceback");
    }
    if (t.joiners.empty() && !cancelled) {
      // Nobody is waiting for this task's outcome: the error ends the script (unless a hook,
      // the REPL's, reports it and goes on).
      lua_pushvalue(L, -1);
      if (rt_.task_error_hook() && rt_.task_error_hook()(L, tb, t.id))
        lua_pop(L, 1);
      else
        rt_.fail(L, tb);
    }
    t.result_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_settop(t.co, 0);
  auto joiners = std::move(t.joiners);
  for (WaitToken j : joiners) {
    lua_State* co = wake_begin(j);
    if (!co) continue;
    lua_rawgeti(co, LUA_REGISTRYINDEX, t.result_ref);
    int n = 0;
    if (t.state == Task::Done) {
      lua_getfield(co, -1, "n");
      n = static_cast<int>(lua_tointeger(co, -1));
      lua_pop(co, 1);
      for (int i = 1; i <= n; ++i) lua_rawgeti(co, -1 - (i - 1), i);
      lua_remove(co, -(n + 1));
    } else {
      lua_pushnil(co);
      lua_insert(co, -2);
      n = 2;
    }
    wake_end(j, n);
  }
  t.finishing = false;
  if (!t.has_handle) release(t);
}

void Scheduler::release(Task& t) {
  lua_State* L = rt_.lua();
  disarm_timeout(t);
  luaL_unref(L, LUA_REGISTRYINDEX, t.result_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, t.thread_ref);
  by_thread_.erase(t.co);
  if (found_ == &t) found_ = nullptr;
  if (running_ == &t) running_ = nullptr;
  tasks_.erase(t.id);  // destroys t
}

bool Scheduler::can_wait(lua_State* L) const {
  Task* t = task_of(L);
  return t && t->state == Task::Running;
}

void Scheduler::check_cancelled(lua_State* L) {
  Task* t = task_of(L);
  if (t && t->cancelled) {
    ErrorSpec e;
    e.code = CODE_CANCELLED;
    e.name = ERR_CANCELLED;
    e.message = "the task was cancelled";
    raise_error(L, e);
  }
}

WaitToken Scheduler::prepare_wait(lua_State* L, const char* op, double timeout_ms, OnTimeout on_timeout) {
  Task* t = task_of(L);
  if (!t || t->state != Task::Running) {
    raise_misuse(L, "", fmt::format("{} must be called from a klua task (the main chunk, a klua.spawn function or a "
                                    "hook), not from a plain coroutine or an inline callback such as on_delivery", op));
  }
  check_cancelled(L);
  t->state = Task::Waiting;
  t->seq++;
  t->wait_op = op;
  t->wait_timeout_ms = timeout_ms;
  t->on_timeout = on_timeout;
  ++waiting_;
  if (timeout_ms >= 0 && timeout_ms < 1e15)  // infinite or absurdly long: no timer at all
    arm_timeout(*t, static_cast<uint64_t>(timeout_ms + 0.999));
  update_keepalive();
  return WaitToken{t->id, t->seq};
}

void Scheduler::arm_timeout(Task& t, uint64_t duration) {
  TimerList* l = last_list_;
  if (!l || l->duration != duration) {
    auto found = timer_lists_.find(duration);
    if (found == timer_lists_.end() && timer_lists_.size() >= kMaxIdleTimerLists) sweep_timer_lists();
    auto& slot = timer_lists_[duration];
    if (!slot) {
      slot = std::make_unique<TimerList>();
      slot->sched = this;
      slot->duration = duration;
      uv_timer_init(rt_.loop(), &slot->timer);
      slot->timer.data = slot.get();
    }
    l = last_list_ = slot.get();
  }
  // The loop's cached time is as old as the last loop turn: after a script ran for seconds without
  // waiting (taking buffered messages), a 5 s wait armed from it expired at once. Refresh it (a
  // coarse clock read) first; uv_now stays monotonic, so a list's deadlines never decrease.
  uv_update_time(rt_.loop());
  t.deadline = uv_now(rt_.loop()) + duration;
  t.tlist = l;
  t.tnext = nullptr;
  t.tprev = l->tail;
  if (l->tail) {
    l->tail->tnext = &t;
  } else {
    l->head = &t;
    uv_timer_start(&l->timer, on_timer, duration, 0);
  }
  l->tail = &t;
}

// Waits with many different durations (a jittered backoff, a poll with the time left) would
// otherwise leave one idle list and uv_timer per duration ever used. Lists with no wait are
// closed once there are many; the memory goes in the close callback, on a later loop turn, so an
// on_timer() still running for one of them (a timed-out task's resumption armed a new wait) never
// touches freed memory.
void Scheduler::sweep_timer_lists() {
  for (auto it = timer_lists_.begin(); it != timer_lists_.end();) {
    if (it->second->head) {
      ++it;
      continue;
    }
    TimerList* list = it->second.release();
    if (last_list_ == list) last_list_ = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&list->timer),
             [](uv_handle_t* h) { delete static_cast<TimerList*>(h->data); });
    it = timer_lists_.erase(it);
  }
}

void Scheduler::disarm_timeout(Task& t) {
  TimerList* l = t.tlist;
  if (!l) return;
  (t.tprev ? t.tprev->tnext : l->head) = t.tnext;
  (t.tnext ? t.tnext->tprev : l->tail) = t.tprev;
  t.tlist = nullptr;
  t.tprev = t.tnext = nullptr;
  // An armed timer keeps the loop alive: stop it when nothing waits on this list. Otherwise it
  // stays armed for the old head's deadline and re-arms itself for the new head when it fires.
  if (!l->head) uv_timer_stop(&l->timer);
}

void Scheduler::on_timer(uv_timer_t* h) {
  auto* l = static_cast<TimerList*>(h->data);
  Scheduler* s = l->sched;
  uint64_t now = uv_now(s->rt_.loop());
  // Every wait due now times out; each wake unlinks its task from the list's head.
  while (l->head && l->head->deadline <= now) s->fire_timeout(*l->head);
  if (l->head) uv_timer_start(&l->timer, on_timer, l->head->deadline - now, 0);
}

void Scheduler::fire_timeout(Task& task) {
  Task* t = &task;
  Scheduler* s = this;
  WaitToken tok{t->id, t->seq};
  lua_State* co = s->wake_begin(tok);
  if (!co) {
    disarm_timeout(*t);  // not waiting any more (cannot happen: a completed wait unlinks)
    return;
  }
  t->run_wait_cleanup();
  if (t->on_timeout == OnTimeout::ResumeEmpty) {
    s->wake_end(tok, 0);
    return;
  }
  ErrorSpec e;
  e.code = CODE_TIMED_OUT;
  e.name = ERR_TIMED_OUT;
  e.retriable = true;
  e.op = t->wait_op;
  e.timeout_ms = t->wait_timeout_ms;
  e.message = fmt::format("{} timed out after {} ms", t->wait_op, t->wait_timeout_ms);
  nil_error(co, e);
  s->wake_end(tok, 2);
}

void Scheduler::abandon_wait(WaitToken tok) {
  Task* t = find(tok.task);
  if (!t || t->seq != tok.seq || t->state != Task::Waiting) return;
  t->run_wait_cleanup();
  t->seq++;
  t->state = Task::Running;
  disarm_timeout(*t);
  --waiting_;
  update_keepalive();
}

void Scheduler::on_wait_end(WaitToken tok, std::function<void()> cleanup) {
  Task* t = find(tok.task);
  if (!t || t->seq != tok.seq || t->state != Task::Waiting) return;
  t->wait_cleanup = std::move(cleanup);
}

lua_State* Scheduler::wake_begin(WaitToken tok) {
  Task* t = find(tok.task);
  if (!t || t->seq != tok.seq || t->state != Task::Waiting) return nullptr;
  return t->co;
}

void Scheduler::wake_end(WaitToken tok, int nresults) {
  Task* t = find(tok.task);
  if (!t) return;
  t->seq++;  // any other completion of this wait is now stale
  t->wait_cleanup = nullptr;
  disarm_timeout(*t);
  --waiting_;
  make_ready(*t, nresults);
}

void Scheduler::wake(WaitToken tok) {
  if (wake_begin(tok)) wake_end(tok, 0);
}

void Scheduler::update_keepalive() {
  // Kafka handles' poll watchers are unreferenced; a waiting task is what keeps the loop alive.
  if (waiting_ > 0 && !rt_.exiting())
    uv_ref(reinterpret_cast<uv_handle_t*>(&keepalive_));
  else
    uv_unref(reinterpret_cast<uv_handle_t*>(&keepalive_));
}

void Scheduler::cancel(uint64_t id) {
  Task* t = find(id);
  if (!t || t->state == Task::Done || t->state == Task::Failed) return;
  if (!t->cancelled) ++cancelled_live_;
  t->cancelled = true;
  if (t->state == Task::Waiting) {
    t->run_wait_cleanup();
    WaitToken tok{t->id, t->seq};
    lua_State* co = wake_begin(tok);
    lua_pushlightuserdata(co, cancel_sentinel());
    ErrorSpec e;
    e.code = CODE_CANCELLED;
    e.name = ERR_CANCELLED;
    e.op = t->wait_op;
    e.message = fmt::format("cancelled while waiting in {}", t->wait_op);
    push_error(co, e);
    wake_end(tok, 2);
  }
}

void Scheduler::cancel_all() {
  std::vector<uint64_t> ids;
  for (auto& [id, t] : tasks_)
    if (!t->shielded) ids.push_back(id);
  for (uint64_t id : ids) cancel(id);
}

bool Scheduler::cancel_for_signal(lua_State* L, lua_Debug* ar, bool only_cancelled) {
  Task* t = running_;
  // running_ is the task being resumed; L is its coroutine or a plain coroutine it resumed. For a
  // call hook, ar is the function called.
  if (!t || t->shielded || t->state != Task::Running || (only_cancelled && !t->cancelled)) return false;
  if (!lua_getinfo(L, "S", ar)) return false;
  lua_Debug caller;
  if (std::strcmp(ar->what, "C") == 0) {
    // A call hook for a C function: judge by the code calling it (the error is raised at its call).
    if (!lua_getstack(L, 1, &caller) || !lua_getinfo(L, "S", &caller)) return false;
    ar = &caller;
  }
  if (std::strcmp(ar->what, "C") == 0 || is_klua_source(ar->source)) return false;
  if (!t->cancelled) ++cancelled_live_;
  t->cancelled = true;
  return true;
}

void Scheduler::set_shielded(uint64_t id) {
  if (Task* t = find(id)) t->shielded = true;
}

void Scheduler::push_waiting(lua_State* L, lua_CFunction fn) {
  lua_pushcfunction(L, fn);
  wrap_waiting(L);
}

void Scheduler::wrap_waiting(lua_State* L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, wrap_ref_);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
}

// ---- Lua API ---------------------------------------------------------------

static Scheduler& sched(lua_State* L) { return Runtime::from(L).scheduler(); }

int Scheduler::l_spawn(lua_State* L) {
  check_arg_type(L, 1, LUA_TFUNCTION, "klua.spawn");
  int nargs = lua_gettop(L) - 1;
  Scheduler& s = sched(L);
  uint64_t id = s.spawn(L, nargs);
  s.push_task_object(L, id);
  return 1;
}

// klua.spawn_shielded(fn, ...): a task that a signal does not cancel, for work that must finish
// once started (a handler in flight, a final commit). A second signal still exits at once.
int Scheduler::l_spawn_shielded(lua_State* L) {
  check_arg_type(L, 1, LUA_TFUNCTION, "klua.spawn_shielded");
  int nargs = lua_gettop(L) - 1;
  Scheduler& s = sched(L);
  uint64_t id = s.spawn(L, nargs);
  s.set_shielded(id);
  s.push_task_object(L, id);
  return 1;
}

void Scheduler::push_task_object(lua_State* L, uint64_t id) {
  auto* h = static_cast<TaskHandle*>(lua_newuserdata(L, sizeof(TaskHandle)));
  h->id = id;
  luaL_getmetatable(L, TASK_MT);
  lua_setmetatable(L, -2);
  if (Task* t = find(id)) t->has_handle = true;
}

int Scheduler::l_sleep(lua_State* L) {
  check_arg_type(L, 1, LUA_TNUMBER, "klua.sleep");
  double ms = lua_tonumber(L, 1);
  if (!(ms >= 0)) raise_bad_argument(L, 1, "klua.sleep", "sleep time must be >= 0 ms");
  sched(L).prepare_wait(L, "klua.sleep", ms, OnTimeout::ResumeEmpty);
  return lua_yield(L, 0);
}

int Scheduler::l_join(lua_State* L) {
  auto* h = static_cast<TaskHandle*>(luaL_checkudata(L, 1, TASK_MT));
  // task:join([{timeout_ms=}]); the bare number of earlier releases still works, with a warning once.
  double timeout;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    warn_deprecated(L, "task:join(timeout_ms)", "task:join({timeout_ms=...})");
    timeout = lua_tonumber(L, 2);
  } else {
    timeout = check_timeout_opts(L, 2, "task:join", -1);
  }
  Scheduler& s = sched(L);
  Task* t = s.find(h->id);
  if (!t) raise_misuse(L, "task:join", "unknown task");
  if (t == s.task_of(L)) raise_misuse(L, "task:join", "a task cannot join itself");
  if (t->state == Task::Done) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->result_ref);
    lua_getfield(L, -1, "n");
    int n = static_cast<int>(lua_tointeger(L, -1));
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many results");
    for (int i = 1; i <= n; ++i) lua_rawgeti(L, -i, i);
    return n;
  }
  if (t->state == Task::Failed) {
    lua_pushnil(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->result_ref);
    return 2;
  }
  WaitToken tok = s.prepare_wait(L, "task:join", timeout);
  t->joiners.push_back(tok);
  return lua_yield(L, 0);
}

int Scheduler::l_cancel(lua_State* L) {
  auto* h = static_cast<TaskHandle*>(luaL_checkudata(L, 1, TASK_MT));
  sched(L).cancel(h->id);
  return 0;
}

int Scheduler::l_status(lua_State* L) {
  auto* h = static_cast<TaskHandle*>(luaL_checkudata(L, 1, TASK_MT));
  Task* t = sched(L).find(h->id);
  static const char* names[] = {"ready", "running", "waiting", "done", "failed"};
  lua_pushstring(L, t ? names[t->state] : "done");
  return 1;
}

int Scheduler::l_task_gc(lua_State* L) {
  auto* h = static_cast<TaskHandle*>(lua_touserdata(L, 1));
  Scheduler& s = sched(L);
  if (Task* t = s.find(h->id)) {
    t->has_handle = false;
    if ((t->state == Task::Done || t->state == Task::Failed) && !t->finishing) s.release(*t);
  }
  return 0;
}

int Scheduler::l_task_tostring(lua_State* L) {
  auto* h = static_cast<TaskHandle*>(luaL_checkudata(L, 1, TASK_MT));
  lua_pushfstring(L, "klua.task(%d)", static_cast<int>(h->id));
  return 1;
}

int Scheduler::l_current(lua_State* L) {
  Scheduler& s = sched(L);
  Task* t = s.task_of(L);
  if (!t) return 0;
  s.push_task_object(L, t->id);
  return 1;
}

void Scheduler::open(lua_State* L, int klua_table) {
  if (klua_table < 0) klua_table = lua_gettop(L) + klua_table + 1;
  load_lua_chunk(L, "host/lua/wait.lua");
  lua_pushlightuserdata(L, cancel_sentinel());
  lua_call(L, 1, 1);
  wrap_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);

  luaL_newmetatable(L, TASK_MT);
  lua_newtable(L);
  push_waiting(L, l_join);
  lua_setfield(L, -2, "join");
  lua_pushcfunction(L, l_cancel);
  lua_setfield(L, -2, "cancel");
  lua_pushcfunction(L, l_status);
  lua_setfield(L, -2, "status");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_task_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_task_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  lua_pushcfunction(L, l_spawn);
  lua_setfield(L, klua_table, "spawn");
  lua_pushcfunction(L, l_spawn_shielded);
  lua_setfield(L, klua_table, "spawn_shielded");
  push_waiting(L, l_sleep);
  lua_setfield(L, klua_table, "sleep");
  lua_pushcfunction(L, l_current);
  lua_setfield(L, klua_table, "current_task");
}

}  // namespace klua
