// The consumer's shared declarations (bindings/consumer*.cpp, one job each):
//   consumer.cpp            the handle: creation, options, events queue, userdata, the module table
//   consumer_poll.cpp       fetching: held messages, c:poll and its FFI fast path, message tables
//   consumer_rebalance.cpp  subscribe/assign and rebalances (hooks as tasks)
//   consumer_close.cpp      the close state machine
//   consumer_offsets.cpp    store/commit, seek/pause/resume, positions, committed, watermarks
//
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
// Messages fetched before klua forwarded their partition (between rd_kafka_assign and the
// forward, which under load takes a whole fetch) reach the events queue as FETCH events. They
// are older than anything of that partition in the messages queue: every take from the messages
// queue serves pending events first, and events-queue messages no poll takes are held in fetch
// order (tests/lua/consumer_more_test.lua, "events queue").
//
// Whether a message has headers is asked with rd_kafka_message_headers, which for a message
// without any allocates and frees a parse buffer: about 70 ns a message (2.8M against 3.5M
// msgs/s at 100 B without the question). The 2.0.2-era reading of librdkafka's private
// rd_kafka_msg_t that avoided it is gone: a layout change would read a wild pointer.
#pragma once
#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "bindings/kafka_handle.hpp"
#include "bindings/ffi.h"

namespace klua {
namespace consumer_impl {

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

class Consumer : public KafkaHandle {
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
  // A commit request klua made: its task (none for c:commit{async=true}) and when it started
  // (the commit latency metric). Auto-commits and rebalance commits arrive without one.
  struct CommitWait {
    WaitToken tok;
    uint64_t started = uv_hrtime();
  };
  enum class Rebalance { Assign, Revoke, Lost };

