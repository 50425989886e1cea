// klua.admin's internals, shared by its parts: the handle (Admin), its userdata box, and the
// conversions every primitive uses. The primitives themselves (a:_name in Lua's view, never on the
// public metatable) are split by job:
//   admin.cpp          the handle: requests on the result queue, close, klua.admin(), registration
//   admin_topics.cpp   metadata, topics, partitions, records, configs (describe, incremental alter)
//   admin_groups.cpp   consumer groups and their committed offsets
//   admin_cluster.cpp  DescribeCluster, DescribeTopics, ListOffsets, ElectLeaders
//   admin_acls.cpp     ACLs and SCRAM credentials
#pragma once
#include <librdkafka/rdkafka.h>

#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "bindings/kafka_handle.hpp"

namespace klua::admin_impl {

inline constexpr const char* ADMIN_MT = "klua.admin";
inline constexpr double DEFAULT_ADMIN_TIMEOUT_MS = 30000;

class Admin;

// One admin request in flight: freed when its result arrives or when the handle closes.
struct Request {
  Admin* admin;
  WaitToken tok;
  std::string op;
  std::function<int(lua_State* co, rd_kafka_event_t* ev)> push;
  uint64_t watch = 0;  // KafkaHandle::watch_unreachable's id
};

class Admin : public KafkaHandle {
 public:
  explicit Admin(Runtime& rt) : KafkaHandle(rt, "admin") {}
  ~Admin() override {
    rt_.remove_closable(this);
    for (Request* r : pending_) delete r;
    for (Request* r : abandoned_) delete r;
  }

  void start(rd_kafka_t* rk, bool embedded, double timeout_ms) {
    rk_ = rk;
    embedded_ = embedded;
    timeout_ms_ = timeout_ms;
    main_q_ = rd_kafka_queue_get_main(rk_);
    rd_kafka_set_log_queue(rk_, nullptr);
    main_w_ = std::make_unique<QueueWatcher>(rt_.loop(), main_q_, [this] { drain_main(main_q_); });
    res_q_ = rd_kafka_queue_new(rk_);
    res_w_ = std::make_unique<QueueWatcher>(rt_.loop(), res_q_, [this] { drain_results(); });
    rt_.add_closable(this);
  }

  int close_priority() const override { return 30; }
  bool usable() const { return state_ == Open; }
  bool embedded() const { return embedded_; }
  double timeout_ms() const { return timeout_ms_; }
  rd_kafka_queue_t* results_queue() const { return res_q_; }

  // Registers a request and prepares the task's wait; the caller sends it with the options.
  Request* begin(lua_State* L, const char* op, double timeout_ms,
                 std::function<int(lua_State*, rd_kafka_event_t*)> push) {
    WaitToken t = rt_.scheduler().prepare_wait(L, op, timeout_ms + 2000);
    auto* r = new Request{this, t, op, std::move(push)};
    pending_.insert(r);
    // An unreachable cluster ends the request's wait early (librdkafka would hold it until its
    // timeout); the request is then kept until librdkafka's late result for it arrives.
    r->watch = watch_unreachable(op, [this, r](const ErrorSpec& e) {
      if (!pending_.erase(r)) return;
      Scheduler& s = rt_.scheduler();
      if (lua_State* co = s.wake_begin(r->tok)) s.wake_end(r->tok, nil_error(co, e));
      abandoned_.insert(r);
    });
    return r;
  }

  rd_kafka_AdminOptions_t* options(rd_kafka_admin_op_t api, Request* r, double timeout_ms, bool operation_timeout,
                                   bool validate_only) {
    char errstr[256];
    rd_kafka_AdminOptions_t* o = rd_kafka_AdminOptions_new(rk_, api);
    rd_kafka_AdminOptions_set_request_timeout(o, timeout_int(timeout_ms), errstr, sizeof errstr);
    if (operation_timeout)
      rd_kafka_AdminOptions_set_operation_timeout(o, timeout_int(timeout_ms), errstr, sizeof errstr);
    if (validate_only) rd_kafka_AdminOptions_set_validate_only(o, 1, errstr, sizeof errstr);
    rd_kafka_AdminOptions_set_opaque(o, r);
    return o;
  }

  // Sends one request and yields: registers the task's wait (push converts the result event for it),
  // builds the options, lets call(options, result queue) hand the request to librdkafka, and frees the
  // options. Returns lua_yield's value: the primitive frees its request objects, then returns it.
  template <class Call>
  int send(lua_State* L, const char* op, rd_kafka_admin_op_t api, double timeout_ms, bool operation_timeout,
           bool validate_only, std::function<int(lua_State*, rd_kafka_event_t*)> push, Call call) {
    Request* r = begin(L, op, timeout_ms, std::move(push));
    rd_kafka_AdminOptions_t* o = options(api, r, timeout_ms, operation_timeout, validate_only);
    call(o, res_q_);
    rd_kafka_AdminOptions_destroy(o);
    return lua_yield(L, 0);
  }

