// Built-in client metrics: the per-topic slots, the statistics decoder, the live-client list and
// the snapshots bindings/lua/client_metrics.lua turns into families (see client_metrics.hpp).
#include "bindings/client_metrics.hpp"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bindings/consumer.hpp"
#include "bindings/kafka_handle.hpp"
#include "bindings/lua_chunks.hpp"
#include "bindings/producer.hpp"

namespace klua {
namespace client_metrics {

TopicCounters* TopicSlots::get(const char* topic) {
  auto it = by_name_.find(topic);
  if (it != by_name_.end()) return it->second;
  if (slots_.size() - (other_ ? 1 : 0) >= kMaxTopics) {
    // A regex subscription (or a producer writing to many topics) would make a series per
    // topic without bound: past the cap, topics share one slot.
    if (!other_) {
      slots_.emplace_back();
      other_ = &slots_.back();
      other_->topic = kOtherTopic;
    }
    return other_;
  }
  slots_.emplace_back();
  TopicCounters* t = &slots_.back();
  t->topic = topic;
  by_name_.emplace(t->topic, t);
  return t;
}

namespace {

// The SAX events of a statistics text, down to brokers.*.{name,nodeid,source,state,rtt.{avg,cnt}};
// returns false (stops the parse) once the "brokers" object has ended.
class StatsSax {
 public:
  using json = nlohmann::json;
  struct Broker {
    std::string name, source, state;
    int64_t nodeid = -1;
    int64_t rtt_avg = -1, rtt_cnt = 0;
  };
  std::vector<Broker> brokers;
  bool done = false;

  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t v) { return number(v); }
  bool number_unsigned(json::number_unsigned_t v) { return number(static_cast<int64_t>(v)); }
  bool number_float(json::number_float_t v, const json::string_t&) { return number(static_cast<int64_t>(v)); }
  bool string(json::string_t& s) {
    if (broker_open_ && depth_ == 3) {
      if (key_ == K_NAME) brokers.back().name = s;
      else if (key_ == K_STATE) brokers.back().state = s;
      else if (key_ == K_SOURCE) brokers.back().source = s;
    }
    return true;
  }
  bool binary(json::binary_t&) { return true; }
  bool start_object(std::size_t) {
    ++depth_;
    if (depth_ == 2 && top_brokers_) in_brokers_ = true;
    else if (in_brokers_ && depth_ == 3) {
      brokers.emplace_back();
      broker_open_ = true;  // (depth 3 may also be an array, whose items are no broker's fields)
      key_ = K_OTHER;
    }
    else if (broker_open_ && depth_ == 4 && key_ == K_RTT) in_rtt_ = true;
    return true;
  }
  bool end_object() {
    if (in_rtt_ && depth_ == 4) in_rtt_ = false;
    if (depth_ == 3) broker_open_ = false;
    if (in_brokers_ && depth_ == 2) {
      done = true;  // what follows ("topics", "cgrp") is not needed: stop here
      return false;
    }
    --depth_;
    return true;
  }
  bool start_array(std::size_t) {
    ++depth_;
    if (depth_ == 3) broker_open_ = false;
    return true;
  }
  bool end_array() {
    --depth_;
    return true;
  }
  bool key(json::string_t& k) {
    if (depth_ == 1) {
      top_brokers_ = k == "brokers";
    } else if (in_brokers_ && depth_ == 3) {
      key_ = k == "name" ? K_NAME : k == "nodeid" ? K_NODEID : k == "source" ? K_SOURCE : k == "state" ? K_STATE
             : k == "rtt" ? K_RTT : K_OTHER;
    } else if (in_rtt_ && depth_ == 4) {
      rtt_key_ = k == "avg" ? K_AVG : k == "cnt" ? K_CNT : K_OTHER;
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) { return false; }

 private:
  enum Key { K_OTHER, K_NAME, K_NODEID, K_SOURCE, K_STATE, K_RTT, K_AVG, K_CNT };
  bool number(int64_t v) {
    if (broker_open_ && depth_ == 3 && key_ == K_NODEID) brokers.back().nodeid = v;
    if (in_rtt_ && depth_ == 4) {
      if (rtt_key_ == K_AVG) brokers.back().rtt_avg = v;
      else if (rtt_key_ == K_CNT) brokers.back().rtt_cnt = v;
    }
    return true;
  }
  int depth_ = 0;
  bool top_brokers_ = false, in_brokers_ = false, broker_open_ = false, in_rtt_ = false;
  Key key_ = K_OTHER, rtt_key_ = K_OTHER;
};

}  // namespace

bool decode_stats(const char* json, size_t len, std::vector<BrokerStats>& brokers) {
  StatsSax sax;
  nlohmann::json::sax_parse(json, json + len, &sax);
  if (!sax.done) return false;
  std::vector<BrokerStats> next;
  for (const auto& b : sax.brokers) {
    // Only the cluster's brokers: not the bootstrap entries before their ids are known
    // (nodeid -1), nor librdkafka's internal and logical ones (the group coordinator's alias).
    if (b.nodeid < 0 || b.source == "internal" || b.source == "logical") continue;
    // INIT: never connected, because the client has needed nothing of that broker yet
    // (librdkafka connects on demand): neither up nor down.
    if (b.state == "INIT") continue;
    BrokerStats s;
    s.name = b.name;
    s.up = b.state == "UP" || b.state == "UPDATE";  // UPDATE: up, with a metadata change pending
    s.seen = true;
    if (b.rtt_cnt > 0 && b.rtt_avg >= 0) {
      s.rtt = static_cast<double>(b.rtt_avg) / 1e6;  // librdkafka's microseconds
    } else {
      // No request in this window: the last measured value stays.
      for (const auto& old : brokers)
        if (old.name == s.name) s.rtt = old.rtt;
    }
    next.push_back(std::move(s));
  }
  brokers.swap(next);
  return true;
}

static const char* const LIVE_KEY = "klua.client_metrics.live";

std::shared_ptr<LiveClients> live_clients(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LIVE_KEY);
  auto* box = static_cast<std::shared_ptr<LiveClients>*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  if (box) return *box;
  box = static_cast<std::shared_ptr<LiveClients>*>(lua_newuserdata(L, sizeof(std::shared_ptr<LiveClients>)));
  new (box) std::shared_ptr<LiveClients>(std::make_shared<LiveClients>());
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, [](lua_State* L) -> int {
    static_cast<std::shared_ptr<LiveClients>*>(lua_touserdata(L, 1))->~shared_ptr();
    return 0;
  });
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, LIVE_KEY);
  return *box;
}

