// klua.producer: send (enqueue, optional delivery callback), produce (wait for the
// delivery report), produce_batch, flush, close. Delivery reports arrive as DR
// events on the main queue, drained by the loop; a producer-level on_delivery
// serves every send without a closure per message.
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <cstring>
#include <fmt/format.h>
#include <memory>
#include <unordered_map>
#include <vector>

#include "bindings/client.hpp"

namespace klua {

namespace {
const char* const PRODUCER_MT = "klua.producer";
char retry_marker;

// Interned field names: a message table is read with lua_next and the keys compared by
// pointer (LuaJIT strings are interned and never move), so absent fields cost nothing.
enum Field { F_TOPIC, F_KEY, F_VALUE, F_HEADERS, F_PARTITION, F_TIMESTAMP, F_ON_DELIVERY, F_OPAQUE, F_TIMEOUT, F_COUNT };
const char* const FIELD_NAMES[F_COUNT] = {"topic", "key", "value", "headers", "partition", "timestamp",
                                          "on_delivery", "opaque", "timeout_ms"};
// Per Lua state (a process may run several runtimes): interned field names, report keys and the
// metatable, reached through upvalue 1 of every producer method.
struct ProducerStatics {
  const char* field_ptrs[9];
  int report_key_refs[7];
  int mt_ref = LUA_NOREF;
  int dispatch_ref = LUA_NOREF;  // Lua function that turns a batch of DrEntry into on_delivery calls
  int producers_ref = LUA_NOREF;  // weak-keyed set of producer userdata, the fast path's type check
};

// One successful delivery report for the producer-level on_delivery, handed to Lua through the
// FFI in batches (one Lua call per DR event instead of a C-built table and a lua_call per message).
// Mirrored by the cdef in FAST_SOURCE.
struct DrEntry {
  int32_t topic;  // index into the producer's topic names table
  int32_t partition;
  int32_t tstype;  // 0 none, 1 create, 2 log_append
  int32_t pad;
  double offset;
  double timestamp;
};

struct Batch {
  int results_ref = LUA_NOREF;
  int n = 0;
  int next = 1;       // next list index to send
  int pending = 0;    // delivery reports still to come
  WaitToken tok;      // set while waiting for the reports
  const void* key = nullptr;
};

// Per-message state, allocated only when a message needs more than the producer-level hook.
struct Delivery {
  WaitToken tok;              // produce(): the waiting task
  int callback_ref = LUA_NOREF;  // send{on_delivery=}
  int opaque_ref = LUA_NOREF;    // send{opaque=}
  std::shared_ptr<Batch> batch;
  int index = 0;
};

class Producer;
Producer* check_producer(lua_State* L, int idx);

class Producer : public Client {
 public:
  Producer(Runtime& rt, const ProducerStatics* statics) : Client(rt, "producer"), statics_(statics) {}

  ~Producer() override { rt_.remove_closable(this); }

  void start(rd_kafka_t* rk, int on_delivery, double wait_timeout_ms) {
    rk_ = rk;
    on_delivery_ = on_delivery;
    wait_timeout_ms_ = wait_timeout_ms;
    queue_ = rd_kafka_queue_get_main(rk_);
    rd_kafka_set_log_queue(rk_, nullptr);
    watcher_ = std::make_unique<QueueWatcher>(rt_.loop(), queue_, [this] { drain(); });
    down_timer_ = new uv_timer_t;
    uv_timer_init(rt_.loop(), down_timer_);
    uv_unref(reinterpret_cast<uv_handle_t*>(down_timer_));  // a handle keeps no script alive
    down_timer_->data = this;
    nudge_timer_ = new uv_timer_t;
    uv_timer_init(rt_.loop(), nudge_timer_);
    uv_unref(reinterpret_cast<uv_handle_t*>(nudge_timer_));  // the flush's own wait keeps the loop alive
    nudge_timer_->data = this;
    rt_.add_closable(this);
  }

  int close_priority() const override { return 10; }
  bool is_closed() const override { return state_ == Closed; }
  bool usable() const { return state_ == Open; }
  double wait_timeout_ms() const { return wait_timeout_ms_; }

  // Enqueues the message in the table at idx. Returns 0 on success; RD_KAFKA_RESP_ERR__QUEUE_FULL
  // when the local queue is full (nothing was sent); another code with *err_message set on failure.
  rd_kafka_resp_err_t enqueue(lua_State* L, int idx, Delivery* extra, bool allow_callbacks, std::string* topic_out,
                              std::string* err_message, double* timeout_ms);
  // p:send's fast path, called through the FFI (so it must not touch the Lua state): a message
  // of topic, value, key and partition without callbacks. Returns 0 when enqueued; any other
  // value means nothing was sent and the caller takes the full path (which raises or reports).
  int send_fast(const char* topic, size_t topic_len, const char* value, size_t value_len, const char* key,
                size_t key_len, int32_t partition);
  bool fatal() const { return fatal_.has_value(); }

  // A task sending in a loop would otherwise keep the loop from running until the local queue is
  // full: delivery reports pile up (memory grows to queue.buffering.max.messages worth of
  // messages, cold in cache) and timers and other tasks wait. So every kSendsPerTurn sends, a
  // send that finds reports waiting lets the loop run once before it enqueues (p:send's slow path
  // yields when turn_pending is set).
  bool turn_due() {
    if (++sends_since_turn_ < kSendsPerTurn) return false;
    sends_since_turn_ = 0;
    return rd_kafka_queue_length(queue_) > 0;
  }
  bool turn_pending = false;

  void drain();
  void begin_close() override;
  // Makes librdkafka send queued messages now, ignoring linger.ms, until the queue is empty.
  // The wait itself is on the loop (flush_waiters, woken by delivery reports when the out-queue
  // length reaches 0). Only rd_kafka_flush makes librdkafka's broker threads ignore linger.ms
  // (it raises rk_flushing while it runs and wakes them; the public API has nothing else), and
  // it blocks: a short one (kNudgeMs) runs on the executor, again every kNudgePeriodMs while
  // messages are left, so no pool thread is held for the whole flush and the loop never blocks.
  void start_flushing();
  void on_all_brokers_down() override;
  // librdkafka 2.15's idempotent producer asks for its producer id when the producer is made,
  // finds no broker up yet, and asks again only on its next 500 ms timer tick or metadata
  // response: every script's first delivery came 0.5 s late (Python confluent-kafka 2.16 too).
  // Two metadata requests off the loop, the second answered by a broker the first one named,
  // give the producer that response once a broker is up: first report in ~70 ms instead of
  // 520-660 ms (Kafka 4.1). The handle waits for them before it is destroyed.
  void hurry_producer_id();
  void on_inflight_done() override;
  static constexpr int kNudgeMs = 10;
  static constexpr uint64_t kNudgePeriodMs = 40;

