// Transactions on klua.producer (a producer created with ["transactional.id"] = "..."), which
// gets a metatable of its own, "klua.transactional_producer": the producer's methods and these
// (bindings/lua/transactions.lua builds it; the plain producer's metatable is not touched):
//
//   p:init_transactions([opts])            optional: the first p:begin() does it
//   p:begin([opts])                        opts.timeout_ms bounds that lazy init_transactions
//   p:send_offsets(consumer [, offsets] [, opts])
//   p:commit([opts]), p:abort([opts])      opts = {timeout_ms=}; a bare number is deprecated
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
// calls are queued or running; p:close() (bindings/lua/transactions.lua) refuses queued calls, aborts an open
// transaction (10 s), waits for the running call, then closes; at exit a Closable of priority 5
// (before producers, 10) does the same for every transactional producer. p:transaction(fn)
// aborts when fn raises (also when its task is cancelled: that abort is queued, not awaited).
#include "bindings/transactions.hpp"

#include <cstring>
#include <fmt/format.h>

#include "bindings/deprecation.hpp"
#include "bindings/lua_chunks.hpp"
#include "bindings/producer.hpp"

namespace klua {
namespace txn {

Guard& guard_of(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, GUARD_KEY);
  auto* g = *static_cast<Guard**>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return *g;
}

// The state of the producer at idx 1 (created on first use). Raises when it is not an open producer.
std::shared_ptr<TxnState> state_of(lua_State* L, const char* op) {
  rd_kafka_t* rk = check_producer_handle(L, 1, op);
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
  s->metrics = producer_metrics(L, 1, op);
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

// arg: the argument's number, for the error (the value itself may be at idx -1).
double check_timeout_value(lua_State* L, int idx, int arg, const char* op) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    raise_bad_argument(L, arg, op,
                       fmt::format("timeout_ms must be a number, got {} (options: {{timeout_ms = N}})", luaL_typename(L, idx)));
  double t = lua_tonumber(L, idx);
  if (!(t > 0) || t > INT32_MAX) raise_bad_argument(L, arg, op, "timeout_ms must be > 0");
  return t;
}

// The optional {timeout_ms=} of every transactional call (host/error's check_timeout_opts), > 0.
// A bare number (the old spelling) still works for one release and warns once.
double opt_timeout(lua_State* L, int idx, const char* op) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    std::string what = fmt::format("{}(..., timeout_ms)", op), instead = fmt::format("{}(..., {{timeout_ms = N}})", op);
    warn_deprecated(L, what.c_str(), instead.c_str());
    return check_timeout_value(L, idx, idx, op);
  }
  if (!lua_isnoneornil(L, idx) && !lua_istable(L, idx)) return check_timeout_value(L, idx, idx, op);  // raises
  double t = check_timeout_opts(L, idx, op, DEFAULT_TIMEOUT_MS);
  if (!(t > 0) || t > INT32_MAX) raise_bad_argument(L, idx, op, "timeout_ms must be > 0");
  return t;
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
  auto s = state_of(L, name);
  double timeout = opt_timeout(L, 2, name);
  if (int n = refuse(L, *s, name)) return n;
  check_can_wait(L, name);
  auto* op = new Op;
  op->kind = kind;
  op->name = name;
  op->timeout_ms = timeout;
  return queue_call(L, op, s);
}

// p:init_transactions([opts]) -> true | nil, err
int l_init(lua_State* L) {
  auto s = state_of(L, "p:init_transactions");
  opt_timeout(L, 2, "p:init_transactions");
  if (int n = refuse(L, *s, "p:init_transactions")) return n;
  if (s->initialized && s->idle()) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return simple_call(L, Kind::Init, "p:init_transactions");
}

