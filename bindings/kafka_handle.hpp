// KafkaHandle, the one base of every client (producer, transactional producer, consumer, admin):
// it owns the rd_kafka_t, the close state machine (Open, Closing, Destroying, Closed; the handle is
// destroyed on the runtime's executor), the userdata box's __gc/__tostring/close, client events
// (error/log/stats hooks), fatal errors and the one way off the loop for blocking calls. With it:
// configuration from the runtime's layers and the script's table, the embedded cluster decision,
// the event fd that brings a librdkafka queue to the loop (QueueWatcher), Kafka error objects and
// partition lists.
#pragma once
#include <fmt/format.h>
#include <librdkafka/rdkafka.h>
#include <uv.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <lua.hpp>

#include "bindings/client_metrics.hpp"
#include "host/error.hpp"
#include "host/runtime.hpp"

namespace klua {

// A klua error from a librdkafka code.
ErrorSpec kafka_error(rd_kafka_resp_err_t code, std::string message = {});
ErrorSpec kafka_error(const rd_kafka_error_t* err);
int kafka_nil_error(lua_State* L, rd_kafka_resp_err_t code, std::string message = {}, const std::string& topic = {},
                    int partition = -1);

// Properties whose values are never shown (logs, errors, config dumps).
bool is_secret_property(const std::string& key);

// Options taken from a constructor table: klua's own (undotted) keys are validated against
// `allowed`; function values for the hooks are kept in the registry.
struct ClientOptions {
  rd_kafka_conf_t* conf = nullptr;  // owned until passed to rd_kafka_new
  bool embedded = false;
  std::string bootstrap;
  // Undotted keys present in the table (the caller reads them from the table itself).
  std::vector<std::string> klua_keys;
  int on_error = LUA_NOREF, on_log = LUA_NOREF, on_stats = LUA_NOREF;
  int oauthbearer_token_refresh = LUA_NOREF;  // bindings/security.hpp
  // klua.unreachable.timeout.ms: how long every broker may be down during a waiting call before
  // the call ends with _ALL_BROKERS_DOWN (see KafkaHandle's reachability below).
  double unreachable_timeout_ms = 5000;
};

// klua's own properties, given like librdkafka's (-X, profiles, the script's table) and taken
// out before librdkafka sees them: "klua.unreachable.timeout.ms", and the schema registry's
// (klua.registry reads them): schema.registry.url, schema.registry.basic.auth.user.info
// ("user:password", a secret), schema.registry.bearer.auth.token (a secret),
// schema.registry.ssl.ca.location.
inline constexpr const char* UNREACHABLE_TIMEOUT_PROPERTY = "klua.unreachable.timeout.ms";
inline constexpr double DEFAULT_UNREACHABLE_TIMEOUT_MS = 5000;
inline constexpr const char* SCHEMA_REGISTRY_URL_PROPERTY = "schema.registry.url";
inline constexpr const char* SCHEMA_REGISTRY_USER_INFO_PROPERTY = "schema.registry.basic.auth.user.info";
inline constexpr const char* SCHEMA_REGISTRY_TOKEN_PROPERTY = "schema.registry.bearer.auth.token";
inline constexpr const char* SCHEMA_REGISTRY_CA_PROPERTY = "schema.registry.ssl.ca.location";
// Whether key is one of klua's (a "klua." or "schema.registry." name); what is wrong with a value
// of it ("" when it is fine; an unknown name of those prefixes is a problem; the message never
// carries a secret's value). For the command line's early checks of -X and -F.
bool is_klua_property(const std::string& key);
std::string klua_property_problem(const std::string& key, const std::string& value);
std::vector<std::string> klua_property_names();

// Text fit for messages: user information in URL-like items ("SASL_SSL://user:pass@host:9093",
// "[user:pass@host]:9092") becomes "***@host". Applied to the bootstrap list and to librdkafka's
// error and log texts, which repeat a bootstrap item verbatim.
std::string redact_userinfo(std::string text);

// Builds the configuration: runtime layers, then the table at idx (may be 0 for none), then
// `defaults` applied first so that every layer can override them. Raises naming the property.
ClientOptions build_client_options(lua_State* L, int idx, const char* what,
                                   const std::vector<std::pair<std::string, std::string>>& defaults,
                                   const std::vector<std::string>& allowed_options);

// A non-blocking eventfd that librdkafka writes to when the queue becomes non-empty, watched
// by an unreferenced uv_poll: Kafka handles do not keep the loop alive by themselves.
class QueueWatcher {
 public:
  QueueWatcher(uv_loop_t* loop, rd_kafka_queue_t* q, std::function<void()> on_ready);
  ~QueueWatcher();
  void close();  // stops watching; safe to call twice
  // Runs on_ready on a later loop turn (when a drain stopped early on purpose).
  void schedule();