  std::vector<WaitToken> room_waiters, flush_waiters, close_waiters;
  std::unordered_map<const void*, std::shared_ptr<Batch>> batches;
  size_t failed_since_flush = 0;
  std::string first_failure;
  bool orphaned = false;  // the Lua object is gone: delete once closed
  std::unique_ptr<Delivery> spare_delivery;  // p:produce's next Delivery, owned here until enqueued

 private:
  rd_kafka_topic_t* topic(lua_State* L, const char* name, size_t len, std::string* problem);
  void deliver(lua_State* L, const rd_kafka_message_t* m);
  void push_report(lua_State* L, const rd_kafka_message_t* m);
  void push_report_fields(lua_State* L, const rd_kafka_message_t* m);
  void push_topic_name(lua_State* L, const rd_kafka_topic_t* rkt);
  void dispatch_fast(lua_State* L, std::vector<DrEntry>& batch);
  int topic_id(lua_State* L, const rd_kafka_topic_t* rkt);
  void after_reports();
  void finish_close();
  void nudge();
  static int dispatch_reports(lua_State* L);

  enum State { Open, Flushing, Destroying, Closed } state_ = Open;
  static constexpr uint32_t kSendsPerTurn = 1024;
  uint32_t sends_since_turn_ = 0;
  const ProducerStatics* statics_;
  rd_kafka_queue_t* queue_ = nullptr;
  std::unique_ptr<QueueWatcher> watcher_;
  int on_delivery_ = LUA_NOREF;
  double wait_timeout_ms_ = 0;
  std::unordered_map<std::string, rd_kafka_topic_t*> topics_;
  rd_kafka_topic_t* last_topic_ = nullptr;
  std::unordered_map<const rd_kafka_topic_t*, int> topic_name_refs_;  // Lua strings of topic names
  std::unordered_map<const rd_kafka_topic_t*, int> topic_ids_;        // index in topic_names_ref_
  int topic_names_ref_ = LUA_NOREF;  // Lua array of topic names, for DrEntry::topic
  const rd_kafka_topic_t* id_rkt_ = nullptr;
  int id_last_ = 0;
  const rd_kafka_topic_t* report_rkt_ = nullptr;
  int report_topic_ref_ = LUA_NOREF;
  std::string last_topic_name_;
  uv_timer_t* down_timer_ = nullptr;
  uv_timer_t* close_timer_ = nullptr;
  uv_timer_t* nudge_timer_ = nullptr;
  bool nudging_ = false;  // a short rd_kafka_flush is on the executor
  bool destroy_after_flush_ = false;
  bool keep_flushing_ = false;
};

void Producer::start_flushing() {
  keep_flushing_ = true;
  if (!nudging_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(nudge_timer_))) nudge();
}

void Producer::nudge() {
  if (!keep_flushing_ || !rk_ || (state_ != Open && state_ != Flushing) || rd_kafka_outq_len(rk_) == 0) {
    keep_flushing_ = false;
    return;
  }
  nudging_ = true;
  rd_kafka_t* rk = rk_;
  // run_off_loop: the handle is not destroyed while this runs (finish_close waits for inflight_).
  run_off_loop([rk] { rd_kafka_flush(rk, kNudgeMs); },
               [this] {
                 nudging_ = false;
                 if (keep_flushing_ && (state_ == Open || state_ == Flushing) && rd_kafka_outq_len(rk_) > 0)
                   uv_timer_start(nudge_timer_, [](uv_timer_t* h) { static_cast<Producer*>(h->data)->nudge(); },
                                  kNudgePeriodMs, 0);
               });
}

void Producer::hurry_producer_id() {
  rd_kafka_t* rk = rk_;
  run_off_loop(
      [rk] {
        // 500 ms each: past that, librdkafka's own timer has asked again anyway.
        for (int i = 0; i < 2; ++i) {
          const rd_kafka_metadata_t* md = nullptr;
          rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, nullptr, &md, 500);
          if (md) rd_kafka_metadata_destroy(md);
          if (err) break;
        }
      },
      [] {});
}

void Producer::on_inflight_done() {
  if (destroy_after_flush_) {
    destroy_after_flush_ = false;
    finish_close();
  }
}

rd_kafka_topic_t* Producer::topic(lua_State* L, const char* name, size_t len, std::string* problem) {
  if (last_topic_ && len == last_topic_name_.size() && memcmp(name, last_topic_name_.data(), len) == 0)
    return last_topic_;
  std::string key(name, len);
  auto it = topics_.find(key);
  if (it == topics_.end()) {
    *problem = topic_name_problem(name, len);
    if (!problem->empty()) return nullptr;
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk_, key.c_str(), nullptr);
    it = topics_.emplace(key, rkt).first;
  }
  last_topic_ = it->second;
  last_topic_name_.assign(name, len);
  return last_topic_;
}

static rd_kafka_headers_t* build_headers(lua_State* L, int idx) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  luaL_checktype(L, idx, LUA_TTABLE);
  rd_kafka_headers_t* h = rd_kafka_headers_new(8);
  lua_rawgeti(L, idx, 1);
  bool is_list = !lua_isnil(L, -1);
  lua_pop(L, 1);
  auto add = [&](int name_idx, int value_idx) {
    if (lua_type(L, name_idx) != LUA_TSTRING) {
      rd_kafka_headers_destroy(h);
      luaL_error(L, "header names must be strings, got %s", luaL_typename(L, name_idx));
    }
    size_t nl, vl = 0;
    const char* n = lua_tolstring(L, name_idx, &nl);
    const char* v = nullptr;
    if (!lua_isnil(L, value_idx)) {
      if (lua_type(L, value_idx) != LUA_TSTRING && lua_type(L, value_idx) != LUA_TNUMBER) {
        rd_kafka_headers_destroy(h);
        luaL_error(L, "header '%s' must have a string value, got %s", n, luaL_typename(L, value_idx));
      }
      v = lua_tolstring(L, value_idx, &vl);
    }
    rd_kafka_header_add(h, n, static_cast<ssize_t>(nl), v, static_cast<ssize_t>(vl));
  };
  if (is_list) {
    int n = static_cast<int>(lua_objlen(L, idx));
    for (int i = 1; i <= n; ++i) {
      lua_rawgeti(L, idx, i);
      if (!lua_istable(L, -1)) {
        rd_kafka_headers_destroy(h);
        luaL_error(L, "headers[%d] must be a {name, value} pair, got %s", i, luaL_typename(L, -1));
      }
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      add(-2, -1);
      lua_pop(L, 3);
    }
  } else {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      add(-2, -1);
      lua_pop(L, 1);
    }
  }
  return h;
}