// p:begin([opts]) -> true | nil, err (the timeout bounds the first call's init_transactions)
int l_begin(lua_State* L) {
  auto s = state_of(L, "p:begin");
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

// A table with a timeout_ms key and neither array items nor a message's topic: the options of
// p:send_offsets(consumer, {timeout_ms=}) rather than its offsets.
bool is_options_table(lua_State* L, int idx) {
  lua_getfield(L, idx, "timeout_ms");
  lua_rawgeti(L, idx, 1);
  lua_getfield(L, idx, "topic");
  bool opts = !lua_isnil(L, -3) && lua_isnil(L, -2) && lua_isnil(L, -1);
  lua_pop(L, 3);
  return opts;
}

// True when the value at idx is a klua.consumer (check_consumer_handle's error is not located).
static bool is_consumer(lua_State* L, int idx) {
  if (!lua_isuserdata(L, idx) || !lua_getmetatable(L, idx)) return false;
  luaL_getmetatable(L, "klua.consumer");
  bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

// p:send_offsets(consumer [, offsets] [, opts]) -> true | nil, err
// offsets: a partition list {{topic=, partition=, offset=}, ...} (offset = the next to read) or a
// message (its offset + 1); without it, the consumer's positions on its assignment.
int l_send_offsets(lua_State* L) {
  const char* name = "p:send_offsets";
  auto s = state_of(L, name);
  if (!is_consumer(L, 2))
    raise_bad_argument(L, 2, name, fmt::format("klua.consumer expected, got {}", luaL_typename(L, 2)));
  rd_kafka_t* crk = check_consumer_handle(L, 2);
  int offsets_idx = 0, timeout_idx = 3;
  if (lua_istable(L, 3) && !is_options_table(L, 3)) {
    offsets_idx = 3;
    timeout_idx = 4;
  } else if (lua_istable(L, 3)) {
    timeout_idx = 3;
  } else if (!lua_isnoneornil(L, 3) && lua_type(L, 3) != LUA_TNUMBER) {
    raise_bad_argument(L, 3, name, fmt::format("offsets must be a partition list or a message, got {}", luaL_typename(L, 3)));
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
        raise_bad_argument(L, 3, name,
                           fmt::format("{} [{}] needs a numeric offset (the next offset to read)", topic, partition));
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

// abort_nowait(p): queues an abort nobody waits for (p:transaction when its task is cancelled).
int l_abort_nowait(lua_State* L) {
  auto s = state_of(L, "p:abort");
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
}  // namespace txn

void open_transactions(Runtime& rt, lua_State* L, int klua_table) {
  using namespace txn;
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

  // The transactional producer's metatable: the producer's __gc and __tostring, and as __index
  // the producer's methods plus the transactional ones (bindings/lua/transactions.lua).
  Scheduler& sched = rt.scheduler();
  luaL_getmetatable(L, "klua.producer");
  int producer_mt = lua_gettop(L);
  lua_getfield(L, producer_mt, "__index");
  lua_getfield(L, -1, "close");
  lua_setfield(L, LUA_REGISTRYINDEX, ORIG_CLOSE_KEY);  // a deferred close runs the producer's own
  load_binding_chunk(L, "transactions");
  lua_insert(L, -2);  // chunk, producer methods
  lua_newtable(L);
  struct {
    const char* name;
    lua_CFunction fn;
  } waiting[] = {{"init", l_init},     {"begin", l_begin}, {"send_offsets", l_send_offsets},
                 {"commit", l_commit}, {"abort", l_abort}, {"prepare_close", l_prepare_close}};
  for (const auto& m : waiting) {
    sched.push_waiting(L, m.fn);
    lua_setfield(L, -2, m.name);
  }
  lua_pushcfunction(L, l_abort_nowait);
  lua_setfield(L, -2, "abort_nowait");
  lua_call(L, 2, 1);  // -> the methods table
  luaL_newmetatable(L, producer_impl::TXN_PRODUCER_MT);
  lua_insert(L, -2);
  lua_setfield(L, -2, "__index");
  for (const char* f : {"__gc", "__tostring"}) {
    lua_getfield(L, producer_mt, f);
    lua_setfield(L, -2, f);
  }
  // klua.producer gives a producer with a transactional.id this metatable (the statics' ref).
  lua_getfield(L, LUA_REGISTRYINDEX, "klua.producer.statics");
  auto* st = static_cast<producer_impl::ProducerStatics*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  st->txn_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);  // the producer's metatable
  (void)klua_table;
}

}  // namespace klua