 private:
  static void on_poll(uv_poll_t* h, int status, int events);
  rd_kafka_queue_t* q_;
  std::function<void()> on_ready_;
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  uv_idle_t* idle_ = nullptr;
};

// Base for Kafka handles: the close state machine, hooks, event dispatch of ERROR/LOG/STATS, fatal errors.
class KafkaHandle : public Closable {
 public:
  KafkaHandle(Runtime& rt, const char* kind) : rt_(rt), kind_(kind) {}
  ~KafkaHandle() override;
  // The close state machine every client shares: Open -> Closing (the client's own wind-down: a
  // producer flushes, a consumer leaves its group, admin requests end) -> Destroying
  // (rd_kafka_destroy on the executor, destroy_handle) -> Closed.
  enum State { Open, Closing, Destroying, Closed };
  State state() const { return state_; }
  bool is_closed() const override { return state_ == Closed; }
  // h:close() calls waiting for Closed; set when the Lua object is gone (delete once closed).
  std::vector<WaitToken> close_waiters;
  bool orphaned = false;
  // What __tostring shows of an open handle: "klua.producer(rdkafka#producer-1)".
  virtual std::string describe() const;
  rd_kafka_t* rk() const { return rk_; }
  Runtime& runtime() { return rt_; }
  const char* kind() const { return kind_; }
  // Handles ERROR, LOG and STATS events; returns false for other types.
  bool handle_common_event(rd_kafka_event_t* ev);
  // Hooks, and what reachability needs of the options (the bound, the bootstrap list).
  void set_hooks(const ClientOptions& o);
  void release_hooks();
  bool all_brokers_down() const { return all_brokers_down_; }

  // ---- Built-in metrics (bindings/client_metrics.hpp): counted always; producers and consumers
  // are on the runtime's live list from start until their destruction begins.
  const std::shared_ptr<client_metrics::ClientMetrics>& metrics() const { return metrics_; }
  void track_live();
  void untrack_live();
  // Pushes this client's snapshot table (bindings/lua/client_metrics.lua reads it); a subclass
  // adds its own fields to the table the base pushed.
  virtual void push_metrics(lua_State* L);
  // A consumer that subscribed (or was assigned partitions) and has not had an assignment yet,
  // possibly empty (the "consumers" readiness check).
  virtual bool awaiting_assignment() { return false; }
  // statistics.interval.ms of this client (0: off).
  int statistics_interval_ms() const;

  // ---- Reachability: calls that wait for a broker end early when the cluster is unreachable.
  // librdkafka raises _ALL_BROKERS_DOWN (an ERROR event) as soon as every broker connection has
  // failed, and keeps retrying. A waiting call (an admin request, a blocking consumer call) is
  // watched: once every broker has been down for unreachable_timeout_ms during the call, and a
  // probe finds no broker up, the call ends with _ALL_BROKERS_DOWN naming the bootstrap list and
  // the last connection error heard (refused, DNS, TLS, authentication). A broker that is back by
  // then lets the call go on under its own timeout.
  struct Watch {
    std::string op;
    uint64_t started;  // uv_now when the call began
    std::function<void(const ErrorSpec&)> fail;
  };
  // Watches a waiting call: `fail` runs at most once, on the loop, with the error to return.
  // Returns an id for end_watch (which the call's normal completion must call; 0 is no watch).
  uint64_t watch_unreachable(const std::string& op, std::function<void(const ErrorSpec&)> fail);
  void end_watch(uint64_t id);
  // The error a call gets when the cluster is unreachable.
  ErrorSpec unreachable_error(const std::string& op) const;
  double unreachable_timeout_ms() const { return unreachable_timeout_ms_; }
  // Executor work that waits for a broker first (run_blocking, the consumer's topic check) holds
  // a Gate: wait_for_broker returns false at once when it is aborted (the call was failed as
  // unreachable, or the handle is closing), so no pool thread sits out a 30 s librdkafka timeout.
  struct Gate {
    std::atomic<bool> abort{false};
    bool passed = false;  // written by the work, read by its `done` on the loop
  };
  std::shared_ptr<Gate> new_gate();
  // On an executor thread: waits until some broker is up (true), or until timeout_ms passed or
  // the gate was aborted (false). Asks no more than a broker list of the broker once one is up.
  static bool wait_for_broker(rd_kafka_t* rk, Gate& gate, double timeout_ms);
  // Ends every wait_for_broker of this handle now (called when the handle starts closing).
  void abort_broker_waits();

