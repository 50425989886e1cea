// The producer's Lua API: klua.producer and the C primitives that bindings/lua/producer.lua
// (methods, p:produce's report, p:flush's options) and bindings/lua/producer_fast.lua (p:send's
// FFI fast path, batched on_delivery reports) wrap.
#include "bindings/producer.hpp"

#include <cstring>
#include <type_traits>

#include <fmt/format.h>

#include "bindings/deprecation.hpp"
#include "bindings/lua_chunks.hpp"

namespace klua {
using namespace producer_impl;

namespace producer_impl {

// Called through the FFI with the payload of a userdata whose metatable the caller checked.
int send_fast_entry(void* box, const char* topic, size_t topic_len, const char* value, size_t value_len,
                    const char* key, size_t key_len, int32_t partition) {
  Producer* p = static_cast<ProducerBox*>(box)->handle;
  if (!p) return -1;
  return p->send_fast(topic, topic_len, value, value_len, key, key_len, partition);
}

const ProducerStatics* statics(lua_State* L) {
  return static_cast<const ProducerStatics*>(lua_touserdata(L, lua_upvalueindex(1)));
}

// A value that is not a producer where one is expected (p.send(x) instead of p:send(x)).
[[noreturn]] static void not_a_producer(lua_State* L, int idx, const char* fn) {
  raise_bad_argument(L, idx, fn, fmt::format("klua.producer expected, got {}", luaL_typename(L, idx)));
}

// luaL_checkudata looks the metatable up by name on every call; this compares with a cached
// reference (it is on the path of every send).

ProducerBox* to_box(lua_State* L, int idx, const char* fn) {
  void* p = lua_touserdata(L, idx);
  if (p && lua_getmetatable(L, idx)) {
    const ProducerStatics* st = statics(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->mt_ref);
    bool same = lua_rawequal(L, -1, -2);
    if (!same) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, st->txn_mt_ref);
      same = lua_rawequal(L, -1, -3);
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
    if (same) return static_cast<ProducerBox*>(p);
  }
  not_a_producer(L, idx, fn);
}

// The same for functions without the statics upvalue: the metatables by name.
ProducerBox* to_box_by_name(lua_State* L, int idx, const char* fn) {
  void* p = lua_touserdata(L, idx);
  if (p && lua_getmetatable(L, idx)) {
    luaL_getmetatable(L, PRODUCER_MT);
    luaL_getmetatable(L, TXN_PRODUCER_MT);
    bool same = lua_rawequal(L, -1, -3) || lua_rawequal(L, -2, -3);
    lua_pop(L, 3);
    if (same) return static_cast<ProducerBox*>(p);
  }
  not_a_producer(L, idx, fn);
}

Producer* check_producer(lua_State* L, int idx, const char* fn) {
  return usable_handle(L, to_box(L, idx, fn)->handle, "producer");
}


// A message librdkafka refused as invalid (a bad topic name, a message over message.max.bytes):
// returned as KLUA_INVALID_ARGUMENT, since enqueue already raised for what the script wrote wrong.
ErrorSpec invalid_message_error(const std::string& msg, const std::string& topic, const char* op) {
  ErrorSpec e;
  e.code = CODE_INVALID_ARGUMENT;
  e.name = ERR_INVALID_ARGUMENT;
  e.message = msg;
  e.topic = topic;
  e.op = op;
  return e;
}

int wait_for_room(lua_State* L, Producer* p, const char* op) {
  Scheduler& s = Runtime::from(L).scheduler();
  if (!s.can_wait(L)) {
    return kafka_nil_error(L, RD_KAFKA_RESP_ERR__QUEUE_FULL,
                           "the local queue is full (queue.buffering.max.messages); cannot wait for room here");
  }
  WaitToken t = s.prepare_wait(L, op, p->wait_timeout_ms());
  p->room_waiters.push_back(t);
  return lua_yield(L, 0);
}

// p:send(msg) -> true | nil, err
int l_send(lua_State* L) {
  Producer* p = check_producer(L, 1, "p:send");
  check_arg_type(L, 2, LUA_TTABLE, "p:send");
  if (p->turn_pending || p->turn_due()) {
    p->turn_pending = false;
    if (Runtime::from(L).scheduler().can_wait(L)) return wait_for_room(L, p, "p:send (letting delivery reports in)");
  }
  std::string msg, topic;
  rd_kafka_resp_err_t err = p->enqueue(L, 2, MessageArg{"p:send"}, nullptr, true, &topic, &msg, nullptr);
  if (!err) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return wait_for_room(L, p, "p:send (local queue full)");
  if (err == RD_KAFKA_RESP_ERR__INVALID_ARG) return nil_error(L, invalid_message_error(msg, topic, "send"));
  return kafka_nil_error(L, err, msg, topic);
}

// p:produce(msg) -> report | nil, err
int l_produce(lua_State* L) {
  Producer* p = check_producer(L, 1, "p:produce");
  check_arg_type(L, 2, LUA_TTABLE, "p:produce");
  Scheduler& s = Runtime::from(L).scheduler();
  if (!s.can_wait(L))
    raise_misuse(L, "p:produce", "it waits for the delivery report: call it from a task (use p:send in callbacks)");
  // Cancellation is checked before anything is sent, so that prepare_wait cannot raise once the
  // message is enqueued. The message is enqueued by a direct call (no pcall, no closure made per
  // call: 10,000 tasks awaiting produce made that a visible cost): the Delivery it carries stays
  // owned by the producer (spare_delivery) until librdkafka took the message, so an error raised
  // by enqueue (bad fields) leaks nothing and leaves no wait behind.
  s.check_cancelled(L);
  if (!p->spare_delivery) p->spare_delivery = std::make_unique<Delivery>();
  Delivery* d = p->spare_delivery.get();
  double timeout = p->wait_timeout_ms();
  std::string msg, topic;
  rd_kafka_resp_err_t err = p->enqueue(L, 2, MessageArg{"p:produce"}, d, false, &topic, &msg, &timeout);
  if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return wait_for_room(L, p, "p:produce (local queue full)");
  if (err == RD_KAFKA_RESP_ERR__INVALID_ARG) return nil_error(L, invalid_message_error(msg, topic, "produce"));
  if (err) return kafka_nil_error(L, err, msg, topic);
  p->spare_delivery.release();  // librdkafka's now: its delivery report frees it
  // Its report is dispatched by the loop, never before this call returns.
  d->tok = s.prepare_wait(L, "p:produce (waiting for the delivery report)", timeout);
  return lua_yield(L, 0);
}

// p:produce_batch(list) -> results (one per message, in order, error nil on success)
int l_produce_batch(lua_State* L) {
  Producer* p = check_producer(L, 1, "p:produce_batch");
  check_arg_type(L, 2, LUA_TTABLE, "p:produce_batch");
  Scheduler& s = Runtime::from(L).scheduler();
  if (!s.can_wait(L)) raise_misuse(L, "p:produce_batch", "it waits for delivery reports: call it from a task");
  s.check_cancelled(L);  // before anything is sent: prepare_wait must not raise at the end
  const void* key = lua_topointer(L, 2);
  std::shared_ptr<Batch> b;
  auto it = p->batches.find(key);
  if (it != p->batches.end() && !it->second->tok) {
    b = it->second;  // resumed after waiting for room in the local queue
  } else {
    b = std::make_shared<Batch>();
    b->key = key;
    b->n = static_cast<int>(lua_objlen(L, 2));
    lua_createtable(L, b->n, 0);
    b->results_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    p->batches[key] = b;
  }
  // A bad item raises: the batch is forgotten (a second call with the same list starts afresh).
  // Reports still due for its earlier items are then filled in and dropped (n ends the batch there).
  auto forget = [L, p, key] {
    auto found = p->batches.find(key);
    if (found == p->batches.end()) return;
    Batch& fb = *found->second;
    if (fb.pending == 0) {
      luaL_unref(L, LUA_REGISTRYINDEX, fb.results_ref);
      fb.results_ref = LUA_NOREF;
    } else {
      fb.n = fb.next - 1;
    }
    p->batches.erase(found);
  };
  for (; b->next <= b->n; ++b->next) {
    lua_rawgeti(L, 2, b->next);
    if (!lua_istable(L, -1)) {
      forget();
      raise_bad_argument(L, 2, "p:produce_batch",
                         fmt::format("item {} must be a message table, got {}", b->next, luaL_typename(L, -1)));
    }
    auto d = std::make_unique<Delivery>();
    d->batch = b;
    d->index = b->next;
    std::string msg, topic;
    rd_kafka_resp_err_t err = p->enqueue(L, -1, MessageArg{"p:produce_batch", b->next, forget}, d.get(), false, &topic, &msg, nullptr);
    lua_pop(L, 1);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return wait_for_room(L, p, "p:produce_batch (local queue full)");
    if (err) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, b->results_ref);
      lua_createtable(L, 0, 2);
      lua_pushlstring(L, topic.data(), topic.size());
      lua_setfield(L, -2, "topic");
      ErrorSpec e = err == RD_KAFKA_RESP_ERR__INVALID_ARG ? invalid_message_error(msg, topic, "produce_batch")
                                                          : kafka_error(err, msg);
      e.topic = topic;
      e.op = "produce_batch";
      push_error(L, e);
      lua_setfield(L, -2, "error");
      lua_rawseti(L, -2, b->next);
      lua_pop(L, 1);
      continue;
    }
    ++b->pending;
    d.release();
  }
  if (b->pending == 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->results_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, b->results_ref);
    b->results_ref = LUA_NOREF;
    p->batches.erase(key);
    return 1;
  }
  b->tok = s.prepare_wait(L, "p:produce_batch (waiting for delivery reports)", p->wait_timeout_ms());
  return lua_yield(L, 0);
}

