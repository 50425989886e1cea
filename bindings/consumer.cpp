// klua.consumer: subscribe (topics or ^regex) or assign, poll and the messages()
// iterator, rebalance hooks run as tasks, store/commit of processed messages,
// seek/pause/resume, positions, committed offsets, watermarks, offsets for times.
//
// Two queues reach the loop. The consumer queue carries only events (rebalances, errors,
// logs, commit results); the loop drains it whenever it has something, so rebalances are
// answered even when the script is not polling. Fetched messages stay in librdkafka: every
// assigned partition's queue is forwarded to one messages queue, which only c:poll takes
// from (one message at a time), or the loop when a c:poll is waiting. So librdkafka's own
// prefetch limits (queued.min.messages, queued.max.messages.kbytes) bound what is held, and
// librdkafka itself drops what a pause, seek or revoke made stale (by partition version).
//
// Measured on librdkafka 2.15 (bench/raw_consume.cpp, embedded cluster, 1M x 100 B, 2 cores):
// a consumer that leaves messages in librdkafka's queue stalls once the queue passes its
// limits, because the fetcher then looks again only after fetch.queue.backoff.ms (1000 ms by
// default): 191k msgs/s at 1000 ms, 1.4M at 100 ms, 2.9M at 10 ms, 3.2M at 1 ms. klua
// therefore defaults fetch.queue.backoff.ms to 10 (a re-check of a queue length, no request)
// and keeps no buffer of its own: its 2.0.2-era buffer that paused partitions when full
// existed only to avoid those stalls, and cost a copy into a deque, an index per partition,
// rewinding seeks after a pause and a fetch-wake seek.
//
// A script that stops polling: nothing takes from the messages queue, so it fills to
// librdkafka's limits and fetching stops (memory stays bounded). librdkafka counts a poll of
// either queue as the application polling (both are consumer queues); the loop drains the
// events queue only when an event arrives, which is rare while nothing is stored (rebalances,
// errors, logs, statistics). So librdkafka notices the silence after max.poll.interval.ms,
// leaves the group (on_lost, and _MAX_POLL_EXCEEDED through on_error: tested in
// tests/lua/consumer_more_test.lua) and the group rebalances without it. Serving that very
// event counts as a poll, though: the member joins again a few seconds later and, if the
// script still does not poll, holds its new partitions for another max.poll.interval.ms.
// Statistics or debug logs every few seconds would keep it in the group.
//
// klua holds only what it took from librdkafka and has not handed out yet (`held_`): c:poll
// takes up to TAKE_BATCH (64) messages per call to librdkafka (rd_kafka_consume_batch_queue:
// one call instead of 64 polls, 1.8M -> 2.8M msgs/s in klua), and a waiting poll's message
// that its task did not take stays there. librdkafka counts held messages as consumed, so
// c:position() is lowered to the first held one, a pause keeps the paused partition's held
// messages aside until resume (librdkafka resumes after them), and a seek or revoke drops them.
//
// Whether a message has headers is asked with rd_kafka_message_headers, which for a message
// without any allocates and frees a parse buffer: about 70 ns a message (2.8M against 3.5M
// msgs/s at 100 B without the question). The 2.0.2-era reading of librdkafka's private
// rd_kafka_msg_t that avoided it is gone: a layout change would read a wild pointer.
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "bindings/client.hpp"
#include "bindings/deprecation.hpp"
#include "bindings/ffi.h"
#include "bindings/lua_chunks.hpp"

namespace klua {

namespace {
const char* const CONSUMER_MT = "klua.consumer";
const char* const MESSAGE_MT = "klua.message";
const double DEFAULT_HOOK_TIMEOUT_MS = 60000;
// A script that never runs out of messages never lets the loop run: every DRAIN_EVERY
// messages c:poll takes its full path, which serves the events queue (rebalances).
const uint64_t DRAIN_EVERY = 1024;
const int TAKE_BATCH = 64;  // messages taken from librdkafka's queue at once
const double DEFAULT_CALL_TIMEOUT_MS = 30000;

using TopicPartition = std::pair<std::string, int32_t>;
TopicPartition tp_of(const rd_kafka_message_t* m);

// c:poll's fast path fills a klua_msg_view (bindings/ffi.h).
using MsgView = klua_msg_view;

class Consumer;
struct ConsumerStatics;
// What a rebalance hook's task reaches its consumer through (a userdata, the upvalue of its
// done() function): the consumer clears it when destroyed, so a hook that finishes after its
// consumer is gone (a close that timed out) finds nothing instead of a freed pointer.
struct ConsumerLink {
  Consumer* c;
};

class Consumer : public Client {
 public:
  // A message taken from librdkafka: from a batch of the messages queue (ev null), or a FETCH
  // event of the events queue (m is its one message).
  struct Fetched {
    rd_kafka_event_t* ev;
    const rd_kafka_message_t* m;
    void release() const {
      if (ev)
        rd_kafka_event_destroy(ev);
      else
        rd_kafka_message_destroy(const_cast<rd_kafka_message_t*>(m));
    }
  };
  struct CommitWait {
    WaitToken tok;
  };
  enum class Rebalance { Assign, Revoke, Lost };

