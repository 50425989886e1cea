// klua.consumer (basic): subscribe, poll, store/commit of processed messages, close.
// Everything arrives on the consumer queue (messages, rebalances, errors, logs,
// commit results), drained by the loop. Fetched messages wait in a bounded
// buffer of librdkafka events until the script polls; their data is copied into
// Lua and the librdkafka message destroyed before the script sees it.
#include <librdkafka/rdkafka.h>

#include <deque>
#include <fmt/format.h>
#include <memory>
#include <vector>

#include "bindings/client.hpp"

namespace klua {

namespace {
const char* const CONSUMER_MT = "klua.consumer";
const char* const MESSAGE_MT = "klua.message";
const size_t BUFFER_LIMIT = 1000;  // fetched messages held outside librdkafka's own prefetch

class Consumer : public Client {
 public:
  Consumer(Runtime& rt) : Client(rt, "consumer") {}
  ~Consumer() override {
    rt_.remove_closable(this);
    for (auto& b : buffer_) rd_kafka_event_destroy(b.ev);
  }

  void start(rd_kafka_t* rk, std::string group, double poll_timeout) {
    rk_ = rk;
    group_ = std::move(group);
    default_poll_timeout_ = poll_timeout;
    rd_kafka_poll_set_consumer(rk_);
    queue_ = rd_kafka_queue_get_consumer(rk_);
    rd_kafka_set_log_queue(rk_, nullptr);  // the main queue, now forwarded to the consumer queue
    watcher_ = std::make_unique<QueueWatcher>(rt_.loop(), queue_, [this] { drain(); });
    rt_.add_closable(this);
  }

  int close_priority() const override { return 20; }
  bool is_closed() const override { return state_ == Closed; }
  bool usable() const { return state_ == Open; }
  const std::string& group() const { return group_; }
  double default_poll_timeout() const { return default_poll_timeout_; }

  // Takes the next buffered message event (or nullptr), draining librdkafka's queue first.
  struct Fetched {
    rd_kafka_event_t* ev;
    const rd_kafka_message_t* m;  // the event's one message (the event's iterator is spent)
  };
  bool next_message(Fetched* out) {
    if (buffer_.empty()) drain();
    if (buffer_.empty()) return false;
    *out = buffer_.front();
    buffer_.pop_front();
    if (buffer_.size() < BUFFER_LIMIT / 2 && held_back_) {
      held_back_ = false;
      watcher_->schedule();
    }
    return true;
  }

  void drain();
  void begin_close() override;

  std::vector<WaitToken> poll_waiters, close_waiters;
  struct CommitWait {
    WaitToken tok;
  };
  bool orphaned = false;

  // Pushes the message (a Lua table) built from a FETCH event's message.
  static void push_message(lua_State* L, const rd_kafka_message_t* m);
  static void push_message_error(lua_State* L, const rd_kafka_message_t* m, const std::string& group);

 private:
  void handle_rebalance(rd_kafka_event_t* ev);
  void handle_commit(rd_kafka_event_t* ev);
  void deliver_to_waiter(rd_kafka_event_t* ev);
 public:
  static int push_fetched(lua_State* L, const Fetched& f, const std::string& group);
 private:
  void finish_close();

