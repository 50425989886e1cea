// The embedded default: librdkafka's in-process mock cluster, started lazily at the
// first Kafka handle when nothing names a broker, shared by every handle of the
// script, and closed last at exit.
#include <pthread.h>
#include <signal.h>

#include <cmath>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <fmt/format.h>

#include "bindings/kafka_handle.hpp"
#include "host/log.hpp"

namespace klua {

// librdkafka refuses a new topic of more partitions (RD_KAFKAP_PARTITIONS_MAX); its mock has no bound.
constexpr int MAX_TOPIC_PARTITIONS = 100000;

namespace {
const int EMBEDDED_BROKERS = 3;
const char* const EMBEDDED_KEY = "klua.embedded";

class EmbeddedCluster : public Closable {
 public:
  explicit EmbeddedCluster(Runtime& rt) : rt_(rt) {
    char errstr[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    // Its rare errors go through klua's log (one JSON object a line with --log-format json), not
    // librdkafka's own printer; they come from the mock's thread, and the log is thread-safe.
    rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t*, int level, const char* fac, const char* buf) {
      log::diagnostic(level <= 3 ? log::Level::error : level == 4 ? log::Level::warn : log::Level::info, buf,
                      {{"logger", "librdkafka"}, {"client", "embedded cluster"}, {"facility", fac},
                       {"syslog_level", std::to_string(level), true}},
                      fmt::format("klua: embedded cluster log {} [{}]: {}", level, fac, buf));
    });
    handle_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!handle_) throw std::runtime_error(std::string("embedded cluster: ") + errstr);
    {
      // The mock's thread must block every signal, as librdkafka's client threads do: a signal
      // handled there (SIGCHLD from a klua.process child, once libuv watches children) makes its
      // poll() fail with EINTR, and the mock then stops serving for good ("Mock cluster failed to
      // poll N fds: Interrupted system call"). rd_kafka_mock_cluster_new does not block them
      // itself; its thread inherits the mask in force here.
      sigset_t all, old;
      sigfillset(&all);
      pthread_sigmask(SIG_SETMASK, &all, &old);
      mc_ = rd_kafka_mock_cluster_new(handle_, EMBEDDED_BROKERS);
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
    }
    if (!mc_) throw std::runtime_error("embedded cluster: rd_kafka_mock_cluster_new failed");
    // The 2.15 mock reports controller id 0 (no such broker) unless told: admin calls that go to the
    // controller (DescribeCluster, DescribeTopics, and every unserved one) then wait for a controller
    // until they time out. Broker 1 as controller makes the first two work and the others fail at once.
    rd_kafka_mock_set_controller_id(mc_, 1);
    bootstrap_ = rd_kafka_mock_cluster_bootstraps(mc_);
    // The mock waits 3 s (Kafka's default group.initial.rebalance.delay.ms) before it completes
    // a new classic group's first join: in one process nobody else is coming that late.
    rd_kafka_mock_group_initial_rebalance_delay_ms(mc_, 0);
    // KIP-848 groups (group.protocol=consumer) take session and heartbeat from the broker: the
    // same as klua's test broker (tools/kafka-broker.d), so a member that goes away without
    // leaving loses its partitions in seconds rather than 45 s.
    rd_kafka_mock_set_group_consumer_session_timeout_ms(mc_, 6000);
    rd_kafka_mock_set_group_consumer_heartbeat_interval_ms(mc_, 1000);
    log::diagnostic(log::Level::info,
                    fmt::format("no broker configured (-b, KLUA_BROKERS or bootstrap.servers): using the embedded "
                                "mock cluster ({} brokers) at {}",
                                EMBEDDED_BROKERS, bootstrap_),
                    {{"bootstrap", bootstrap_}});
    rt_.add_closable(this);
  }
  ~EmbeddedCluster() override {
    rt_.remove_closable(this);
    begin_close();
  }
  int close_priority() const override { return 40; }
  void begin_close() override {
    // The cluster goes before its dummy handle.
    if (mc_) rd_kafka_mock_cluster_destroy(mc_);
    mc_ = nullptr;
    if (handle_) rd_kafka_destroy(handle_);
    handle_ = nullptr;
  }
  bool is_closed() const override { return mc_ == nullptr; }
  const std::string& bootstrap() const { return bootstrap_; }
  rd_kafka_mock_cluster_t* mock() const { return mc_; }

 private:
  Runtime& rt_;
  rd_kafka_t* handle_ = nullptr;
  rd_kafka_mock_cluster_t* mc_ = nullptr;
  std::string bootstrap_;
};

// One cluster per runtime, owned by a userdata in the registry so lua_close frees it.
EmbeddedCluster* find_cluster(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, EMBEDDED_KEY);
  auto** p = static_cast<EmbeddedCluster**>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return p ? *p : nullptr;
}