  explicit Consumer(Runtime& rt) : Client(rt, "consumer") {
    lua_State* L = rt_.lua();
    link_ = static_cast<ConsumerLink*>(lua_newuserdata(L, sizeof(ConsumerLink)));
    link_->c = this;
    link_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  ~Consumer() override {
    link_->c = nullptr;
    luaL_unref(rt_.lua(), LUA_REGISTRYINDEX, link_ref_);
    rt_.remove_closable(this);
    release_fast();
    for (auto& b : held_) b.release();
    for (auto& b : deferred_) b.release();
    for (auto& p : pending_) rd_kafka_topic_partition_list_destroy(p.parts);
    lua_State* L = rt_.lua();
    for (int* r : {&on_assign_, &on_revoke_, &on_lost_}) luaL_unref(L, LUA_REGISTRYINDEX, *r);
  }

  void start(rd_kafka_t* rk, std::string group, double poll_timeout, double hook_timeout) {
    rk_ = rk;
    group_ = std::move(group);
    default_poll_timeout_ = poll_timeout;
    hook_timeout_ms_ = hook_timeout;
    rd_kafka_poll_set_consumer(rk_);
    queue_ = rd_kafka_queue_get_consumer(rk_);
    rd_kafka_set_log_queue(rk_, nullptr);  // the main queue, now forwarded to the consumer queue
    watcher_ = std::make_unique<QueueWatcher>(rt_.loop(), queue_, [this] { drain(); });
    msg_queue_ = rd_kafka_queue_new(rk_);
    msg_watcher_ = std::make_unique<QueueWatcher>(rt_.loop(), msg_queue_, [this] { drain_messages(); });
    char buf[16];
    size_t n = sizeof buf;
    auto_commit_ = !(rd_kafka_conf_get(rd_kafka_conf(rk_), "enable.auto.commit", buf, &n) == RD_KAFKA_CONF_OK &&
                     std::strcmp(buf, "false") == 0);
    hook_timer_ = new uv_timer_t;
    uv_timer_init(rt_.loop(), hook_timer_);
    hook_timer_->data = this;
    rt_.add_closable(this);
  }

  void set_rebalance_hooks(int on_assign, int on_revoke, int on_lost) {
    on_assign_ = on_assign;
    on_revoke_ = on_revoke;
    on_lost_ = on_lost;
  }

  // group.protocol=consumer (KIP-848): the broker runs the group's sessions and assignment.
  bool kip848 = false;
  // Under KIP-848 the broker says nothing about a subscribed topic that does not exist (the
  // classic protocol reports UNKNOWN_TOPIC_OR_PART): klua asks the metadata off the loop and
  // reports each missing one the same way, through on_error (or stderr).
  void check_topics_exist(const std::vector<std::string>& topics);
  void report_error(const ErrorSpec& e);

  int close_priority() const override { return 20; }
  bool is_closed() const override { return state_ == Closed; }
  // Closing still takes calls: a rebalance hook run by close may commit.
  bool usable() const { return state_ == Open || state_ == Closing; }
  const std::string& group() const { return group_; }
  double default_poll_timeout() const { return default_poll_timeout_; }

  bool next_message(Fetched* out);
  // The script paused / resumed these partitions: their held messages wait until resume.
  void script_paused(const rd_kafka_topic_partition_list_t* list, bool paused);
  // c:poll's fast path, called through the FFI (must not touch the Lua state): when the next
  // buffered message is a plain one (no error, no headers, topic known to Lua), fills v, keeps
  // the message until release_fast() and returns 0; otherwise returns 1 and the caller takes
  // the full path. The caller copies what v points to before anything else can run.
  int take_fast(MsgView* v);
  void release_fast() {
    if (current_.m) current_.release();
    current_ = Fetched{nullptr, nullptr};
  }
  // The Lua table of topic names that MsgView::topic indexes (ref in the registry).
  void set_topic_names(int ref) { topic_names_ref_ = ref; }
  void drain();
  void begin_close() override;
  void on_inflight_done() override {
    if (destroy_when_idle_) finish_close();
  }

  // Drops held messages of the listed partitions (all when list is null).
  void drop_held(const rd_kafka_topic_partition_list_t* list);
  void finish_rebalance();
  // Messages of a partition klua took from librdkafka but did not hand out yet.
  size_t held_for(const TopicPartition& tp) const;
  // Messages fetched and not handed out: librdkafka's messages queue and klua's held ones.
  size_t queued() const { return (msg_queue_ ? rd_kafka_queue_length(msg_queue_) : 0) + held_.size() + deferred_.size(); }
  // Lowers each partition's offset in list to its first held (not yet polled) message:
  // librdkafka's position already counts it.
  void script_positions(rd_kafka_topic_partition_list_t* list) const {
    // held_ is at most a batch, deferred_ what a pause set aside: a scan costs less than an
    // index kept for every message.
    for (const auto* q : {&held_, &deferred_})
      for (const auto& f : *q) {
        if (f.m->err || !f.m->rkt) continue;
        auto* tp = rd_kafka_topic_partition_list_find(list, rd_kafka_topic_name(f.m->rkt), f.m->partition);
        if (tp && (tp->offset < 0 || f.m->offset < tp->offset)) tp->offset = f.m->offset;
      }
  }


  int push_fetched(lua_State* L, const Fetched& f, const std::string& group);
  void push_message(lua_State* L, const rd_kafka_message_t* m);
  static void push_message_error(lua_State* L, const rd_kafka_message_t* m, const std::string& group);

  // Waiting polls in arrival order; a wait that ends otherwise (timeout, cancellation) removes
  // its own entry (Scheduler::on_wait_end), so nothing stale piles up while no message comes.
  std::list<WaitToken> poll_waiters;
  std::vector<WaitToken> close_waiters;
  bool orphaned = false;
  std::map<TopicPartition, int64_t> end_offsets;  // for messages{until_end=true}
  bool ends_known = false;

 private:
  struct PendingRebalance {
    Rebalance kind;
    rd_kafka_topic_partition_list_t* parts;
  };
  void handle_rebalance(rd_kafka_event_t* ev);
  void start_rebalance();
  void handle_commit(rd_kafka_event_t* ev);
  // Hands f to the first waiting poll; when none takes it, f is held: in front when it came
  // from the front of what klua holds (`oldest`), else behind (events queue, in fetch order).
  void deliver(const Fetched& f, bool oldest);
  void drain_messages();
  // The next message from held_, else from librdkafka's messages queue. No Lua runs (the
  // fast path calls it through the FFI).
  // Its callers serve the events queue first when events_pending(): messages fetched before
  // their partition was forwarded wait there as FETCH events, and are older than anything of
  // that partition in the messages queue (taking those first broke the order, and moved
  // librdkafka's position past messages the script never saw).
  bool take_next(Fetched* out);
  bool events_pending() const { return queue_ && rd_kafka_queue_length(queue_) > 0; }
  // End of partition is not an error (messages{until_end=} uses offsets); a partition being
  // revoked hands nothing more to the script once on_revoke was called.
  bool stale(const rd_kafka_message_t* m) const {
    return m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
           (!m->err && m->rkt && !revoking_.empty() && revoking_.count(tp_of(m)));
  }
  // A FETCH event as a message for the script, or false (destroyed) when it is none.
  bool accept(rd_kafka_event_t* ev, Fetched* out);
  void hold_front(const Fetched& f) {
    held_.push_front(f);
  }
 public:
  // Sends the partitions' fetched messages to the messages queue.
  void forward_partitions(const rd_kafka_topic_partition_list_t* parts);
  // For tests: sends a partition's fetched messages to the events queue (as librdkafka does
  // before klua's forward is in place) or back to the messages queue.
  void route_partition(const char* topic, int32_t partition, bool to_events) {
    if (rd_kafka_queue_t* pq = rd_kafka_queue_get_partition(rk_, topic, partition)) {
      rd_kafka_queue_forward(pq, to_events ? queue_ : msg_queue_);
      rd_kafka_queue_destroy(pq);
    }
  }
  void finish_close();

  enum State { Open, Closing, Destroying, Closed } state_ = Open;
  std::string group_;
  double default_poll_timeout_ = 0;
  double hook_timeout_ms_ = DEFAULT_HOOK_TIMEOUT_MS;
  bool auto_commit_ = true;
 public:
  // enable.auto.offset.store=true as the script sees it: librdkafka's own auto-store would store
  // each message as klua takes it from the queue, which is up to TAKE_BATCH - 1 messages before
  // the script has it (a crash then commits past messages never processed). So librdkafka's is
  // off and klua stores a message's offset when it hands the message to the script.
  bool store_on_hand_out = false;
  void store_handed_out(const rd_kafka_message_t* m) {
    if (!store_on_hand_out) return;
    if (rd_kafka_error_t* err = rd_kafka_offset_store_message(const_cast<rd_kafka_message_t*>(m)))
      rd_kafka_error_destroy(err);  // the partition is no longer assigned: nothing to store
  }

 private:
  rd_kafka_queue_t* queue_ = nullptr;
  std::unique_ptr<QueueWatcher> watcher_;
  rd_kafka_queue_t* close_queue_ = nullptr;
  std::unique_ptr<QueueWatcher> close_watcher_;
  std::deque<Fetched> held_;      // taken from librdkafka, not handed out (see the top)
  std::deque<Fetched> deferred_;  // held messages of partitions the script paused
  const ConsumerStatics* statics_ = nullptr;
  std::unordered_map<const rd_kafka_topic_t*, int> topic_name_refs_;  // Lua strings of topic names
  const rd_kafka_topic_t* last_rkt_ = nullptr;
  int last_topic_ref_ = LUA_NOREF;
  rd_kafka_queue_t* msg_queue_ = nullptr;
  std::unique_ptr<QueueWatcher> msg_watcher_;
  Fetched current_{nullptr, nullptr};  // the message take_fast handed out
  // Per partition: its topic's name and index in the Lua topic names table (the fast path).
  struct PartKey {
    const rd_kafka_topic_t* rkt;
    int32_t partition;
    bool operator==(const PartKey& o) const { return rkt == o.rkt && partition == o.partition; }
  };
  struct PartKeyHash {
    size_t operator()(const PartKey& k) const {
      return std::hash<const void*>()(k.rkt) ^ (static_cast<size_t>(k.partition) * 0x9e3779b97f4a7c15ULL);
    }
  };
  struct PartState {
    std::string topic;           // kept: the topic handle is only a key here
    int topic_id = 0;            // index into the Lua topic names table (0: not yet there)
  };
  // Entries are never erased (a partition's state is reset instead): pointers to them stay
  // valid, and the last one used is cached (messages come in runs of one partition).
  std::unordered_map<PartKey, PartState, PartKeyHash> parts_;
  PartKey last_key_{nullptr, -1};
  PartState* last_state_ = nullptr;
  PartState& part(const rd_kafka_message_t* m) {
    PartKey k{m->rkt, m->partition};
    if (last_state_ && k == last_key_) return *last_state_;
    auto [it, inserted] = parts_.try_emplace(k);
    const char* name = rd_kafka_topic_name(m->rkt);
    if (inserted || it->second.topic != name) {  // new, or a reused handle address
      PartState fresh;
      fresh.topic = name;
      it->second = std::move(fresh);
    }
    last_key_ = k;
    last_state_ = &it->second;
    return it->second;
  }
 private:
  bool drain_due_ = false;
  uint64_t pops_ = 0;
  int topic_names_ref_ = LUA_NOREF;
  int topic_count_ = 0;  // names in the Lua table
 public:
  // Gives the message's topic an index in the Lua topic names table (for the fast path).
  void name_topic(const rd_kafka_message_t* m);
 private:
  std::set<TopicPartition> revoking_;  // their fetched messages are dropped until unassigned
  std::deque<PendingRebalance> pending_;
  bool rebalance_running_ = false;
  uint64_t rebalance_task_ = 0;
  uv_timer_t* hook_timer_ = nullptr;
  uv_timer_t* close_timer_ = nullptr;
  bool destroy_when_idle_ = false;
  int on_assign_ = LUA_NOREF, on_revoke_ = LUA_NOREF, on_lost_ = LUA_NOREF;
  ConsumerLink* link_ = nullptr;  // kept alive by link_ref_ and by running hooks' done()
  int link_ref_ = LUA_NOREF;
};

TopicPartition tp_of(const rd_kafka_message_t* m) { return {rd_kafka_topic_name(m->rkt), m->partition}; }

// Messages are built for every fetch: keys are pre-interned strings kept in the registry (no
// strlen and string interning per field), the topic name string is cached per topic handle.
enum MsgKey { K_TOPIC, K_PARTITION, K_OFFSET, K_KEY, K_VALUE, K_TIMESTAMP, K_TIMESTAMP_TYPE, K_HEADERS, K_CREATE,
              K_LOG_APPEND, K_COUNT };
struct ConsumerStatics {
  int key_refs[K_COUNT];
  int message_mt_ref = LUA_NOREF;
  int names_ref = LUA_NOREF;  // weak-keyed: consumer userdata -> its topic names table
};

const ConsumerStatics* consumer_statics(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "klua.consumer.statics");
  auto* st = static_cast<const ConsumerStatics*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return st;
}

static inline void set_field(lua_State* L, const ConsumerStatics* st, MsgKey k) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->key_refs[k]);
  lua_insert(L, -2);
  lua_rawset(L, -3);
}