  // Runs `work` (a blocking librdkafka call taking the timeout it is given) on the runtime's
  // executor and resumes the calling task with what `push` leaves on its stack. Returns
  // lua_yield's value: `return client->run_blocking(L, ...)`. The task waits timeout_ms + 1 s at
  // most. With needs_broker, the call is watched for an unreachable cluster, and on a handle not
  // known to reach a broker the work first waits for one (wait_for_broker): `work` then gets the
  // time left, or 0 when no broker came (librdkafka then answers at once with its own error).
  // `push` always runs once (its results are dropped when the task stopped waiting), so it may
  // free what the call allocated. The handle is not destroyed while such calls are in flight.
  int run_blocking(lua_State* L, const char* op, double timeout_ms, std::function<void(int timeout_ms)> work,
                   std::function<int(lua_State* co)> push, bool needs_broker = true);
  // Runs `work` on the runtime's executor (host/executor.hpp) and then `done` on the loop, with
  // no task waiting; the handle is not destroyed before `done` has run (run_blocking is built on it).
  void run_off_loop(std::function<void()> work, std::function<void()> done);
  int inflight() const { return inflight_; }
  // After a fatal client error the handle is unusable: every call raises this error.
  void raise_if_fatal(lua_State* L) const {
    if (fatal_) raise_error(L, *fatal_);
  }

 protected:
  Runtime& rt_;
  const char* kind_;
  rd_kafka_t* rk_ = nullptr;
  int on_error_ = LUA_NOREF, on_log_ = LUA_NOREF, on_stats_ = LUA_NOREF;
  int on_token_refresh_ = LUA_NOREF;  // the oauthbearer_token_refresh function (bindings/security.hpp)
  bool all_brokers_down_ = false;
  virtual void on_all_brokers_down() {}
  std::shared_ptr<client_metrics::ClientMetrics> metrics_ = std::make_shared<client_metrics::ClientMetrics>();
  std::shared_ptr<client_metrics::LiveClients> live_;  // set while on the live list
  // Reachability state (loop thread only). down_since_: uv_now of the first _ALL_BROKERS_DOWN
  // heard since a broker was last known up (0: not known down). seen_up_: a broker was found up
  // since the last _ALL_BROKERS_DOWN (blocking calls then skip wait_for_broker).
  double unreachable_timeout_ms_ = DEFAULT_UNREACHABLE_TIMEOUT_MS;
  std::string bootstrap_;  // redacted
  // The values of the client's secret properties (is_secret_property), read at its first event:
  // librdkafka quotes a bad value in its errors ("Unrecognized sasl.oauthbearer.config beginning
  // at: ..."), which redact_secrets masks before anything prints or hands them to a hook.
  std::vector<std::string> secret_values_;
  bool secret_values_read_ = false;
  std::string redact_secrets(std::string text);
  uint64_t down_since_ = 0;
  bool seen_up_ = false;
  std::string last_cause_;  // the last connection error heard (trimmed, redacted)
  std::set<std::string> causes_said_;  // the connection errors printed during this outage
  std::map<uint64_t, Watch> watches_;
  uint64_t next_watch_ = 1;
  std::vector<std::weak_ptr<Gate>> gates_;
  uv_timer_t* reach_timer_ = nullptr;
  // Keeps a connection error (refused, DNS, TLS, SASL, timeout) as the cause; false for others.
  bool note_connection_error(rd_kafka_resp_err_t code, const std::string& message);

