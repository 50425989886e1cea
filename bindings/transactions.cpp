// Transactions on klua.producer (a producer created with ["transactional.id"] = "..."):
//
//   p:init_transactions([timeout_ms])      optional: the first p:begin() does it
//   p:begin([timeout_ms])                  timeout_ms bounds that lazy init_transactions
//   p:send_offsets(consumer [, offsets] [, timeout_ms])
//   p:commit([timeout_ms]), p:abort([timeout_ms])
//   p:transaction(fn, ...)                 begin; fn(...); commit; fn's results or nil, err
//
// Each returns true or nil, err; err.retriable, err.txn_requires_abort and err.fatal are
// librdkafka's. Default timeout 60 s. init/commit/abort that fail with a retriable error (a
// timeout) may be called again: librdkafka resumes the same operation. txn_requires_abort: call
// p:abort() and start over. fatal: the producer is unusable (e.g. fenced). A non-transactional
// producer gets nil, _NOT_CONFIGURED.
//
// send_offsets' offsets: a partition list {{topic=, partition=, offset=}, ...} (offset = the next
// to read) or a message (msg.offset + 1). Without them, the consumer's positions on its
// assignment as the script sees them (c:position(): fetched but unpolled messages not counted).
//
// librdkafka's init/send_offsets/commit/abort block: each runs on the runtime's executor (the
// one off-loop pool, host/executor.hpp) and the task is resumed by the loop when it returns; the
// pool thread never touches Lua. Calls on one producer run one at a time in call
// order: a call made while another runs waits its turn, and its timeout_ms covers the wait and
// the call. begin() runs on the loop (it does not block). A call whose task is cancelled or
// times out is not interrupted: librdkafka finishes it, the result is dropped, and later calls
// wait for it.
//
// The handle is never destroyed under a running call: the producer userdata is anchored while
// calls are queued or running; p:close() (wrapped here) refuses queued calls, aborts an open
// transaction (10 s), waits for the running call, then closes; at exit a Closable of priority 5
// (before producers, 10) does the same for every transactional producer. p:transaction(fn)
// aborts when fn raises (also when its task is cancelled: that abort is queued, not awaited).
#include <librdkafka/rdkafka.h>
#include <uv.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <fmt/format.h>
#include <memory>
#include <string>
#include <vector>

#include "bindings/client.hpp"

namespace klua {

namespace {
const double DEFAULT_TIMEOUT_MS = 60000;
const double WAIT_MARGIN_MS = 5000;          // the task's own timer: a safety net behind librdkafka's
const double CLOSE_ABORT_TIMEOUT_MS = 10000;  // aborting an open transaction at close / exit
const char* const STATES_KEY = "klua.transactions.states";  // weak-keyed: producer userdata -> state
const char* const STATE_MT = "klua.transactions.state";
const char* const GUARD_KEY = "klua.transactions.guard";
const char* const ORIG_CLOSE_KEY = "klua.transactions.producer_close";

enum class Kind { Init, Begin, SendOffsets, Commit, Abort };

struct TxnState;

struct Op {
  Kind kind = Kind::Init;
  const char* name = "";  // "p:commit", as in errors
  WaitToken tok;          // empty for the internal aborts at close
  double timeout_ms = DEFAULT_TIMEOUT_MS;
  uint64_t deadline = 0;  // uv_now() ms
  int run_timeout = 0;    // what librdkafka gets: the rest of timeout_ms when the call starts
  int anchor = LUA_NOREF;  // the producer userdata, kept alive while the op exists
  rd_kafka_topic_partition_list_t* offsets = nullptr;
  rd_kafka_consumer_group_metadata_t* cgmd = nullptr;
  std::string group;
  rd_kafka_error_t* error = nullptr;  // the blocking call's result (set on the worker thread)
  bool did_init = false;
  std::shared_ptr<TxnState> state;