void Consumer::push_message(lua_State* L, const rd_kafka_message_t* m) {
  if (!statics_) statics_ = consumer_statics(L);
  const ConsumerStatics* st = statics_;
  lua_createtable(L, 0, 8);
  if (m->rkt != last_rkt_) {
    auto it = topic_name_refs_.find(m->rkt);
    if (it == topic_name_refs_.end()) {
      lua_pushstring(L, rd_kafka_topic_name(m->rkt));
      it = topic_name_refs_.emplace(m->rkt, luaL_ref(L, LUA_REGISTRYINDEX)).first;
    }
    last_rkt_ = m->rkt;
    last_topic_ref_ = it->second;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, last_topic_ref_);
  set_field(L, st, K_TOPIC);
  lua_pushinteger(L, m->partition);
  set_field(L, st, K_PARTITION);
  lua_pushnumber(L, static_cast<double>(m->offset));
  set_field(L, st, K_OFFSET);
  if (m->key) {
    lua_pushlstring(L, static_cast<const char*>(m->key), m->key_len);
    set_field(L, st, K_KEY);
  }
  if (m->payload) {
    lua_pushlstring(L, static_cast<const char*>(m->payload), m->len);
    set_field(L, st, K_VALUE);
  }
  rd_kafka_timestamp_type_t tt;
  int64_t ts = rd_kafka_message_timestamp(m, &tt);
  if (tt != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) {
    lua_pushnumber(L, static_cast<double>(ts));
    set_field(L, st, K_TIMESTAMP);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->key_refs[tt == RD_KAFKA_TIMESTAMP_CREATE_TIME ? K_CREATE : K_LOG_APPEND]);
    set_field(L, st, K_TIMESTAMP_TYPE);
  }
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
    size_t n = rd_kafka_header_cnt(hdrs);
    lua_createtable(L, static_cast<int>(n), 0);
    const char* name;
    const void* val;
    size_t size;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      lua_createtable(L, 2, 0);
      lua_pushstring(L, name);
      lua_rawseti(L, -2, 1);
      if (val) {
        lua_pushlstring(L, static_cast<const char*>(val), size);
        lua_rawseti(L, -2, 2);
      }
      lua_rawseti(L, -2, static_cast<int>(i + 1));
    }
    set_field(L, st, K_HEADERS);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->message_mt_ref);
  lua_setmetatable(L, -2);
}

void Consumer::push_message_error(lua_State* L, const rd_kafka_message_t* m, const std::string& group) {
  std::string topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
  std::string text = m->payload ? std::string(static_cast<const char*>(m->payload), m->len) : rd_kafka_err2str(m->err);
  ErrorSpec e = kafka_error(m->err, text);
  e.topic = topic;
  if (m->partition >= 0 && !topic.empty()) e.partition = m->partition;
  e.group = group;
  e.op = "poll";
  push_error(L, e);
}

int Consumer::push_fetched(lua_State* L, const Fetched& f, const std::string& group) {
  int n = 1;
  if (f.m->err) {
    lua_pushnil(L);
    push_message_error(L, f.m, group);
    n = 2;
  } else {
    name_topic(f.m);  // so that the next message of this topic takes the fast path
    push_message(L, f.m);
    store_handed_out(f.m);
  }
  f.release();  // the script gets a copy; librdkafka's message goes now
  return n;
}

void Consumer::name_topic(const rd_kafka_message_t* m) {
  if (m->err || !m->rkt || topic_names_ref_ == LUA_NOREF) return;
  PartState& st = part(m);
  if (st.topic_id) return;
  lua_State* L = rt_.lua();
  st.topic_id = ++topic_count_;
  lua_rawgeti(L, LUA_REGISTRYINDEX, topic_names_ref_);
  lua_pushlstring(L, st.topic.data(), st.topic.size());
  lua_rawseti(L, -2, st.topic_id);
  lua_pop(L, 1);
}

bool Consumer::take_next(Fetched* out) {
  if (held_.empty() && msg_queue_) {
    // A batch, without waiting: one call per TAKE_BATCH messages instead of one each (measured
    // in the note). librdkafka counts them as consumed (positions, pause): klua holds them.
    rd_kafka_message_t* batch[TAKE_BATCH];
    ssize_t n = rd_kafka_consume_batch_queue(msg_queue_, 0, batch, TAKE_BATCH);
    for (ssize_t i = 0; i < n; ++i) {
      Fetched f{nullptr, batch[i]};
      if (stale(f.m)) {
        f.release();
        continue;
      }
      held_.push_back(f);
    }
  }
  if (held_.empty()) return false;
  *out = held_.front();
  held_.pop_front();
  return true;
}

bool Consumer::accept(rd_kafka_event_t* ev, Fetched* out) {
  const rd_kafka_message_t* m = rd_kafka_event_message_next(ev);
  if (!m || stale(m)) {
    rd_kafka_event_destroy(ev);
    return false;
  }
  *out = Fetched{ev, m};
  return true;
}

bool Consumer::next_message(Fetched* out) {
  if (drain_due_) {
    drain_due_ = false;
    drain();
  }
  if (!rk_ || state_ != Open) return false;
  if (held_.empty() && events_pending()) {
    drain();
    if (!rk_ || state_ != Open) return false;
  }
  if (!take_next(out)) return false;
  if (++pops_ % DRAIN_EVERY == 0) drain_due_ = true;
  return true;
}

void Consumer::script_paused(const rd_kafka_topic_partition_list_t* list, bool paused) {
  if (!list) return;
  auto in_list = [&](const Fetched& f) {
    return f.m->rkt && rd_kafka_topic_partition_list_find(list, rd_kafka_topic_name(f.m->rkt), f.m->partition);
  };
  if (paused) {
    // librdkafka resumes after a held message (its position counts it): keep it for then.
    std::deque<Fetched> keep;
    for (auto& f : held_) (in_list(f) ? deferred_ : keep).push_back(f);
    held_.swap(keep);
  } else {
    std::deque<Fetched> keep, back;
    for (auto& f : deferred_) (in_list(f) ? back : keep).push_back(f);
    deferred_.swap(keep);
    held_.insert(held_.begin(), back.begin(), back.end());  // older than anything fetched later
    if (!back.empty() && !poll_waiters.empty()) msg_watcher_->schedule();
  }
}

void Consumer::drain_messages() {
  if (!rk_ || !msg_queue_ || state_ != Open) return;
  // Messages stay in librdkafka's queue until the script asks: only a waiting poll takes here.
  if (held_.empty() && events_pending()) drain();  // older messages first (see take_next)
  Fetched f;
  while (!poll_waiters.empty() && take_next(&f)) {
    deliver(f, true);
    if (!rk_ || state_ != Open) return;
  }
}

void Consumer::forward_partitions(const rd_kafka_topic_partition_list_t* parts) {
  for (int i = 0; parts && i < parts->cnt; ++i) {
    if (rd_kafka_queue_t* pq = rd_kafka_queue_get_partition(rk_, parts->elems[i].topic, parts->elems[i].partition)) {
      rd_kafka_queue_forward(pq, msg_queue_);
      rd_kafka_queue_destroy(pq);
    }
  }
  // What was fetched before the forward went to the events queue (see drain()), and items
  // forwarded onto a non-empty queue do not signal the fd.
  if (rd_kafka_queue_length(msg_queue_) > 0 && !poll_waiters.empty()) msg_watcher_->schedule();
}

size_t Consumer::held_for(const TopicPartition& tp) const {
  size_t n = 0;
  for (const auto* q : {&held_, &deferred_})
    for (const auto& f : *q)
      if (!f.m->err && f.m->rkt && f.m->partition == tp.second && tp.first == rd_kafka_topic_name(f.m->rkt)) ++n;
  return n;
}

// Hands a message to the first waiting poll, or holds it when no waiting task takes it.
void Consumer::deliver(const Fetched& f, bool oldest) {
  if (state_ != Open) {
    f.release();  // closing: nobody will process it, and it pins its partition
    return;
  }
  Scheduler& s = rt_.scheduler();
  while (!poll_waiters.empty()) {
    WaitToken t = poll_waiters.front();
    poll_waiters.pop_front();
    if (lua_State* co = s.wake_begin(t)) {
      s.wake_end(t, push_fetched(co, f, group_));
      return;
    }
  }
  // Every waiter had gone (timed out). A message taken from the front of what klua holds goes
  // back there; messages of the events queue arrive in fetch order and go behind each other
  // (in front, the second would pass the first: the order of a partition was reversed, and a
  // script that stops at an offset, like replay, stopped at the wrong message).
  if (oldest)
    held_.push_front(f);
  else
    held_.push_back(f);
}

