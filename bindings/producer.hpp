// The producer's C side, shared by its files (one job each):
//   producer.cpp         the handle: start, the event queue drain, flush nudges, all-brokers-down, close
//   producer_send.cpp    enqueueing a message (the full path and the FFI fast path), topic handles, headers
//   producer_report.cpp  delivery reports: the one builder (bindings/lua/producer.lua's report), dispatch
//   producer_lua.cpp     the Lua API (klua.producer and the C primitives bindings/lua/producer*.lua wrap)
// Delivery reports arrive as DR events on the main queue, drained by the loop; a producer-level
// on_delivery serves every send without a closure per message.
#pragma once
#include <librdkafka/rdkafka.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "bindings/kafka_handle.hpp"
#include "bindings/ffi.h"

namespace klua::producer_impl {

inline constexpr const char* PRODUCER_MT = "klua.producer";
// The transactional producer's metatable (bindings/transactions.cpp makes it; same userdata).
inline constexpr const char* TXN_PRODUCER_MT = "klua.transactional_producer";
// Resumed into a waiting send/produce/produce_batch: call again (bindings/lua/producer.lua).
void* retry_marker();

// Interned field names: a message table is read with lua_next and the keys compared by
// pointer (LuaJIT strings are interned and never move), so absent fields cost nothing.
enum Field { F_TOPIC, F_KEY, F_VALUE, F_HEADERS, F_PARTITION, F_TIMESTAMP, F_ON_DELIVERY, F_OPAQUE, F_TIMEOUT, F_COUNT };
inline constexpr const char* FIELD_NAMES[F_COUNT] = {"topic", "key", "value", "headers", "partition", "timestamp",
                                          "on_delivery", "opaque", "timeout_ms"};
// Per Lua state (a process may run several runtimes): interned field names, the report builder
// and the metatables, reached through upvalue 1 of every producer method.
struct ProducerStatics {
  const char* field_ptrs[9];
  int report_ref = LUA_NOREF;  // bindings/lua/producer.lua's report(topic, partition, offset, ts, tstype)
  int mt_ref = LUA_NOREF;
  int txn_mt_ref = LUA_NOREF;  // set by open_transactions
  int dispatch_ref = LUA_NOREF;  // Lua function that turns a batch of DrEntry into on_delivery calls
  int producers_ref = LUA_NOREF;  // weak-keyed set of producer userdata, the fast path's type check
};

// One successful delivery report for the producer-level on_delivery (bindings/ffi.h).
using DrEntry = klua_dr_entry;

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

// The message argument of a producer call, for its programmer errors: argument #2 of fn ("p:send",
// "p:produce", "p:produce_batch"); item > 0 names the message's place in p:produce_batch's list.
struct MessageArg {
  const char* fn;
  int item = 0;
  std::function<void()> before_raise = {};  // p:produce_batch forgets the half-sent batch
  [[noreturn]] void raise(lua_State* L, const std::string& detail) const;
};

class Producer : public KafkaHandle {
 public:
  Producer(Runtime& rt, const ProducerStatics* statics) : KafkaHandle(rt, "producer"), statics_(statics) {}

  ~Producer() override { rt_.remove_closable(this); }

  void start(rd_kafka_t* rk, int on_delivery, double wait_timeout_ms) {
    rk_ = rk;
    on_delivery_ = on_delivery;
    wait_timeout_ms_ = wait_timeout_ms;
    queue_ = rd_kafka_queue_get_main(rk_);
    rd_kafka_set_log_queue(rk_, nullptr);
    watcher_ = std::make_unique<QueueWatcher>(rt_.loop(), queue_, [this] { drain(); });
    auth_purge_timer_ = new uv_timer_t;
    uv_timer_init(rt_.loop(), auth_purge_timer_);
    uv_unref(reinterpret_cast<uv_handle_t*>(auth_purge_timer_));  // a handle keeps no script alive
    auth_purge_timer_->data = this;
    nudge_timer_ = new uv_timer_t;
    uv_timer_init(rt_.loop(), nudge_timer_);
    uv_unref(reinterpret_cast<uv_handle_t*>(nudge_timer_));  // the flush's own wait keeps the loop alive
    nudge_timer_->data = this;
    rt_.add_closable(this);
    track_live();
  }

  int close_priority() const override { return 10; }
  // Messages lost if the process ended now (host/runtime.hpp's Closable::undelivered).
  long undelivered() override;
  bool usable() const { return state_ == Open; }
  double wait_timeout_ms() const { return wait_timeout_ms_; }