  explicit Consumer(Runtime& rt) : KafkaHandle(rt, "consumer") {
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
    metrics_->group = group_;
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
    track_live();
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
  std::string describe() const override;
  void push_metrics(lua_State* L) override;
  bool awaiting_assignment() override;
  // klua_consumer_lag of a partition whose position is unknown (no message handed out since it
  // was assigned): the lag counts from where the consumer will start, the group's committed
  // offset (else auto.offset.reset). Those offsets are looked up off the loop
  // (rd_kafka_committed on the executor) once per assignment change, kept here, and replaced by
  // each successful commit's offsets: a scrape reads them and asks no broker (client_metrics.cpp).
  // Called when the assignment changed (the listed partitions; all when null): forgets what was
  // known of them and, once the metrics are served, looks the new ones up.
  void lag_assignment_changed(const rd_kafka_topic_partition_list_t* list);
  // A commit succeeded: its offsets are the group's committed offsets now.
  void lag_committed(const rd_kafka_topic_partition_list_t* list);
  // Starts a lookup of the assigned partitions whose committed offset is not known (one at a time).
  void lag_lookup();
  void on_inflight_done() override {
    if (destroy_when_idle_) finish_close();
  }

  // Drops held messages of the listed partitions (all when list is null).
  void drop_held(const rd_kafka_topic_partition_list_t* list);
  void finish_rebalance();
  // The coroutine of the running rebalance hook (set by the hook task when it starts), or null.
  lua_State* hook_thread = nullptr;
  // Counts started hooks: a hook whose rebalance was answered early (close_from_hook) must not
  // answer the next one when it returns.
  double hook_gen = 0;
  // c:close() called by the rebalance hook's own task: the close needs the rebalance answered,
  // and the hook waits for the close; answer the rebalance now (as if the hook had returned).
  void close_from_hook(lua_State* L) {
    if (rebalance_running_ && hook_thread == L) {
      hook_thread = nullptr;
      ++hook_gen;  // the hook's own done() answers nothing now
      finish_rebalance();
    }
  }
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
  // An `until_end` wait (messages{until_end=true}) also ends, with nothing, when the end may have
  // come without a message: an end of partition, a change of the assignment or a seek.
  struct PollWait {
    WaitToken tok;
    bool until_end;
  };
  std::list<PollWait> poll_waiters;
  // An authorization refusal (group or topic ACLs) heard since the last poll: the next poll (or
  // the ones waiting now) return it as nil, err instead of waiting their timeout out. librdkafka
  // keeps retrying, so a grant made later lets the consumer go on.
  std::optional<ErrorSpec> denied;
  void refuse_polls(const ErrorSpec& e);

  // messages{until_end=true} (bindings/lua/consumer_messages.lua) asks where each assigned
  // partition stands, from klua's own record instead of librdkafka's positions: a partition
  // assigned at "end", at a time or at an offset past the end has no position in librdkafka
  // until a message arrives, and control records (transactions) move no position the script
  // sees. Per partition of the assignment (as klua set it: c:assign, rebalances): the offset it
  // was assigned or sought to (when numeric), the next offset the script gets (from the last
  // message handed out), and the offset of the last end of partition librdkafka reported
  // (enable.partition.eof, which klua always sets and never hands to the script: librdkafka
  // reports it when a fetch starts at the end, the last stable offset under read_committed).
  // A generation counts changes (assignment, seek) so that the iterator re-reads them.
  std::map<TopicPartition, int64_t> assigned_start;  // -1: not numeric (end, stored, a time...)
  // After c:assign at explicit offsets, a message of such a partition below its start offset is
  // one fetched for the assignment before: librdkafka outdates those only once its main thread
  // has processed the new fetch start, which may come after c:assign returned (seen under load:
  // offsets 0.. handed out after an assign at 3). Dropped until one at or past the start comes.
  std::map<TopicPartition, int64_t> skip_below_;
  // c:assign calls that wait for the stops of the assignment before them (settle_stops runs on
  // the executor: the loop never blocks on it). The front one is in progress while
  // assign_running; later calls wait behind it and are given in call order.
  struct PendingAssign {
    rd_kafka_topic_partition_list_t* list;  // owned; null: c:assign() (nothing)
    WaitToken tok;
  };
  std::deque<PendingAssign> assign_queue;
  bool assign_running = false;
  // The start offsets on_assign returned, for the assign that follows it.
  std::map<TopicPartition, int64_t> assign_offsets;
  uint64_t progress_gen = 0;
  // The assignment changed (assign, a rebalance's assign or unassign) or a partition was sought:
  // forgets what was seen of those partitions (all when null) and wakes until_end waits.
  void progress_changed(const rd_kafka_topic_partition_list_t* list);
  // Pushes an array of {topic=, partition=, next=, eof=, held=} for assigned_start's partitions
  // (next: the next offset the script gets, nil when unknown; eof: the offset of the last end of
  // partition; held: the lowest offset klua took from librdkafka and has not handed out), and
  // missing_topic (or nil) when nothing is assigned. Returns the number of values pushed.
  int push_progress(lua_State* L);
  // A subscribed topic reported missing (the classic protocol's "Subscribed topic not
  // available", klua's metadata check under KIP-848) since the last subscribe or assignment:
  // messages{until_end=true} raises it while nothing is assigned (it would wait forever).
  std::optional<ErrorSpec> missing_topic;
  // Ends every until_end wait with nothing (the iterator looks again); with none waiting, the
  // news stays for the next until_end poll.
  void wake_until_end();
  bool has_until_end_waiter() const {
    for (const auto& w : poll_waiters)
      if (w.until_end) return true;
    return false;
  }
  // Whether an end of partition, an assignment or a seek came since the last call (or since
  // wake_until_end woke a wait).
  bool progress_seen() {
    bool seen = news_;
    news_ = false;
    return seen;
  }

 private:
  struct PendingRebalance {
    Rebalance kind;
    rd_kafka_topic_partition_list_t* parts;
  };
  void handle_rebalance(rd_kafka_event_t* ev);
  void start_rebalance();
  void handle_commit(rd_kafka_event_t* ev);
  void count_commit(rd_kafka_event_t* ev, const CommitWait* cw);
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
  // End of partition is not an error: it is recorded for messages{until_end=} (see
  // assigned_start) and never handed out. A partition being revoked hands nothing more to the
  // script once on_revoke was called.
  bool stale(const rd_kafka_message_t* m) {
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (m->rkt) part(m).eof = m->offset;  // librdkafka gives the fetch offset, the end
      news_ = true;
      return true;
    }
    return !m->err && m->rkt &&
           ((!revoking_.empty() && revoking_.count(tp_of(m))) || (!skip_below_.empty() && before_start(m)));
  }
  // (skip_below_, set by c:assign, cleared by c:seek.) The bound then follows what was handed out
  // instead of going at the first message past it: fetches of an earlier assignment of the same
  // partition can still be queued behind the new one's first message (a re-assign loop handed
  // out offsets 0-2 after 3, and 3 twice), and nothing but a seek moves a partition backwards.
  bool before_start(const rd_kafka_message_t* m) {
    auto it = skip_below_.find(tp_of(m));
    if (it == skip_below_.end()) return false;
    if (m->offset < it->second) return true;
    it->second = m->offset + 1;
    return false;
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

  std::string group_;
  // Lag of partitions without a position (lag_assignment_changed): the group's committed offset
  // per partition (RD_KAFKA_OFFSET_INVALID: the group has none), the assignment changes counted
  // (a lookup answering for an older assignment is dropped), whether one runs, and when a failed
  // lookup may be retried by a scrape (uv_now, ms).
  std::map<TopicPartition, int64_t> lag_committed_;
  uint64_t lag_gen_ = 0;
  bool lag_lookup_running_ = false;
  uint64_t lag_retry_at_ = 0;
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
    int64_t next = -1;           // after the last message handed out (-1: none since assigned/sought)
    int64_t eof = -1;            // the last end of partition reported (-1: none since then)
    client_metrics::TopicCounters* counters = nullptr;  // the built-in metrics' slot of the topic
  };
  bool news_ = false;  // an end of partition, assignment or seek came: until_end waits look again
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
      fresh.counters = metrics_->topics.get(name);
      it->second = std::move(fresh);
    }
    last_key_ = k;
    last_state_ = &it->second;
    return it->second;
  }
  // A message handed to the script (c:poll's fast path and full path alike): built-in metrics.
  static void count_handed_out(PartState& ps, const rd_kafka_message_t* m) {
    ++ps.counters->messages;
    ps.counters->bytes += m->len + m->key_len;
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

// Messages are built for every fetch: keys are pre-interned strings kept in the registry (no
// strlen and string interning per field), the topic name string is cached per topic handle.
enum MsgKey { K_TOPIC, K_PARTITION, K_OFFSET, K_KEY, K_VALUE, K_TIMESTAMP, K_TIMESTAMP_TYPE, K_HEADERS, K_CREATE,
              K_LOG_APPEND, K_COUNT };
struct ConsumerStatics {
  int key_refs[K_COUNT];
  int message_mt_ref = LUA_NOREF;
  int names_ref = LUA_NOREF;  // weak-keyed: consumer userdata -> its topic names table
};
const ConsumerStatics* consumer_statics(lua_State* L);

// The payload of a consumer userdata (null once collected).
struct ConsumerBox {
  Consumer* handle;
  static constexpr const char* kind = "consumer";
};

// The consumer at idx; raises when it is closed or failed fatally, and a bad argument naming fn
// ("c:poll") when the value is not a consumer.
Consumer* check_consumer(lua_State* L, int idx, const char* fn = "klua.consumer method");
// Programmer-error checks of the consumer's arguments (host/error.hpp's raise_bad_argument: named
// and located at the user's call): a string, a partition number.
std::string arg_string(lua_State* L, int arg, const char* fn);
int32_t arg_partition(lua_State* L, int arg, const char* fn);
ErrorSpec consumer_error(Consumer* c, rd_kafka_resp_err_t err, const char* op, std::string msg = {});
// Pushes list (destroying it), or nil, err when err is set.
int return_partitions_or_error(lua_State* L, Consumer* c, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list,
                               const char* op, bool end_as_string = false);
// The topics value at idx of klua.consumer{topics=} (arg 1, field "topics") and c:subscribe (arg 2,
// field nullptr); raises a bad argument of fn naming a bad name.
std::vector<std::string> topic_list(lua_State* L, int idx, const char* fn, int arg, const char* field);
// Subscribes; pushes true or nil, err and returns their count.
int subscribe(lua_State* L, Consumer* c, const std::vector<std::string>& topics);

// The FFI entries of c:poll's fast path (types in bindings/ffi.h).
int take_fast_entry(void* box, klua_msg_view* v);
void release_fast_entry(void* box);

// Methods, by file. consumer_poll.cpp:
int l_poll(lua_State* L);
int l_held(lua_State* L);
int l_waiters(lua_State* L);
int l_queued(lua_State* L);
int l_route(lua_State* L);
int l_msg_header(lua_State* L);
int l_msg_header_all(lua_State* L);
// consumer_rebalance.cpp:
int l_subscribe(lua_State* L);
int l_unsubscribe(lua_State* L);
int l_assign(lua_State* L);
int l_assignment(lua_State* L);
// consumer_offsets.cpp:
int l_store(lua_State* L);
int l_commit(lua_State* L);
int l_pause(lua_State* L);
int l_resume(lua_State* L);
int l_seek(lua_State* L);
int l_position(lua_State* L);
int l_committed(lua_State* L);
int l_watermarks(lua_State* L);
int l_offsets_for_times(lua_State* L);
int l_end_offsets(lua_State* L);
int l_progress(lua_State* L);
int l_poll_until_end(lua_State* L);

}  // namespace consumer_impl
}  // namespace klua