rd_kafka_resp_err_t Producer::enqueue(lua_State* L, int idx, Delivery* extra, bool allow_callbacks,
                                      std::string* topic_out, std::string* err_message, double* timeout_ms) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  const char* topic_name = nullptr;
  size_t topic_len = 0;
  const char *key = nullptr, *value = nullptr;
  size_t key_len = 0, value_len = 0;
  int32_t partition = RD_KAFKA_PARTITION_UA;
  int64_t timestamp = 0;
  int headers_idx = 0, on_delivery_idx = 0, opaque_idx = 0;
  // Slots that keep converted or referenced values alive while the message is built.
  const int slots = lua_gettop(L);
  const int S_KEY = slots + 1, S_VALUE = slots + 2, S_HEADERS = slots + 3, S_CB = slots + 4, S_OPAQUE = slots + 5;
  lua_settop(L, slots + 5);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char* k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : nullptr;
    int vt = lua_type(L, -1);
    if (k == statics_->field_ptrs[F_TOPIC]) {
      if (vt != LUA_TSTRING) luaL_error(L, "message field 'topic' must be a string, got %s", luaL_typename(L, -1));
      topic_name = lua_tolstring(L, -1, &topic_len);
    } else if (k == statics_->field_ptrs[F_VALUE] || k == statics_->field_ptrs[F_KEY]) {
      bool is_value = k == statics_->field_ptrs[F_VALUE];
      if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
        luaL_error(L, "message field '%s' must be a string or nil, got %s", is_value ? "value" : "key", luaL_typename(L, -1));
      lua_pushvalue(L, -1);  // convert a copy: converting the table's value in place would confuse lua_next
      lua_replace(L, is_value ? S_VALUE : S_KEY);
      if (is_value) value = lua_tolstring(L, S_VALUE, &value_len);
      else key = lua_tolstring(L, S_KEY, &key_len);
    } else if (k == statics_->field_ptrs[F_HEADERS]) {
      if (vt != LUA_TTABLE) luaL_error(L, "message field 'headers' must be a table, got %s", luaL_typename(L, -1));
      lua_pushvalue(L, -1);
      lua_replace(L, S_HEADERS);
      headers_idx = S_HEADERS;
    } else if (k == statics_->field_ptrs[F_PARTITION]) {
      if (vt != LUA_TNUMBER) luaL_error(L, "message field 'partition' must be a number, got %s", luaL_typename(L, -1));
      partition = static_cast<int32_t>(lua_tointeger(L, -1));
      if (partition < 0) luaL_error(L, "message field 'partition' must be >= 0 (partitions are 0-based)");
    } else if (k == statics_->field_ptrs[F_TIMESTAMP]) {
      if (vt != LUA_TNUMBER) luaL_error(L, "message field 'timestamp' must be epoch milliseconds, got %s", luaL_typename(L, -1));
      double ts = lua_tonumber(L, -1);
      if (!(ts >= 0 && ts < 9.2e18)) luaL_error(L, "message field 'timestamp' must be epoch milliseconds >= 0");
      timestamp = static_cast<int64_t>(ts);
    } else if (k == statics_->field_ptrs[F_ON_DELIVERY]) {
      if (!allow_callbacks) luaL_error(L, "message field 'on_delivery' is for p:send only");
      if (vt != LUA_TFUNCTION) luaL_error(L, "message field 'on_delivery' must be a function, got %s", luaL_typename(L, -1));
      lua_pushvalue(L, -1);
      lua_replace(L, S_CB);
      on_delivery_idx = S_CB;
    } else if (k == statics_->field_ptrs[F_OPAQUE]) {
      if (!allow_callbacks) luaL_error(L, "message field 'opaque' is for p:send only");
      lua_pushvalue(L, -1);
      lua_replace(L, S_OPAQUE);
      opaque_idx = S_OPAQUE;
    } else if (k == statics_->field_ptrs[F_TIMEOUT]) {
      if (vt != LUA_TNUMBER) luaL_error(L, "message field 'timeout_ms' must be a number");
      if (timeout_ms) *timeout_ms = lua_tonumber(L, -1);
    } else {
      luaL_error(L, "unknown message field '%s' (fields: topic, key, value, headers, partition, timestamp, "
                    "on_delivery, opaque, timeout_ms)", k ? k : luaL_typename(L, -2));
    }
    lua_pop(L, 1);
  }
  if (!topic_name) luaL_error(L, "message field 'topic' is required");
  std::string problem;
  rd_kafka_topic_t* rkt = topic(L, topic_name, topic_len, &problem);
  if (!rkt) {
    if (topic_out) topic_out->assign(topic_name, topic_len);
    lua_settop(L, slots);
    *err_message = fmt::format("invalid topic name \"{}\": {}", std::string(topic_name, topic_len), problem);
    return RD_KAFKA_RESP_ERR__INVALID_ARG;
  }
  Delivery* d = extra;
  std::unique_ptr<Delivery> own;
  if ((on_delivery_idx || opaque_idx) && !d) {
    own = std::make_unique<Delivery>();
    d = own.get();
  }
  rd_kafka_headers_t* hdrs = headers_idx ? build_headers(L, headers_idx) : nullptr;
  rd_kafka_resp_err_t err;
  if (hdrs) {
    err = rd_kafka_producev(rk_, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE((void*)value, value_len),
                            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_TIMESTAMP(timestamp),
                            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (err) rd_kafka_headers_destroy(hdrs);
  } else {
    err = rd_kafka_producev(rk_, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE((void*)value, value_len),
                            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_TIMESTAMP(timestamp),
                            RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
  }
  if (err) {
    lua_settop(L, slots);
    if (topic_out) topic_out->assign(topic_name, topic_len);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
      *err_message = fmt::format("cannot produce to topic \"{}\": {}", std::string(topic_name, topic_len),
                                 rd_kafka_err2str(err));
    return err;
  }
  if (own) {
    if (on_delivery_idx) {
      lua_pushvalue(L, on_delivery_idx);
      d->callback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (opaque_idx) {
      lua_pushvalue(L, opaque_idx);
      d->opaque_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    own.release();
  }
  lua_settop(L, slots);
  if (all_brokers_down_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(down_timer_))) on_all_brokers_down();
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

int Producer::send_fast(const char* topic_name, size_t topic_len, const char* value, size_t value_len,
                        const char* key, size_t key_len, int32_t partition) {
  if (state_ != Open || fatal_) return -1;
  if (turn_due()) {
    turn_pending = true;
    return -1;
  }
  std::string problem;
  rd_kafka_topic_t* rkt = topic(nullptr, topic_name, topic_len, &problem);
  if (!rkt) return -1;
  rd_kafka_resp_err_t err =
      rd_kafka_producev(rk_, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE((void*)value, value_len),
                        RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_END);
  if (err) return err;
  if (all_brokers_down_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(down_timer_))) on_all_brokers_down();
  return 0;
}

int Producer::topic_id(lua_State* L, const rd_kafka_topic_t* rkt) {
  if (rkt == id_rkt_) return id_last_;
  auto it = topic_ids_.find(rkt);
  if (it == topic_ids_.end()) {
    if (topic_names_ref_ == LUA_NOREF) {
      lua_newtable(L);
      topic_names_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    int id = static_cast<int>(topic_ids_.size()) + 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, topic_names_ref_);
    lua_pushstring(L, rd_kafka_topic_name(rkt));
    lua_rawseti(L, -2, id);
    lua_pop(L, 1);
    it = topic_ids_.emplace(rkt, id).first;
  }
  id_rkt_ = rkt;
  id_last_ = it->second;
  return id_last_;
}

// Hands a batch of successful reports to the Lua dispatcher, which calls on_delivery(report, nil)
// for each. The batch is the caller's own vector: a callback may re-enter drain (p:flush).
void Producer::dispatch_fast(lua_State* L, std::vector<DrEntry>& batch) {
  if (batch.empty()) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, statics_->dispatch_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, on_delivery_);
  lua_rawgeti(L, LUA_REGISTRYINDEX, topic_names_ref_);
  lua_pushlightuserdata(L, batch.data());
  lua_pushinteger(L, static_cast<lua_Integer>(batch.size()));
  lua_call(L, 4, 0);
  batch.clear();
}

// Reports are built for every message: keys are pre-interned strings kept in the registry
// (lua_rawgeti + lua_rawset instead of lua_setfield's strlen and string interning), and the
// topic name string is cached per topic handle.
enum ReportKey { R_TOPIC, R_PARTITION, R_OFFSET, R_TIMESTAMP, R_TIMESTAMP_TYPE, R_CREATE, R_LOG_APPEND, R_COUNT };

// The key first, then the value, then rawset: no lua_insert to put the key under a pushed value.
static inline void push_report_key(lua_State* L, const ProducerStatics* st, ReportKey k) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->report_key_refs[k]);
}