void push_histogram(lua_State* L, const Histogram& h) {
  lua_createtable(L, 0, 2);
  lua_createtable(L, kBucketCount + 1, 0);
  for (int i = 0; i <= kBucketCount; ++i) {
    lua_pushnumber(L, static_cast<lua_Number>(h.counts[i]));
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "counts");
  lua_pushnumber(L, h.sum);
  lua_setfield(L, -2, "sum");
}

void push_code_counts(lua_State* L, const std::map<int, uint64_t>& m) {
  lua_createtable(L, 0, static_cast<int>(m.size()));
  for (const auto& [code, n] : m) {
    lua_pushnumber(L, static_cast<lua_Number>(n));
    lua_setfield(L, -2, code_name(code));
  }
}

static void set_number(lua_State* L, const char* k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

}  // namespace client_metrics

using namespace client_metrics;

// ---- KafkaHandle's part ------------------------------------------------------------------

void KafkaHandle::track_live() {
  if (live_) return;
  live_ = live_clients(rt_.lua());
  live_->list.push_back(this);
}

void KafkaHandle::untrack_live() {
  if (!live_) return;
  auto& l = live_->list;
  l.erase(std::remove(l.begin(), l.end(), this), l.end());
  live_.reset();
}

int KafkaHandle::statistics_interval_ms() const {
  if (!rk_) return 0;
  char buf[32];
  size_t n = sizeof buf;
  if (rd_kafka_conf_get(rd_kafka_conf(rk_), "statistics.interval.ms", buf, &n) != RD_KAFKA_CONF_OK) return 0;
  return std::atoi(buf);
}