  ~Op() {
    if (offsets) rd_kafka_topic_partition_list_destroy(offsets);
    if (cgmd) rd_kafka_consumer_group_metadata_destroy(cgmd);
    if (error) rd_kafka_error_destroy(error);
  }
};

struct TxnState {
  rd_kafka_t* rk = nullptr;
  std::string name;
  bool transactional = false;
  bool initialized = false;  // init_transactions returned success
  bool in_txn = false;       // begin succeeded; no commit/abort succeeded since
  bool closing = false;      // p:close() or exit: no new calls
  Op* running = nullptr;
  std::deque<Op*> queue;
  std::vector<WaitToken> idle_waiters;  // p:close() calls waiting for the running call
  int deferred_close = LUA_NOREF;       // producer to close once idle (close called outside a task)
  bool idle() const { return !running && queue.empty(); }
};

struct StateBox {
  std::shared_ptr<TxnState> s;
};

ErrorSpec closed_error(const char* op) {
  ErrorSpec e;
  e.code = CODE_CLOSED;
  e.name = ERR_CLOSED;
  e.op = op;
  e.message = fmt::format("{}: the producer is closing", op);
  return e;
}

class Guard : public Closable {
 public:
  explicit Guard(Runtime& rt) : rt_(rt) {
    async_ = new uv_async_t;
    uv_async_init(rt_.loop(), async_, on_async);
    async_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(async_));
    rt_.add_closable(this);
  }