void Producer::push_topic_name(lua_State* L, const rd_kafka_topic_t* rkt) {
  if (rkt != report_rkt_) {
    auto it = topic_name_refs_.find(rkt);
    if (it == topic_name_refs_.end()) {
      lua_pushstring(L, rd_kafka_topic_name(rkt));
      it = topic_name_refs_.emplace(rkt, luaL_ref(L, LUA_REGISTRYINDEX)).first;
    }
    report_rkt_ = rkt;
    report_topic_ref_ = it->second;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, report_topic_ref_);
}

void Producer::push_report(lua_State* L, const rd_kafka_message_t* m) {
  lua_createtable(L, 0, 5);
  push_report_key(L, statics_, R_TOPIC);
  push_topic_name(L, m->rkt);
  lua_rawset(L, -3);
  push_report_key(L, statics_, R_PARTITION);
  lua_pushinteger(L, m->partition);
  lua_rawset(L, -3);
  push_report_key(L, statics_, R_OFFSET);
  lua_pushnumber(L, static_cast<double>(m->offset));
  lua_rawset(L, -3);
  rd_kafka_timestamp_type_t tt;
  int64_t ts = rd_kafka_message_timestamp(m, &tt);
  if (ts >= 0 && tt != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) {
    push_report_key(L, statics_, R_TIMESTAMP);
    lua_pushnumber(L, static_cast<double>(ts));
    lua_rawset(L, -3);
    push_report_key(L, statics_, R_TIMESTAMP_TYPE);
    lua_rawgeti(L, LUA_REGISTRYINDEX, statics_->report_key_refs[tt == RD_KAFKA_TIMESTAMP_CREATE_TIME ? R_CREATE : R_LOG_APPEND]);
    lua_rawset(L, -3);
  }
}

// p:produce's report as five values (topic, partition, offset, timestamp, timestamp type 0 none,
// 1 create, 2 log_append) that its Lua wrapper (PRODUCE_SOURCE) makes into the report table: a
// table built there costs a tenth of one built through the C API, per awaited message.
void Producer::push_report_fields(lua_State* L, const rd_kafka_message_t* m) {
  push_topic_name(L, m->rkt);
  lua_pushinteger(L, m->partition);
  lua_pushnumber(L, static_cast<double>(m->offset));
  rd_kafka_timestamp_type_t tt;
  int64_t ts = rd_kafka_message_timestamp(m, &tt);
  if (ts >= 0 && tt != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) {
    lua_pushnumber(L, static_cast<double>(ts));
    lua_pushinteger(L, tt == RD_KAFKA_TIMESTAMP_CREATE_TIME ? 1 : 2);
  } else {
    lua_pushnil(L);
    lua_pushinteger(L, 0);
  }
}

// auth: the producer's last authentication error. A message purged from the queue after one was never
// sent because the brokers refused the credentials: that is the error to report, not the purge.
static void push_delivery_error(lua_State* L, const rd_kafka_message_t* m, const std::optional<ErrorSpec>& auth) {
  ErrorSpec e = kafka_error(m->err, fmt::format("delivery to topic \"{}\" failed: {}", rd_kafka_topic_name(m->rkt),
                                                rd_kafka_err2str(m->err)));
  if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE && auth) {
    e = *auth;
    e.message = fmt::format("delivery to topic \"{}\" failed: the message was never sent: {}", rd_kafka_topic_name(m->rkt),
                            auth->message);
  }
  e.topic = rd_kafka_topic_name(m->rkt);
  if (m->partition >= 0) e.partition = m->partition;
  e.op = "produce";
  push_error(L, e);
}