EmbeddedCluster& cluster(Runtime& rt) {
  lua_State* L = rt.lua();
  if (EmbeddedCluster* c = find_cluster(L)) return *c;
  auto** p = static_cast<EmbeddedCluster**>(lua_newuserdata(L, sizeof(EmbeddedCluster*)));
  *p = nullptr;
  lua_newtable(L);
  lua_pushcfunction(L, [](lua_State* L) -> int {
    auto** p = static_cast<EmbeddedCluster**>(lua_touserdata(L, 1));
    delete *p;
    *p = nullptr;
    return 0;
  });
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, EMBEDDED_KEY);
  *p = new EmbeddedCluster(rt);
  return **p;
}

int l_bootstrap(lua_State* L) {
  std::string b = embedded_bootstrap(Runtime::from(L));
  lua_pushlstring(L, b.data(), b.size());
  return 1;
}

int l_running(lua_State* L) {
  EmbeddedCluster* c = find_cluster(L);
  lua_pushboolean(L, c && !c->is_closed());
  return 1;
}

// klua.embedded.create_topic(name, partitions=4, replication_factor=min(3, brokers))
int l_create_topic(lua_State* L) {
  size_t len;
  const char* name = luaL_checklstring(L, 1, &len);
  // Read as numbers before any cast: 1e10 became 1410065408 partitions and the mock aborted
  // allocating them. 100,000 is librdkafka's own bound for a new topic.
  double partitions_arg = luaL_optnumber(L, 2, 4), rf_arg = luaL_optnumber(L, 3, EMBEDDED_BROKERS);
  luaL_argcheck(L, partitions_arg >= 1 && partitions_arg <= MAX_TOPIC_PARTITIONS && partitions_arg == std::floor(partitions_arg),
                2, "partitions must be a whole number from 1 to 100000");
  luaL_argcheck(L, rf_arg >= 1 && rf_arg <= EMBEDDED_BROKERS && rf_arg == std::floor(rf_arg), 3,
                "replication factor must be 1, 2 or 3");
  int partitions = static_cast<int>(partitions_arg), rf = static_cast<int>(rf_arg);
  std::string problem = topic_name_problem(name, len);
  if (!problem.empty()) {
    ErrorSpec e;
    e.code = CODE_INVALID_ARGUMENT;
    e.name = ERR_INVALID_ARGUMENT;
    e.topic = std::string(name, len);
    e.message = fmt::format("invalid topic name \"{}\": {}", e.topic, problem);
    return nil_error(L, e);
  }
  EmbeddedCluster& c = cluster(Runtime::from(L));
  rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(c.mock(), name, partitions, rf);
  if (err) return kafka_nil_error(L, err, {}, name);
  lua_pushboolean(L, 1);
  return 1;
}
// klua.embedded.broker_down(id) / broker_up(id): fault injection for tests (ids 1..3).
int set_broker(lua_State* L, bool up) {
  int id = static_cast<int>(luaL_checkinteger(L, 1));
  luaL_argcheck(L, id >= 1 && id <= EMBEDDED_BROKERS, 1, "broker id must be between 1 and 3");
  EmbeddedCluster& c = cluster(Runtime::from(L));
  rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(c.mock(), id) : rd_kafka_mock_broker_set_down(c.mock(), id);
  if (err) return kafka_nil_error(L, err);
  lua_pushboolean(L, 1);
  return 1;
}
int l_broker_down(lua_State* L) { return set_broker(L, false); }
int l_broker_up(lua_State* L) { return set_broker(L, true); }
}  // namespace

std::string embedded_bootstrap(Runtime& rt) { return cluster(rt).bootstrap(); }

// For klua.admin on the embedded cluster (bindings/admin.hpp): creates a topic on the mock.
rd_kafka_resp_err_t embedded_create_topic(Runtime& rt, const std::string& name, int partitions, int rf) {
  if (partitions < 1 || partitions > MAX_TOPIC_PARTITIONS || rf < 1) return RD_KAFKA_RESP_ERR__INVALID_ARG;
  return rd_kafka_mock_topic_create(cluster(rt).mock(), name.c_str(), partitions, rf);
}

bool embedded_running(Runtime& rt) {
  EmbeddedCluster* c = find_cluster(rt.lua());
  return c && !c->is_closed();
}

void open_embedded(Runtime& rt, lua_State* L, int klua_table) {
  lua_newtable(L);
  lua_pushcfunction(L, l_bootstrap);
  lua_setfield(L, -2, "bootstrap");
  lua_pushcfunction(L, l_running);
  lua_setfield(L, -2, "running");
  lua_pushcfunction(L, l_create_topic);
  lua_setfield(L, -2, "create_topic");
  lua_pushcfunction(L, l_broker_down);
  lua_setfield(L, -2, "broker_down");
  lua_pushcfunction(L, l_broker_up);
  lua_setfield(L, -2, "broker_up");
  lua_setfield(L, klua_table, "embedded");
}

}  // namespace klua