  ~Guard() override {
    rt_.remove_closable(this);
    // The runtime stopped its executor before closing the Lua state: every call has completed.
    // What is left was queued and never started. The Lua state is closing: no unref.
    uv_close(reinterpret_cast<uv_handle_t*>(async_), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
  }

  int close_priority() const override { return 5; }
  bool is_closed() const override { return closing_all_ && live_ == 0; }
  void begin_close() override;
  bool closing_all() const { return closing_all_; }

  // Queues op on its state (the task, if any, has prepared its wait); it starts on a later loop
  // turn, so a completion never runs inside the call that made it.
  void submit(Op* op) {
    op->deadline = uv_now(rt_.loop()) + static_cast<uint64_t>(timeout_int(op->timeout_ms));
    op->state->queue.push_back(op);
    ++live_;
    schedule_pump(op->state);
  }

  // Stops new calls on s, fails its queued calls and queues an abort of an open transaction.
  // The producer userdata is at idx.
  void close_state(lua_State* L, int idx, const std::shared_ptr<TxnState>& s, const char* why);

 private:
  void schedule_pump(const std::shared_ptr<TxnState>& s) {
    to_pump_.push_back(s);
    update_ref();
    uv_async_send(async_);
  }
  void update_ref() {
    if (live_ > 0 || !to_pump_.empty())
      uv_ref(reinterpret_cast<uv_handle_t*>(async_));
    else
      uv_unref(reinterpret_cast<uv_handle_t*>(async_));
  }
  static void on_async(uv_async_t* h);
  void pump(const std::shared_ptr<TxnState>& s);
  void start(Op* op);
  void complete(Op* op);
  void release(Op* op);
  void on_idle(TxnState& s);
  static void work(Op* op);

  Runtime& rt_;
  uv_async_t* async_ = nullptr;
  std::vector<Op*> running_;
  std::vector<std::shared_ptr<TxnState>> to_pump_;
  size_t live_ = 0;  // queued + running ops
  bool closing_all_ = false;
};

// On an executor thread: never touches Lua.
void Guard::work(Op* op) {
  rd_kafka_t* rk = op->state->rk;
  switch (op->kind) {
    case Kind::Init:
    case Kind::Begin:
      op->did_init = true;
      op->error = rd_kafka_init_transactions(rk, op->run_timeout);
      break;
    case Kind::SendOffsets:
      op->error = rd_kafka_send_offsets_to_transaction(rk, op->offsets, op->cgmd, op->run_timeout);
      break;
    case Kind::Commit:
      op->error = rd_kafka_commit_transaction(rk, op->run_timeout);
      break;
    case Kind::Abort:
      op->error = rd_kafka_abort_transaction(rk, op->run_timeout);
      break;
  }
}

void Guard::on_async(uv_async_t* h) {
  auto* g = static_cast<Guard*>(h->data);
  auto pumps = std::move(g->to_pump_);
  g->to_pump_.clear();
  for (auto& s : pumps) g->pump(s);
  g->update_ref();
}

void Guard::pump(const std::shared_ptr<TxnState>& s) {
  Scheduler& sched = rt_.scheduler();
  while (!s->running && !s->queue.empty()) {
    Op* op = s->queue.front();
    s->queue.pop_front();
    if (op->tok && !sched.wake_begin(op->tok)) {
      release(op);  // its task timed out or was cancelled while waiting its turn
      continue;
    }
    start(op);
  }
  if (s->idle()) on_idle(*s);
}

void Guard::start(Op* op) {
  TxnState& s = *op->state;
  uint64_t now = uv_now(rt_.loop());
  if (op->kind == Kind::Abort && !op->tok && !s.in_txn) {
    release(op);  // an internal abort with nothing left to abort
    return;
  }
  if ((op->kind == Kind::Init && s.initialized) || (op->kind == Kind::Begin && s.initialized)) {
    complete(op);  // init already done; begin does not block
    return;
  }
  if (now >= op->deadline) {
    ErrorSpec e;
    e.code = CODE_TIMED_OUT;
    e.name = ERR_TIMED_OUT;
    e.retriable = true;
    e.op = op->name;
    e.timeout_ms = op->timeout_ms;
    e.message = fmt::format("{} timed out after {} ms waiting for the previous transactional call", op->name,
                            op->timeout_ms);
    op->error = nullptr;
    if (op->tok) {
      Scheduler& sched = rt_.scheduler();
      if (lua_State* co = sched.wake_begin(op->tok)) {
        nil_error(co, e);
        sched.wake_end(op->tok, 2);
      }
    }
    release(op);
    return;
  }
  op->run_timeout = static_cast<int>(std::min<uint64_t>(op->deadline - now, INT32_MAX));
  s.running = op;
  running_.push_back(op);
  // librdkafka's transactional calls have no asynchronous form: the runtime's executor runs
  // them; the result comes back to the loop.
  rt_.executor().submit([op] { work(op); },
                        [this, op] {
                          running_.erase(std::remove(running_.begin(), running_.end(), op), running_.end());
                          complete(op);
                        });
}

void Guard::complete(Op* op) {
  TxnState& s = *op->state;
  if (s.running == op) s.running = nullptr;
  rd_kafka_error_t* err = op->error;
  bool closed = false;
  switch (op->kind) {
    case Kind::Init:
      if (!err) s.initialized = true;
      break;
    case Kind::Begin:
      if (op->did_init && !err) s.initialized = true;
      if (!err && s.closing) {
        closed = true;  // closed while init_transactions ran: no transaction to begin
      } else if (!err) {
        op->error = err = rd_kafka_begin_transaction(s.rk);  // non-blocking
        if (!err) s.in_txn = true;
      }
      break;
    case Kind::Commit:
    case Kind::Abort:
      if (!err) s.in_txn = false;
      break;
    case Kind::SendOffsets:
      break;
  }
  if (op->tok) {
    Scheduler& sched = rt_.scheduler();
    if (lua_State* co = sched.wake_begin(op->tok)) {
      if (closed) {
        nil_error(co, closed_error(op->name));
        sched.wake_end(op->tok, 2);
      } else if (err) {
        ErrorSpec e = kafka_error(err);
        e.op = op->name;
        e.group = op->group;
        if (e.code == RD_KAFKA_RESP_ERR__TIMED_OUT) e.timeout_ms = op->timeout_ms;
        nil_error(co, e);
        sched.wake_end(op->tok, 2);
      } else {
        lua_pushboolean(co, 1);
        sched.wake_end(op->tok, 1);
      }
    }
  } else if (err) {
    fmt::print(stderr, "klua: producer {}: aborting the open transaction failed: {}\n", s.name,
               rd_kafka_error_string(err));
  }
  release(op);
}

void Guard::release(Op* op) {
  std::shared_ptr<TxnState> s = op->state;
  luaL_unref(rt_.lua(), LUA_REGISTRYINDEX, op->anchor);
  delete op;
  --live_;
  update_ref();
  // The next queued call starts on a later loop turn (or, inside pump, right away).
  if (!s->queue.empty() && !s->running) schedule_pump(s);
  else if (s->idle()) on_idle(*s);
}

void Guard::on_idle(TxnState& s) {
  Scheduler& sched = rt_.scheduler();
  auto waiters = std::move(s.idle_waiters);
  s.idle_waiters.clear();
  for (WaitToken t : waiters) {
    if (sched.wake_begin(t)) sched.wake_end(t, 0);
  }
  if (s.deferred_close != LUA_NOREF) {
    lua_State* L = rt_.lua();
    int ref = s.deferred_close;
    s.deferred_close = LUA_NOREF;
    lua_getfield(L, LUA_REGISTRYINDEX, ORIG_CLOSE_KEY);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    call_hook(L, 1, 0);
  }
}

void Guard::close_state(lua_State* L, int idx, const std::shared_ptr<TxnState>& s, const char* why) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  if (s->closing) return;
  s->closing = true;
  Scheduler& sched = rt_.scheduler();
  std::deque<Op*> keep;
  auto queued = std::move(s->queue);
  s->queue.clear();
  for (Op* op : queued) {
    if (!op->tok) {
      keep.push_back(op);
      continue;
    }
    if (lua_State* co = sched.wake_begin(op->tok)) {
      nil_error(co, closed_error(op->name));
      sched.wake_end(op->tok, 2);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, op->anchor);
    delete op;
    --live_;
  }
  s->queue = std::move(keep);
  char fatal[256];
  if (s->in_txn && rd_kafka_fatal_error(s->rk, fatal, sizeof fatal) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    fmt::print(stderr, "klua: producer {} {} with a transaction open: aborting it\n", s->name, why);
    auto* op = new Op;
    op->kind = Kind::Abort;
    op->name = "p:abort (at close)";
    op->timeout_ms = CLOSE_ABORT_TIMEOUT_MS;
    op->state = s;
    lua_pushvalue(L, idx);
    op->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
    submit(op);
  }
  update_ref();
}

int l_is_open(lua_State* L) {
  check_producer_handle(L, 1);  // raises when closed
  return 0;
}

void Guard::begin_close() {
  if (closing_all_) return;
  closing_all_ = true;
  lua_State* L = rt_.lua();
  lua_getfield(L, LUA_REGISTRYINDEX, STATES_KEY);
  int states = lua_gettop(L);
  std::vector<int> refs;  // collect first: close_state must not modify the table during lua_next
  lua_pushnil(L);
  while (lua_next(L, states)) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    refs.push_back(luaL_ref(L, LUA_REGISTRYINDEX));
  }
  for (int ref : refs) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    lua_pushvalue(L, -1);
    lua_rawget(L, states);
    auto* box = static_cast<StateBox*>(lua_touserdata(L, -1));
    // A producer already finalized by __gc (weak keys outlive their finalizer by one cycle) or
    // closed has nothing to settle, and its handle must not be used.
    bool open = false;
    if (box && box->s && box->s->transactional && !box->s->closing) {
      lua_pushcfunction(L, l_is_open);
      lua_pushvalue(L, -3);
      open = lua_pcall(L, 1, 0, 0) == 0;
      if (!open) lua_pop(L, 1);
    }
    if (open) close_state(L, -2, box->s, "exits");
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

Guard& guard_of(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, GUARD_KEY);
  auto* g = *static_cast<Guard**>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return *g;
}

