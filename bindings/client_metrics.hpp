// Built-in client metrics (docs/metrics.md, "Built-in metrics"): what every producer and consumer
// counts of its own events, always on, and the list of live clients the collector reads.
//
// Counting is an increment on the loop thread: a delivery report, a message handed to the
// script, a rebalance, a commit result, a transaction's end. Per-topic counters live in slots
// found once per topic handle (the producer) or partition state (the consumer), never by a string
// lookup per message; a client counts at most kMaxTopics topics by name, the rest under "_other".
// Nothing here is read until a scrape: bindings/lua/client_metrics.lua turns snapshot() into
// Prometheus families (klua.metrics' collector format).
//
// Broker round-trip time and state come from librdkafka's statistics (statistics.interval.ms),
// decoded here with nlohmann's SAX parser that stops once the "brokers" object is read: the
// "topics" object after it (most of the text at 1,000 partitions) is never tokenized.
#pragma once
#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <lua.hpp>

namespace klua {

class KafkaHandle;
class Runtime;

namespace client_metrics {

// klua.metrics.DEFAULT_BUCKETS, in seconds.
inline constexpr double kBuckets[] = {.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
inline constexpr int kBucketCount = sizeof kBuckets / sizeof kBuckets[0];
// Topics counted by name per client; the others are summed under kOtherTopic.
inline constexpr size_t kMaxTopics = 100;
inline constexpr const char* kOtherTopic = "_other";

// A fixed-bucket histogram: counts[i] are the observations <= kBuckets[i] and > kBuckets[i - 1]
// (not cumulative); the last count is everything above the last bound.
struct Histogram {
  uint64_t counts[kBucketCount + 1] = {};
  double sum = 0;
  void observe(double seconds) {
    // The bucket is the number of bounds below the value: a branch-free binary search over the
    // bounds padded to 16 with +inf (4 steps, ~20 instructions; a linear search loop took ~50
    // at the latencies valgrind gives, and mispredicts its exit as latencies vary). NaN compares
    // false everywhere: the first bucket.
    static constexpr double inf = std::numeric_limits<double>::infinity();
    static constexpr double b[16] = {kBuckets[0], kBuckets[1], kBuckets[2],  kBuckets[3],  kBuckets[4], kBuckets[5],
                                     kBuckets[6], kBuckets[7], kBuckets[8],  kBuckets[9],  kBuckets[10], kBuckets[11],
                                     kBuckets[12], kBuckets[13], inf, inf};
    static_assert(kBucketCount == 14, "the padded bounds above list every bucket");
    int i = 0;
    i += (seconds > b[i + 7]) * 8;
    i += (seconds > b[i + 3]) * 4;
    i += (seconds > b[i + 1]) * 2;
    i += seconds > b[i];
    ++counts[i];
    sum += seconds;
  }
};

struct TopicCounters {
  std::string topic;
  uint64_t messages = 0, bytes = 0;
  Histogram latency;                  // producer: send to delivery report
  std::map<int, uint64_t> errors;     // producer: failed deliveries by librdkafka code (rare: a map)
};

// The per-topic counters of one client; addresses stay valid for the client's life.
class TopicSlots {
 public:
  // The slot of a topic (one string lookup: callers cache the pointer).
  TopicCounters* get(const char* topic);
  const std::deque<TopicCounters>& all() const { return slots_; }

 private:
  std::deque<TopicCounters> slots_;
  std::unordered_map<std::string, TopicCounters*> by_name_;
  TopicCounters* other_ = nullptr;
};

struct BrokerStats {
  std::string name;   // librdkafka's "host:port/nodeid"
  double rtt = -1;    // seconds, the last statistics window with requests (-1: none yet)
  bool up = false;
  bool seen = false;  // in the last statistics
};

// Everything one client counts. Shared (a transactional producer's state keeps it too).
struct ClientMetrics {
  TopicSlots topics;
  // Consumer.
  uint64_t rebalances[3] = {};  // assign, revoke, lost
  uint64_t commits = 0;
  std::map<int, uint64_t> commit_failures;
  Histogram commit_latency;
  bool wants_assignment = false;  // subscribed (or assigned by hand)
  bool has_assignment = false;    // an assignment (possibly empty) came since
  std::string group;
  // Transactional producer.
  bool transactional = false;
  uint64_t txn_committed = 0, txn_aborted = 0;
  // Statistics.
  std::vector<BrokerStats> brokers;
  uint64_t stats_events = 0;
  uint64_t stats_decode_ns = 0;  // the time decode_stats took, all events together
};

// Reads the brokers' state and average rtt of a statistics JSON text into brokers (the
// "brokers" object only; see the top). Returns false when the text was not understood.
bool decode_stats(const char* json, size_t len, std::vector<BrokerStats>& brokers);

// The live clients of a runtime (producers and consumers, from start to the start of their
// destruction). Handles keep a reference, so the list outlives whichever goes first.
struct LiveClients {
  std::vector<KafkaHandle*> list;
  // The metrics are served (client_metrics.lua's enable()): consumers look up their committed
  // offsets at each assignment for klua_consumer_lag (Consumer::lag_assignment_changed), and
  // producers time their deliveries (Producer::count_report).
  bool serving = false;
};
std::shared_ptr<LiveClients> live_clients(lua_State* L);

// Lua: pushes the error name of a librdkafka code ("_MSG_TIMED_OUT").
inline const char* code_name(int code) { return rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(code)); }
// Pushes {counts = {...}, sum = s} of a histogram.
void push_histogram(lua_State* L, const Histogram& h);
// Pushes {[code name] = count, ...}.
void push_code_counts(lua_State* L, const std::map<int, uint64_t>& m);

}  // namespace client_metrics

void open_client_metrics(Runtime& rt, lua_State* L, int klua_table);

}  // namespace klua
