// klua.producer's handle: its start, the drain of its event queue, flush (a wait on the loop,
// woken by delivery reports, with short rd_kafka_flush nudges on the executor), the all-brokers-down
// fail-fast, and its close. See bindings/producer.hpp for the other files.
#include "bindings/producer.hpp"
#include "host/log.hpp"

#include <cstring>
#include <fmt/format.h>

namespace klua::producer_impl {

void* retry_marker() {
  static char marker;  // only its address is used
  return &marker;
}

void Producer::start_flushing() {
  keep_flushing_ = true;
  if (!nudging_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(nudge_timer_))) nudge();
}

void Producer::nudge() {
  if (!keep_flushing_ || !rk_ || (state_ != Open && state_ != Closing) || rd_kafka_outq_len(rk_) == 0) {
    keep_flushing_ = false;
    return;
  }
  nudging_ = true;
  rd_kafka_t* rk = rk_;
  // run_off_loop: the handle is not destroyed while this runs (finish_close waits for inflight_).
  run_off_loop([rk] { rd_kafka_flush(rk, kNudgeMs); },
               [this] {
                 nudging_ = false;
                 if (keep_flushing_ && (state_ == Open || state_ == Closing) && rd_kafka_outq_len(rk_) > 0)
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

static void push_retry(lua_State* co, void*) { lua_pushlightuserdata(co, retry_marker()); }

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
    if (state_ == Closing) finish_close();
  }
}

void Producer::arm_auth_purge() {
  // Only for refused credentials; an outage alone purges nothing (see producer.hpp).
  if (!rk_ || !last_auth_error_ || uv_is_active(reinterpret_cast<uv_handle_t*>(auth_purge_timer_))) return;
  uv_update_time(rt_.loop());  // the cached time may be a long busy stretch old (see Consumer::begin_close)
  uv_timer_start(auth_purge_timer_, [](uv_timer_t* h) {
    auto* self = static_cast<Producer*>(h->data);
    // No broker up: all down after refusals, or none ever reached (an OAUTHBEARER client without a
    // token never connects, so librdkafka reports no outage).
    if (self->last_auth_error_ && self->rk_ && (self->all_brokers_down_ || !self->broker_up_now()) &&
        rd_kafka_outq_len(self->rk_) > 0) {
      log::diagnostic(log::Level::error,
                      fmt::format("producer: the brokers refused the credentials ({}); failing the queued messages",
                                  self->last_auth_error_->message),
                      {{"client", rd_kafka_name(self->rk_)}});
      rd_kafka_purge(self->rk_, RD_KAFKA_PURGE_F_QUEUE);
      self->watcher_->schedule();
    }
  }, 5000, 0);
}

void Producer::begin_close() {
  if (state_ != Open) return;
  state_ = Closing;
  // Pending produce calls still get their reports; flush sends without waiting for linger.
  start_flushing();
  close_timer_ = new uv_timer_t;
  uv_timer_init(rt_.loop(), close_timer_);
  close_timer_->data = this;
  uv_update_time(rt_.loop());  // the cached time may be a long busy stretch old (see Consumer::begin_close)
  uv_timer_start(close_timer_, [](uv_timer_t* h) {
    auto* self = static_cast<Producer*>(h->data);
    if (self->state_ != Closing) return;
    int left = rd_kafka_outq_len(self->rk_);
    log::diagnostic(log::Level::warn,
                    fmt::format("producer close: {} message(s) not delivered after {} ms; purging them", left,
                                self->wait_timeout_ms_),
                    {{"client", rd_kafka_name(self->rk_)}, {"undelivered", std::to_string(left), true}});
    rd_kafka_purge(self->rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    self->drain();
    if (self->state_ == Closing) self->finish_close();
  }, static_cast<uint64_t>(timeout_int(wait_timeout_ms_)), 0);
  drain();
  if (state_ == Closing && rd_kafka_outq_len(rk_) == 0) finish_close();
}

// At an exit that cannot wait (the second signal), possibly on the signal watchdog's thread while
// the loop thread is stuck: thread-safe librdkafka calls only, on a queue reference of its own.
// Delivery reports not yet dispatched are taken off the queue first (a delivered message is not
// lost, though librdkafka's out-queue length still counts it until its report is destroyed);
// the failed ones count. Their Delivery objects are left as they are: the process ends next.
long Producer::undelivered() {
  if (!rk_ || (state_ != Open && state_ != Closing)) return 0;  // under Runtime::lock_closables
  long failed = 0;
  rd_kafka_queue_t* q = rd_kafka_queue_get_main(rk_);
  while (rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 0)) {
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR) {
      const rd_kafka_message_t* m;
      while ((m = rd_kafka_event_message_next(ev)))
        if (m->err) ++failed;
    }
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_queue_destroy(q);
  return failed + rd_kafka_outq_len(rk_);
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
  {
    auto lock = rt_.lock_closables();  // undelivered() may be reading rk_ on the watchdog's thread
    state_ = Destroying;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(close_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  uv_close(reinterpret_cast<uv_handle_t*>(auth_purge_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  uv_close(reinterpret_cast<uv_handle_t*>(nudge_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  close_timer_ = auth_purge_timer_ = nudge_timer_ = nullptr;
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
  // rd_kafka_destroy joins librdkafka's threads: off the loop thread.
  destroy_handle(0);
}

}  // namespace klua::producer_impl