void Producer::deliver(lua_State* L, const rd_kafka_message_t* m) {
  if (!m->err) {
    all_brokers_down_ = false;
    last_auth_error_.reset();
  }
  auto* d = static_cast<Delivery*>(m->_private);
  if (!d) {
    if (on_delivery_ != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, on_delivery_);
      push_report(L, m);
      if (m->err) push_delivery_error(L, m, last_auth_error_); else lua_pushnil(L);
      lua_call(L, 2, 0);
    } else if (m->err) {
      // Nobody asked for this report: remember the failure for the next flush and say so.
      if (failed_since_flush++ == 0)
        first_failure = fmt::format("topic \"{}\" [{}]: {}", rd_kafka_topic_name(m->rkt), m->partition,
                                    rd_kafka_err2str(m->err));
      if (failed_since_flush <= 10)
        fmt::print(stderr, "klua: delivery failed for a message to topic \"{}\": {}\n", rd_kafka_topic_name(m->rkt),
                   rd_kafka_err2str(m->err));
    }
    return;
  }
  std::unique_ptr<Delivery> owned(d);
  if (d->batch) {
    Batch& b = *d->batch;
    lua_rawgeti(L, LUA_REGISTRYINDEX, b.results_ref);
    push_report(L, m);
    if (m->err) {
      push_delivery_error(L, m, last_auth_error_);
      lua_setfield(L, -2, "error");
    }
    lua_rawseti(L, -2, d->index);
    lua_pop(L, 1);
    if (--b.pending == 0 && (b.tok || b.next > b.n)) {
      if (b.tok) {
        if (lua_State* co = rt_.scheduler().wake_begin(b.tok)) {
          lua_rawgeti(co, LUA_REGISTRYINDEX, b.results_ref);
          rt_.scheduler().wake_end(b.tok, 1);
        }
      }
      luaL_unref(L, LUA_REGISTRYINDEX, b.results_ref);
      b.results_ref = LUA_NOREF;
      batches.erase(b.key);
    }
    return;
  }
  if (d->tok) {
    if (lua_State* co = rt_.scheduler().wake_begin(d->tok)) {
      if (m->err) {
        lua_pushnil(co);
        push_delivery_error(co, m, last_auth_error_);
        rt_.scheduler().wake_end(d->tok, 2);
      } else {
        push_report_fields(co, m);
        rt_.scheduler().wake_end(d->tok, 5);
      }
    }
    return;
  }
  int fn = d->callback_ref != LUA_NOREF ? d->callback_ref : on_delivery_;
  if (fn != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
    push_report(L, m);
    if (d->opaque_ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, d->opaque_ref);
      lua_setfield(L, -2, "opaque");
    }
    if (m->err) push_delivery_error(L, m, last_auth_error_); else lua_pushnil(L);
    // Release the refs before calling: an error in the callback must not leak them.
    luaL_unref(L, LUA_REGISTRYINDEX, d->callback_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, d->opaque_ref);
    d->callback_ref = d->opaque_ref = LUA_NOREF;
    lua_call(L, 2, 0);
  } else {
    luaL_unref(L, LUA_REGISTRYINDEX, d->opaque_ref);
  }
}

// Runs under one protected call per DR event (not one per message).
int Producer::dispatch_reports(lua_State* L) {
  auto* self = static_cast<Producer*>(lua_touserdata(L, 1));
  auto* ev = static_cast<rd_kafka_event_t*>(lua_touserdata(L, 2));
  // Successful reports for the producer-level hook go to Lua in batches; anything else (errors,
  // per-message callbacks, produce/produce_batch waiters) through deliver(), in order.
  std::vector<DrEntry> batch;
  bool fast = self->on_delivery_ != LUA_NOREF;
  if (fast) batch.reserve(rd_kafka_event_message_count(ev));
  const rd_kafka_message_t* m;
  while ((m = rd_kafka_event_message_next(ev))) {
    if (fast && !m->_private && !m->err) {
      self->all_brokers_down_ = false;
      rd_kafka_timestamp_type_t tt;
      int64_t ts = rd_kafka_message_timestamp(m, &tt);
      DrEntry e{self->topic_id(L, m->rkt), m->partition, 0, 0, static_cast<double>(m->offset), 0};
      if (ts >= 0 && tt != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) {
        e.tstype = tt == RD_KAFKA_TIMESTAMP_CREATE_TIME ? 1 : 2;
        e.timestamp = static_cast<double>(ts);
      }
      batch.push_back(e);
      continue;
    }
    self->dispatch_fast(L, batch);
    self->deliver(L, m);
  }
  self->dispatch_fast(L, batch);
  return 0;
}

static void wake_all(Scheduler& s, std::vector<WaitToken>& list, void (*push)(lua_State*, void*), void* arg, int n) {
  auto waiters = std::move(list);
  list.clear();
  for (WaitToken t : waiters) {
    if (lua_State* co = s.wake_begin(t)) {
      if (push) push(co, arg);
      s.wake_end(t, n);
    }
  }
}

static void push_retry(lua_State* co, void*) { lua_pushlightuserdata(co, &retry_marker); }

void Producer::drain() {
  if (!rk_ || state_ == Destroying || state_ == Closed) return;
  lua_State* L = rt_.lua();
  bool reports = false;
  while (rd_kafka_event_t* ev = rd_kafka_queue_poll(queue_, 0)) {
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR) {
      reports = true;
      lua_pushcfunction(L, dispatch_reports);
      lua_pushlightuserdata(L, this);
      lua_pushlightuserdata(L, ev);
      if (!call_hook(L, 2, 0)) {
        // The script failed inside a callback: wake the waiters of the messages left in the event.
        const rd_kafka_message_t* m;
        while ((m = rd_kafka_event_message_next(ev))) delete static_cast<Delivery*>(m->_private);
      }
    } else {
      handle_common_event(ev);
    }
    rd_kafka_event_destroy(ev);
    if (!rk_) return;
  }
  if (reports) {
    after_reports();
  } else if (!room_waiters.empty()) {
    wake_all(rt_.scheduler(), room_waiters, push_retry, nullptr, 1);  // a send letting the loop run
  }
}


void Producer::after_reports() {
  Scheduler& s = rt_.scheduler();
  if (!room_waiters.empty()) wake_all(s, room_waiters, push_retry, nullptr, 1);
  if (rd_kafka_outq_len(rk_) == 0) {
    keep_flushing_ = false;
    if (!flush_waiters.empty()) {
      auto waiters = std::move(flush_waiters);
      flush_waiters.clear();
      for (WaitToken t : waiters) {
        if (lua_State* co = s.wake_begin(t)) {
          if (failed_since_flush) {
            ErrorSpec e = kafka_error(RD_KAFKA_RESP_ERR__FAIL,
                                      fmt::format("{} message(s) failed delivery since the last flush; first: {}",
                                                  failed_since_flush, first_failure));
            e.op = "flush";
            nil_error(co, e);
            s.wake_end(t, 2);
          } else {
            lua_pushboolean(co, 1);
            s.wake_end(t, 1);
          }
        }
      }
      failed_since_flush = 0;
      first_failure.clear();
    }
    if (state_ == Flushing) finish_close();
  }
}

