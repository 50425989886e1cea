// The transactional producer's C side, shared by its two files:
//   transactions_queue.cpp  the Guard: per-producer queues of transactional calls, run one at a time
//                           per producer on the runtime's executor, and the close/exit settling
//   transactions.cpp        the Lua API (the primitives bindings/lua/transactions.lua wraps)
#pragma once
#include <librdkafka/rdkafka.h>
#include <uv.h>

#include <deque>
#include <fmt/format.h>
#include <memory>
#include <string>
#include <vector>

#include "bindings/kafka_handle.hpp"

namespace klua::txn {

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
  std::shared_ptr<client_metrics::ClientMetrics> metrics;  // the producer's: transactions committed/aborted
  bool idle() const { return !running && queue.empty(); }
};

struct StateBox {
  std::shared_ptr<TxnState> s;
};

inline ErrorSpec closed_error(const char* op) {
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

  // Transactional calls running on the executor at once: one fewer than its threads, so that
  // what else needs it (rd_kafka_destroy, KafkaHandle::run_blocking) never waits behind a row of
  // transactional commits (each may take up to its timeout_ms).
  static constexpr size_t kMaxRunning = Executor::kThreads - 1;

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
  // States whose next call waits for room on the executor (at most kMaxRunning calls run there).
  std::deque<std::shared_ptr<TxnState>> waiting_for_room_;
  size_t live_ = 0;  // queued + running ops
  bool closing_all_ = false;
};


// The transactional producer's state at idx 1 (created on first use); raises when it is not an
// open producer.
std::shared_ptr<TxnState> state_of(lua_State* L, const char* op);
Guard& guard_of(lua_State* L);

}  // namespace klua::txn