// The state of the producer at idx 1 (created on first use). Raises when it is not an open producer.
std::shared_ptr<TxnState> state_of(lua_State* L) {
  rd_kafka_t* rk = check_producer_handle(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, STATES_KEY);
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  if (auto* box = static_cast<StateBox*>(lua_touserdata(L, -1))) {
    auto s = box->s;
    lua_pop(L, 2);
    return s;
  }
  lua_pop(L, 1);
  auto s = std::make_shared<TxnState>();
  s->rk = rk;
  s->name = rd_kafka_name(rk);
  char buf[512];
  buf[0] = '\0';
  size_t n = sizeof buf;
  s->transactional = rd_kafka_conf_get(rd_kafka_conf(rk), "transactional.id", buf, &n) == RD_KAFKA_CONF_OK && buf[0];
  auto* box = static_cast<StateBox*>(lua_newuserdata(L, sizeof(StateBox)));
  new (box) StateBox{s};
  luaL_getmetatable(L, STATE_MT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 1);
  lua_insert(L, -2);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return s;
}

// nil, err when the producer can't take a transactional call now; 0 when it can.
int refuse(lua_State* L, const TxnState& s, const char* op) {
  if (!s.transactional) {
    ErrorSpec e = kafka_error(RD_KAFKA_RESP_ERR__NOT_CONFIGURED,
                              "this producer is not transactional: create it with [\"transactional.id\"] = \"...\"");
    e.op = op;
    return nil_error(L, e);
  }
  if (s.closing || guard_of(L).closing_all()) return nil_error(L, closed_error(op));
  return 0;
}