  enum State { Open, Closing, Destroying, Closed } state_ = Open;
  std::string group_;
  double default_poll_timeout_ = 0;
  rd_kafka_queue_t* queue_ = nullptr;
  std::unique_ptr<QueueWatcher> watcher_;
  std::deque<Fetched> buffer_;
  bool held_back_ = false;
  uv_timer_t* close_timer_ = nullptr;
  uv_work_t destroy_work_;
};

void Consumer::push_message(lua_State* L, const rd_kafka_message_t* m) {
  lua_createtable(L, 0, 8);
  lua_pushstring(L, rd_kafka_topic_name(m->rkt));
  lua_setfield(L, -2, "topic");
  lua_pushinteger(L, m->partition);
  lua_setfield(L, -2, "partition");
  lua_pushnumber(L, static_cast<double>(m->offset));
  lua_setfield(L, -2, "offset");
  if (m->key) {
    lua_pushlstring(L, static_cast<const char*>(m->key), m->key_len);
    lua_setfield(L, -2, "key");
  }
  if (m->payload) {
    lua_pushlstring(L, static_cast<const char*>(m->payload), m->len);
    lua_setfield(L, -2, "value");
  }
  rd_kafka_timestamp_type_t tt;
  int64_t ts = rd_kafka_message_timestamp(m, &tt);
  if (tt != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) {
    lua_pushnumber(L, static_cast<double>(ts));
    lua_setfield(L, -2, "timestamp");
    lua_pushstring(L, tt == RD_KAFKA_TIMESTAMP_CREATE_TIME ? "create" : "log_append");
    lua_setfield(L, -2, "timestamp_type");
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
    lua_setfield(L, -2, "headers");
  }
  luaL_getmetatable(L, MESSAGE_MT);
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
  if (!f.m) {
    n = 0;
  } else if (f.m->err) {
    lua_pushnil(L);
    push_message_error(L, f.m, group);
    n = 2;
  } else {
    push_message(L, f.m);
  }
  rd_kafka_event_destroy(f.ev);  // the script gets a copy; librdkafka's message goes now
  return n;
}

void Consumer::deliver_to_waiter(rd_kafka_event_t* ev) {
  Fetched f{ev, rd_kafka_event_message_next(ev)};
  if (!f.m) {
    rd_kafka_event_destroy(ev);
    return;
  }
  Scheduler& s = rt_.scheduler();
  while (!poll_waiters.empty()) {
    WaitToken t = poll_waiters.front();
    poll_waiters.erase(poll_waiters.begin());
    if (lua_State* co = s.wake_begin(t)) {
      s.wake_end(t, push_fetched(co, f, group_));
      return;
    }
  }
  buffer_.push_back(f);
}

void Consumer::drain() {
  if (!rk_ || state_ == Destroying || state_ == Closed) return;
  while (true) {
    if (buffer_.size() >= BUFFER_LIMIT && poll_waiters.empty()) {
      // Leave the rest in librdkafka's queue (bounded by its own prefetch limits); next_message
      // reschedules the drain when the script catches up.
      held_back_ = true;
      break;
    }
    rd_kafka_event_t* ev = rd_kafka_queue_poll(queue_, 0);
    if (!ev) break;
    switch (rd_kafka_event_type(ev)) {
      case RD_KAFKA_EVENT_FETCH:
        deliver_to_waiter(ev);
        break;
      case RD_KAFKA_EVENT_REBALANCE:
        handle_rebalance(ev);
        rd_kafka_event_destroy(ev);
        break;
      case RD_KAFKA_EVENT_OFFSET_COMMIT:
        handle_commit(ev);
        rd_kafka_event_destroy(ev);
        break;
      default:
        if (!handle_common_event(ev)) {
          // Unknown event types are dropped.
        }
        rd_kafka_event_destroy(ev);
        break;
    }
    if (!rk_) return;
    if (state_ == Closing && rd_kafka_consumer_closed(rk_)) {
      finish_close();
      return;
    }
  }
  if (state_ == Closing && rk_ && rd_kafka_consumer_closed(rk_)) finish_close();
}

void Consumer::handle_rebalance(rd_kafka_event_t* ev) {
  rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
  const rd_kafka_topic_partition_list_t* parts = rd_kafka_event_topic_partition_list(ev);
  bool cooperative = std::string(rd_kafka_rebalance_protocol(rk_)) == "COOPERATIVE";
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_assign(rk_, parts)) rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk_, parts);
    }
  } else {
    // Stored offsets of the revoked partitions are committed by librdkafka on unassign
    // (enable.auto.commit); drop buffered messages of partitions we no longer own.
    std::deque<Fetched> keep;
    for (auto& b : buffer_) {
      bool revoked = b.m->rkt && rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(b.m->rkt),
                                                                     b.m->partition) != nullptr;
      if (revoked)
        rd_kafka_event_destroy(b.ev);
      else
        keep.push_back(b);
    }
    buffer_.swap(keep);
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk_, parts)) rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk_, nullptr);
    }
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
    // Per-partition errors count too.
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
  // Buffered, unprocessed messages are dropped (their offsets were never stored).
  for (auto& b : buffer_) rd_kafka_event_destroy(b.ev);
  buffer_.clear();
  Scheduler& s = rt_.scheduler();
  auto waiters = std::move(poll_waiters);
  poll_waiters.clear();
  for (WaitToken t : waiters) {
    if (lua_State* co = s.wake_begin(t)) {
      lua_pushnil(co);
      s.wake_end(t, 1);
    }
  }
  // Asynchronous close: revocation (which commits stored offsets) and the group leave arrive on
  // our queue and are served by drain(); the timer bounds a close that cannot finish.
  if (rd_kafka_error_t* e = rd_kafka_consumer_close_queue(rk_, queue_)) {
    fmt::print(stderr, "klua: consumer close: {}\n", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  }
  close_timer_ = new uv_timer_t;
  uv_timer_init(rt_.loop(), close_timer_);
  close_timer_->data = this;
  uv_timer_start(close_timer_, [](uv_timer_t* h) {
    auto* self = static_cast<Consumer*>(h->data);
    if (self->state_ != Closing) return;
    fmt::print(stderr, "klua: consumer close did not finish in time; destroying the handle\n");
    self->finish_close();
  }, 30000, 0);
  watcher_->schedule();
}

