// The consumer's fetching (see the top of bindings/consumer.hpp): messages taken from librdkafka
// and held until handed out, c:poll with its waiters, the FFI fast path, message tables.
#include <fmt/format.h>

#include "bindings/consumer.hpp"

namespace klua {
namespace consumer_impl {

TopicPartition tp_of(const rd_kafka_message_t* m) { return {rd_kafka_topic_name(m->rkt), m->partition}; }

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
    if (f.m->rkt) {
      PartState& ps = part(f.m);
      ps.next = f.m->offset + 1;
      count_handed_out(ps, f.m);
    }
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
  bool got = take_next(out);
  // An end of partition taken here ends the until_end waits of other tasks (see wake_until_end).
  if (news_ && msg_watcher_ && has_until_end_waiter()) msg_watcher_->schedule();
  if (!got) return false;
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
  if (news_) wake_until_end();
}

void Consumer::wake_until_end() {
  Scheduler& s = rt_.scheduler();
  for (auto it = poll_waiters.begin(); it != poll_waiters.end();) {
    if (!it->until_end) {
      ++it;
      continue;
    }
    WaitToken t = it->tok;
    it = poll_waiters.erase(it);
    if (s.wake_begin(t)) {
      s.wake_end(t, 0);
      news_ = false;
    }
  }
}

void Consumer::progress_changed(const rd_kafka_topic_partition_list_t* list) {
  if (!assigned_start.empty()) missing_topic.reset();
  ++progress_gen;
  for (auto& [key, st] : parts_) {
    if (list) {
      bool listed = false;
      for (int i = 0; i < list->cnt && !listed; ++i)
        listed = list->elems[i].partition == key.partition && st.topic == list->elems[i].topic;
      if (!listed) continue;
    }
    st.next = st.eof = -1;
  }
  news_ = true;
  wake_until_end();
}

int Consumer::push_progress(lua_State* L) {
  std::map<TopicPartition, const PartState*> seen;
  for (const auto& [key, st] : parts_)
    if (assigned_start.count({st.topic, key.partition})) seen[{st.topic, key.partition}] = &st;
  std::map<TopicPartition, int64_t> lowest_held;
  for (const auto* q : {&held_, &deferred_})
    for (const auto& f : *q) {
      if (f.m->err || !f.m->rkt) continue;
      auto [it, fresh] = lowest_held.try_emplace(tp_of(f.m), f.m->offset);
      if (!fresh && f.m->offset < it->second) it->second = f.m->offset;
    }
  lua_createtable(L, static_cast<int>(assigned_start.size()), 0);
  int i = 0;
  for (const auto& [tp, start] : assigned_start) {
    lua_createtable(L, 0, 5);
    lua_pushlstring(L, tp.first.data(), tp.first.size());
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, tp.second);
    lua_setfield(L, -2, "partition");
    auto st = seen.find(tp);
    int64_t next = st != seen.end() && st->second->next >= 0 ? st->second->next : start;
    if (next >= 0) {
      lua_pushnumber(L, static_cast<double>(next));
      lua_setfield(L, -2, "next");
    }
    if (st != seen.end() && st->second->eof >= 0) {
      lua_pushnumber(L, static_cast<double>(st->second->eof));
      lua_setfield(L, -2, "eof");
    }
    auto h = lowest_held.find(tp);
    if (h != lowest_held.end()) {
      lua_pushnumber(L, static_cast<double>(h->second));
      lua_setfield(L, -2, "held");
    }
    lua_rawseti(L, -2, ++i);
  }
  if (assigned_start.empty() && missing_topic) {
    push_error(L, *missing_topic);
    return 2;
  }
  return 1;
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
    WaitToken t = poll_waiters.front().tok;
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
  PartState& ps = part(m);
  ps.next = m->offset + 1;
  count_handed_out(ps, m);
  store_handed_out(m);
  return 0;
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

// Called through the FFI with the payload of a userdata whose metatable the caller checked.
int take_fast_entry(void* box, klua_msg_view* v) {
  Consumer* c = static_cast<ConsumerBox*>(box)->handle;
  return c ? c->take_fast(v) : 1;
}

void release_fast_entry(void* box) {
  if (Consumer* c = static_cast<ConsumerBox*>(box)->handle) c->release_fast();
}

// c:poll([{timeout_ms=}]) or c:poll(timeout_ms) (the confluent-kafka idiom poll(timeout), kept
// without a warning) -> message | nil (timeout) | nil, err. The arguments are checked here, on the
// full path: the FFI fast path (bindings/lua/consumer_fast.lua) sends everything but nil and
// numbers here.
static int poll(lua_State* L, Consumer* c, double timeout, bool until_end) {
  Scheduler& s = Runtime::from(L).scheduler();
  s.check_cancelled(L);
  Consumer::Fetched f;
  if (c->next_message(&f)) return c->push_fetched(L, f, c->group());
  if (c->denied) {  // refused by the broker's ACLs since the last poll (Consumer::refuse_polls)
    lua_pushnil(L);
    push_error(L, *c->denied);
    c->denied.reset();
    return 2;
  }
  if (timeout == 0) return 0;
  if (until_end && c->progress_seen()) return 0;  // an end of partition came: look again first
  WaitToken t = s.prepare_wait(L, "c:poll", timeout, OnTimeout::ResumeEmpty);
  auto it = c->poll_waiters.insert(c->poll_waiters.end(), Consumer::PollWait{t, until_end});
  s.on_wait_end(t, [c, it] { c->poll_waiters.erase(it); });
  return lua_yield(L, 0);
}

int l_poll(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:poll");
  double timeout = lua_type(L, 2) == LUA_TNUMBER ? check_timeout_number(L, 2, "c:poll", lua_tonumber(L, 2))
                                                 : check_timeout_opts(L, 2, "c:poll", c->default_poll_timeout());
  return poll(L, c, timeout, false);
}

// poll_until_end(c, timeout_ms) -> message | nil | nil, err: c:poll for messages{until_end=true},
// which also returns nothing as soon as an end of partition, a new assignment or a seek may have
// brought the end without a message.
int l_poll_until_end(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:messages");
  check_arg_type(L, 2, LUA_TNUMBER, "c:messages");
  return poll(L, c, lua_tonumber(L, 2), true);
}

// progress(c) -> {{topic=, partition=, next=, eof=, held=}, ...} (Consumer::push_progress)
int l_progress(lua_State* L) {
  return check_consumer(L, 1, "c:messages")->push_progress(L);
}

// The private primitives below are not on the consumer's metatable: tests reach them as
// debug.getregistry()["klua.private"].consumer.NAME(c, ...) (bindings/consumer.cpp).
// held(c, topic, partition) -> messages of the partition klua took from librdkafka and did not
// hand out yet (for tests)
int l_held(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "held");
  lua_pushinteger(L, static_cast<lua_Integer>(c->held_for({arg_string(L, 2, "held"), arg_partition(L, 3, "held")})));
  return 1;
}