  void arm_reach_timer();
  void check_reach();
  // A non-blocking probe: is some broker up now?
  bool broker_up_now();
  void close_reachability();
  // Called when the last blocking call in flight has finished.
  virtual void on_inflight_done() {}
  int inflight_ = 0;
  virtual void on_fatal(const std::string& message) {}
  State state_ = Open;
  // The end of every close, once the client has released its queues: hooks released, the handle
  // destroyed off the loop (`flags`: RD_KAFKA_DESTROY_F_*), then Closed, the close waiters woken,
  // and an orphaned handle deleted.
  void destroy_handle(int flags);
  // An _AUTHENTICATION error event (wrong SASL credentials): the error as the hooks saw it.
  virtual void on_authentication_error(const ErrorSpec& e) {}
  // The last _AUTHENTICATION error heard (a producer clears it at the next successful delivery).
  std::optional<ErrorSpec> last_auth_error_;
  std::optional<ErrorSpec> fatal_;
};

// Destroys a handle without blocking the loop (rd_kafka_destroy joins librdkafka's threads and,
// for a consumer, leaves its group): it runs on the runtime's executor; `done` runs on the loop.
// `flags` are rd_kafka_destroy_flags' (RD_KAFKA_DESTROY_F_*).
void destroy_handle_async(Runtime& rt, rd_kafka_t* rk, int flags, std::function<void()> done);

// Pushes the registry's "klua.private" table (made on first use): primitives and test hooks that
// are not the public API live there, per module (["klua.private"].consumer.held, ...), never on
// a public metatable (the REPL completes those names).
void push_private_table(lua_State* L);

// Pushes a new table with weak keys (a set of userdata that does not keep them alive).
void push_weak_keyed_table(lua_State* L);

// Resumes every h:close() waiting on a handle that is now closed, with `true`.
void wake_close_waiters(Scheduler& s, std::vector<WaitToken> waiters);

// The Lua side of h:close() for producers, consumers and admin handles: starts the close and
// yields until it is done (returns true at once when already closed, or where the caller cannot
// wait: the close then goes on on the loop).
template <class Handle>
int close_and_wait(lua_State* L, Handle* h, const char* op) {
  // close takes no options (it is bounded by the handle's own close timeout): an argument
  // such as {timeout_ms = -1} was silently ignored.
  if (!lua_isnoneornil(L, 2))
    raise_bad_argument(L, 2, op, fmt::format("{} takes no arguments, got {}", op, luaL_typename(L, 2)));
  if (!h || h->is_closed()) {
    lua_pushboolean(L, 1);
    return 1;
  }
  h->begin_close();
  Scheduler& s = Runtime::from(L).scheduler();
  if (h->is_closed() || !s.can_wait(L)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  h->close_waiters.push_back(s.prepare_wait(L, op, -1));
  return lua_yield(L, 0);
}

// __gc of a handle's userdata: never blocks. A closed handle is freed now; an open one is handed
// to the loop to close, and frees itself when closed (`orphaned`).
template <class Handle>
void collect_handle(Handle* h) {
  if (!h) return;
  if (h->is_closed()) {
    delete h;
  } else {
    h->orphaned = true;
    h->begin_close();
  }
}

// The payload of every client's userdata is a Box { H* handle; } (null once collected), with
// Box::kind naming the client for messages. These are its __gc and __tostring.
template <class Box>
int handle_gc(lua_State* L) {
  auto* box = static_cast<Box*>(lua_touserdata(L, 1));
  collect_handle(box->handle);
  box->handle = nullptr;
  return 0;
}
template <class Box>
int handle_tostring(lua_State* L) {
  auto* box = static_cast<Box*>(lua_touserdata(L, 1));
  if (box && box->handle && box->handle->rk() && !box->handle->is_closed()) {
    std::string s = box->handle->describe();
    lua_pushlstring(L, s.data(), s.size());
  } else {
    lua_pushfstring(L, "klua.%s(closed)", Box::kind);
  }
  return 1;
}

// Sets handle_gc and handle_tostring as __gc and __tostring of the metatable on top of the stack.
template <class Box>
void set_handle_metamethods(lua_State* L) {
  lua_pushcfunction(L, handle_gc<Box>);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, handle_tostring<Box>);
  lua_setfield(L, -2, "__tostring");
}

// The checks a waiting call's prepare_wait (or run_blocking) would raise for (not in a task,
// cancelled), made before the call builds what a raise would leak (a partition list, an op).
void check_can_wait(lua_State* L, const char* op);

// Raises KLUA_CLOSED: "the <kind> is closed".
[[noreturn]] void raise_closed(lua_State* L, const char* kind);
// The handle of a box, when it is usable: raises KLUA_CLOSED when it is closed (or collected),
// and the fatal error after one.
template <class H>
H* usable_handle(lua_State* L, H* h, const char* kind) {
  if (!h || !h->usable()) raise_closed(L, kind);
  h->raise_if_fatal(L);
  return h;
}

// Creates the handle from conf (consumed) or raises with librdkafka's reason.
rd_kafka_t* new_handle(lua_State* L, rd_kafka_type_t type, rd_kafka_conf_t* conf, const char* what);

// Kafka's topic name rules. Returns an empty string when valid, else the rule broken.
std::string topic_name_problem(const char* name, size_t len);

// A millisecond timeout from Lua as librdkafka's int: negative, NaN and huge values clamp
// (infinity means "as long as librdkafka allows").
inline int timeout_int(double ms) {
  if (!(ms >= 0)) return 0;
  if (ms > 2147483647.0) return 2147483647;
  return static_cast<int>(ms);
}

// A timeout given as a number (positional, or read from an options table): raises a bad argument
// of fn naming the value when it is negative or NaN (no wait means that).
inline double check_timeout_number(lua_State* L, int arg, const char* fn, double t) {
  if (!(t >= 0)) raise_bad_argument(L, arg, fn, fmt::format("timeout_ms must be >= 0 (math.huge waits without a limit), got {}", t));
  return t;
}

// Reads an optional number field from the table at idx.
bool opt_number_field(lua_State* L, int idx, const char* key, double* out);

// The embedded mock cluster (bindings/embedded.cpp).
std::string embedded_bootstrap(Runtime& rt);
bool embedded_running(Runtime& rt);

// The librdkafka handle behind a producer / consumer userdata at idx (raises when it is not
// one, or when it is closed). For modules that extend them (transactions, admin helpers).
rd_kafka_t* check_producer_handle(lua_State* L, int idx, const char* fn);
rd_kafka_t* check_consumer_handle(lua_State* L, int idx);
// The built-in metrics of the producer at idx (raises as check_producer_handle does).
std::shared_ptr<client_metrics::ClientMetrics> producer_metrics(lua_State* L, int idx, const char* fn);
// The consumer's positions as the script sees them (the next offset poll will return per
// partition; messages fetched into klua's buffer but not polled yet are not counted), for the
// given partitions or, with list == nullptr, its assignment. Caller destroys the result.
rd_kafka_topic_partition_list_t* consumer_positions(lua_State* L, int idx, rd_kafka_topic_partition_list_t* list,
                                                    rd_kafka_resp_err_t* err);

// Partition lists. In Lua: an array of {topic=, partition=, offset=, metadata=, error=} in
// (topic, partition) order; offsets are numbers (the next offset to read) or "beginning", "end",
// "stored". check_partition_list raises a bad argument (argument idx of what) naming the bad item;
// with allow_message, a message table (topic, partition, offset) stands for its partition at offset + 1.
rd_kafka_topic_partition_list_t* check_partition_list(lua_State* L, int idx, const char* what, bool allow_message);
void push_partition_list(lua_State* L, const rd_kafka_topic_partition_list_t* list, bool end_as_string = false);
// The offset at idx (RD_KAFKA_OFFSET_INVALID when nil); a bad one raises a bad argument #arg of what
// (arg 0: idx when it is positive, i.e. an argument; otherwise a misuse of what). `item` prefixes
// the detail ("partition list item 2: ").
int64_t check_offset(lua_State* L, int idx, const char* what, int arg = 0, const std::string& item = {});

// Module openers (called by the runtime with the klua table).
void open_kafka_common(Runtime& rt, lua_State* L, int klua_table);
void open_producer(Runtime& rt, lua_State* L, int klua_table);
void open_consumer(Runtime& rt, lua_State* L, int klua_table);
void open_transactions(Runtime& rt, lua_State* L, int klua_table);
void open_embedded(Runtime& rt, lua_State* L, int klua_table);
void open_admin(Runtime& rt, lua_State* L, int klua_table);
void open_lag(Runtime& rt, lua_State* L, int klua_table);

}  // namespace klua