int Consumer::take_fast(MsgView* v) {
  release_fast();
  if (state_ != Open || fatal_ || drain_due_ || rt_.scheduler().any_cancelled()) return 1;
  if (held_.empty() && events_pending()) return 1;  // the full path serves them first (no Lua here)
  Fetched f;
  if (!take_next(&f)) return 1;
  if (++pops_ % DRAIN_EVERY == 0) drain_due_ = true;
  const rd_kafka_message_t* m = f.m;
  rd_kafka_headers_t* hdrs = nullptr;
  // Anything but a plain message of a topic Lua knows goes to the full path. (Asking for the
  // headers of a message without any costs librdkafka a small allocation; measured in the note.)
  if (m->err || !m->rkt || !part(m).topic_id || m->key_len > 0x7fffffff || m->len > 0x7fffffff ||
      (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs)) {
    hold_front(f);
    return 1;
  }
  v->key = static_cast<const char*>(m->key);
  v->key_len = static_cast<int32_t>(m->key_len);
  v->has_key = m->key != nullptr;
  v->value = static_cast<const char*>(m->payload);
  v->value_len = static_cast<int32_t>(m->len);
  v->has_value = m->payload != nullptr;
  v->offset = static_cast<double>(m->offset);
  v->topic = part(m).topic_id;
  v->partition = m->partition;
  rd_kafka_timestamp_type_t tt;
  int64_t ts = rd_kafka_message_timestamp(m, &tt);
  v->tstype = tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? 0 : tt == RD_KAFKA_TIMESTAMP_CREATE_TIME ? 1 : 2;
  v->timestamp = static_cast<double>(ts);
  current_ = f;
  store_handed_out(m);
  return 0;
}

void Consumer::drain() {
  if (!rk_ || state_ == Destroying || state_ == Closed) return;
  // While closing, the group's queue is forwarded to close_queue_: drain that one.
  rd_kafka_queue_t* q = close_queue_ ? close_queue_ : queue_;
  while (rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 0)) {
    switch (rd_kafka_event_type(ev)) {
      case RD_KAFKA_EVENT_FETCH: {  // fetched before its partition was forwarded
        Fetched f;
        if (accept(ev, &f)) deliver(f, false);
        break;
      }
      case RD_KAFKA_EVENT_REBALANCE:
        handle_rebalance(ev);
        rd_kafka_event_destroy(ev);
        break;
      case RD_KAFKA_EVENT_OFFSET_COMMIT:
        handle_commit(ev);
        rd_kafka_event_destroy(ev);
        break;
      default:
        handle_common_event(ev);
        rd_kafka_event_destroy(ev);
        break;
    }
    if (!rk_) return;
    if (state_ == Closing && rd_kafka_consumer_closed(rk_)) break;
  }
  if (state_ == Closing && rk_ && rd_kafka_consumer_closed(rk_) && !rebalance_running_) finish_close();
}

void Consumer::drop_held(const rd_kafka_topic_partition_list_t* list) {
  for (auto* q : {&held_, &deferred_}) {
    std::deque<Fetched> keep;
    for (auto& b : *q) {
      bool drop = !list || (b.m->rkt && rd_kafka_topic_partition_list_find(list, rd_kafka_topic_name(b.m->rkt),
                                                                           b.m->partition));
      if (drop) {
        b.release();
      } else {
        keep.push_back(b);
      }
    }
    q->swap(keep);
  }
}

void Consumer::handle_rebalance(rd_kafka_event_t* ev) {
  rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
  PendingRebalance p;
  p.parts = rd_kafka_topic_partition_list_copy(rd_kafka_event_topic_partition_list(ev));
  rd_kafka_topic_partition_list_sort(p.parts, nullptr, nullptr);
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    p.kind = Rebalance::Assign;
  } else {
    p.kind = rd_kafka_assignment_lost(rk_) ? Rebalance::Lost : Rebalance::Revoke;
    // From now on nothing of these partitions reaches the script.
    drop_held(p.parts);
    for (int i = 0; i < p.parts->cnt; ++i) revoking_.insert({p.parts->elems[i].topic, p.parts->elems[i].partition});
  }
  pending_.push_back(p);
  if (!rebalance_running_) start_rebalance();
}


int hook_done(lua_State* L) {
  auto* link = static_cast<ConsumerLink*>(lua_touserdata(L, lua_upvalueindex(1)));
  if (link->c) link->c->finish_rebalance();
  return 0;
}

void Consumer::start_rebalance() {
  if (pending_.empty()) return;
  rebalance_running_ = true;
  PendingRebalance& p = pending_.front();
  int hook = p.kind == Rebalance::Assign ? on_assign_ : p.kind == Rebalance::Revoke ? on_revoke_
             : (on_lost_ != LUA_NOREF ? on_lost_ : on_revoke_);
  // Hooks need the loop to run tasks: at exit (and for an empty list) answer at once.
  if (hook == LUA_NOREF || rt_.exiting()) {
    finish_rebalance();
    return;
  }
  lua_State* L = rt_.lua();
  load_binding_chunk(L, "consumer_hook");  // bindings/lua/consumer_hook.lua
  lua_rawgeti(L, LUA_REGISTRYINDEX, hook);
  push_partition_list(L, p.parts);
  lua_rawgeti(L, LUA_REGISTRYINDEX, link_ref_);
  lua_pushcclosure(L, hook_done, 1);
  rebalance_task_ = rt_.scheduler().spawn(L, 3);
  // A hook that never ends would stall the whole group: bound it.
  uv_timer_start(hook_timer_, [](uv_timer_t* h) {
    auto* self = static_cast<Consumer*>(h->data);
    if (!self->rebalance_running_) return;
    fmt::print(stderr, "klua: consumer group {}: rebalance hook did not finish within {} ms; cancelling it\n",
               self->group_, self->hook_timeout_ms_);
    self->rt_.scheduler().cancel(self->rebalance_task_);
    self->finish_rebalance();
  }, static_cast<uint64_t>(timeout_int(hook_timeout_ms_)), 0);
}

void Consumer::finish_rebalance() {
  if (!rebalance_running_ || pending_.empty()) return;
  uv_timer_stop(hook_timer_);
  PendingRebalance p = pending_.front();
  pending_.pop_front();
  rebalance_running_ = false;
  if (rk_) {
    // COOPERATIVE for cooperative-sticky and for KIP-848 (whose events carry only the change);
    // EAGER hands over and takes back the whole assignment each time.
    bool cooperative = kip848;
    if (!cooperative) {  // asks librdkafka's main thread: only when the protocol leaves it open
      const char* protocol = rd_kafka_rebalance_protocol(rk_);
      cooperative = protocol && std::strcmp(protocol, "COOPERATIVE") == 0;
    }
    if (p.kind == Rebalance::Assign) {
      for (int i = 0; i < p.parts->cnt; ++i) revoking_.erase({p.parts->elems[i].topic, p.parts->elems[i].partition});
      if (cooperative) {
        if (rd_kafka_error_t* e = rd_kafka_incremental_assign(rk_, p.parts)) rd_kafka_error_destroy(e);
      } else {
        rd_kafka_assign(rk_, p.parts);
      }
      forward_partitions(p.parts);
    } else {
      // Processed (stored) offsets are committed before the partitions go: librdkafka does it
      // on unassign with auto-commit; without it, commit them here first.
      if (!auto_commit_ && p.kind == Rebalance::Revoke) rd_kafka_commit(rk_, nullptr, 1);
      if (cooperative) {
        if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk_, p.parts)) rd_kafka_error_destroy(e);
      } else {
        rd_kafka_assign(rk_, nullptr);
      }
      for (int i = 0; i < p.parts->cnt; ++i) revoking_.erase({p.parts->elems[i].topic, p.parts->elems[i].partition});
    }
  }
  rd_kafka_topic_partition_list_destroy(p.parts);
  ends_known = false;  // the assignment changed
  if (!pending_.empty()) {
    start_rebalance();
  } else if (state_ == Closing) {
    watcher_->schedule();
  }
}

void Consumer::handle_commit(rd_kafka_event_t* ev) {
  auto* cw = static_cast<CommitWait*>(rd_kafka_event_opaque(ev));
  if (!cw) return;
  std::unique_ptr<CommitWait> owned(cw);
  Scheduler& s = rt_.scheduler();
  lua_State* co = s.wake_begin(cw->tok);
  if (!co) return;
  rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
  if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) err = RD_KAFKA_RESP_ERR_NO_ERROR;  // nothing to commit
  if (!err) {
    if (const rd_kafka_topic_partition_list_t* l = rd_kafka_event_topic_partition_list(ev)) {
      for (int i = 0; i < l->cnt; ++i) {
        if (l->elems[i].err) {
          ErrorSpec e = kafka_error(l->elems[i].err);
          e.topic = l->elems[i].topic;
          e.partition = l->elems[i].partition;
          e.group = group_;
          e.op = "commit";
          nil_error(co, e);
          s.wake_end(cw->tok, 2);
          return;
        }
      }
    }
    lua_pushboolean(co, 1);
    s.wake_end(cw->tok, 1);
    return;
  }
  ErrorSpec e = kafka_error(err, rd_kafka_event_error_string(ev));
  e.group = group_;
  e.op = "commit";
  nil_error(co, e);
  s.wake_end(cw->tok, 2);
}

