// The Guard: transactional calls queued per producer and run one at a time per producer on the
// runtime's executor (at most Guard::kMaxRunning at once), their completion on the loop, and the
// settling of open transactions at close and exit. See bindings/transactions.cpp for the API.
#include "bindings/transactions.hpp"
#include "host/log.hpp"

#include <algorithm>
#include <fmt/format.h>

namespace klua::txn {

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
    if (running_.size() >= kMaxRunning) {
      if (std::find(waiting_for_room_.begin(), waiting_for_room_.end(), s) == waiting_for_room_.end())
        waiting_for_room_.push_back(s);
      break;
    }
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
                          if (!waiting_for_room_.empty()) {
                            auto next = waiting_for_room_.front();
                            waiting_for_room_.pop_front();
                            schedule_pump(next);
                          }
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
      if (!err) {
        s.in_txn = false;
        if (s.metrics) ++(op->kind == Kind::Commit ? s.metrics->txn_committed : s.metrics->txn_aborted);
      }
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
    log::diagnostic(log::Level::error,
                    fmt::format("producer {}: aborting the open transaction failed: {}", s.name, rd_kafka_error_string(err)),
                    {{"client", s.name}});
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
    log::diagnostic(log::Level::warn, fmt::format("producer {} {} with a transaction open: aborting it", s->name, why),
                    {{"client", s->name}});
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
  check_producer_handle(L, 1, "p:transaction");  // raises when closed
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

}  // namespace klua::txn