void KafkaHandle::push_metrics(lua_State* L) {
  lua_createtable(L, 0, 16);
  lua_pushstring(L, kind_);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, rd_kafka_name(rk_));
  lua_setfield(L, -2, "client");
  char id[512];
  size_t n = sizeof id;
  if (rd_kafka_conf_get(rd_kafka_conf(rk_), "client.id", id, &n) != RD_KAFKA_CONF_OK) id[0] = 0;
  lua_pushstring(L, id);
  lua_setfield(L, -2, "client_id");
  set_number(L, "statistics_interval_ms", statistics_interval_ms());
  lua_pushboolean(L, all_brokers_down_);
  lua_setfield(L, -2, "all_brokers_down");
  set_number(L, "stats_events", static_cast<double>(metrics_->stats_events));
  set_number(L, "stats_decode_seconds", static_cast<double>(metrics_->stats_decode_ns) / 1e9);
  lua_createtable(L, static_cast<int>(metrics_->brokers.size()), 0);
  int i = 0;
  for (const auto& b : metrics_->brokers) {
    lua_createtable(L, 0, 3);
    lua_pushlstring(L, b.name.data(), b.name.size());
    lua_setfield(L, -2, "name");
    lua_pushboolean(L, b.up);
    lua_setfield(L, -2, "up");
    if (b.rtt >= 0) set_number(L, "rtt", b.rtt);
    lua_rawseti(L, -2, ++i);
  }
  lua_setfield(L, -2, "brokers");
  lua_createtable(L, static_cast<int>(metrics_->topics.all().size()), 0);
  i = 0;
  bool producer = std::strcmp(kind_, "producer") == 0;
  for (const auto& t : metrics_->topics.all()) {
    lua_createtable(L, 0, 5);
    lua_pushlstring(L, t.topic.data(), t.topic.size());
    lua_setfield(L, -2, "topic");
    set_number(L, "messages", static_cast<double>(t.messages));
    set_number(L, "bytes", static_cast<double>(t.bytes));
    if (producer) {
      push_code_counts(L, t.errors);
      lua_setfield(L, -2, "errors");
      push_histogram(L, t.latency);
      lua_setfield(L, -2, "latency");
    }
    lua_rawseti(L, -2, ++i);
  }
  lua_setfield(L, -2, "topics");
}

namespace producer_impl {

client_metrics::TopicCounters* Producer::metric_topic(const rd_kafka_topic_t* rkt) {
  auto it = metric_topics_.find(rkt);
  if (it == metric_topics_.end()) it = metric_topics_.emplace(rkt, metrics_->topics.get(rd_kafka_topic_name(rkt))).first;
  metric_rkt_ = rkt;
  metric_last_ = it->second;
  return metric_last_;
}

void Producer::push_metrics(lua_State* L) {
  KafkaHandle::push_metrics(L);
  if (metrics_->transactional) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "transactional");
    set_number(L, "txn_committed", static_cast<double>(metrics_->txn_committed));
    set_number(L, "txn_aborted", static_cast<double>(metrics_->txn_aborted));
  }
}

}  // namespace producer_impl