void Producer::on_all_brokers_down() {
  // Fail fast: if no broker comes back within a few seconds while messages wait, purge the
  // messages not yet sent, so that produce/flush return an error now instead of at
  // message.timeout.ms. In-flight messages keep their own timeouts.
  if (!rk_ || uv_is_active(reinterpret_cast<uv_handle_t*>(down_timer_))) return;
  uv_timer_start(down_timer_, [](uv_timer_t* h) {
    auto* self = static_cast<Producer*>(h->data);
    if (self->all_brokers_down_ && self->rk_ && rd_kafka_outq_len(self->rk_) > 0) {
      if (self->last_auth_error_)
        fmt::print(stderr, "klua: producer: the brokers refused the credentials ({}); failing the queued messages\n",
                   self->last_auth_error_->message);
      else
        fmt::print(stderr, "klua: producer: all brokers are down; failing the queued messages\n");
      rd_kafka_purge(self->rk_, RD_KAFKA_PURGE_F_QUEUE);
      self->watcher_->schedule();
    }
  }, 5000, 0);
}

void Producer::begin_close() {
  if (state_ != Open) return;
  state_ = Flushing;
  // Pending produce calls still get their reports; flush sends without waiting for linger.
  start_flushing();
  close_timer_ = new uv_timer_t;
  uv_timer_init(rt_.loop(), close_timer_);
  close_timer_->data = this;
  uv_timer_start(close_timer_, [](uv_timer_t* h) {
    auto* self = static_cast<Producer*>(h->data);
    if (self->state_ != Flushing) return;
    int left = rd_kafka_outq_len(self->rk_);
    fmt::print(stderr, "klua: producer close: {} message(s) not delivered after {} ms; purging them\n", left,
               self->wait_timeout_ms_);
    rd_kafka_purge(self->rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    self->drain();
    if (self->state_ == Flushing) self->finish_close();
  }, static_cast<uint64_t>(timeout_int(wait_timeout_ms_)), 0);
  drain();
  if (state_ == Flushing && rd_kafka_outq_len(rk_) == 0) finish_close();
}

void Producer::finish_close() {
  keep_flushing_ = false;
  if (inflight_ > 0) {
    // A flush nudge (or hurry_producer_id's requests) still runs on the executor: destroy the
    // handle after it returns.
    destroy_after_flush_ = true;
    return;
  }
  if (state_ == Destroying || state_ == Closed) return;
  state_ = Destroying;
  uv_close(reinterpret_cast<uv_handle_t*>(close_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  uv_close(reinterpret_cast<uv_handle_t*>(down_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  uv_close(reinterpret_cast<uv_handle_t*>(nudge_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  close_timer_ = down_timer_ = nudge_timer_ = nullptr;
  watcher_->close();
  // Whatever is still queued (reports after a purge) is released with the handle.
  while (rd_kafka_event_t* ev = rd_kafka_queue_poll(queue_, 0)) {
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR) {
      const rd_kafka_message_t* m;
      while ((m = rd_kafka_event_message_next(ev))) delete static_cast<Delivery*>(m->_private);
    }
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_queue_destroy(queue_);
  queue_ = nullptr;
  for (auto& [name, rkt] : topics_) rd_kafka_topic_destroy(rkt);
  topics_.clear();
  last_topic_ = nullptr;
  lua_State* L = rt_.lua();
  for (auto& [rkt, ref] : topic_name_refs_) luaL_unref(L, LUA_REGISTRYINDEX, ref);
  topic_name_refs_.clear();
  report_rkt_ = nullptr;
  luaL_unref(L, LUA_REGISTRYINDEX, topic_names_ref_);
  topic_names_ref_ = LUA_NOREF;
  topic_ids_.clear();
  id_rkt_ = nullptr;
  luaL_unref(L, LUA_REGISTRYINDEX, on_delivery_);
  on_delivery_ = LUA_NOREF;
  release_hooks();
  // rd_kafka_destroy joins librdkafka's threads: off the loop thread.
  destroy_handle_async(rt_, rk_, 0, [this] {
    rk_ = nullptr;
    state_ = Closed;
    wake_close_waiters(rt_.scheduler(), std::move(close_waiters));
    if (orphaned) delete this;
  });
}

// ---- Lua API ----------------------------------------------------------------------

struct ProducerBox {
  Producer* p;
};

// Called through the FFI with the payload of a userdata whose metatable the caller checked.
int send_fast_entry(void* box, const char* topic, size_t topic_len, const char* value, size_t value_len,
                    const char* key, size_t key_len, int32_t partition) {
  Producer* p = static_cast<ProducerBox*>(box)->p;
  if (!p) return -1;
  return p->send_fast(topic, topic_len, value, value_len, key, key_len, partition);
}

const ProducerStatics* statics(lua_State* L) {
  return static_cast<const ProducerStatics*>(lua_touserdata(L, lua_upvalueindex(1)));
}

// luaL_checkudata looks the metatable up by name on every call; this compares with a cached
// reference (it is on the path of every send).
ProducerBox* to_box(lua_State* L, int idx) {
  void* p = lua_touserdata(L, idx);
  if (p && lua_getmetatable(L, idx)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, statics(L)->mt_ref);
    bool same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same) return static_cast<ProducerBox*>(p);
  }
  luaL_typerror(L, idx, PRODUCER_MT);
  return nullptr;
}

Producer* check_producer(lua_State* L, int idx) {
  auto* box = to_box(L, idx);
  if (!box->p || !box->p->usable()) {
    ErrorSpec e;
    e.code = CODE_CLOSED;
    e.name = ERR_CLOSED;
    e.message = "the producer is closed";
    raise_error(L, e);
  }
  box->p->raise_if_fatal(L);
  return box->p;
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
  Producer* p = check_producer(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (p->turn_pending || p->turn_due()) {
    p->turn_pending = false;
    if (Runtime::from(L).scheduler().can_wait(L)) return wait_for_room(L, p, "p:send (letting delivery reports in)");
  }
  std::string msg, topic;
  rd_kafka_resp_err_t err = p->enqueue(L, 2, nullptr, true, &topic, &msg, nullptr);
  if (!err) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return wait_for_room(L, p, "p:send (local queue full)");
  if (err == RD_KAFKA_RESP_ERR__INVALID_ARG) {
    ErrorSpec e;
    e.code = CODE_INVALID_ARGUMENT;
    e.name = ERR_INVALID_ARGUMENT;
    e.message = msg;
    e.topic = topic;
    e.op = "send";
    return nil_error(L, e);
  }
  return kafka_nil_error(L, err, msg, topic);
}

// p:produce(msg) -> report | nil, err
int l_produce(lua_State* L) {
  Producer* p = check_producer(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  Scheduler& s = Runtime::from(L).scheduler();
  if (!s.can_wait(L)) return luaL_error(L, "p:produce waits for the delivery report: call it from a task (use p:send in callbacks)");
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
  rd_kafka_resp_err_t err = p->enqueue(L, 2, d, false, &topic, &msg, &timeout);
  if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return wait_for_room(L, p, "p:produce (local queue full)");
  if (err == RD_KAFKA_RESP_ERR__INVALID_ARG) {
    ErrorSpec e;
    e.code = CODE_INVALID_ARGUMENT;
    e.name = ERR_INVALID_ARGUMENT;
    e.message = msg;
    e.topic = topic;
    e.op = "produce";
    return nil_error(L, e);
  }
  if (err) return kafka_nil_error(L, err, msg, topic);
  p->spare_delivery.release();  // librdkafka's now: its delivery report frees it
  // Its report is dispatched by the loop, never before this call returns.
  d->tok = s.prepare_wait(L, "p:produce (waiting for the delivery report)", timeout);
  return lua_yield(L, 0);
}

// p:produce_batch(list) -> results (one per message, in order, error nil on success)
int l_produce_batch(lua_State* L) {
  Producer* p = check_producer(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  Scheduler& s = Runtime::from(L).scheduler();
  if (!s.can_wait(L)) return luaL_error(L, "p:produce_batch waits for delivery reports: call it from a task");
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
  for (; b->next <= b->n; ++b->next) {
    lua_rawgeti(L, 2, b->next);
    if (!lua_istable(L, -1)) {
      p->batches.erase(key);
      return luaL_error(L, "p:produce_batch: item %d must be a message table, got %s", b->next, luaL_typename(L, -1));
    }
    auto d = std::make_unique<Delivery>();
    d->batch = b;
    d->index = b->next;
    std::string msg, topic;
    rd_kafka_resp_err_t err = p->enqueue(L, -1, d.get(), false, &topic, &msg, nullptr);
    lua_pop(L, 1);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return wait_for_room(L, p, "p:produce_batch (local queue full)");
    if (err) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, b->results_ref);
      lua_createtable(L, 0, 2);
      lua_pushlstring(L, topic.data(), topic.size());
      lua_setfield(L, -2, "topic");
      ErrorSpec e = err == RD_KAFKA_RESP_ERR__INVALID_ARG ? ErrorSpec{} : kafka_error(err, msg);
      if (err == RD_KAFKA_RESP_ERR__INVALID_ARG) {
        e.code = CODE_INVALID_ARGUMENT;
        e.name = ERR_INVALID_ARGUMENT;
        e.message = msg;
      }
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

// p:flush([timeout_ms]) -> true | nil, err
int l_flush(lua_State* L) {
  Producer* p = check_producer(L, 1);
  double timeout = luaL_optnumber(L, 2, p->wait_timeout_ms());
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
  auto* box = static_cast<ProducerBox*>(luaL_checkudata(L, 1, PRODUCER_MT));
  return close_and_wait(L, box->p, "p:close");
}

// p:_inject_fatal_error(reason): librdkafka's test hook, for testing fatal-error handling.
int l_inject_fatal(lua_State* L) {
  Producer* p = check_producer(L, 1);
  rd_kafka_test_fatal_error(p->rk(), RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, luaL_optstring(L, 2, "injected"));
  return 0;
}

int l_outq_len(lua_State* L) {
  Producer* p = check_producer(L, 1);
  lua_pushinteger(L, rd_kafka_outq_len(p->rk()));
  return 1;
}

int l_gc(lua_State* L) {
  auto* box = static_cast<ProducerBox*>(lua_touserdata(L, 1));
  collect_handle(box->p);
  box->p = nullptr;
  return 0;
}

int l_tostring(lua_State* L) {
  auto* box = static_cast<ProducerBox*>(luaL_checkudata(L, 1, PRODUCER_MT));
  if (box->p && box->p->rk())
    lua_pushfstring(L, "klua.producer(%s)", rd_kafka_name(box->p->rk()));
  else
    lua_pushliteral(L, "klua.producer(closed)");
  return 1;
}

// klua.producer([config])
int l_new(lua_State* L) {
  int idx = lua_isnoneornil(L, 1) ? 0 : 1;
  if (idx) luaL_checktype(L, 1, LUA_TTABLE);
  ClientOptions o = build_client_options(L, idx, "klua.producer", {{"enable.idempotence", "true"}},
                                         {"on_delivery", "timeout_ms"});
  int on_delivery = LUA_NOREF;
  double timeout_ms = -1;
  for (const auto& k : o.klua_keys) {
    lua_getfield(L, 1, k.c_str());
    if (k == "on_delivery") {
      if (!lua_isfunction(L, -1)) {
        rd_kafka_conf_destroy(o.conf);
        return luaL_error(L, "klua.producer: option 'on_delivery' must be a function");
      }
      on_delivery = luaL_ref(L, LUA_REGISTRYINDEX);
      continue;
    }
    if (k == "timeout_ms") timeout_ms = lua_tonumber(L, -1);
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
  box->p = nullptr;
  luaL_getmetatable(L, PRODUCER_MT);
  lua_setmetatable(L, -2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, statics(L)->producers_ref);
  lua_pushvalue(L, -2);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  rd_kafka_t* rk = new_handle(L, RD_KAFKA_PRODUCER, o.conf, "klua.producer");
  auto* p = new Producer(rt, statics(L));
  p->set_hooks(o);
  p->start(rk, on_delivery, timeout_ms);
  if (hurry) p->hurry_producer_id();
  box->p = p;
  return 1;
}

// The hot paths in Lua, compiled by LuaJIT together with the script's own loop: p:send takes
// messages of plain fields straight to librdkafka through the FFI (no Lua/C transition the JIT
// cannot compile), and delivery reports for the producer-level on_delivery are built here from a
// C array, one call per batch. Everything else (headers, timestamps, callbacks, bad input, a full
// queue, a closed handle) goes through the C functions, which check, raise and wait.
const char* const FAST_SOURCE = R"LUA(
local ffi, slow_send, PRODUCERS, send_fast_ptr = ...
pcall(ffi.cdef, [[
typedef struct { int32_t topic, partition, tstype, pad; double offset, timestamp; } klua_dr_entry;
]])
local send_fast = ffi.cast("int (*)(void*, const char*, size_t, const char*, size_t, const char*, size_t, int32_t)",
                           send_fast_ptr)
local entries = ffi.typeof("const klua_dr_entry*")
local cast, next, type = ffi.cast, next, type

-- Up to four fields, read without a loop so that the JIT compiles send into the caller's loop,
-- and into locals rather than a table (the JIT did not sink that table: one allocation per send).
-- ok is false for any other field.
local function field(k, v, topic, value, key, partition)
  if k == "topic" then return true, v, value, key, partition
  elseif k == "value" then return true, topic, v, key, partition
  elseif k == "key" then return true, topic, value, v, partition
  elseif k == "partition" then return true, topic, value, key, v
  end
  return false
end

local function send(self, msg)
  -- PRODUCERS has an entry for every producer userdata and nothing else: it is the type check
  -- (getmetatable of a userdata would stop the JIT's trace).
  if PRODUCERS[self] == nil or type(msg) ~= "table" then return slow_send(self, msg) end
  local ok, topic, value, key, partition = true, nil, nil, nil, nil
  local k, v = next(msg)
  if k ~= nil then
    ok, topic, value, key, partition = field(k, v, topic, value, key, partition)
    if not ok then return slow_send(self, msg) end
    k, v = next(msg, k)
    if k ~= nil then
      ok, topic, value, key, partition = field(k, v, topic, value, key, partition)
      if not ok then return slow_send(self, msg) end
      k, v = next(msg, k)
      if k ~= nil then
        ok, topic, value, key, partition = field(k, v, topic, value, key, partition)
        if not ok then return slow_send(self, msg) end
        k, v = next(msg, k)
        if k ~= nil then
          ok, topic, value, key, partition = field(k, v, topic, value, key, partition)
          if not ok then return slow_send(self, msg) end
          if next(msg, k) ~= nil then return slow_send(self, msg) end
        end
      end
    end
  end
  if type(topic) ~= "string" then return slow_send(self, msg) end
  local vlen, klen = 0, 0
  if value ~= nil then
    if type(value) ~= "string" then return slow_send(self, msg) end
    vlen = #value
  end
  if key ~= nil then
    if type(key) ~= "string" then return slow_send(self, msg) end
    klen = #key
  end
  if partition == nil then
    partition = -1
  elseif type(partition) ~= "number" or not (partition >= 0 and partition < 2147483648) then
    return slow_send(self, msg)
  end
  if send_fast(self, topic, #topic, value, vlen, key, klen, partition) == 0 then return true end
  return slow_send(self, msg)
end

local function dispatch(cb, names, buf, n)
  local e = cast(entries, buf)
  for i = 0, n - 1 do
    local r = e[i]
    local tt = r.tstype
    if tt == 0 then
      cb({ topic = names[r.topic], partition = r.partition, offset = r.offset }, nil)
    else
      cb({ topic = names[r.topic], partition = r.partition, offset = r.offset, timestamp = r.timestamp,
           timestamp_type = tt == 1 and "create" or "log_append" }, nil)
    end
  end
end

return send, dispatch
)LUA";

int send_fast_entry(void* box, const char* topic, size_t topic_len, const char* value, size_t value_len,
                    const char* key, size_t key_len, int32_t partition);

// Replaces the C function on top of the stack with the Lua wrapper that src (a chunk taking the
// function, the cancel sentinel and the retry marker) returns.
void wrap_with(lua_State* L, const char* src) {
  luaL_loadbuffer(L, src, strlen(src), "=klua.producer");
  lua_insert(L, -2);  // the function to wrap becomes the chunk's first argument
  lua_pushlightuserdata(L, cancel_sentinel());
  lua_pushlightuserdata(L, &retry_marker);
  lua_call(L, 3, 1);
}

// fn(self, arg) may resume with the retry marker: call it again with the same arguments.
const char* const WAITING_RETRY_SOURCE = R"(
local fn, CANCEL, RETRY = ...
local error = error
local function call(self, a)
  local r, e = fn(self, a)
  if r == RETRY then return call(self, a) end
  if r == CANCEL then error(e, 0) end
  return r, e
end
return call)";

// p:produce(msg): the C function yields, and is resumed with the report's fields (see
// push_report_fields), nil and an error, or the retry or cancel markers.
const char* const PRODUCE_SOURCE = R"(
local fn, CANCEL, RETRY = ...
local error, type = error, type
local function produce(self, msg)
  local topic, partition, offset, timestamp, tt = fn(self, msg)
  if type(topic) == "string" then
    if tt == 0 then return { topic = topic, partition = partition, offset = offset } end
    return { topic = topic, partition = partition, offset = offset, timestamp = timestamp,
             timestamp_type = tt == 1 and "create" or "log_append" }
  end
  if topic == RETRY then return produce(self, msg) end
  if topic == CANCEL then error(partition, 0) end
  return topic, partition
end
return produce)";
}  // namespace

rd_kafka_t* check_producer_handle(lua_State* L, int idx) {
  // Called from other modules' functions, which have no producer upvalue.
  auto* box = static_cast<ProducerBox*>(luaL_checkudata(L, idx, PRODUCER_MT));
  if (!box->p || !box->p->usable()) {
    ErrorSpec e;
    e.code = CODE_CLOSED;
    e.name = ERR_CLOSED;
    e.message = "the producer is closed";
    raise_error(L, e);
  }
  box->p->raise_if_fatal(L);
  return box->p->rk();
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
  static const char* report_keys[R_COUNT] = {"topic", "partition", "offset", "timestamp", "timestamp_type",
                                             "create", "log_append"};
  for (int i = 0; i < R_COUNT; ++i) {
    lua_pushstring(L, report_keys[i]);
    st->report_key_refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
  }

  auto closure = [&](lua_CFunction fn) {
    lua_pushlightuserdata(L, st);
    lua_pushcclosure(L, fn, 1);
  };
  luaL_newmetatable(L, PRODUCER_MT);
  lua_pushvalue(L, -1);
  st->mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  struct {
    const char* name;
    lua_CFunction fn;
    int kind;  // 0 plain, 1 waiting, 2 waiting with retry, 3 p:produce
  } methods[] = {
      {"send", l_send, 2},           {"produce", l_produce, 3}, {"produce_batch", l_produce_batch, 2},
      {"flush", l_flush, 1},         {"close", l_close, 1},     {"outq_len", l_outq_len, 0},
      {"_inject_fatal_error", l_inject_fatal, 0},
  };
  for (const auto& m : methods) {
    closure(m.fn);
    if (m.kind == 1) rt.scheduler().wrap_waiting(L);
    if (m.kind == 2) wrap_with(L, WAITING_RETRY_SOURCE);
    if (m.kind == 3) wrap_with(L, PRODUCE_SOURCE);
    lua_setfield(L, -2, m.name);
  }
  // p:send's fast path wraps the full one; the report dispatcher lives in the statics.
  if (luaL_loadbuffer(L, FAST_SOURCE, strlen(FAST_SOURCE), "=klua.producer.fast") != 0) lua_error(L);
  lua_getglobal(L, "require");  // LuaJIT preloads ffi: require makes it
  lua_pushliteral(L, "ffi");
  lua_call(L, 1, 1);
  lua_getfield(L, -3, "send");
  push_weak_keyed_table(L);  // producer userdata -> true
  lua_pushvalue(L, -1);
  st->producers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, reinterpret_cast<void*>(&send_fast_entry));
  lua_call(L, 4, 2);
  st->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -2, "send");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  closure(l_new);
  lua_setfield(L, klua_table, "producer");
}

}  // namespace klua