void Consumer::begin_close() {
  if (state_ != Open) return;
  state_ = Closing;
  release_fast();
  drop_held(nullptr);  // unprocessed: their offsets were never stored
  Scheduler& s = rt_.scheduler();
  auto waiters = std::move(poll_waiters);
  poll_waiters.clear();
  for (WaitToken t : waiters) {
    if (lua_State* co = s.wake_begin(t)) {
      lua_pushnil(co);
      s.wake_end(t, 1);
    }
  }
  // Asynchronous close: the revocation (stored offsets are committed on unassign) and the group
  // leave arrive on our queue and are served by drain(); the timer bounds a close that can't end.
  // A queue of its own: librdkafka forwards the group's queue to it (never to itself).
  close_queue_ = rd_kafka_queue_new(rk_);
  close_watcher_ = std::make_unique<QueueWatcher>(rt_.loop(), close_queue_, [this] { drain(); });
  if (rd_kafka_error_t* e = rd_kafka_consumer_close_queue(rk_, close_queue_)) {
    fmt::print(stderr, "klua: consumer close: {}\n", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  }
  close_timer_ = new uv_timer_t;
  uv_timer_init(rt_.loop(), close_timer_);
  close_timer_->data = this;
  uv_timer_start(close_timer_, [](uv_timer_t* h) {
    auto* self = static_cast<Consumer*>(h->data);
    if (self->state_ != Closing) return;
    fmt::print(stderr, "klua: consumer close (group {}) did not finish in time; destroying the handle\n",
               self->group_);
    self->rebalance_running_ = false;
    self->finish_close();
  }, 10000, 0);
  watcher_->schedule();
}

void Consumer::finish_close() {
  if (state_ != Closing) return;
  if (inflight_ > 0) {
    destroy_when_idle_ = true;  // a blocking call still uses the handle
    return;
  }
  state_ = Destroying;
  drop_held(nullptr);

  for (auto& p : pending_) rd_kafka_topic_partition_list_destroy(p.parts);
  pending_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(close_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  uv_close(reinterpret_cast<uv_handle_t*>(hook_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  close_timer_ = hook_timer_ = nullptr;
  watcher_->close();
  if (close_watcher_) close_watcher_->close();
  if (msg_watcher_) msg_watcher_->close();
  // Whatever is still queued holds partition references that would block rd_kafka_destroy.
  for (rd_kafka_queue_t* q : {close_queue_, queue_, msg_queue_}) {
    if (!q) continue;
    while (rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 0)) {
      if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) handle_commit(ev);
      rd_kafka_event_destroy(ev);
    }
  }
  if (close_queue_) rd_kafka_queue_destroy(close_queue_);
  close_queue_ = nullptr;
  rd_kafka_queue_destroy(queue_);
  queue_ = nullptr;
  rd_kafka_queue_destroy(msg_queue_);
  msg_queue_ = nullptr;
  for (auto& [rkt, ref] : topic_name_refs_) luaL_unref(rt_.lua(), LUA_REGISTRYINDEX, ref);
  topic_name_refs_.clear();
  release_fast();
  luaL_unref(rt_.lua(), LUA_REGISTRYINDEX, topic_names_ref_);
  topic_names_ref_ = LUA_NOREF;
  topic_count_ = 0;
  parts_.clear();
  last_state_ = nullptr;
  last_rkt_ = nullptr;
  release_hooks();
  // klua has run the consumer close itself (begin_close): when it did not finish in time,
  // rd_kafka_destroy must not start another one that could wait just as long.
  destroy_handle_async(rt_, rk_, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE, [this] {
    rk_ = nullptr;
    state_ = Closed;
    wake_close_waiters(rt_.scheduler(), std::move(close_waiters));
    if (orphaned) delete this;
  });
}

void Consumer::report_error(const ErrorSpec& e) {
  lua_State* L = rt_.lua();
  if (on_error_ != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, on_error_);
    push_error(L, e);
    if (lua_pcall(L, 1, 0, 0) != 0) {
      fmt::print(stderr, "klua: consumer on_error hook failed: {}\n", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  } else {
    fmt::print(stderr, "klua: consumer error: {}: {}\n", e.name, e.message);
  }
}

void Consumer::check_topics_exist(const std::vector<std::string>& topics) {
  struct Check {
    std::vector<std::string> topics, missing;
  };
  auto check = std::make_shared<Check>();
  for (const auto& t : topics)
    if (!t.empty() && t[0] != '^') check->topics.push_back(t);  // a regex may match nothing yet
  if (check->topics.empty()) return;
  rd_kafka_t* rk = rk_;
  run_off_loop(
      [check, rk] {
        for (const auto& t : check->topics) {
          // A metadata request naming the topic (a consumer's does not create topics:
          // allow.auto.create.topics is false unless the script set it).
          rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, t.c_str(), nullptr);
          const rd_kafka_metadata_t* md = nullptr;
          rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
          if (!err && md && md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            check->missing.push_back(t);
          if (md) rd_kafka_metadata_destroy(md);
          if (rkt) rd_kafka_topic_destroy(rkt);
        }
      },
      [this, check] {
        if (state_ != Open) return;
        for (const auto& t : check->missing) {
          ErrorSpec e = kafka_error(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
                                    fmt::format("subscribed topic \"{}\" does not exist (under group.protocol=consumer "
                                                "the broker reports no error for it: klua checked the metadata)", t));
          e.topic = t;
          e.group = group_;
          e.op = "subscribe";
          report_error(e);
        }
      });
}

// ---- Lua API ----------------------------------------------------------------------

struct ConsumerBox {
  Consumer* c;
};

// Called through the FFI with the payload of a userdata whose metatable the caller checked.
int take_fast_entry(void* box, klua_msg_view* v) {
  Consumer* c = static_cast<ConsumerBox*>(box)->c;
  return c ? c->take_fast(v) : 1;
}
void release_fast_entry(void* box) {
  if (Consumer* c = static_cast<ConsumerBox*>(box)->c) c->release_fast();
}


Consumer* check_consumer(lua_State* L, int idx) {
  auto* box = static_cast<ConsumerBox*>(luaL_checkudata(L, idx, CONSUMER_MT));
  if (!box->c || !box->c->usable()) {
    ErrorSpec e;
    e.code = CODE_CLOSED;
    e.name = ERR_CLOSED;
    e.message = "the consumer is closed";
    raise_error(L, e);
  }
  box->c->raise_if_fatal(L);
  return box->c;
}

ErrorSpec consumer_error(Consumer* c, rd_kafka_resp_err_t err, const char* op, std::string msg = {}) {
  ErrorSpec e = kafka_error(err, std::move(msg));
  e.group = c->group();
  e.op = op;
  return e;
}

int return_partitions_or_error(lua_State* L, Consumer* c, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list,
                               const char* op, bool end_as_string = false) {
  if (err) {
    rd_kafka_topic_partition_list_destroy(list);
    return nil_error(L, consumer_error(c, err, op));
  }
  push_partition_list(L, list, end_as_string);
  rd_kafka_topic_partition_list_destroy(list);
  return 1;
}

// c:poll([timeout_ms]) -> message | nil (timeout) | nil, err
int l_poll(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  double timeout = luaL_optnumber(L, 2, c->default_poll_timeout());
  Scheduler& s = Runtime::from(L).scheduler();
  s.check_cancelled(L);
  Consumer::Fetched f;
  if (c->next_message(&f)) return c->push_fetched(L, f, c->group());
  if (timeout == 0) return 0;
  WaitToken t = s.prepare_wait(L, "c:poll", timeout, OnTimeout::ResumeEmpty);
  auto it = c->poll_waiters.insert(c->poll_waiters.end(), t);
  s.on_wait_end(t, [c, it] { c->poll_waiters.erase(it); });
  return lua_yield(L, 0);
}

// c:store(msg or partitions): marks processed; the offset is committed by the next (auto) commit.
int l_store(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  auto* list = check_partition_list(L, 2, "c:store", true);
  rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk(), list);
  for (int i = 0; i < list->cnt; ++i) {
    if (list->elems[i].err) {
      ErrorSpec e = consumer_error(c, list->elems[i].err, "store");
      e.topic = list->elems[i].topic;
      e.partition = list->elems[i].partition;
      e.message = fmt::format("cannot store an offset for {} [{}]: {} (is the partition assigned?)", e.topic,
                              list->elems[i].partition, rd_kafka_err2str(list->elems[i].err));
      rd_kafka_topic_partition_list_destroy(list);
      return nil_error(L, e);
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  if (err) return nil_error(L, consumer_error(c, err, "store"));
  lua_pushboolean(L, 1);
  return 1;
}

// c:commit([msg or partitions], [{async=bool}]) -> true | nil, err
int l_commit(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  bool async = false;
  double timeout = DEFAULT_CALL_TIMEOUT_MS;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "async");
    async = lua_toboolean(L, -1);
    lua_pop(L, 1);
    opt_number_field(L, 3, "timeout_ms", &timeout);
  }
  if (async) {
    rd_kafka_topic_partition_list_t* list = lua_isnoneornil(L, 2) ? nullptr : check_partition_list(L, 2, "c:commit", true);
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk(), list, 1);
    if (list) rd_kafka_topic_partition_list_destroy(list);
    if (err) return nil_error(L, consumer_error(c, err, "commit"));
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!lua_isnoneornil(L, 2)) rd_kafka_topic_partition_list_destroy(check_partition_list(L, 2, "c:commit", true));
  Scheduler& s = Runtime::from(L).scheduler();
  WaitToken tok = s.prepare_wait(L, "c:commit", timeout);  // may raise: before anything is allocated
  // Validated above, so building the list again cannot raise now.
  rd_kafka_topic_partition_list_t* list = lua_isnoneornil(L, 2) ? nullptr : check_partition_list(L, 2, "c:commit", true);
  auto cw = std::make_unique<Consumer::CommitWait>();
  cw->tok = tok;
  rd_kafka_queue_t* q = rd_kafka_queue_get_consumer(c->rk());
  rd_kafka_resp_err_t err = rd_kafka_commit_queue(c->rk(), list, q, nullptr, cw.get());
  rd_kafka_queue_destroy(q);
  if (list) rd_kafka_topic_partition_list_destroy(list);
  if (err) {
    s.abandon_wait(tok);
    return nil_error(L, consumer_error(c, err, "commit"));
  }
  cw.release();
  return lua_yield(L, 0);
}

std::vector<std::string> topic_list(lua_State* L, int idx, const char* what) {
  std::vector<std::string> topics;
  if (lua_isstring(L, idx)) {
    topics.emplace_back(lua_tostring(L, idx));
  } else if (lua_istable(L, idx)) {
    int n = static_cast<int>(lua_objlen(L, idx));
    for (int i = 1; i <= n; ++i) {
      lua_rawgeti(L, idx, i);
      if (!lua_isstring(L, -1)) luaL_error(L, "%s: topics[%d] must be a string", what, i);
      topics.emplace_back(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  } else {
    luaL_error(L, "%s: expected a topic name or a list of topic names (a name starting with ^ is a regex)", what);
  }
  for (const auto& t : topics) {
    std::string problem = t[0] == '^' ? std::string() : topic_name_problem(t.data(), t.size());
    if (!problem.empty()) {
      ErrorSpec e;
      e.code = CODE_INVALID_ARGUMENT;
      e.name = ERR_INVALID_ARGUMENT;
      e.topic = t;
      e.message = fmt::format("{}: invalid topic name \"{}\": {}", what, t, problem);
      raise_error(L, e);
    }
  }
  return topics;
}

int subscribe(lua_State* L, Consumer* c, const std::vector<std::string>& topics) {
  auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(topics.size()));
  for (const auto& t : topics) rd_kafka_topic_partition_list_add(list, t.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk(), list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err) return nil_error(L, consumer_error(c, err, "subscribe"));
  if (c->kip848) c->check_topics_exist(topics);
  lua_pushboolean(L, 1);
  return 1;
}

// c:subscribe(topics): a list of names; names starting with ^ are regular expressions.
int l_subscribe(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  return subscribe(L, c, topic_list(L, 2, "c:subscribe"));
}

int l_unsubscribe(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  rd_kafka_resp_err_t err = rd_kafka_unsubscribe(c->rk());
  if (err) return nil_error(L, consumer_error(c, err, "unsubscribe"));
  lua_pushboolean(L, 1);
  return 1;
}

// c:assign(partitions): explicit partitions (with optional offsets), no group rebalancing.
int l_assign(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  rd_kafka_topic_partition_list_t* list = lua_isnoneornil(L, 2) ? nullptr : check_partition_list(L, 2, "c:assign", false);
  if (list)
    for (int i = 0; i < list->cnt; ++i)
      if (list->elems[i].offset == RD_KAFKA_OFFSET_INVALID) list->elems[i].offset = RD_KAFKA_OFFSET_STORED;
  c->drop_held(nullptr);
  rd_kafka_resp_err_t err = rd_kafka_assign(c->rk(), list);
  if (!err) c->forward_partitions(list);
  if (list) rd_kafka_topic_partition_list_destroy(list);
  c->ends_known = false;
  if (err) return nil_error(L, consumer_error(c, err, "assign"));
  lua_pushboolean(L, 1);
  return 1;
}

int l_assignment(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  rd_kafka_topic_partition_list_t* parts = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk(), &parts);
  return return_partitions_or_error(L, c, err, parts, "assignment");
}

// The partitions argument of pause/resume/position/committed: a list, or the assignment.
rd_kafka_topic_partition_list_t* partitions_or_assignment(lua_State* L, Consumer* c, int idx, const char* what) {
  if (!lua_isnoneornil(L, idx)) return check_partition_list(L, idx, what, false);
  rd_kafka_topic_partition_list_t* parts = nullptr;
  if (rd_kafka_assignment(c->rk(), &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || !parts)
    parts = rd_kafka_topic_partition_list_new(0);
  return parts;
}

int l_pause(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  auto* list = partitions_or_assignment(L, c, 2, "c:pause");
  rd_kafka_resp_err_t err = rd_kafka_pause_partitions(c->rk(), list);
  if (!err) c->script_paused(list, true);
  return return_partitions_or_error(L, c, err, list, "pause");
}

int l_resume(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  auto* list = partitions_or_assignment(L, c, 2, "c:resume");
  rd_kafka_resp_err_t err = rd_kafka_resume_partitions(c->rk(), list);
  if (!err) c->script_paused(list, false);
  return return_partitions_or_error(L, c, err, list, "resume");
}

// c:seek(topic, partition, offset, [timeout_ms]): the next poll of that partition starts at
// offset. Yields until librdkafka has moved the partition (rd_kafka_seek_partitions blocks
// until then, so it runs off the loop); returns true or nil, err.
int l_seek(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  std::string topic = luaL_checkstring(L, 2);
  int32_t partition = static_cast<int32_t>(luaL_checkinteger(L, 3));
  int64_t offset = check_offset(L, 4, "c:seek");
  if (offset == RD_KAFKA_OFFSET_INVALID) return luaL_argerror(L, 4, "an offset is required");
  double timeout = luaL_optnumber(L, 5, DEFAULT_CALL_TIMEOUT_MS);
  // The checks run_blocking would raise for (not a task, cancelled), made before the partition's
  // held messages are dropped: raising after that would skip them without seeking.
  Scheduler& sched = Runtime::from(L).scheduler();
  if (!sched.can_wait(L))
    return luaL_error(L, "c:seek must be called from a klua task (it waits for librdkafka), not from a plain "
                         "coroutine or an inline callback");
  sched.check_cancelled(L);
  // Freed with the holder, also when the wait ended (timeout, cancellation) before the seek did.
  struct Result {
    rd_kafka_error_t* error = nullptr;
    rd_kafka_topic_partition_list_t* list = nullptr;
    ~Result() {
      if (error) rd_kafka_error_destroy(error);
      if (list) rd_kafka_topic_partition_list_destroy(list);
    }
  };
  auto r = std::make_shared<Result>();
  r->list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(r->list, topic.c_str(), partition)->offset = offset;
  c->drop_held(r->list);
  rd_kafka_t* rk = c->rk();
  return c->run_blocking(
      L, "c:seek", timeout + 1000, [=] { r->error = rd_kafka_seek_partitions(rk, r->list, timeout_int(timeout)); },
      [=](lua_State* co) {
        ErrorSpec spec;
        bool failed = true;
        if (r->error) {
          spec = kafka_error(r->error);
        } else if (r->list->elems[0].err) {
          spec = kafka_error(r->list->elems[0].err);
        } else {
          failed = false;
        }
        if (!failed) {
          lua_pushboolean(co, 1);
          return 1;
        }
        spec.topic = topic;
        spec.partition = partition;
        spec.group = c->group();
        spec.op = "seek";
        if (spec.name == "_TIMED_OUT") spec.timeout_ms = timeout;
        return nil_error(co, spec);
      });
}

// c:position([partitions]): the next offset the script will get per partition (messages klua has
// fetched but the script has not polled yet are not counted).
int l_position(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  auto* list = partitions_or_assignment(L, c, 2, "c:position");
  rd_kafka_resp_err_t err = rd_kafka_position(c->rk(), list);
  if (!err) c->script_positions(list);
  return return_partitions_or_error(L, c, err, list, "position");
}

// The {timeout_ms=} options table at idx of c:committed and c:watermarks; a number there is the
// old positional timeout (kept for one release, with a warning).
double call_timeout(lua_State* L, int idx, const char* what, const char* instead) {
  double timeout = DEFAULT_CALL_TIMEOUT_MS;
  if (lua_isnoneornil(L, idx)) return timeout;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    warn_deprecated(L, what, instead);
    return lua_tonumber(L, idx);
  }
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING || std::strcmp(lua_tostring(L, -1), "timeout_ms") != 0) {
      lua_pushvalue(L, -1);
      const char* key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1);
      luaL_argerror(L, idx, lua_pushfstring(L, "unknown option '%s' (allowed: timeout_ms)", key));
    }
  }
  lua_getfield(L, idx, "timeout_ms");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_argerror(L, idx, "timeout_ms must be a number");
    timeout = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return timeout;
}