double opt_timeout(lua_State* L, int idx, const char* op) {
  if (lua_isnoneornil(L, idx)) return DEFAULT_TIMEOUT_MS;
  if (lua_type(L, idx) != LUA_TNUMBER) luaL_error(L, "%s: timeout_ms must be a number, got %s", op, luaL_typename(L, idx));
  double t = lua_tonumber(L, idx);
  if (!(t > 0) || t > INT32_MAX) luaL_error(L, "%s: timeout_ms must be > 0", op);
  return t;
}

// Makes sure the call can wait before anything is allocated (prepare_wait would raise later).
void check_can_wait(lua_State* L, const char* op) {
  Scheduler& s = Runtime::from(L).scheduler();
  if (!s.can_wait(L))
    luaL_error(L, "%s must be called from a klua task (the main chunk, a klua.spawn function or a hook), "
                  "not from a plain coroutine or an inline callback such as on_delivery", op);
  s.check_cancelled(L);
}

int queue_call(lua_State* L, Op* op, const std::shared_ptr<TxnState>& s) {
  Scheduler& sched = Runtime::from(L).scheduler();
  op->state = s;
  lua_pushvalue(L, 1);
  op->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  op->tok = sched.prepare_wait(L, op->name, op->timeout_ms + WAIT_MARGIN_MS);
  guard_of(L).submit(op);
  return lua_yield(L, 0);
}

int simple_call(lua_State* L, Kind kind, const char* name) {
  auto s = state_of(L);
  double timeout = opt_timeout(L, 2, name);
  if (int n = refuse(L, *s, name)) return n;
  check_can_wait(L, name);
  auto* op = new Op;
  op->kind = kind;
  op->name = name;
  op->timeout_ms = timeout;
  return queue_call(L, op, s);
}

// p:init_transactions([timeout_ms]) -> true | nil, err
int l_init(lua_State* L) {
  auto s = state_of(L);
  opt_timeout(L, 2, "p:init_transactions");
  if (int n = refuse(L, *s, "p:init_transactions")) return n;
  if (s->initialized && s->idle()) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return simple_call(L, Kind::Init, "p:init_transactions");
}

// p:begin([timeout_ms]) -> true | nil, err (the timeout bounds the first call's init_transactions)
int l_begin(lua_State* L) {
  auto s = state_of(L);
  opt_timeout(L, 2, "p:begin");
  if (int n = refuse(L, *s, "p:begin")) return n;
  if (s->initialized && s->idle()) {
    if (rd_kafka_error_t* err = rd_kafka_begin_transaction(s->rk)) {
      ErrorSpec e = kafka_error(err);
      rd_kafka_error_destroy(err);
      e.op = "p:begin";
      return nil_error(L, e);
    }
    s->in_txn = true;
    lua_pushboolean(L, 1);
    return 1;
  }
  return simple_call(L, Kind::Begin, "p:begin");
}

int l_commit(lua_State* L) { return simple_call(L, Kind::Commit, "p:commit"); }
int l_abort(lua_State* L) { return simple_call(L, Kind::Abort, "p:abort"); }