void Consumer::finish_close() {
  if (state_ != Closing) return;
  state_ = Destroying;
  uv_close(reinterpret_cast<uv_handle_t*>(close_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  close_timer_ = nullptr;
  watcher_->close();
  while (rd_kafka_event_t* ev = rd_kafka_queue_poll(queue_, 0)) {
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) handle_commit(ev);
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_queue_destroy(queue_);
  queue_ = nullptr;
  release_hooks();
  destroy_work_.data = this;
  uv_queue_work(rt_.loop(), &destroy_work_,
                [](uv_work_t* w) { rd_kafka_destroy(static_cast<Consumer*>(w->data)->rk_); },
                [](uv_work_t* w, int) {
                  auto* self = static_cast<Consumer*>(w->data);
                  self->rk_ = nullptr;
                  self->state_ = Closed;
                  Scheduler& s = self->rt_.scheduler();
                  auto waiters = std::move(self->close_waiters);
                  for (WaitToken t : waiters) {
                    if (lua_State* co = s.wake_begin(t)) {
                      lua_pushboolean(co, 1);
                      s.wake_end(t, 1);
                    }
                  }
                  if (self->orphaned) delete self;
                });
}

// ---- Lua API ----------------------------------------------------------------------

struct ConsumerBox {
  Consumer* c;
};

Consumer* check_consumer(lua_State* L, int idx) {
  auto* box = static_cast<ConsumerBox*>(luaL_checkudata(L, idx, CONSUMER_MT));
  if (!box->c || !box->c->usable()) {
    ErrorSpec e;
    e.code = CODE_CLOSED;
    e.name = ERR_CLOSED;
    e.message = "the consumer is closed";
    raise_error(L, e);
  }
  return box->c;
}

// c:poll([timeout_ms]) -> message | nil (timeout) | nil, err
int l_poll(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  double timeout = luaL_optnumber(L, 2, c->default_poll_timeout());
  Scheduler& s = Runtime::from(L).scheduler();
  s.check_cancelled(L);
  Consumer::Fetched f;
  while (c->next_message(&f)) {
    if (int n = Consumer::push_fetched(L, f, c->group())) return n;
  }
  if (timeout == 0) return 0;
  WaitToken t = s.prepare_wait(L, "c:poll", timeout, OnTimeout::ResumeEmpty);
  c->poll_waiters.push_back(t);
  return lua_yield(L, 0);
}

// Builds a partition list with offset+1 for a message table (commit/store semantics).
rd_kafka_topic_partition_list_t* offsets_from_message(lua_State* L, int idx) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "topic");
  lua_getfield(L, idx, "partition");
  lua_getfield(L, idx, "offset");
  if (!lua_isstring(L, -3) || !lua_isnumber(L, -2) || !lua_isnumber(L, -1))
    luaL_error(L, "expected a message (a table with topic, partition and offset)");
  auto* list = rd_kafka_topic_partition_list_new(1);
  auto* tp = rd_kafka_topic_partition_list_add(list, lua_tostring(L, -3), static_cast<int32_t>(lua_tointeger(L, -2)));
  tp->offset = static_cast<int64_t>(lua_tonumber(L, -1)) + 1;
  lua_pop(L, 3);
  return list;
}