// flush(p, timeout_ms or nil) -> true | nil, err (p:flush{timeout_ms=} in bindings/lua/producer.lua)
int l_flush(lua_State* L) {
  Producer* p = check_producer(L, 1, "p:flush");
  // (the options were checked by producer.lua's flush)
  double timeout = lua_isnumber(L, 2) ? check_timeout_number(L, 2, "p:flush", lua_tonumber(L, 2)) : p->wait_timeout_ms();
  p->drain();
  if (rd_kafka_outq_len(p->rk()) == 0) {
    if (p->failed_since_flush) {
      ErrorSpec e = kafka_error(RD_KAFKA_RESP_ERR__FAIL,
                                fmt::format("{} message(s) failed delivery since the last flush; first: {}",
                                            p->failed_since_flush, p->first_failure));
      e.op = "flush";
      p->failed_since_flush = 0;
      p->first_failure.clear();
      return nil_error(L, e);
    }
    lua_pushboolean(L, 1);
    return 1;
  }
  p->start_flushing();
  Scheduler& s = Runtime::from(L).scheduler();
  WaitToken t = s.prepare_wait(L, "p:flush", timeout);
  p->flush_waiters.push_back(t);
  return lua_yield(L, 0);
}

int l_close(lua_State* L) {
  auto* box = to_box(L, 1, "p:close");
  return close_and_wait(L, box->handle, "p:close");
}