// p:send_offsets(consumer [, offsets] [, timeout_ms]) -> true | nil, err
// offsets: a partition list {{topic=, partition=, offset=}, ...} (offset = the next to read) or a
// message (its offset + 1); without it, the consumer's positions on its assignment.
int l_send_offsets(lua_State* L) {
  const char* name = "p:send_offsets";
  auto s = state_of(L);
  rd_kafka_t* crk = check_consumer_handle(L, 2);
  int offsets_idx = 0, timeout_idx = 3;
  if (lua_istable(L, 3)) {
    offsets_idx = 3;
    timeout_idx = 4;
  } else if (!lua_isnoneornil(L, 3) && lua_type(L, 3) != LUA_TNUMBER) {
    return luaL_error(L, "%s: offsets must be a partition list or a message, got %s", name, luaL_typename(L, 3));
  } else if (lua_isnil(L, 3)) {
    timeout_idx = 4;
  }
  double timeout = opt_timeout(L, timeout_idx, name);
  if (int n = refuse(L, *s, name)) return n;
  check_can_wait(L, name);
  rd_kafka_topic_partition_list_t* list = nullptr;
  if (offsets_idx) {
    list = check_partition_list(L, offsets_idx, name, true);
    for (int i = 0; i < list->cnt; ++i) {
      if (list->elems[i].offset < 0) {
        std::string topic = list->elems[i].topic;
        int partition = list->elems[i].partition;
        rd_kafka_topic_partition_list_destroy(list);
        return luaL_error(L, "%s: %s [%d] needs a numeric offset (the next offset to read)", name, topic.c_str(),
                          partition);
      }
    }
  } else {
    // The positions as the script sees them: messages klua fetched but the script has not
    // polled yet are not committed.
    rd_kafka_resp_err_t err;
    list = consumer_positions(L, 2, nullptr, &err);
    if (err) {
      if (list) rd_kafka_topic_partition_list_destroy(list);
      ErrorSpec e = kafka_error(err, fmt::format("{}: cannot read the consumer's positions: {}", name, rd_kafka_err2str(err)));
      e.op = name;
      return nil_error(L, e);
    }
  }
  auto* op = new Op;
  op->kind = Kind::SendOffsets;
  op->name = name;
  op->timeout_ms = timeout;
  op->offsets = list;
  op->cgmd = rd_kafka_consumer_group_metadata(crk);
  char buf[512];
  buf[0] = '\0';
  size_t n = sizeof buf;
  if (rd_kafka_conf_get(rd_kafka_conf(crk), "group.id", buf, &n) == RD_KAFKA_CONF_OK) op->group = buf;
  if (!op->cgmd) {
    delete op;
    ErrorSpec e = kafka_error(RD_KAFKA_RESP_ERR__INVALID_ARG, fmt::format("{}: the consumer has no group", name));
    e.op = name;
    return nil_error(L, e);
  }
  return queue_call(L, op, s);
}

// p:_abort_nowait(): queues an abort nobody waits for (p:transaction when its task is cancelled).
int l_abort_nowait(lua_State* L) {
  auto s = state_of(L);
  if (!s->transactional || s->closing) return 0;
  auto* op = new Op;
  op->kind = Kind::Abort;
  op->name = "p:abort";
  op->timeout_ms = DEFAULT_TIMEOUT_MS;
  op->state = s;
  lua_pushvalue(L, 1);
  op->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  guard_of(L).submit(op);
  return 0;
}

// Before the producer's own close: stop transactional calls, abort an open transaction, and wait
// until nothing runs on the handle. Returns "deferred" when the caller can't wait (not a task):
// the close then happens when the running call is done.
int l_prepare_close(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, STATES_KEY);
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  auto* box = static_cast<StateBox*>(lua_touserdata(L, -1));
  lua_pop(L, 2);
  if (!box || !box->s) return 0;
  std::shared_ptr<TxnState> s = box->s;
  Guard& g = guard_of(L);
  g.close_state(L, 1, s, "closes");
  if (s->idle()) return 0;
  Scheduler& sched = Runtime::from(L).scheduler();
  if (sched.can_wait(L)) {
    s->idle_waiters.push_back(sched.prepare_wait(L, "p:close (waiting for the transactional call)", -1));
    return lua_yield(L, 0);
  }
  if (s->deferred_close == LUA_NOREF) {
    lua_pushvalue(L, 1);
    s->deferred_close = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pushliteral(L, "deferred");
  return 1;
}

const char* const CLOSE_SOURCE = R"(
local orig_close, prepare_close = ...
return function(self, ...)
  if prepare_close(self) == "deferred" then return true end
  return orig_close(self, ...)