// c:store(msg): marks msg processed; its offset+1 is committed by the next (auto) commit.
int l_store(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  auto* list = offsets_from_message(L, 2);
  rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk(), list);
  std::string topic = list->elems[0].topic;
  int partition = list->elems[0].partition;
  if (!err && list->elems[0].err) err = list->elems[0].err;
  rd_kafka_topic_partition_list_destroy(list);
  if (err) {
    ErrorSpec e = kafka_error(err);
    e.topic = topic;
    e.partition = partition;
    e.group = c->group();
    e.op = "store";
    return nil_error(L, e);
  }
  lua_pushboolean(L, 1);
  return 1;
}

// c:commit([msg]) -> true | nil, err. With msg, commits msg.offset+1; without, the stored offsets.
int l_commit(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  rd_kafka_topic_partition_list_t* list = lua_isnoneornil(L, 2) ? nullptr : offsets_from_message(L, 2);
  Scheduler& s = Runtime::from(L).scheduler();
  auto cw = std::make_unique<Consumer::CommitWait>();
  cw->tok = s.prepare_wait(L, "c:commit", 30000);
  rd_kafka_queue_t* q = rd_kafka_queue_get_consumer(c->rk());
  rd_kafka_resp_err_t err = rd_kafka_commit_queue(c->rk(), list, q, nullptr, cw.get());
  rd_kafka_queue_destroy(q);
  if (list) rd_kafka_topic_partition_list_destroy(list);
  if (err) {
    s.abandon_wait(cw->tok);
    ErrorSpec e = kafka_error(err);
    e.group = c->group();
    e.op = "commit";
    return nil_error(L, e);
  }
  cw.release();
  return lua_yield(L, 0);
}

int l_close(lua_State* L) {
  auto* box = static_cast<ConsumerBox*>(luaL_checkudata(L, 1, CONSUMER_MT));
  Consumer* c = box->c;
  if (!c || c->is_closed()) {
    lua_pushboolean(L, 1);
    return 1;
  }
  c->begin_close();
  Scheduler& s = Runtime::from(L).scheduler();
  if (c->is_closed() || !s.can_wait(L)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  WaitToken t = s.prepare_wait(L, "c:close", -1);
  c->close_waiters.push_back(t);
  return lua_yield(L, 0);
}

int l_assignment(lua_State* L) {
  Consumer* c = check_consumer(L, 1);
  rd_kafka_topic_partition_list_t* parts = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk(), &parts);
  if (err) return kafka_nil_error(L, err);
  rd_kafka_topic_partition_list_sort(parts, nullptr, nullptr);
  lua_createtable(L, parts->cnt, 0);
  for (int i = 0; i < parts->cnt; ++i) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, parts->elems[i].topic);
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, parts->elems[i].partition);
    lua_setfield(L, -2, "partition");
    lua_rawseti(L, -2, i + 1);
  }
  rd_kafka_topic_partition_list_destroy(parts);
  return 1;
}

int l_gc(lua_State* L) {
  auto* box = static_cast<ConsumerBox*>(lua_touserdata(L, 1));
  Consumer* c = box->c;
  box->c = nullptr;
  if (!c) return 0;
  if (c->is_closed()) {
    delete c;
  } else {
    c->orphaned = true;
    c->begin_close();
  }
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

// msg:header_all(name) -> list of every value of that header, in wire order
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
      lua_rawseti(L, out, ++k);
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  return 1;
}

int l_msg_index(lua_State* L) {
  // Methods, and `headers` as an empty list when the message has none (built on first use).
  const char* k = lua_tostring(L, 2);
  if (!k) return 0;
  if (strcmp(k, "header") == 0) {
    lua_pushcfunction(L, l_msg_header);
    return 1;
  }
  if (strcmp(k, "header_all") == 0) {
    lua_pushcfunction(L, l_msg_header_all);
    return 1;
  }
  if (strcmp(k, "headers") == 0) {
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, "headers");
    return 1;
  }
  return 0;
}