// c:committed([partitions], [{timeout_ms=}]) -> partitions with the group's committed offsets
int l_committed(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  double timeout = call_timeout(L, 3, "c:committed(partitions, timeout_ms)", "c:committed(partitions, {timeout_ms=...})");
  auto* list = partitions_or_assignment(L, c, 2, "c:committed");
  auto err = std::make_shared<rd_kafka_resp_err_t>(RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_t* rk = c->rk();
  return c->run_blocking(
      L, "c:committed", timeout + 1000,
      [=] { *err = rd_kafka_committed(rk, list, timeout_int(timeout)); },
      [=](lua_State* co) { return return_partitions_or_error(co, c, *err, list, "committed"); });
}

// c:watermarks(topic, partition, [{timeout_ms=}]) -> low, high (asks the broker)
int l_watermarks(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  std::string topic = luaL_checkstring(L, 2);
  int32_t partition = static_cast<int32_t>(luaL_checkinteger(L, 3));
  double timeout = call_timeout(L, 4, "c:watermarks(topic, partition, timeout_ms)",
                                "c:watermarks(topic, partition, {timeout_ms=...})");
  struct Result {
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    int64_t low = 0, high = 0;
  };
  auto r = std::make_shared<Result>();
  rd_kafka_t* rk = c->rk();
  return c->run_blocking(
      L, "c:watermarks", timeout + 1000,
      [=] { r->err = rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &r->low, &r->high, timeout_int(timeout)); },
      [=](lua_State* co) {
        if (r->err) {
          ErrorSpec e = consumer_error(c, r->err, "watermarks");
          e.topic = topic;
          e.partition = partition;
          return nil_error(co, e);
        }
        lua_pushnumber(co, static_cast<double>(r->low));
        lua_pushnumber(co, static_cast<double>(r->high));
        return 2;
      });
}

