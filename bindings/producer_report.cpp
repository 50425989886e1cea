// Delivery reports: the DR events of a producer's queue, dispatched to p:produce's waiting task,
// p:produce_batch's results, a per-message on_delivery, or (in batches through the FFI) the
// producer-level on_delivery. Every report table is built by one Lua function, report() in
// bindings/lua/producer.lua.
#include "bindings/producer.hpp"
#include "host/log.hpp"

#include <cstring>
#include <fmt/format.h>

namespace klua::producer_impl {

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

// The report table for the C paths (per-message callbacks, produce_batch results): built by the
// same Lua function as p:produce's and the fast path's reports (bindings/lua/producer.lua).
void Producer::push_report(lua_State* L, const rd_kafka_message_t* m) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, statics_->report_ref);
  push_report_fields(L, m);
  lua_call(L, 5, 1);
  if (m->err) {  // a successful report is persisted: only a failed one says
    lua_pushstring(L, persisted_status(m));
    lua_setfield(L, -2, "persisted");
  }
}

// p:produce's report as five values (topic, partition, offset, timestamp, timestamp type 0 none,
// 1 create, 2 log_append) that producer.lua's report() makes into the report table: a
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
void push_delivery_error(lua_State* L, const rd_kafka_message_t* m, const std::optional<ErrorSpec>& auth) {
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
  lua_pushstring(L, persisted_status(m));
  lua_setfield(L, -2, "persisted");
}

// librdkafka's persistence status of a reported message: "not_persisted" (never written: safe
// to send again), "possibly_persisted" (sent, no answer: a resend may duplicate it unless the
// producer is idempotent) or "persisted".
const char* persisted_status(const rd_kafka_message_t* m) {
  switch (rd_kafka_message_status(m)) {
    case RD_KAFKA_MSG_STATUS_NOT_PERSISTED:
      return "not_persisted";
    case RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED:
      return "possibly_persisted";
    default:
      return "persisted";
  }
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
        log::diagnostic(log::Level::error,
                        fmt::format("delivery failed for a message to topic \"{}\": {}", rd_kafka_topic_name(m->rkt),
                                    rd_kafka_err2str(m->err)),
                        {{"client", rd_kafka_name(rk_)}, {"topic", rd_kafka_topic_name(m->rkt)},
                         {"partition", std::to_string(m->partition), true}, {"code", rd_kafka_err2name(m->err)}});
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
      // (a batch forgotten after a bad item is no longer there; a new one may have its key)
      auto it = batches.find(b.key);
      if (it != batches.end() && it->second.get() == &b) batches.erase(it);
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
    self->count_report(m);
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

}  // namespace klua::producer_impl