// inject_fatal_error(p, reason): librdkafka's test hook, for tests of fatal-error handling. Not a
// method: tests reach it through debug.getregistry()["klua.private"].producer.
int l_inject_fatal(lua_State* L) {
  Producer* p = check_producer(L, 1, "inject_fatal_error");
  rd_kafka_test_fatal_error(p->rk(), RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, luaL_optstring(L, 2, "injected"));
  return 0;
}

// not_transactional(p, op): a plain producer's answer to the transactional calls.
int l_not_transactional(lua_State* L) {
  to_box(L, 1, lua_tostring(L, 2));
  ErrorSpec e = kafka_error(RD_KAFKA_RESP_ERR__NOT_CONFIGURED,
                            "this producer is not transactional: create it with [\"transactional.id\"] = \"...\"");
  e.op = luaL_checkstring(L, 2);
  return nil_error(L, e);
}

int l_outq_len(lua_State* L) {
  Producer* p = check_producer(L, 1, "p:outq_len");
  lua_pushinteger(L, rd_kafka_outq_len(p->rk()));
  return 1;
}


// klua.producer([config])
int l_new(lua_State* L) {
  int idx = lua_isnoneornil(L, 1) ? 0 : 1;
  if (idx) check_arg_type(L, 1, LUA_TTABLE, "klua.producer");
  ClientOptions o = build_client_options(L, idx, "klua.producer", {{"enable.idempotence", "true"}},
                                         {"on_delivery", "timeout_ms", "key_serializer", "value_serializer"});
  int on_delivery = LUA_NOREF;
  double timeout_ms = -1;
  bool serializers = false;  // key_serializer/value_serializer: kept in the fast path's set (below)
  for (const auto& k : o.klua_keys) {
    lua_getfield(L, 1, k.c_str());
    if (k == "key_serializer" || k == "value_serializer") {
      if (!lua_isfunction(L, -1)) {
        rd_kafka_conf_destroy(o.conf);
        if (on_delivery != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, on_delivery);
        raise_bad_argument(L, 1, "klua.producer",
                           fmt::format("option '{}' must be a function (such as klua.serde.avro's enc), got {}", k,
                                       luaL_typename(L, -1)));
      }
      serializers = true;
      lua_pop(L, 1);
      continue;
    }
    if (k == "on_delivery") {
      if (!lua_isfunction(L, -1)) {
        rd_kafka_conf_destroy(o.conf);
        raise_bad_argument(L, 1, "klua.producer",
                           fmt::format("option 'on_delivery' must be a function, got {}", luaL_typename(L, -1)));
      }
      on_delivery = luaL_ref(L, LUA_REGISTRYINDEX);
      continue;
    }
    if (k == "timeout_ms") {
      if (lua_type(L, -1) != LUA_TNUMBER) {
        rd_kafka_conf_destroy(o.conf);
        if (on_delivery != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, on_delivery);
        raise_bad_argument(L, 1, "klua.producer",
                           fmt::format("option 'timeout_ms' must be a number, got {}", luaL_typename(L, -1)));
      }
      timeout_ms = lua_tonumber(L, -1);
      if (!(timeout_ms >= 0)) {
        std::string given = lua_tostring(L, -1);
        rd_kafka_conf_destroy(o.conf);
        if (on_delivery != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, on_delivery);
        raise_bad_argument(L, 1, "klua.producer", fmt::format("option 'timeout_ms' must be a number >= 0, got {}", given));
      }
    }
    lua_pop(L, 1);
  }
  rd_kafka_conf_set_events(o.conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG | RD_KAFKA_EVENT_STATS);
  if (timeout_ms < 0) {
    // Delivery reports are guaranteed within message.timeout.ms; the wait allows a margin.
    char buf[64];
    size_t n = sizeof buf;
    double msg_timeout = 300000;
    if (rd_kafka_conf_get(o.conf, "message.timeout.ms", buf, &n) == RD_KAFKA_CONF_OK) msg_timeout = atof(buf);
    timeout_ms = msg_timeout + 5000;
  }
  // An idempotent producer that is not transactional (a transactional one gets its id from
  // init_transactions, through its coordinator).
  bool hurry = false;
  {
    char idem[16], txid[8];
    size_t n1 = sizeof idem, n2 = sizeof txid;
    // (an unset transactional.id is not RD_KAFKA_CONF_OK)
    hurry = rd_kafka_conf_get(o.conf, "enable.idempotence", idem, &n1) == RD_KAFKA_CONF_OK &&
            std::strcmp(idem, "true") == 0 &&
            (rd_kafka_conf_get(o.conf, "transactional.id", txid, &n2) != RD_KAFKA_CONF_OK || n2 <= 1);
  }
  Runtime& rt = Runtime::from(L);
  auto* box = static_cast<ProducerBox*>(lua_newuserdata(L, sizeof(ProducerBox)));
  box->handle = nullptr;
  // A transactional producer has a metatable of its own (bindings/transactions.cpp).
  bool transactional = false;
  {
    char txid[8];
    size_t n = sizeof txid;
    transactional = rd_kafka_conf_get(o.conf, "transactional.id", txid, &n) == RD_KAFKA_CONF_OK && n > 1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX,
              transactional && statics(L)->txn_mt_ref != LUA_NOREF ? statics(L)->txn_mt_ref : statics(L)->mt_ref);
  lua_setmetatable(L, -2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, statics(L)->producers_ref);
  lua_pushvalue(L, -2);
  if (serializers) {
    // The set's value is the serializers for such a producer (true otherwise): the fast path
    // reads them with the lookup it makes anyway (bindings/lua/producer_fast.lua).
    lua_createtable(L, 0, 2);
    lua_getfield(L, 1, "key_serializer");
    lua_setfield(L, -2, "key");
    lua_getfield(L, 1, "value_serializer");
    lua_setfield(L, -2, "value");
  } else {
    lua_pushboolean(L, 1);
  }
  lua_rawset(L, -3);
  lua_pop(L, 1);
  rd_kafka_t* rk = new_handle(L, RD_KAFKA_PRODUCER, o.conf, "klua.producer");
  auto* p = new Producer(rt, statics(L));
  p->set_hooks(o);
  p->metrics()->transactional = transactional;
  p->start(rk, on_delivery, timeout_ms);
  if (hurry) p->hurry_producer_id();
  box->handle = p;
  return 1;
}
}  // namespace producer_impl