// c:offsets_for_times(partitions, [timeout_ms]): `offset` of each item is a timestamp (epoch ms);
// returns the earliest offset whose timestamp is at or after it (nil offset: none).
int l_offsets_for_times(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  auto* list = check_partition_list(L, 2, "c:offsets_for_times", false);
  double timeout = luaL_optnumber(L, 3, DEFAULT_CALL_TIMEOUT_MS);
  auto err = std::make_shared<rd_kafka_resp_err_t>(RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_t* rk = c->rk();
  return c->run_blocking(
      L, "c:offsets_for_times", timeout + 1000,
      [=] { *err = rd_kafka_offsets_for_times(rk, list, timeout_int(timeout)); },
      [=](lua_State* co) { return return_partitions_or_error(co, c, *err, list, "offsets_for_times", true); });
}

// c:_end_offsets() -> partitions with `low` and `end` (the latest offset under the consumer's
// isolation level): for messages{until_end=true}.
int l_end_offsets(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  rd_kafka_topic_partition_list_t* assigned = partitions_or_assignment(L, c, 2, "until_end");
  auto* low = rd_kafka_topic_partition_list_copy(assigned);
  auto* end = assigned;
  for (int i = 0; i < low->cnt; ++i) {
    low->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
    end->elems[i].offset = RD_KAFKA_OFFSET_END;
  }
  auto err = std::make_shared<rd_kafka_resp_err_t>(RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_t* rk = c->rk();
  return c->run_blocking(
      L, "c:messages (end offsets)", DEFAULT_CALL_TIMEOUT_MS + 1000,
      [=] {
        // ListOffsets with logical offsets, one request per leader; "latest" honours isolation.level.
        *err = rd_kafka_offsets_for_times(rk, low, timeout_int(DEFAULT_CALL_TIMEOUT_MS));
        if (!*err) *err = rd_kafka_offsets_for_times(rk, end, timeout_int(DEFAULT_CALL_TIMEOUT_MS));
      },
      [=](lua_State* co) {
        if (*err) {
          rd_kafka_topic_partition_list_destroy(low);
          return return_partitions_or_error(co, c, *err, end, "messages");
        }
        lua_createtable(co, end->cnt, 0);
        for (int i = 0; i < end->cnt; ++i) {
          lua_createtable(co, 0, 4);
          lua_pushstring(co, end->elems[i].topic);
          lua_setfield(co, -2, "topic");
          lua_pushinteger(co, end->elems[i].partition);
          lua_setfield(co, -2, "partition");
          lua_pushnumber(co, static_cast<double>(low->elems[i].offset));
          lua_setfield(co, -2, "low");
          lua_pushnumber(co, static_cast<double>(end->elems[i].offset));
          lua_setfield(co, -2, "end");
          lua_rawseti(co, -2, i + 1);
        }
        rd_kafka_topic_partition_list_destroy(low);
        rd_kafka_topic_partition_list_destroy(end);
        return 1;
      });
}

// c:_held(topic, partition) -> messages of the partition klua took from librdkafka and did not
// hand out yet (for tests)
int l_held(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  lua_pushinteger(L, static_cast<lua_Integer>(c->held_for({luaL_checkstring(L, 2), static_cast<int32_t>(luaL_checkinteger(L, 3))})));
  return 1;
}

// c:_waiters() -> polls waiting now (for tests: a timed-out poll leaves none behind)
int l_waiters(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  lua_pushinteger(L, static_cast<lua_Integer>(c->poll_waiters.size()));
  return 1;
}

// c:_queued() -> messages fetched and not handed out yet: librdkafka's and klua's (for tests)
int l_queued(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  lua_pushinteger(L, static_cast<lua_Integer>(c->queued()));
  return 1;
}

// c:_route(topic, partition, "events" | "messages"): where the partition's fetched messages go
// (the events queue: as when fetched before klua's forward). For tests.
int l_route(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  const char* to = luaL_checkstring(L, 4);
  c->route_partition(luaL_checkstring(L, 2), static_cast<int32_t>(luaL_checkinteger(L, 3)),
                     std::strcmp(to, "events") == 0);
  return 0;
}

int l_close(lua_State* L) {
  auto* box = static_cast<ConsumerBox*>(luaL_checkudata(L, 1, CONSUMER_MT));
  return close_and_wait(L, box->c, "c:close");
}

int l_gc(lua_State* L) {
  auto* box = static_cast<ConsumerBox*>(lua_touserdata(L, 1));
  collect_handle(box->c);
  box->c = nullptr;
  return 0;
}

int l_tostring(lua_State* L) {
  auto* box = static_cast<ConsumerBox*>(luaL_checkudata(L, 1, CONSUMER_MT));
  if (box->c && box->c->rk())
    lua_pushfstring(L, "klua.consumer(%s, group %s)", rd_kafka_name(box->c->rk()), box->c->group().c_str());
  else
    lua_pushliteral(L, "klua.consumer(closed)");
  return 1;
}

// msg:header(name) -> the last value of that header (nil if absent)
int l_msg_header(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t nl;
  const char* name = luaL_checklstring(L, 2, &nl);
  lua_getfield(L, 1, "headers");
  if (!lua_istable(L, -1)) return 0;
  int n = static_cast<int>(lua_objlen(L, -1));
  for (int i = n; i >= 1; --i) {
    lua_rawgeti(L, -1, i);
    lua_rawgeti(L, -1, 1);
    size_t hl;
    const char* h = lua_tolstring(L, -1, &hl);
    if (h && hl == nl && memcmp(h, name, nl) == 0) {
      lua_rawgeti(L, -2, 2);
      return 1;
    }
    lua_pop(L, 2);
  }
  return 0;
}

// msg:header_all(name) -> the values of that header in wire order, as a list without holes
// (headers that have no value are left out; msg.headers has them)
int l_msg_header_all(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t nl;
  const char* name = luaL_checklstring(L, 2, &nl);
  lua_newtable(L);
  int out = lua_gettop(L), k = 0;
  lua_getfield(L, 1, "headers");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 1;
  }
  int n = static_cast<int>(lua_objlen(L, -1));
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, -1, i);
    lua_rawgeti(L, -1, 1);
    size_t hl;
    const char* h = lua_tolstring(L, -1, &hl);
    if (h && hl == nl && memcmp(h, name, nl) == 0) {
      lua_rawgeti(L, -2, 2);
      if (lua_isnil(L, -1))
        lua_pop(L, 1);
      else
        lua_rawseti(L, out, ++k);
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  return 1;
}



// Under group.protocol=consumer (KIP-848) the broker owns what these classic client settings
// did; librdkafka refuses them with a bare message. klua raises KLUA_INVALID_ARGUMENT naming
// the replacement and the layer that set it. Returns whether the protocol is "consumer".
bool refuse_classic_only(lua_State* L, ClientOptions& o) {
  char buf[32];
  size_t n = sizeof buf;
  if (rd_kafka_conf_get(o.conf, "group.protocol", buf, &n) != RD_KAFKA_CONF_OK || std::strcmp(buf, "consumer") != 0)
    return false;
  static const std::pair<const char*, const char*> replaced[] = {
      {"session.timeout.ms", "the broker's group.consumer.session.timeout.ms (within group.consumer.min/max.session.timeout.ms)"},
      {"heartbeat.interval.ms", "the broker's group.consumer.heartbeat.interval.ms (within group.consumer.min/max.heartbeat.interval.ms)"},
      {"partition.assignment.strategy", "the client's group.remote.assignor (\"uniform\" or \"range\"; the broker's group.consumer.assignors)"},
      {"group.protocol.type", "nothing: it belongs to the classic protocol only"},
  };
  for (const auto& [key, instead] : replaced) {
    std::string source;
    lua_getfield(L, 1, key);
    if (!lua_isnil(L, -1)) source = "the script's table";
    lua_pop(L, 1);
    if (source.empty())
      for (const auto& e : Runtime::from(L).config())
        if (e.key == key) source = e.source;
    if (source.empty()) continue;
    rd_kafka_conf_destroy(o.conf);
    ErrorSpec e;
    e.code = CODE_INVALID_ARGUMENT;
    e.name = ERR_INVALID_ARGUMENT;
    e.message = fmt::format("klua.consumer: \"{}\" (set by {}) does not apply under group.protocol=consumer (KIP-848): "
                            "use {}", key, source, instead);
    raise_error(L, e);
  }
  return true;
}

// klua.consumer{group=, topics=, on_assign=, on_revoke=, on_lost=, ...properties}
int l_new(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  ClientOptions o = build_client_options(
      L, 1, "klua.consumer", {{"enable.auto.offset.store", "false"}, {"enable.auto.commit", "true"},
                             // see the top of the file: librdkafka's 1000 ms stalls a busy consumer
                             {"fetch.queue.backoff.ms", "10"}},
      {"group", "topics", "poll_timeout_ms", "on_assign", "on_revoke", "on_lost", "hook_timeout_ms"});
  bool kip848 = refuse_classic_only(L, o);
  bool store_on_hand_out = false;
  {
    char value[16];
    size_t n = sizeof value;
    if (rd_kafka_conf_get(o.conf, "enable.auto.offset.store", value, &n) == RD_KAFKA_CONF_OK &&
        std::strcmp(value, "true") == 0) {
      store_on_hand_out = true;  // see Consumer::store_on_hand_out
      rd_kafka_conf_set(o.conf, "enable.auto.offset.store", "false", nullptr, 0);
    }
  }
  std::vector<std::string> topics;
  std::string group;
  double poll_timeout = 1000, hook_timeout = DEFAULT_HOOK_TIMEOUT_MS;
  int hooks[3] = {LUA_NOREF, LUA_NOREF, LUA_NOREF};
  auto fail = [&](const char* fmt, const char* arg) {
    rd_kafka_conf_destroy(o.conf);
    for (int h : hooks) luaL_unref(L, LUA_REGISTRYINDEX, h);
    luaL_error(L, fmt, arg);
  };
  for (const auto& k : o.klua_keys) {
    lua_getfield(L, 1, k.c_str());
    if (k == "group") {
      if (!lua_isstring(L, -1)) fail("klua.consumer: option '%s' must be a string", "group");
      group = lua_tostring(L, -1);
    } else if (k == "topics") {
      int top = lua_gettop(L);
      lua_pushcfunction(L, [](lua_State* L) -> int {
        auto* out = static_cast<std::vector<std::string>*>(lua_touserdata(L, 2));
        *out = topic_list(L, 1, "klua.consumer");
        return 0;
      });
      lua_pushvalue(L, top);
      lua_pushlightuserdata(L, &topics);
      if (lua_pcall(L, 2, 0, 0) != 0) {
        rd_kafka_conf_destroy(o.conf);
        for (int h : hooks) luaL_unref(L, LUA_REGISTRYINDEX, h);
        lua_error(L);
      }
    } else if (k == "poll_timeout_ms" || k == "hook_timeout_ms") {
      if (!lua_isnumber(L, -1)) fail("klua.consumer: option '%s' must be a number", k.c_str());
      (k == "poll_timeout_ms" ? poll_timeout : hook_timeout) = lua_tonumber(L, -1);
    } else {  // rebalance hooks
      if (!lua_isfunction(L, -1)) fail("klua.consumer: option '%s' must be a function", k.c_str());
      int i = k == "on_assign" ? 0 : k == "on_revoke" ? 1 : 2;
      lua_pushvalue(L, -1);
      hooks[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
  }
  char errstr[256];
  if (!group.empty()) rd_kafka_conf_set(o.conf, "group.id", group.c_str(), errstr, sizeof errstr);
  {
    char buf[512];
    size_t n = sizeof buf;
    if (rd_kafka_conf_get(o.conf, "group.id", buf, &n) == RD_KAFKA_CONF_OK && buf[0]) group = buf;
  }
  if (group.empty()) fail("klua.consumer: a '%s' is required (or use klua.consumer{group=..., ...} with assign)", "group");
  rd_kafka_conf_set_events(o.conf, RD_KAFKA_EVENT_FETCH | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG |
                                       RD_KAFKA_EVENT_STATS | RD_KAFKA_EVENT_REBALANCE |
                                       RD_KAFKA_EVENT_OFFSET_COMMIT);
  Runtime& rt = Runtime::from(L);
  auto* box = static_cast<ConsumerBox*>(lua_newuserdata(L, sizeof(ConsumerBox)));
  box->c = nullptr;
  luaL_getmetatable(L, CONSUMER_MT);
  lua_setmetatable(L, -2);
  rd_kafka_t* rk = new_handle(L, RD_KAFKA_CONSUMER, o.conf, "klua.consumer");
  auto* c = new Consumer(rt);
  {
    // Topic names for the fast path, reached from Lua through the userdata.
    const ConsumerStatics* st = consumer_statics(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->names_ref);
    lua_pushvalue(L, -2);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    c->set_topic_names(luaL_ref(L, LUA_REGISTRYINDEX));
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  c->set_hooks(o);
  c->set_rebalance_hooks(hooks[0], hooks[1], hooks[2]);
  c->kip848 = kip848;
  c->store_on_hand_out = store_on_hand_out;
  c->start(rk, group, poll_timeout, hook_timeout);
  box->c = c;
  if (!topics.empty()) {
    int n = subscribe(L, c, topics);
    if (n == 2) lua_error(L);  // subscribe failed: raise its error
    lua_pop(L, 1);
  }
  return 1;
}
}  // namespace

rd_kafka_t* check_consumer_handle(lua_State* L, int idx) { return check_consumer(L, idx)->rk(); }

rd_kafka_topic_partition_list_t* consumer_positions(lua_State* L, int idx, rd_kafka_topic_partition_list_t* list,
                                                    rd_kafka_resp_err_t* err) {
  Consumer* c = check_consumer(L, idx);
  *err = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (!list) {
    *err = rd_kafka_assignment(c->rk(), &list);
    if (*err) return list;
  }
  *err = rd_kafka_position(c->rk(), list);
  if (!*err) c->script_positions(list);
  return list;
}

void open_consumer(Runtime& rt, lua_State* L, int klua_table) {
  auto* st = static_cast<ConsumerStatics*>(lua_newuserdata(L, sizeof(ConsumerStatics)));
  new (st) ConsumerStatics();
  lua_setfield(L, LUA_REGISTRYINDEX, "klua.consumer.statics");
  static const char* keys[K_COUNT] = {"topic", "partition", "offset", "key", "value", "timestamp",
                                      "timestamp_type", "headers", "create", "log_append"};
  for (int i = 0; i < K_COUNT; ++i) {
    lua_pushstring(L, keys[i]);
    st->key_refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  luaL_newmetatable(L, MESSAGE_MT);
  load_binding_chunk(L, "consumer_message_index");
  lua_pushcfunction(L, l_msg_header);
  lua_pushcfunction(L, l_msg_header_all);
  lua_getglobal(L, "rawset");
  lua_call(L, 3, 1);
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, -1);
  st->message_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);

  luaL_newmetatable(L, CONSUMER_MT);
  lua_newtable(L);
  Scheduler& s = rt.scheduler();
  struct {
    const char* name;
    lua_CFunction fn;
    bool waits;
  } methods[] = {
      {"poll", l_poll, true},           {"store", l_store, false},
      {"commit", l_commit, true},       {"close", l_close, true},
      {"subscribe", l_subscribe, false}, {"unsubscribe", l_unsubscribe, false},
      {"assign", l_assign, false},      {"assignment", l_assignment, false},
      {"pause", l_pause, false},        {"resume", l_resume, false},
      {"seek", l_seek, true},          {"position", l_position, false},
      {"committed", l_committed, true}, {"watermarks", l_watermarks, true},
      {"offsets_for_times", l_offsets_for_times, true},
      {"_end_offsets", l_end_offsets, true}, {"_held", l_held, false},
      {"_queued", l_queued, false},     {"_route", l_route, false},
      {"_waiters", l_waiters, false},
  };
  for (const auto& m : methods) {
    if (m.waits)
      s.push_waiting(L, m.fn);
    else
      lua_pushcfunction(L, m.fn);
    lua_setfield(L, -2, m.name);
  }
  // poll's fast path wraps the full one; topic names per consumer userdata (weak keys).
  load_binding_chunk(L, "consumer_fast");
  load_binding_chunk(L, "ffi_cdefs");  // bindings/ffi.h's structs, declared once; returns ffi
  lua_call(L, 0, 1);
  lua_getfield(L, -3, "poll");
  lua_pushvalue(L, -5);  // the consumer metatable
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->message_mt_ref);
  push_weak_keyed_table(L);
  lua_pushvalue(L, -1);
  st->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, reinterpret_cast<void*>(&take_fast_entry));
  lua_pushlightuserdata(L, reinterpret_cast<void*>(&release_fast_entry));
  lua_pushinteger(L, sizeof(klua_msg_view));
  lua_call(L, 8, 2);
  int fast_idx = lua_gettop(L);
  lua_pushvalue(L, -2);
  lua_setfield(L, -4, "poll");
  load_binding_chunk(L, "consumer_messages");
  lua_getfield(L, klua_table, "now");
  lua_getglobal(L, "error");
  lua_getglobal(L, "pairs");
  lua_getglobal(L, "ipairs");
  lua_pushvalue(L, fast_idx);
  lua_call(L, 5, 1);
  lua_replace(L, fast_idx - 1);
  lua_settop(L, fast_idx - 1);
  lua_setfield(L, -2, "messages");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  lua_pushcfunction(L, l_new);
  lua_setfield(L, klua_table, "consumer");
}

}  // namespace klua