end
)";

// p:transaction(fn, ...): begin; fn(...); commit. Aborts when fn raises (then re-raises) or when
// the commit fails with txn_requires_abort. Returns fn's results, or nil, err from begin/commit.
const char* const TRANSACTION_SOURCE = R"(
local error, pcall, type, tostring, stderr = ...
local function warn(what, err)
  stderr:write("klua: p:transaction: " .. what .. ": " .. tostring(err) .. "\n")
end
local function abort(self)
  local ok, r, err = pcall(self.abort, self)
  if not ok then
    -- cancelled: the abort still has to happen, without waiting for it
    self:_abort_nowait()
  elseif not r then
    warn("abort failed", err)
  end
end
local function finish(self, ok, ...)
  if not ok then
    local err = ...
    if type(err) == "table" and err.name == "KLUA_CANCELLED" then
      self:_abort_nowait()
    else
      abort(self)
    end
    error(err, 0)
  end
  local cok, cerr = self:commit()
  if not cok then
    if type(cerr) == "table" and cerr.txn_requires_abort then abort(self) end
    return nil, cerr
  end
  return ...
end
return function(self, fn, ...)
  if type(fn) ~= "function" then error("p:transaction(fn): fn must be a function, got " .. type(fn), 2) end
  local ok, err = self:begin()
  if not ok then return nil, err end
  return finish(self, pcall(fn, ...))
end
)";

int l_state_gc(lua_State* L) {
  static_cast<StateBox*>(lua_touserdata(L, 1))->~StateBox();
  return 0;
}

int l_guard_gc(lua_State* L) {
  auto** g = static_cast<Guard**>(lua_touserdata(L, 1));
  delete *g;
  *g = nullptr;
  return 0;
}
}  // namespace

void open_transactions(Runtime& rt, lua_State* L, int klua_table) {
  luaL_newmetatable(L, STATE_MT);
  lua_pushcfunction(L, l_state_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);

  push_weak_keyed_table(L);
  lua_setfield(L, LUA_REGISTRYINDEX, STATES_KEY);

  auto** g = static_cast<Guard**>(lua_newuserdata(L, sizeof(Guard*)));
  *g = new Guard(rt);
  lua_newtable(L);
  lua_pushcfunction(L, l_guard_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, GUARD_KEY);

  Scheduler& sched = rt.scheduler();
  luaL_getmetatable(L, "klua.producer");
  lua_getfield(L, -1, "__index");
  int index = lua_gettop(L);
  struct {
    const char* name;
    lua_CFunction fn;
  } waiting[] = {{"init_transactions", l_init}, {"begin", l_begin}, {"send_offsets", l_send_offsets},
                 {"commit", l_commit}, {"abort", l_abort}};
  for (const auto& m : waiting) {
    sched.push_waiting(L, m.fn);
    lua_setfield(L, index, m.name);
  }
  lua_pushcfunction(L, l_abort_nowait);
  lua_setfield(L, index, "_abort_nowait");

  if (luaL_loadbuffer(L, TRANSACTION_SOURCE, strlen(TRANSACTION_SOURCE), "=klua.transactions") != 0) lua_error(L);
  lua_getglobal(L, "error");
  lua_getglobal(L, "pcall");
  lua_getglobal(L, "type");
  lua_getglobal(L, "tostring");
  lua_getglobal(L, "io");
  lua_getfield(L, -1, "stderr");
  lua_remove(L, -2);
  lua_call(L, 5, 1);
  lua_setfield(L, index, "transaction");

  // p:close() first settles the transactional side (see l_prepare_close).
  lua_getfield(L, index, "close");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, ORIG_CLOSE_KEY);
  if (luaL_loadbuffer(L, CLOSE_SOURCE, strlen(CLOSE_SOURCE), "=klua.transactions.close") != 0) lua_error(L);
  lua_insert(L, -2);
  sched.push_waiting(L, l_prepare_close);
  lua_call(L, 2, 1);
  lua_setfield(L, index, "close");
  lua_pop(L, 2);
  (void)klua_table;
}

}  // namespace klua