// klua.consumer{group=, topics={...}, ...properties}
int l_new(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  ClientOptions o = build_client_options(
      L, 1, "klua.consumer",
      {{"enable.auto.offset.store", "false"}, {"enable.auto.commit", "true"}},
      {"group", "topics", "poll_timeout_ms"});
  std::vector<std::string> topics;
  std::string group;
  double poll_timeout = 1000;
  for (const auto& k : o.klua_keys) {
    lua_getfield(L, 1, k.c_str());
    if (k == "group") {
      if (!lua_isstring(L, -1)) {
        rd_kafka_conf_destroy(o.conf);
        return luaL_error(L, "klua.consumer: option 'group' must be a string");
      }
      group = lua_tostring(L, -1);
    } else if (k == "topics") {
      if (lua_isstring(L, -1)) {
        topics.emplace_back(lua_tostring(L, -1));
      } else if (lua_istable(L, -1)) {
        int n = static_cast<int>(lua_objlen(L, -1));
        for (int i = 1; i <= n; ++i) {
          lua_rawgeti(L, -1, i);
          if (!lua_isstring(L, -1)) {
            rd_kafka_conf_destroy(o.conf);
            return luaL_error(L, "klua.consumer: topics[%d] must be a string", i);
          }
          topics.emplace_back(lua_tostring(L, -1));
          lua_pop(L, 1);
        }
      } else {
        rd_kafka_conf_destroy(o.conf);
        return luaL_error(L, "klua.consumer: option 'topics' must be a list of topic names");
      }
    } else if (k == "poll_timeout_ms") {
      poll_timeout = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
  }
  char errstr[256];
  if (!group.empty()) rd_kafka_conf_set(o.conf, "group.id", group.c_str(), errstr, sizeof errstr);
  {
    char buf[256];
    size_t n = sizeof buf;
    if (rd_kafka_conf_get(o.conf, "group.id", buf, &n) == RD_KAFKA_CONF_OK && buf[0]) group = buf;
  }
  if (group.empty()) {
    rd_kafka_conf_destroy(o.conf);
    return luaL_error(L, "klua.consumer: a 'group' is required");
  }
  for (const auto& t : topics) {
    std::string problem = t[0] == '^' ? std::string() : topic_name_problem(t.data(), t.size());
    if (!problem.empty()) {
      rd_kafka_conf_destroy(o.conf);
      ErrorSpec e;
      e.code = CODE_INVALID_ARGUMENT;
      e.name = ERR_INVALID_ARGUMENT;
      e.topic = t;
      e.group = group;
      e.message = fmt::format("klua.consumer: invalid topic name \"{}\": {}", t, problem);
      raise_error(L, e);
    }
  }
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
  c->set_hooks(o);
  c->start(rk, group, poll_timeout);
  box->c = c;
  if (!topics.empty()) {
    auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(topics.size()));
    for (const auto& t : topics) rd_kafka_topic_partition_list_add(list, t.c_str(), RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) {
      ErrorSpec e = kafka_error(err);
      e.group = group;
      e.op = "subscribe";
      raise_error(L, e);
    }
  }
  return 1;
}
}  // namespace

rd_kafka_t* check_consumer_handle(lua_State* L, int idx) { return check_consumer(L, idx)->rk(); }

void open_consumer(Runtime& rt, lua_State* L, int klua_table) {
  luaL_newmetatable(L, MESSAGE_MT);
  lua_pushcfunction(L, l_msg_index);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_newmetatable(L, CONSUMER_MT);
  lua_newtable(L);
  rt.scheduler().push_waiting(L, l_poll);
  lua_setfield(L, -2, "poll");
  lua_pushcfunction(L, l_store);
  lua_setfield(L, -2, "store");
  rt.scheduler().push_waiting(L, l_commit);
  lua_setfield(L, -2, "commit");
  rt.scheduler().push_waiting(L, l_close);
  lua_setfield(L, -2, "close");
  lua_pushcfunction(L, l_assignment);
  lua_setfield(L, -2, "assignment");
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