namespace consumer_impl {

void Consumer::push_metrics(lua_State* L) {
  KafkaHandle::push_metrics(L);
  const ClientMetrics& m = *metrics_;
  lua_pushlstring(L, group_.data(), group_.size());
  lua_setfield(L, -2, "group");
  lua_createtable(L, 0, 3);
  set_number(L, "assign", static_cast<double>(m.rebalances[0]));
  set_number(L, "revoke", static_cast<double>(m.rebalances[1]));
  set_number(L, "lost", static_cast<double>(m.rebalances[2]));
  lua_setfield(L, -2, "rebalances");
  set_number(L, "commits", static_cast<double>(m.commits));
  push_code_counts(L, m.commit_failures);
  lua_setfield(L, -2, "commit_failures");
  push_histogram(L, m.commit_latency);
  lua_setfield(L, -2, "commit_latency");
  lua_pushboolean(L, m.wants_assignment);
  lua_setfield(L, -2, "wants_assignment");
  lua_pushboolean(L, m.has_assignment);
  lua_setfield(L, -2, "has_assignment");
  // Lag from the consumer's own view, asking no broker: its positions (as the script sees them:
  // held messages are not consumed yet) and the watermarks its fetches brought. A partition
  // with no position yet (nothing handed out since it was assigned) starts where it was
  // assigned or sought to, else at the group's committed offset (looked up at the assignment,
  // see lag_assignment_changed), else where auto.offset.reset sends it.
  rd_kafka_topic_partition_list_t* parts = nullptr;
  if (rd_kafka_assignment(rk_, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || !parts) parts = rd_kafka_topic_partition_list_new(0);
  set_number(L, "assigned", parts->cnt);
  rd_kafka_position(rk_, parts);
  script_positions(parts);
  // auto.offset.reset: -1 earliest, 1 latest, 0 error (no start is known: no series).
  int reset = 0;
  char buf[32];
  size_t n = sizeof buf;
  if (rd_kafka_conf_get(rd_kafka_conf(rk_), "auto.offset.reset", buf, &n) == RD_KAFKA_CONF_OK) {
    std::string r = buf;
    reset = r == "smallest" || r == "earliest" || r == "beginning" ? -1 : r == "largest" || r == "latest" || r == "end" ? 1 : 0;
  }
  bool missing = false;  // a partition needs a committed offset not known yet
  lua_createtable(L, parts->cnt, 0);
  int i = 0;
  for (int k = 0; k < parts->cnt; ++k) {
    const auto& e = parts->elems[k];
    int64_t low = -1, high = -1;
    if (rd_kafka_get_watermark_offsets(rk_, e.topic, e.partition, &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR) high = -1;
    int64_t pos = e.offset;
    if (pos < 0) {
      TopicPartition tp{e.topic, e.partition};
      auto start = assigned_start.find(tp);
      auto committed = lag_committed_.find(tp);
      if (start != assigned_start.end() && start->second >= 0) {
        pos = start->second;
      } else if (committed == lag_committed_.end()) {
        missing = true;
      } else {
        pos = committed->second;
        // No committed offset, or one out of the log's range: the consumer starts where
        // auto.offset.reset says (as librdkafka does). At the end: the high watermark first
        // seen, kept as the start (messages that come later are lag, until one is read).
        if (pos < 0 || (low >= 0 && pos < low) || (high >= 0 && pos > high)) {
          pos = reset < 0 ? low : reset > 0 ? high : -1;
          if (reset > 0 && high >= 0) committed->second = high;
        }
      }
    }
    if (high < 0) continue;  // no fetch answered yet: no series rather than a wrong one
    int64_t lag;
    if (low == high) lag = 0;  // an empty log: nothing to consume from anywhere
    else if (pos >= 0) lag = high > pos ? high - pos : 0;
    else continue;
    lua_createtable(L, 0, 3);
    lua_pushstring(L, e.topic);
    lua_setfield(L, -2, "topic");
    set_number(L, "partition", e.partition);
    set_number(L, "lag", static_cast<double>(lag));
    lua_rawseti(L, -2, ++i);
  }
  lua_setfield(L, -2, "lag");
  rd_kafka_topic_partition_list_destroy(parts);
  // Assigned before the metrics were served, or a lookup failed (retried 10 s later at most):
  // look up now, for the next scrape.
  if (missing && !lag_lookup_running_ && uv_now(rt_.loop()) >= lag_retry_at_) lag_lookup();
}

void Consumer::lag_assignment_changed(const rd_kafka_topic_partition_list_t* list) {
  ++lag_gen_;
  if (!list) lag_committed_.clear();
  for (int i = 0; list && i < list->cnt; ++i) lag_committed_.erase({list->elems[i].topic, list->elems[i].partition});
  lag_retry_at_ = 0;
  if (live_ && live_->serving) lag_lookup();
}

void Consumer::lag_committed(const rd_kafka_topic_partition_list_t* list) {
  for (int i = 0; list && i < list->cnt; ++i)
    if (!list->elems[i].err && list->elems[i].offset >= 0)
      lag_committed_[{list->elems[i].topic, list->elems[i].partition}] = list->elems[i].offset;
}

// Looks up the committed offsets of the assigned partitions not known yet, on the executor
// (rd_kafka_committed waits for the coordinator's answer); the loop never waits for it.
void Consumer::lag_lookup() {
  if (lag_lookup_running_ || !rk_ || state_ != Open) return;
  rd_kafka_topic_partition_list_t* parts = nullptr;
  if (rd_kafka_assignment(rk_, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || !parts) return;
  struct Lookup {
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(0);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    ~Lookup() { rd_kafka_topic_partition_list_destroy(list); }
  };
  auto r = std::make_shared<Lookup>();
  for (int i = 0; i < parts->cnt; ++i)
    if (!lag_committed_.count({parts->elems[i].topic, parts->elems[i].partition}))
      rd_kafka_topic_partition_list_add(r->list, parts->elems[i].topic, parts->elems[i].partition);
  rd_kafka_topic_partition_list_destroy(parts);
  if (r->list->cnt == 0) return;
  lag_lookup_running_ = true;
  uint64_t gen = lag_gen_;
  rd_kafka_t* rk = rk_;
  // 5 s: a close waits for work in flight (run_off_loop), and a scrape retries a failed lookup.
  run_off_loop([rk, r] { r->err = rd_kafka_committed(rk, r->list, 5000); },
               [this, r, gen] {
                 lag_lookup_running_ = false;
                 if (gen != lag_gen_) {  // the assignment changed meanwhile: look again
                   lag_lookup();
                   return;
                 }
                 if (r->err) {
                   lag_retry_at_ = uv_now(rt_.loop()) + 10000;
                   return;
                 }
                 for (int i = 0; i < r->list->cnt; ++i) {
                   const auto& e = r->list->elems[i];
                   // A commit that succeeded meanwhile is newer: keep it.
                   if (!e.err) lag_committed_.try_emplace({e.topic, e.partition}, e.offset < 0 ? RD_KAFKA_OFFSET_INVALID : e.offset);
                   else lag_retry_at_ = uv_now(rt_.loop()) + 10000;
                 }
               });
}

bool Consumer::awaiting_assignment() {
  const ClientMetrics& m = *metrics_;
  if (!m.wants_assignment || m.has_assignment) return false;
  if (!kip848 || !rk_) return true;
  // Under KIP-848 (librdkafka 2.15) a member whose assignment is empty gets no rebalance event
  // at all: it has its (empty) assignment once the group gave it a member epoch and nothing of
  // an assignment is on its way (no rebalance klua is applying, nothing in the events queue: an
  // assignment arriving with the epoch is served first).
  if (rebalance_running_ || !pending_.empty() || events_pending()) return true;
  rd_kafka_consumer_group_metadata_t* md = rd_kafka_consumer_group_metadata(rk_);
  int32_t epoch = md ? rd_kafka_consumer_group_metadata_generation_id(md) : -1;
  if (md) rd_kafka_consumer_group_metadata_destroy(md);
  return epoch <= 0;
}

}  // namespace consumer_impl

// ---- Lua primitives: debug.getregistry()["klua.private"].client_metrics ----------------------

namespace {

// snapshot() -> { client snapshot, ... } of the live producers and consumers (creation order).
int l_snapshot(lua_State* L) {
  auto live = live_clients(L);
  std::vector<KafkaHandle*> list = live->list;  // a copy: pushing runs no Lua, but be safe
  lua_createtable(L, static_cast<int>(list.size()), 0);
  int i = 0;
  for (KafkaHandle* h : list) {
    if (!h->rk() || (h->state() != KafkaHandle::Open && h->state() != KafkaHandle::Closing)) continue;
    h->push_metrics(L);
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

// states() -> { {kind=, client=, client_id=, group=, awaiting_assignment=, all_brokers_down=,
// statistics_interval_ms=}, ... }: what readiness and enable() need, without a snapshot's lag.
int l_states(lua_State* L) {
  auto live = live_clients(L);
  lua_createtable(L, static_cast<int>(live->list.size()), 0);
  int i = 0;
  for (KafkaHandle* h : live->list) {
    if (!h->rk() || (h->state() != KafkaHandle::Open && h->state() != KafkaHandle::Closing)) continue;
    const ClientMetrics& m = *h->metrics();
    lua_createtable(L, 0, 7);
    lua_pushstring(L, h->kind());
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, rd_kafka_name(h->rk()));
    lua_setfield(L, -2, "client");
    char id[512];
    size_t n = sizeof id;
    if (rd_kafka_conf_get(rd_kafka_conf(h->rk()), "client.id", id, &n) != RD_KAFKA_CONF_OK) id[0] = 0;
    lua_pushstring(L, id);
    lua_setfield(L, -2, "client_id");
    if (!m.group.empty()) {
      lua_pushlstring(L, m.group.data(), m.group.size());
      lua_setfield(L, -2, "group");
    }
    lua_pushboolean(L, h->awaiting_assignment());
    lua_setfield(L, -2, "awaiting_assignment");
    lua_pushboolean(L, h->all_brokers_down());
    lua_setfield(L, -2, "all_brokers_down");
    set_number(L, "statistics_interval_ms", h->statistics_interval_ms());
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

// statistics_default(ms) -> true when it set statistics.interval.ms for clients made from now
// on, false when some configuration layer already sets it (the user's choice wins).
int l_statistics_default(lua_State* L) {
  double ms = luaL_checknumber(L, 1);
  Runtime& rt = Runtime::from(L);
  if (rt.config_value("statistics.interval.ms")) {
    lua_pushboolean(L, 0);
    return 1;
  }
  rt.set_config({"statistics.interval.ms", fmt::format("{}", static_cast<long long>(ms)), "klua.metrics"});
  lua_pushboolean(L, 1);
  return 1;
}

// serving(): the metrics are served from now on: consumers look up their committed offsets at
// each assignment (klua_consumer_lag of partitions without a position), the live ones now.
int l_serving(lua_State* L) {
  auto live = live_clients(L);
  live->serving = true;
  std::vector<KafkaHandle*> list = live->list;
  for (KafkaHandle* h : list)
    if (auto* c = dynamic_cast<consumer_impl::Consumer*>(h)) c->lag_lookup();
  return 0;
}

// decode_stats(json) -> number of brokers read, or nil when the text was not understood (for
// bench/stats_decode and tests: the decoder the STATS event uses).
int l_decode_stats(lua_State* L) {
  size_t len;
  const char* s = luaL_checklstring(L, 1, &len);
  std::vector<BrokerStats> brokers;
  if (!decode_stats(s, len, brokers)) return 0;
  lua_pushinteger(L, static_cast<lua_Integer>(brokers.size()));
  lua_createtable(L, static_cast<int>(brokers.size()), 0);
  int i = 0;
  for (const auto& b : brokers) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, b.name.c_str());
    lua_setfield(L, -2, "name");
    lua_pushboolean(L, b.up);
    lua_setfield(L, -2, "up");
    if (b.rtt >= 0) set_number(L, "rtt", b.rtt);
    lua_rawseti(L, -2, ++i);
  }
  return 2;
}

}  // namespace

void open_client_metrics(Runtime&, lua_State* L, int klua_table) {
  push_private_table(L);
  load_binding_chunk(L, "client_metrics");  // bindings/lua/client_metrics.lua
  lua_pushvalue(L, klua_table);
  lua_createtable(L, 0, 3);
  lua_pushcfunction(L, l_snapshot);
  lua_setfield(L, -2, "snapshot");
  lua_pushcfunction(L, l_statistics_default);
  lua_setfield(L, -2, "statistics_default");
  lua_pushcfunction(L, l_decode_stats);
  lua_setfield(L, -2, "decode_stats");
  lua_pushcfunction(L, l_states);
  lua_setfield(L, -2, "states");
  lua_pushcfunction(L, l_serving);
  lua_setfield(L, -2, "serving");
  lua_createtable(L, kBucketCount, 0);
  for (int i = 0; i < kBucketCount; ++i) {
    lua_pushnumber(L, kBuckets[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "buckets");
  lua_call(L, 2, 1);
  lua_setfield(L, -2, "client_metrics");
  lua_pop(L, 1);
}

}  // namespace klua