  void begin_close() override;
  std::string describe() const override;

  // Wrong credentials: librdkafka keeps retrying the login and the requests wait for a broker until their
  // timeout (30 s by default). Fail the requests pending now with the authentication error instead; later
  // ones go out and may succeed (credentials can be fixed, a SCRAM user can appear).
  void on_authentication_error(const ErrorSpec& auth) override {
    Scheduler& s = rt_.scheduler();
    std::vector<Request*> failed(pending_.begin(), pending_.end());
    pending_.clear();
    for (Request* r : failed) {
      end_watch(r->watch);
      if (lua_State* co = s.wake_begin(r->tok)) {
        ErrorSpec e = auth;
        e.op = r->op;
        e.message = fmt::format("{} failed: {}", r->op, auth.message);
        nil_error(co, e);
        s.wake_end(r->tok, 2);
      }
      // Kept until librdkafka's late result for it arrives: its address is that result's opaque, and
      // must not be reused by a new request meanwhile.
      abandoned_.insert(r);
    }
  }


 protected:
  void on_inflight_done() override {
    if (state_ == Closing) finish_close();
  }

 private:
  void drain_main(rd_kafka_queue_t* q) {
    if (state_ == Destroying || state_ == Closed) return;
    while (rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 0)) {
      handle_common_event(ev);
      rd_kafka_event_destroy(ev);
    }
  }
  void drain_results();
  void finish_close();

  bool embedded_ = false;
  double timeout_ms_ = DEFAULT_ADMIN_TIMEOUT_MS;
  rd_kafka_queue_t *main_q_ = nullptr, *res_q_ = nullptr;
  std::unique_ptr<QueueWatcher> main_w_, res_w_;
  std::unordered_set<Request*> pending_, abandoned_;
};

struct AdminBox {
  Admin* handle;
  static constexpr const char* kind = "admin";
};

Admin* check_admin(lua_State* L, int idx);
// check_admin for calls that wait: raises as the wait itself would (not in a task, cancelled)
// before the call builds librdkafka objects that a raise would leak.
Admin* check_admin_waiting(lua_State* L, int idx);
double timeout_arg(lua_State* L, int idx, Admin* a);
void set_str(lua_State* L, const char* k, const char* v);
void set_num(lua_State* L, const char* k, double v);
void set_bool(lua_State* L, const char* k, bool v);
// Sets field "error" of the table on top from a code and message (nothing when code is 0).
void set_error(lua_State* L, rd_kafka_resp_err_t code, const char* msg, const char* op, const char* topic = nullptr,
               const char* group = nullptr, int partition = -1);
void set_error(lua_State* L, const rd_kafka_error_t* err, const char* op, const char* group = nullptr);
// A list of strings at idx (a primitive's argument: admin.lua checked it; raises naming `what` if not).
std::vector<std::string> string_list(lua_State* L, int idx, const char* what);
void push_topic_results(lua_State* L, const rd_kafka_topic_result_t** res, size_t n, const char* op);
// A partition list with offsets kept even when negative (-1: none) as nil, and errors.
void push_partitions(lua_State* L, const rd_kafka_topic_partition_list_t* list, const char* op, const char* group);
// Enum names for Lua: librdkafka's names lower-cased ("DESCRIBE_CONFIGS" -> "describe_configs").
void push_lower(lua_State* L, const char* s);
void push_node(lua_State* L, const rd_kafka_Node_t* n);
// Sets field "authorized_operations" (sorted names) when the broker sent them (only when asked).
void set_acl_ops(lua_State* L, const rd_kafka_AclOperation_t* ops, size_t n);
void include_ops(rd_kafka_AdminOptions_t* o, bool on);

// The primitives (registered by open_admin in a private table, not on the public metatable).
int l_metadata(lua_State* L);
int l_create_topics(lua_State* L);
int l_delete_topics(lua_State* L);
int l_create_partitions(lua_State* L);
int l_delete_records(lua_State* L);
int l_describe_configs(lua_State* L);
int l_incremental_alter_configs(lua_State* L);
int l_list_groups(lua_State* L);
int l_describe_groups(lua_State* L);
int l_delete_groups(lua_State* L);
int l_group_offsets(lua_State* L);
int l_describe_cluster(lua_State* L);
int l_describe_topics(lua_State* L);
int l_list_offsets(lua_State* L);
int l_elect_leaders(lua_State* L);
int l_describe_scram(lua_State* L);
int l_alter_scram(lua_State* L);
int l_create_acls(lua_State* L);
int l_describe_acls(lua_State* L);
int l_delete_acls(lua_State* L);

}  // namespace klua::admin_impl