// waiters(c) -> polls waiting now (for tests: a timed-out poll leaves none behind)
int l_waiters(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "waiters");
  lua_pushinteger(L, static_cast<lua_Integer>(c->poll_waiters.size()));
  return 1;
}

// queued(c) -> messages fetched and not handed out yet: librdkafka's and klua's (for tests)
int l_queued(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "queued");
  lua_pushinteger(L, static_cast<lua_Integer>(c->queued()));
  return 1;
}

// route(c, topic, partition, "events" | "messages"): where the partition's fetched messages go
// (the events queue: as when fetched before klua's forward). For tests.
int l_route(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "route");
  std::string to = arg_string(L, 4, "route");
  c->route_partition(arg_string(L, 2, "route").c_str(), arg_partition(L, 3, "route"), to == "events");
  return 0;
}

// msg:header(name) -> the last value of that header (nil if absent)
int l_msg_header(lua_State* L) {
  check_arg_type(L, 1, LUA_TTABLE, "msg:header");
  check_arg_type(L, 2, LUA_TSTRING, "msg:header");
  size_t nl;
  const char* name = lua_tolstring(L, 2, &nl);
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
  check_arg_type(L, 1, LUA_TTABLE, "msg:header_all");
  check_arg_type(L, 2, LUA_TSTRING, "msg:header_all");
  size_t nl;
  const char* name = lua_tolstring(L, 2, &nl);
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

}  // namespace consumer_impl
}  // namespace klua