  // Enqueues the message in the table at idx. Returns 0 on success; RD_KAFKA_RESP_ERR__QUEUE_FULL
  // when the local queue is full (nothing was sent); another code with *err_message set on failure.
  // A bad message (a programmer error) raises through arg.
  rd_kafka_resp_err_t enqueue(lua_State* L, int idx, const MessageArg& arg, Delivery* extra, bool allow_callbacks,
                              std::string* topic_out, std::string* err_message, double* timeout_ms);
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
  void push_metrics(lua_State* L) override;
  // Counts a delivery report in the built-in metrics (every report, whichever path serves it):
  // increments in the topic's slot, found through the report's topic handle. The latency only
  // once the metrics are served: rd_kafka_message_latency reads the clock for every message, which
  // cost an unserved producer ~7% of its throughput (bench/produce.lua, 1M x 100 B).
  void count_report(const rd_kafka_message_t* m) {
    client_metrics::TopicCounters* t = m->rkt == metric_rkt_ ? metric_last_ : metric_topic(m->rkt);
    if (m->err) {
      ++t->errors[m->err];
      return;
    }
    ++t->messages;
    t->bytes += m->len + m->key_len;
    if (live_ && live_->serving) {
      int64_t us = rd_kafka_message_latency(m);
      if (us >= 0) t->latency.observe(static_cast<double>(us) * 1e-6);
    }
  }
  // Makes librdkafka send queued messages now, ignoring linger.ms, until the queue is empty.
  // The wait itself is on the loop (flush_waiters, woken by delivery reports when the out-queue
  // length reaches 0). Only rd_kafka_flush makes librdkafka's broker threads ignore linger.ms
  // (it raises rk_flushing while it runs and wakes them; the public API has nothing else), and
  // it blocks: a short one (kNudgeMs) runs on the executor, again every kNudgePeriodMs while
  // messages are left, so no pool thread is held for the whole flush and the loop never blocks.
  void start_flushing();
  // All brokers down is no reason to drop anything: librdkafka keeps reconnecting and fails a
  // message only at message.timeout.ms (the script hears _ALL_BROKERS_DOWN at once, through
  // on_error). Brokers that refused the credentials are another matter (a retry cannot fix a
  // wrong password): 5 s after such a refusal, while no broker is up and messages wait, the
  // queued ones fail with the authentication error (arm_auth_purge).
  void on_all_brokers_down() override { arm_auth_purge(); }
  void on_authentication_error(const ErrorSpec&) override { arm_auth_purge(); }
  void arm_auth_purge();
  // librdkafka 2.15's idempotent producer asks for its producer id when the producer is made,
  // finds no broker up yet, and asks again only on its next 500 ms timer tick or metadata
  // response: every script's first delivery came 0.5 s late (Python confluent-kafka 2.16 too).
  // Two metadata requests off the loop, the second answered by a broker the first one named,
  // give the producer that response once a broker is up: first report in ~70 ms instead of
  // 520-660 ms (Kafka 4.1). The handle waits for them before it is destroyed.
  void hurry_producer_id();
  void on_inflight_done() override;
  static constexpr int kNudgeMs = 10;
  static constexpr uint64_t kNudgePeriodMs = 10;

  std::vector<WaitToken> room_waiters, flush_waiters;
  std::unordered_map<const void*, std::shared_ptr<Batch>> batches;
  size_t failed_since_flush = 0;
  std::string first_failure;
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
  client_metrics::TopicCounters* metric_topic(const rd_kafka_topic_t* rkt);
  // The built-in metrics' slot of each topic handle, and the last one used (reports come in
  // runs of one topic).
  std::unordered_map<const rd_kafka_topic_t*, client_metrics::TopicCounters*> metric_topics_;
  const rd_kafka_topic_t* metric_rkt_ = nullptr;
  client_metrics::TopicCounters* metric_last_ = nullptr;

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
  uv_timer_t* auth_purge_timer_ = nullptr;  // see arm_auth_purge
  uv_timer_t* close_timer_ = nullptr;
  uv_timer_t* nudge_timer_ = nullptr;
  bool nudging_ = false;  // a short rd_kafka_flush is on the executor
  bool destroy_after_flush_ = false;
  bool keep_flushing_ = false;
};


// A producer's userdata.
struct ProducerBox {
  Producer* handle;
  static constexpr const char* kind = "producer";
};

// The statics of the calling producer method (its upvalue 1).
const ProducerStatics* statics(lua_State* L);
// The producer box at idx, either metatable (plain or transactional); raises a type error otherwise.
// fn names the call in the error ("p:send"; self is argument #1).
ProducerBox* to_box(lua_State* L, int idx, const char* fn);
// The open producer at idx; raises when it is closed or after a fatal error.
Producer* check_producer(lua_State* L, int idx, const char* fn);
// Pushes the error of a failed delivery; auth: the producer's last authentication error.
void push_delivery_error(lua_State* L, const rd_kafka_message_t* m, const std::optional<ErrorSpec>& auth);
// "not_persisted", "possibly_persisted" or "persisted" (rd_kafka_message_status).
const char* persisted_status(const rd_kafka_message_t* m);
// p:send's fast path, called through the FFI (bindings/lua/producer_fast.lua).
int send_fast_entry(void* box, const char* topic, size_t topic_len, const char* value, size_t value_len,
                    const char* key, size_t key_len, int32_t partition);

}  // namespace klua::producer_impl