rd_kafka_t* check_producer_handle(lua_State* L, int idx, const char* fn) {
  // Called from other modules' functions, which have no producer upvalue.
  return usable_handle(L, to_box_by_name(L, idx, fn)->handle, "producer")->rk();
}

std::shared_ptr<client_metrics::ClientMetrics> producer_metrics(lua_State* L, int idx, const char* fn) {
  return usable_handle(L, to_box_by_name(L, idx, fn)->handle, "producer")->metrics();
}

// raw.warn_deprecated(what, instead): the one warn-once for old spellings (bindings/deprecation.hpp).
int l_warn_deprecated(lua_State* L) {
  warn_deprecated(L, luaL_checkstring(L, 1), luaL_checkstring(L, 2));
  return 0;
}

void open_producer(Runtime& rt, lua_State* L, int klua_table) {
  auto* st = static_cast<ProducerStatics*>(lua_newuserdata(L, sizeof(ProducerStatics)));
  new (st) ProducerStatics();
  lua_createtable(L, F_COUNT, 0);  // the statics' environment keeps the interned names alive
  for (int i = 0; i < F_COUNT; ++i) {
    lua_pushstring(L, FIELD_NAMES[i]);
    st->field_ptrs[i] = lua_tostring(L, -1);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfenv(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "klua.producer.statics");

  auto closure = [&](lua_CFunction fn) {
    lua_pushlightuserdata(L, st);
    lua_pushcclosure(L, fn, 1);
  };
  luaL_newmetatable(L, PRODUCER_MT);
  lua_pushvalue(L, -1);
  st->mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  // The C primitives; bindings/lua/producer.lua makes the methods of them.
  load_binding_chunk(L, "producer");
  lua_newtable(L);
  struct {
    const char* name;
    lua_CFunction fn;
    bool waiting;  // wrapped by the scheduler: a cancellation raises at the call site
  } prims[] = {
      {"send", l_send, false},   {"produce", l_produce, false},   {"produce_batch", l_produce_batch, false},
      {"flush", l_flush, true},  {"close", l_close, true},        {"outq_len", l_outq_len, false},
      {"warn_deprecated", l_warn_deprecated, false},              {"not_transactional", l_not_transactional, false},
  };
  for (const auto& m : prims) {
    closure(m.fn);
    if (m.waiting) rt.scheduler().wrap_waiting(L);
    lua_setfield(L, -2, m.name);
  }
  lua_pushlightuserdata(L, cancel_sentinel());
  lua_pushlightuserdata(L, retry_marker());
  lua_call(L, 3, 2);  // -> methods, report
  st->report_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  // p:send's fast path wraps the full one; the report dispatcher lives in the statics.
  load_binding_chunk(L, "producer_fast");
  load_lua_chunk(L, "bindings/ffi.h");  // its KLUA_CDEF regions, declared once; returns ffi
  lua_call(L, 0, 1);
  lua_getfield(L, -3, "send");
  push_weak_keyed_table(L);  // producer userdata -> true
  lua_pushvalue(L, -1);
  st->producers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  static_assert(std::is_same_v<decltype(&send_fast_entry), klua_producer_send_fn>,
                "send_fast_entry must have the type bindings/ffi.h gives the FFI");
  lua_pushlightuserdata(L, reinterpret_cast<void*>(&send_fast_entry));
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->report_ref);
  lua_pushinteger(L, sizeof(klua_dr_entry));
  lua_pushvalue(L, -8);  // the methods: produce and produce_batch get the serializers' wrappers
  lua_call(L, 7, 2);
  st->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -2, "send");
  lua_setfield(L, -2, "__index");
  set_handle_metamethods<ProducerBox>(L);
  lua_pop(L, 1);

  closure(l_new);
  lua_setfield(L, klua_table, "producer");

  // Test hooks, off the public metatable (the REPL's completion lists that): only through the registry.
  push_private_table(L);
  lua_newtable(L);
  closure(l_inject_fatal);
  lua_setfield(L, -2, "inject_fatal_error");
  lua_setfield(L, -2, "producer");
  lua_pop(L, 1);
}

}  // namespace klua
