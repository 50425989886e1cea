// klua.consumer: the handle. Creation from the options table (klua's keys, KIP-848's refused
// classic settings), the events queue (rebalances, commits, errors, logs, statistics) served on
// the loop, the userdata (__gc, __tostring, close) and the module's method table. The design of
// fetching is described at the top of bindings/consumer.hpp.
#include <fmt/format.h>

#include <cmath>

#include "bindings/lua_chunks.hpp"
#include "host/log.hpp"
#include "bindings/consumer.hpp"

namespace klua {
namespace consumer_impl {

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
      case RD_KAFKA_EVENT_ERROR:
        if (rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
          missing_topic = kafka_error(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, rd_kafka_event_error_string(ev));
          missing_topic->group = group_;
          missing_topic->op = "subscribe";
          news_ = true;
        }
        if (rd_kafka_resp_err_t code = rd_kafka_event_error(ev); code == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
                                                                 code == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
          ErrorSpec e = kafka_error(code, rd_kafka_event_error_string(ev));
          e.group = group_;
          e.op = "c:poll";
          // Under KIP-848 the refusal ("ConsumerGroupHeartbeat failed: Broker: Topic authorization
          // failed") names no topic: name the subscription.
          rd_kafka_topic_partition_list_t* subs = nullptr;
          if (code == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED && !rd_kafka_subscription(rk_, &subs) && subs) {
            std::string names;
            bool named = false;
            for (int i = 0; i < subs->cnt; ++i) {
              names += (i ? ", " : "") + std::string(subs->elems[i].topic);
              named = named || e.message.find(subs->elems[i].topic) != std::string::npos;
            }
            if (subs->cnt == 1) e.topic = subs->elems[0].topic;
            if (!named && subs->cnt > 0) e.message += " (subscribed to " + names + ")";
            rd_kafka_topic_partition_list_destroy(subs);
          }
          refuse_polls(e);
        }
        handle_common_event(ev);
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
  if (news_ && state_ == Open) wake_until_end();
  if (state_ == Closing && rk_ && rd_kafka_consumer_closed(rk_) && !rebalance_running_) finish_close();
}

void Consumer::refuse_polls(const ErrorSpec& e) {
  denied = e;
  Scheduler& s = rt_.scheduler();
  while (!poll_waiters.empty()) {
    WaitToken t = poll_waiters.front().tok;
    poll_waiters.pop_front();
    if (lua_State* co = s.wake_begin(t)) {
      lua_pushnil(co);
      push_error(co, e);
      s.wake_end(t, 2);
      denied.reset();  // said once
    }
  }
}

void Consumer::report_error(const ErrorSpec& e) {
  lua_State* L = rt_.lua();
  if (on_error_ != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, on_error_);
    push_error(L, e);
    if (lua_pcall(L, 1, 0, 0) != 0) {
      log::diagnostic(log::Level::error, fmt::format("consumer on_error hook failed: {}", to_display_string(L, -1)),
                      {{"client", rk_ ? rd_kafka_name(rk_) : ""}});
      lua_pop(L, 1);
    }
  } else {
    log::diagnostic(log::Level::error, fmt::format("consumer error: {}: {}", e.name, e.message),
                    {{"client", rk_ ? rd_kafka_name(rk_) : ""}, {"code", e.name}});
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
  // Waits for a broker first, so that a close or an unreachable cluster ends it at once instead
  // of a pool thread (and the exit) waiting out 10 s of metadata timeout.
  auto gate = new_gate();
  uint64_t watch = watch_unreachable("subscribe (topic check)", [gate](const ErrorSpec&) { gate->abort = true; });
  run_off_loop(
      [check, rk, gate] {
        if (!wait_for_broker(rk, *gate, 10000)) return;
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
      [this, check, watch] {
        end_watch(watch);
        if (state_ != Open) return;
        for (const auto& t : check->missing) {
          ErrorSpec e = kafka_error(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
                                    fmt::format("subscribed topic \"{}\" does not exist (under group.protocol=consumer "
                                                "the broker reports no error for it: klua checked the metadata)", t));
          e.topic = t;
          e.group = group_;
          e.op = "subscribe";
          missing_topic = e;
          report_error(e);
          news_ = true;
          wake_until_end();
        }
      });
}

// The consumer's userdata at idx, or a bad argument of fn (luaL_checkudata would name the C function,
// or the waiting wrapper's 'fn', and count without self).
static ConsumerBox* check_box(lua_State* L, int idx, const char* fn) {
  auto* box = static_cast<ConsumerBox*>(luaL_testudata(L, idx, CONSUMER_MT));
  if (!box)
    raise_bad_argument(L, idx, fn, fmt::format("klua.consumer expected, got {}",
                                               lua_isnone(L, idx) ? "no value" : luaL_typename(L, idx)));
  return box;
}

Consumer* check_consumer(lua_State* L, int idx, const char* fn) {
  return usable_handle(L, check_box(L, idx, fn)->handle, "consumer");
}

std::string Consumer::describe() const {
  return fmt::format("klua.consumer({}, group {})", rd_kafka_name(rk_), group());
}

std::string arg_string(lua_State* L, int arg, const char* fn) {
  check_arg_type(L, arg, LUA_TSTRING, fn);
  return lua_tostring(L, arg);
}

int32_t arg_partition(lua_State* L, int arg, const char* fn) {
  check_arg_type(L, arg, LUA_TNUMBER, fn);
  double d = lua_tonumber(L, arg);
  if (!(d >= 0 && d <= 2147483647.0) || d != std::floor(d))
    raise_bad_argument(L, arg, fn, fmt::format("partition must be a whole number from 0 to 2147483647, got {}",
                                               lua_tostring(L, arg)));
  return static_cast<int32_t>(d);
}

ErrorSpec consumer_error(Consumer* c, rd_kafka_resp_err_t err, const char* op, std::string msg) {
  ErrorSpec e = kafka_error(err, std::move(msg));
  e.group = c->group();
  e.op = op;
  return e;
}

int return_partitions_or_error(lua_State* L, Consumer* c, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list,
                               const char* op, bool end_as_string) {
  if (err) {
    rd_kafka_topic_partition_list_destroy(list);
    return nil_error(L, consumer_error(c, err, op));
  }
  push_partition_list(L, list, end_as_string);
  rd_kafka_topic_partition_list_destroy(list);
  return 1;
}

int l_close(lua_State* L) {
  ConsumerBox* box = check_box(L, 1, "c:close");
  // Inside on_assign/on_revoke/on_lost the close waited for the rebalance, which waited for the
  // hook, until the 10 s close bound ("did not finish in time"): the rebalance is answered first.
  if (box->handle) box->handle->close_from_hook(L);
  return close_and_wait(L, box->handle, "c:close");
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
    raise_misuse(L, "klua.consumer",
                 fmt::format("\"{}\" (set by {}) does not apply under group.protocol=consumer (KIP-848): use {}", key,
                             source, instead));
  }
  return true;
}

// klua.consumer{group=, topics=, on_assign=, on_revoke=, on_lost=, ...properties}
int l_new(lua_State* L) {
  check_arg_type(L, 1, LUA_TTABLE, "klua.consumer");
  ClientOptions o = build_client_options(
      L, 1, "klua.consumer", {{"enable.auto.offset.store", "false"}, {"enable.auto.commit", "true"},
                             // see the top of the file: librdkafka's 1000 ms stalls a busy consumer
                             {"fetch.queue.backoff.ms", "10"}},
      {"group", "topics", "poll_timeout_ms", "on_assign", "on_revoke", "on_lost", "hook_timeout_ms",
       "key_deserializer", "value_deserializer"});
  bool kip848 = refuse_classic_only(L, o);
  // messages{until_end=true} needs librdkafka's end-of-partition reports (a partition assigned at
  // its end has no position until a message arrives); klua records them and never hands them to
  // the script, so the setting has no other visible effect and a script's "false" is overridden.
  rd_kafka_conf_set(o.conf, "enable.partition.eof", "true", nullptr, 0);
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
  auto fail = [&](const std::string& detail) {
    rd_kafka_conf_destroy(o.conf);
    for (int h : hooks) luaL_unref(L, LUA_REGISTRYINDEX, h);
    raise_bad_argument(L, 1, "klua.consumer", detail);
  };
  auto got = [&] { return std::string(luaL_typename(L, -1)); };
  bool deserializers = false;
  for (const auto& k : o.klua_keys) {
    lua_getfield(L, 1, k.c_str());
    if (k == "key_deserializer" || k == "value_deserializer") {
      if (!lua_isfunction(L, -1)) fail("option '" + k + "' must be a function (such as klua.serde.avro's dec), got " + got());
      deserializers = true;
    } else if (k == "group") {
      if (!lua_isstring(L, -1)) fail("option 'group' must be a string, got " + got());
      group = lua_tostring(L, -1);
    } else if (k == "topics") {
      int top = lua_gettop(L);
      lua_pushcfunction(L, [](lua_State* L) -> int {
        auto* out = static_cast<std::vector<std::string>*>(lua_touserdata(L, 2));
        *out = topic_list(L, 1, "klua.consumer", 1, "topics");
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
      if (!lua_isnumber(L, -1)) fail("option '" + k + "' must be a number, got " + got());
      if (!(lua_tonumber(L, -1) >= 0)) fail("option '" + k + "' must be a number >= 0, got " + lua_tostring(L, -1));
      (k == "poll_timeout_ms" ? poll_timeout : hook_timeout) = lua_tonumber(L, -1);
    } else {  // rebalance hooks
      if (!lua_isfunction(L, -1)) fail("option '" + k + "' must be a function, got " + got());
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
  if (group.empty()) fail("a 'group' is required (or use klua.consumer{group=..., ...} with assign)");
  rd_kafka_conf_set_events(o.conf, RD_KAFKA_EVENT_FETCH | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG |
                                       RD_KAFKA_EVENT_STATS | RD_KAFKA_EVENT_REBALANCE |
                                       RD_KAFKA_EVENT_OFFSET_COMMIT);
  Runtime& rt = Runtime::from(L);
  auto* box = static_cast<ConsumerBox*>(lua_newuserdata(L, sizeof(ConsumerBox)));
  box->handle = nullptr;
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
    if (deserializers) {
      // names.serde = {key=, value=}: read by the fast path with the names it looks up anyway
      // (bindings/lua/consumer_fast.lua); the topic names are at integer keys.
      lua_createtable(L, 0, 2);
      lua_getfield(L, 1, "key_deserializer");
      lua_setfield(L, -2, "key");
      lua_getfield(L, 1, "value_deserializer");
      lua_setfield(L, -2, "value");
      lua_setfield(L, -2, "serde");
    }
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
  box->handle = c;
  if (!topics.empty()) {
    int n = subscribe(L, c, topics);
    if (n == 2) lua_error(L);  // subscribe failed: raise its error
    lua_pop(L, 1);
  }
  return 1;
}

}  // namespace consumer_impl

using namespace consumer_impl;

rd_kafka_t* check_consumer_handle(lua_State* L, int idx) { return check_consumer(L, idx)->rk(); }

void open_consumer(Runtime& rt, lua_State* L, int klua_table) {
  auto* st = static_cast<ConsumerStatics*>(lua_newuserdata(L, sizeof(ConsumerStatics)));
  new (st) ConsumerStatics();
  lua_setfield(L, LUA_REGISTRYINDEX, "klua.consumer.statics");
  static const char* const keys[K_COUNT] = {"topic", "partition", "offset", "key", "value", "timestamp",
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
      {"assign", l_assign, true},      {"assignment", l_assignment, false},
      {"pause", l_pause, false},        {"resume", l_resume, false},
      {"seek", l_seek, true},          {"position", l_position, false},
      {"committed", l_committed, true}, {"watermarks", l_watermarks, true},
      {"offsets_for_times", l_offsets_for_times, true},
  };
  for (const auto& m : methods) {
    if (m.waits)
      s.push_waiting(L, m.fn);
    else
      lua_pushcfunction(L, m.fn);
    lua_setfield(L, -2, m.name);
  }
  // Primitives that are not the public API (the REPL completes the metatable's names): messages()
  // gets the two it needs as upvalues; tests reach all of them through the registry only,
  // debug.getregistry()["klua.private"].consumer.held(c, topic, partition) and so on.
  push_private_table(L);
  lua_newtable(L);
  s.push_waiting(L, l_end_offsets);
  lua_setfield(L, -2, "end_offsets");
  s.push_waiting(L, l_poll_until_end);
  lua_setfield(L, -2, "poll_until_end");
  static const luaL_Reg private_fns[] = {
      {"held", l_held},         {"queued", l_queued},     {"route", l_route},
      {"waiters", l_waiters},   {"progress", l_progress}, {nullptr, nullptr}};
  for (const luaL_Reg* r = private_fns; r->name; ++r) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  lua_setfield(L, -2, "consumer");
  lua_pop(L, 1);
  // poll's fast path wraps the full one; topic names per consumer userdata (weak keys).
  load_binding_chunk(L, "consumer_fast");
  load_lua_chunk(L, "bindings/ffi.h");  // its KLUA_CDEF regions, declared once; returns ffi
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
  lua_call(L, 8, 3);
  lua_setfield(L, -4, "poll_batch");
  int fast_idx = lua_gettop(L);
  lua_pushvalue(L, -2);
  lua_setfield(L, -4, "poll");
  load_binding_chunk(L, "consumer_messages");
  lua_getfield(L, klua_table, "now");
  lua_getglobal(L, "error");
  lua_getglobal(L, "pairs");
  lua_getglobal(L, "ipairs");
  lua_pushvalue(L, fast_idx);
  lua_getfield(L, klua_table, "errors");
  lua_getfield(L, -1, "bad_argument");
  lua_replace(L, -2);
  push_private_table(L);
  lua_getfield(L, -1, "consumer");
  lua_replace(L, -2);
  lua_call(L, 7, 1);
  lua_replace(L, fast_idx - 1);
  lua_settop(L, fast_idx - 1);
  lua_setfield(L, -2, "messages");
  lua_setfield(L, -2, "__index");
  set_handle_metamethods<ConsumerBox>(L);
  lua_pop(L, 1);

  lua_pushcfunction(L, l_new);
  lua_setfield(L, klua_table, "consumer");
}
}  // namespace klua
