// The consumer's close: c:close(), __gc and runtime exit all end here. Asynchronous: the revocation
// (stored offsets committed on unassign) and the group leave arrive on a queue of their own and
// are served on the loop; a timer bounds a close that cannot end; the handle is then destroyed off
// the loop.
#include <fmt/format.h>

#include "bindings/consumer.hpp"
#include "host/log.hpp"

namespace klua {
namespace consumer_impl {

void Consumer::begin_close() {
  if (state_ != Open) return;
  state_ = Closing;
  abort_broker_waits();  // blocking calls waiting for a broker return now
  release_fast();
  drop_held(nullptr);  // unprocessed: their offsets were never stored
  Scheduler& s = rt_.scheduler();
  auto waiters = std::move(poll_waiters);
  poll_waiters.clear();
  for (const auto& w : waiters) {
    WaitToken t = w.tok;
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
    log::diagnostic(log::Level::warn, fmt::format("consumer close: {}", rd_kafka_error_string(e)),
                    {{"client", rd_kafka_name(rk_)}, {"group", group_}});
    rd_kafka_error_destroy(e);
  }
  close_timer_ = new uv_timer_t;
  uv_timer_init(rt_.loop(), close_timer_);
  close_timer_->data = this;
  // The loop's cached time is as old as the last loop turn: a script that took buffered messages
  // for seconds without waiting left it seconds behind, and the 10 s bound expired at once
  // (the handle was destroyed before the close finished).
  uv_update_time(rt_.loop());
  uv_timer_start(close_timer_, [](uv_timer_t* h) {
    auto* self = static_cast<Consumer*>(h->data);
    if (self->state_ != Closing) return;
    log::diagnostic(log::Level::warn,
                    fmt::format("consumer close (group {}) did not finish in time; destroying the handle", self->group_),
                    {{"client", rd_kafka_name(self->rk_)}, {"group", self->group_}});
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
  // klua has run the consumer close itself (begin_close): when it did not finish in time,
  // rd_kafka_destroy must not start another one that could wait just as long.
  destroy_handle(RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

}  // namespace consumer_impl
}  // namespace klua
