// klua.admin([config]): cluster, topic, config, group, ACL and SCRAM administration on
// one long-lived handle. The C++ half below offers thin primitives (methods whose
// names start with "_"): each sends one librdkafka admin request on the handle's
// result queue, correlated by the request's opaque, or runs one blocking call
// (metadata) on the thread pool, and converts the result to plain tables. The
// public methods are Lua (bindings/lua/admin.lua): argument checks, per-item
// results in input order, the embedded-cluster decisions, and the composite
// operations (if_not_exists, reset_group_offsets, lag).
//
// The handle is a consumer-type rd_kafka_t without a group (admin requests work on
// any handle type). Offsets come from the native ListOffsets call, whose isolation
// level is an option of each request: read_uncommitted gives the high watermark,
// read_committed the last stable offset, on the same handle.
#include "bindings/admin.hpp"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fmt/format.h>
#include <memory>
#include <unordered_set>
#include <vector>

#include "bindings/client.hpp"
#include "bindings/lua_chunks.hpp"

namespace klua {

namespace {
const char* const ADMIN_MT = "klua.admin";
const double DEFAULT_ADMIN_TIMEOUT_MS = 30000;

class Admin;

// One admin request in flight: freed when its result arrives or when the handle closes.
struct Request {
  Admin* admin;
  WaitToken tok;
  std::string op;
  std::function<int(lua_State* co, rd_kafka_event_t* ev)> push;
};

class Admin : public Client {
 public:
  explicit Admin(Runtime& rt) : Client(rt, "admin") {}
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
  bool is_closed() const override { return state_ == Closed; }
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

  void begin_close() override;

  // Wrong credentials: librdkafka keeps retrying the login and the requests wait for a broker until their
  // timeout (30 s by default). Fail the requests pending now with the authentication error instead; later
  // ones go out and may succeed (credentials can be fixed, a SCRAM user can appear).
  void on_authentication_error(const ErrorSpec& auth) override {
    Scheduler& s = rt_.scheduler();
    std::vector<Request*> failed(pending_.begin(), pending_.end());
    pending_.clear();
    for (Request* r : failed) {
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

  bool orphaned = false;
  std::vector<WaitToken> close_waiters;

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

  enum State { Open, Closing, Destroying, Closed } state_ = Open;
  bool embedded_ = false;
  double timeout_ms_ = DEFAULT_ADMIN_TIMEOUT_MS;
  rd_kafka_queue_t *main_q_ = nullptr, *res_q_ = nullptr;
  std::unique_ptr<QueueWatcher> main_w_, res_w_;
  std::unordered_set<Request*> pending_, abandoned_;
};

void Admin::drain_results() {
  if (state_ == Destroying || state_ == Closed) return;
  Scheduler& s = rt_.scheduler();
  while (rd_kafka_event_t* ev = rd_kafka_queue_poll(res_q_, 0)) {
    auto* r = static_cast<Request*>(rd_kafka_event_opaque(ev));
    if (r && abandoned_.erase(r)) {
      delete r;  // its task was already answered (on_authentication_error)
    } else if (r && pending_.erase(r)) {
      std::unique_ptr<Request> own(r);
      if (lua_State* co = s.wake_begin(r->tok)) {
        rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
        if (err) {
          ErrorSpec e = kafka_error(err, fmt::format("{} failed: {}", r->op, rd_kafka_event_error_string(ev)));
          e.op = r->op;
          nil_error(co, e);
          s.wake_end(r->tok, 2);
        } else {
          s.wake_end(r->tok, r->push(co, ev));
        }
      }
    } else {
      handle_common_event(ev);
    }
    rd_kafka_event_destroy(ev);
  }
}

void Admin::begin_close() {
  if (state_ != Open) return;
  state_ = Closing;
  if (inflight_ == 0) finish_close();
}

void Admin::finish_close() {
  if (state_ != Closing) return;
  state_ = Destroying;
  // Requests still waiting end with KLUA_CLOSED.
  Scheduler& s = rt_.scheduler();
  for (Request* r : pending_) {
    if (lua_State* co = s.wake_begin(r->tok)) {
      ErrorSpec e;
      e.code = CODE_CLOSED;
      e.name = ERR_CLOSED;
      e.op = r->op;
      e.message = fmt::format("{}: the admin client was closed", r->op);
      nil_error(co, e);
      s.wake_end(r->tok, 2);
    }
    delete r;
  }
  pending_.clear();
  for (auto* w : {main_w_.get(), res_w_.get()})
    if (w) w->close();
  for (rd_kafka_queue_t* q : {main_q_, res_q_}) {
    if (!q) continue;
    while (rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 0)) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
  }
  main_q_ = res_q_ = nullptr;
  release_hooks();
  destroy_handle_async(rt_, rk_, 0, [this] {
    rk_ = nullptr;
    state_ = Closed;
    wake_close_waiters(rt_.scheduler(), std::move(close_waiters));
    if (orphaned) delete this;
  });
}

// ---- helpers ---------------------------------------------------------------------

struct AdminBox {
  Admin* a;
};

Admin* check_admin(lua_State* L, int idx) {
  auto* box = static_cast<AdminBox*>(luaL_checkudata(L, idx, ADMIN_MT));
  if (!box->a || !box->a->usable()) {
    ErrorSpec e;
    e.code = CODE_CLOSED;
    e.name = ERR_CLOSED;
    e.message = "the admin client is closed";
    raise_error(L, e);
  }
  return box->a;
}

// check_admin for calls that wait: raises as the wait itself would (not in a task, cancelled)
// before the call builds librdkafka objects that a raise would leak (a SCRAM alteration holds
// a copy of the password).
Admin* check_admin_waiting(lua_State* L, int idx) {
  Admin* a = check_admin(L, idx);
  Scheduler& s = Runtime::from(L).scheduler();
  if (!s.can_wait(L))
    luaL_error(L, "admin calls wait for the broker: call them from a klua task (the main chunk, a klua.spawn "
                  "function or a hook), not from a plain coroutine or an inline callback");
  s.check_cancelled(L);
  return a;
}

double timeout_arg(lua_State* L, int idx, Admin* a) { return luaL_optnumber(L, idx, a->timeout_ms()); }

void set_str(lua_State* L, const char* k, const char* v) {
  if (!v) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}
void set_num(lua_State* L, const char* k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}
void set_bool(lua_State* L, const char* k, bool v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}

// Sets field "error" of the table on top from a code and message (nothing when code is 0).
void set_error(lua_State* L, rd_kafka_resp_err_t code, const char* msg, const char* op, const char* topic = nullptr,
               const char* group = nullptr, int partition = -1) {
  if (!code) return;
  ErrorSpec e = kafka_error(code, msg && *msg ? msg : rd_kafka_err2str(code));
  e.op = std::string("admin:") + op;
  if (topic) e.topic = topic;
  if (group) e.group = group;
  if (partition >= 0) e.partition = partition;
  push_error(L, e);
  lua_setfield(L, -2, "error");
}

void set_error(lua_State* L, const rd_kafka_error_t* err, const char* op, const char* group = nullptr) {
  if (!err) return;
  ErrorSpec e = kafka_error(err);
  e.op = std::string("admin:") + op;
  if (group) e.group = group;
  push_error(L, e);
  lua_setfield(L, -2, "error");
}

std::vector<std::string> string_list(lua_State* L, int idx, const char* what) {
  luaL_checktype(L, idx, LUA_TTABLE);
  std::vector<std::string> out;
  int n = static_cast<int>(lua_objlen(L, idx));
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: item %d must be a string", what, i);
    out.emplace_back(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return out;
}

void push_topic_results(lua_State* L, const rd_kafka_topic_result_t** res, size_t n, const char* op) {
  lua_createtable(L, static_cast<int>(n), 0);
  for (size_t i = 0; i < n; ++i) {
    lua_createtable(L, 0, 2);
    const char* name = rd_kafka_topic_result_name(res[i]);
    set_str(L, "name", name);
    set_error(L, rd_kafka_topic_result_error(res[i]), rd_kafka_topic_result_error_string(res[i]), op, name);
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
}

// A partition list with offsets kept even when negative (-1: none) as nil, and errors.
void push_partitions(lua_State* L, const rd_kafka_topic_partition_list_t* list, const char* op, const char* group) {
  push_partition_list(L, list);
  // push_partition_list builds errors without op/group: add them.
  int n = static_cast<int>(lua_objlen(L, -1));
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, -1, i);
    lua_getfield(L, -1, "error");
    if (lua_istable(L, -1)) {
      lua_pushfstring(L, "admin:%s", op);
      lua_setfield(L, -2, "op");
      if (group) {
        lua_pushstring(L, group);
        lua_setfield(L, -2, "group");
      }
    }
    lua_pop(L, 2);
  }
}

// Enum names for Lua: librdkafka's names lower-cased ("DESCRIBE_CONFIGS" -> "describe_configs").
void push_lower(lua_State* L, const char* s) {
  std::string out = s ? s : "unknown";
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  lua_pushlstring(L, out.data(), out.size());
}

void push_node(lua_State* L, const rd_kafka_Node_t* n) {
  lua_createtable(L, 0, 4);
  set_num(L, "id", rd_kafka_Node_id(n));
  set_str(L, "host", rd_kafka_Node_host(n));
  set_num(L, "port", rd_kafka_Node_port(n));
  const char* rack = rd_kafka_Node_rack(n);
  if (rack && *rack) set_str(L, "rack", rack);
}

// Sets field "authorized_operations" (sorted names) when the broker sent them (only when asked).
void set_acl_ops(lua_State* L, const rd_kafka_AclOperation_t* ops, size_t n) {
  if (!ops) return;
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) {
    std::string s = rd_kafka_AclOperation_name(ops[i]);
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    names.push_back(s);
  }
  std::sort(names.begin(), names.end());
  lua_createtable(L, static_cast<int>(n), 0);
  for (size_t i = 0; i < names.size(); ++i) {
    lua_pushlstring(L, names[i].data(), names[i].size());
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  lua_setfield(L, -2, "authorized_operations");
}

void include_ops(rd_kafka_AdminOptions_t* o, bool on) {
  if (!on) return;
  if (rd_kafka_error_t* e = rd_kafka_AdminOptions_set_include_authorized_operations(o, 1)) rd_kafka_error_destroy(e);
}

// ---- metadata and cluster (blocking calls on the thread pool) ---------------------------

struct MetadataHolder {
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  double elapsed_ms = 0;
  ~MetadataHolder() {
    if (md) rd_kafka_metadata_destroy(md);
  }
};

void push_metadata(lua_State* L, const rd_kafka_metadata_t* md) {
  lua_createtable(L, 0, 4);
  lua_createtable(L, md->broker_cnt, 0);
  for (int i = 0; i < md->broker_cnt; ++i) {
    lua_createtable(L, 0, 3);
    set_num(L, "id", md->brokers[i].id);
    set_str(L, "host", md->brokers[i].host);
    set_num(L, "port", md->brokers[i].port);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "brokers");
  lua_createtable(L, md->topic_cnt, 0);
  for (int i = 0; i < md->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& t = md->topics[i];
    lua_createtable(L, 0, 3);
    set_str(L, "name", t.topic);
    set_error(L, t.err, nullptr, "metadata", t.topic);
    lua_createtable(L, t.partition_cnt, 0);
    for (int j = 0; j < t.partition_cnt; ++j) {
      const rd_kafka_metadata_partition_t& p = t.partitions[j];
      lua_createtable(L, 0, 5);
      set_num(L, "partition", p.id);
      set_num(L, "leader", p.leader);
      lua_createtable(L, p.replica_cnt, 0);
      for (int k = 0; k < p.replica_cnt; ++k) {
        lua_pushnumber(L, p.replicas[k]);
        lua_rawseti(L, -2, k + 1);
      }
      lua_setfield(L, -2, "replicas");
      lua_createtable(L, p.isr_cnt, 0);
      for (int k = 0; k < p.isr_cnt; ++k) {
        lua_pushnumber(L, p.isrs[k]);
        lua_rawseti(L, -2, k + 1);
      }
      lua_setfield(L, -2, "isr");
      set_error(L, p.err, nullptr, "metadata", t.topic, nullptr, p.id);
      lua_rawseti(L, -2, j + 1);
    }
    lua_setfield(L, -2, "partitions");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "topics");
  set_num(L, "orig_broker_id", md->orig_broker_id);
  set_str(L, "orig_broker_name", md->orig_broker_name);
}

// a:_metadata(all_topics, timeout) -> metadata table (+rtt_ms)
int l_metadata(lua_State* L) {
  Admin* a = check_admin(L, 1);
  bool all_topics = lua_toboolean(L, 2);
  double timeout = timeout_arg(L, 3, a);
  rd_kafka_t* rk = a->rk();
  auto h = std::make_shared<MetadataHolder>();
  return a->run_blocking(
      L, "admin:metadata", timeout + 1000,
      [=] {
        uint64_t t0 = uv_hrtime();
        h->err = rd_kafka_metadata(rk, all_topics ? 1 : 0, nullptr, &h->md, timeout_int(timeout));
        h->elapsed_ms = static_cast<double>(uv_hrtime() - t0) / 1e6;
      },
      [=](lua_State* co) {
        if (h->err) {
          ErrorSpec e = kafka_error(h->err, fmt::format("metadata request failed: {}", rd_kafka_err2str(h->err)));
          e.op = "admin:metadata";
          return nil_error(co, e);
        }
        push_metadata(co, h->md);
        set_num(co, "rtt_ms", h->elapsed_ms);
        return 1;
      });
}

// ---- topics ------------------------------------------------------------------------

// a:_create_topics(specs, validate_only, timeout) -> list of {name, error}
// spec: {name=, partitions=, replication_factor=, assignment={{broker,...}, ...}, configs={k=v}}
int l_create_topics(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  bool validate_only = lua_toboolean(L, 3);
  double timeout = timeout_arg(L, 4, a);
  int n = static_cast<int>(lua_objlen(L, 2));
  std::vector<rd_kafka_NewTopic_t*> topics;
  auto cleanup = [&] { rd_kafka_NewTopic_destroy_array(topics.data(), topics.size()); };
  char errstr[512];
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, 2, i);
    int spec = lua_gettop(L);
    lua_getfield(L, spec, "name");
    std::string name = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
    lua_getfield(L, spec, "partitions");
    int partitions = lua_isnumber(L, -1) ? static_cast<int>(lua_tointeger(L, -1)) : -1;
    lua_getfield(L, spec, "replication_factor");
    int rf = lua_isnumber(L, -1) ? static_cast<int>(lua_tointeger(L, -1)) : -1;
    lua_getfield(L, spec, "assignment");
    bool has_assignment = lua_istable(L, -1);
    lua_pop(L, 4);
    if (has_assignment) rf = -1;
    rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(name.c_str(), partitions, rf, errstr, sizeof errstr);
    if (!nt) {
      cleanup();
      return luaL_error(L, "admin:create_topics: topic \"%s\": %s", name.c_str(), errstr);
    }
    topics.push_back(nt);
    if (has_assignment) {
      lua_getfield(L, spec, "assignment");
      int np = static_cast<int>(lua_objlen(L, -1));
      for (int p = 1; p <= np; ++p) {
        lua_rawgeti(L, -1, p);
        std::vector<int32_t> brokers;
        int nb = static_cast<int>(lua_objlen(L, -1));
        for (int b = 1; b <= nb; ++b) {
          lua_rawgeti(L, -1, b);
          brokers.push_back(static_cast<int32_t>(lua_tointeger(L, -1)));
          lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (rd_kafka_NewTopic_set_replica_assignment(nt, p - 1, brokers.data(), brokers.size(), errstr,
                                                     sizeof errstr)) {
          cleanup();
          return luaL_error(L, "admin:create_topics: topic \"%s\": %s", name.c_str(), errstr);
        }
      }
      lua_pop(L, 1);
    }
    lua_getfield(L, spec, "configs");
    if (lua_istable(L, -1)) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        const char* k = lua_tostring(L, -1);
        const char* v = lua_tostring(L, -2);
        if (k && v) rd_kafka_NewTopic_set_config(nt, k, v);
        lua_pop(L, 2);
      }
    }
    lua_pop(L, 2);
  }
  Request* r = a->begin(L, "admin:create_topics", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    auto** res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    push_topic_results(co, res, cnt, "create_topics");
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_CREATETOPICS, r, timeout, true, validate_only);
  rd_kafka_CreateTopics(a->rk(), topics.data(), topics.size(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  cleanup();
  return lua_yield(L, 0);
}

// a:_delete_topics(names, timeout) -> list of {name, error}
int l_delete_topics(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  auto names = string_list(L, 2, "admin:delete_topics");
  double timeout = timeout_arg(L, 3, a);
  std::vector<rd_kafka_DeleteTopic_t*> del;
  for (auto& n : names) del.push_back(rd_kafka_DeleteTopic_new(n.c_str()));
  Request* r = a->begin(L, "admin:delete_topics", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    auto** res = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &cnt);
    push_topic_results(co, res, cnt, "delete_topics");
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_DELETETOPICS, r, timeout, true, false);
  rd_kafka_DeleteTopics(a->rk(), del.data(), del.size(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_DeleteTopic_destroy_array(del.data(), del.size());
  return lua_yield(L, 0);
}

// a:_create_partitions({{topic=, partitions=total}, ...}, validate_only, timeout) -> list of {name, error}
int l_create_partitions(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  bool validate_only = lua_toboolean(L, 3);
  double timeout = timeout_arg(L, 4, a);
  int n = static_cast<int>(lua_objlen(L, 2));
  std::vector<rd_kafka_NewPartitions_t*> np;
  char errstr[512];
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, 2, i);
    lua_getfield(L, -1, "topic");
    lua_getfield(L, -2, "partitions");
    std::string topic = lua_isstring(L, -2) ? lua_tostring(L, -2) : "";
    size_t count = static_cast<size_t>(lua_tointeger(L, -1));
    lua_pop(L, 3);
    rd_kafka_NewPartitions_t* p = rd_kafka_NewPartitions_new(topic.c_str(), count, errstr, sizeof errstr);
    if (!p) {
      rd_kafka_NewPartitions_destroy_array(np.data(), np.size());
      return luaL_error(L, "admin:create_partitions: topic \"%s\": %s", topic.c_str(), errstr);
    }
    np.push_back(p);
  }
  Request* r = a->begin(L, "admin:create_partitions", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    auto** res = rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &cnt);
    push_topic_results(co, res, cnt, "create_partitions");
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_CREATEPARTITIONS, r, timeout, true, validate_only);
  rd_kafka_CreatePartitions(a->rk(), np.data(), np.size(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_NewPartitions_destroy_array(np.data(), np.size());
  return lua_yield(L, 0);
}

// a:_delete_records(partition list with offsets, timeout) -> partition list (offset: new low watermark)
int l_delete_records(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  auto* list = check_partition_list(L, 2, "admin:delete_records", false);
  double timeout = timeout_arg(L, 3, a);
  rd_kafka_DeleteRecords_t* dr = rd_kafka_DeleteRecords_new(list);
  rd_kafka_topic_partition_list_destroy(list);
  Request* r = a->begin(L, "admin:delete_records", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    const auto* res = rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
    push_partitions(co, res, "delete_records", nullptr);
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_DELETERECORDS, r, timeout, true, false);
  rd_kafka_DeleteRecords(a->rk(), &dr, 1, o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_DeleteRecords_destroy(dr);
  return lua_yield(L, 0);
}

// ---- configs -------------------------------------------------------------------------

rd_kafka_ResourceType_t resource_type(lua_State* L, int idx) {
  std::string t = luaL_checkstring(L, idx);
  if (t == "topic") return RD_KAFKA_RESOURCE_TOPIC;
  if (t == "broker") return RD_KAFKA_RESOURCE_BROKER;
  if (t == "group") return RD_KAFKA_RESOURCE_GROUP;
  luaL_error(L, "unknown resource type \"%s\" (use \"topic\" or \"broker\")", t.c_str());
  return RD_KAFKA_RESOURCE_UNKNOWN;
}

const char* resource_type_name(rd_kafka_ResourceType_t t) {
  switch (t) {
    case RD_KAFKA_RESOURCE_TOPIC: return "topic";
    case RD_KAFKA_RESOURCE_BROKER: return "broker";
    case RD_KAFKA_RESOURCE_GROUP: return "group";
    default: return "unknown";
  }
}

const char* source_name(rd_kafka_ConfigSource_t s) {
  switch (s) {
    case RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG: return "dynamic_topic";
    case RD_KAFKA_CONFIG_SOURCE_DYNAMIC_BROKER_CONFIG: return "dynamic_broker";
    case RD_KAFKA_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG: return "dynamic_default_broker";
    case RD_KAFKA_CONFIG_SOURCE_STATIC_BROKER_CONFIG: return "static_broker";
    case RD_KAFKA_CONFIG_SOURCE_DEFAULT_CONFIG: return "default";
    default: return "unknown";
  }
}

// Reads a list of {type=, name=, configs={k=v}} into resources.
std::vector<rd_kafka_ConfigResource_t*> config_resources(lua_State* L, int idx, bool with_configs) {
  luaL_checktype(L, idx, LUA_TTABLE);
  std::vector<rd_kafka_ConfigResource_t*> out;
  int n = static_cast<int>(lua_objlen(L, idx));
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, idx, i);
    int item = lua_gettop(L);
    lua_getfield(L, item, "type");
    rd_kafka_ResourceType_t t = resource_type(L, -1);
    lua_getfield(L, item, "name");
    auto* res = rd_kafka_ConfigResource_new(t, luaL_checkstring(L, -1));
    lua_pop(L, 2);
    out.push_back(res);
    if (with_configs) {
      lua_getfield(L, item, "configs");
      if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
          lua_pushvalue(L, -2);
          const char* k = lua_tostring(L, -1);
          const char* v = lua_tostring(L, -2);
          if (k && v) rd_kafka_ConfigResource_set_config(res, k, v);
          lua_pop(L, 2);
        }
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return out;
}

void push_config_resources(lua_State* L, const rd_kafka_ConfigResource_t** res, size_t n, const char* op,
                           bool with_entries) {
  lua_createtable(L, static_cast<int>(n), 0);
  for (size_t i = 0; i < n; ++i) {
    lua_createtable(L, 0, 4);
    const char* name = rd_kafka_ConfigResource_name(res[i]);
    set_str(L, "type", resource_type_name(rd_kafka_ConfigResource_type(res[i])));
    set_str(L, "name", name);
    bool is_topic = rd_kafka_ConfigResource_type(res[i]) == RD_KAFKA_RESOURCE_TOPIC;
    set_error(L, rd_kafka_ConfigResource_error(res[i]), rd_kafka_ConfigResource_error_string(res[i]), op,
              is_topic ? name : nullptr);
    if (with_entries) {
      size_t cnt;
      const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(res[i], &cnt);
      lua_createtable(L, 0, static_cast<int>(cnt));
      for (size_t j = 0; j < cnt; ++j) {
        const rd_kafka_ConfigEntry_t* e = entries[j];
        lua_createtable(L, 0, 6);
        set_str(L, "name", rd_kafka_ConfigEntry_name(e));
        set_str(L, "value", rd_kafka_ConfigEntry_value(e));
        set_str(L, "source", source_name(rd_kafka_ConfigEntry_source(e)));
        set_bool(L, "default", rd_kafka_ConfigEntry_is_default(e));
        set_bool(L, "sensitive", rd_kafka_ConfigEntry_is_sensitive(e));
        set_bool(L, "read_only", rd_kafka_ConfigEntry_is_read_only(e));
        lua_setfield(L, -2, rd_kafka_ConfigEntry_name(e));
      }
      lua_setfield(L, -2, "configs");
    }
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
}

// a:_describe_configs({{type=, name=}, ...}, timeout) -> list of {type, name, error, configs={name=entry}}
int l_describe_configs(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  double timeout = timeout_arg(L, 3, a);
  auto res = config_resources(L, 2, false);
  Request* r = a->begin(L, "admin:describe_configs", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    auto** out = rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &cnt);
    push_config_resources(co, out, cnt, "describe_configs", true);
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, r, timeout, false, false);
  rd_kafka_DescribeConfigs(a->rk(), res.data(), res.size(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_ConfigResource_destroy_array(res.data(), res.size());
  return lua_yield(L, 0);
}

// ---- groups --------------------------------------------------------------------------

// a:_list_groups(states (codes) | nil, types (codes) | nil, timeout) -> list of {group, state, type, simple},
// list of errors
int l_list_groups(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  auto codes = [&](int idx) {
    std::vector<int> out;
    if (lua_istable(L, idx))
      for (int i = 1; i <= static_cast<int>(lua_objlen(L, idx)); ++i) {
        lua_rawgeti(L, idx, i);
        out.push_back(static_cast<int>(lua_tointeger(L, -1)));
        lua_pop(L, 1);
      }
    return out;
  };
  std::vector<int> states = codes(2), types = codes(3);
  double timeout = timeout_arg(L, 4, a);
  Request* r = a->begin(L, "admin:list_groups", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    const auto* res = rd_kafka_event_ListConsumerGroups_result(ev);
    size_t cnt, ecnt;
    auto** valid = rd_kafka_ListConsumerGroups_result_valid(res, &cnt);
    lua_createtable(co, static_cast<int>(cnt), 0);
    for (size_t i = 0; i < cnt; ++i) {
      lua_createtable(co, 0, 3);
      set_str(co, "group", rd_kafka_ConsumerGroupListing_group_id(valid[i]));
      set_str(co, "state", rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupListing_state(valid[i])));
      push_lower(co, rd_kafka_consumer_group_type_name(rd_kafka_ConsumerGroupListing_type(valid[i])));
      lua_setfield(co, -2, "type");
      set_bool(co, "simple", rd_kafka_ConsumerGroupListing_is_simple_consumer_group(valid[i]));
      lua_rawseti(co, -2, static_cast<int>(i + 1));
    }
    auto** errs = rd_kafka_ListConsumerGroups_result_errors(res, &ecnt);
    lua_createtable(co, static_cast<int>(ecnt), 0);
    for (size_t i = 0; i < ecnt; ++i) {
      ErrorSpec e = kafka_error(errs[i]);
      e.op = "admin:list_groups";
      push_error(co, e);
      lua_rawseti(co, -2, static_cast<int>(i + 1));
    }
    return 2;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS, r, timeout, false, false);
  if (!states.empty()) {
    std::vector<rd_kafka_consumer_group_state_t> v;
    for (int c : states) v.push_back(static_cast<rd_kafka_consumer_group_state_t>(c));
    if (rd_kafka_error_t* e = rd_kafka_AdminOptions_set_match_consumer_group_states(o, v.data(), v.size()))
      rd_kafka_error_destroy(e);
  }
  if (!types.empty()) {
    std::vector<rd_kafka_consumer_group_type_t> v;
    for (int c : types) v.push_back(static_cast<rd_kafka_consumer_group_type_t>(c));
    if (rd_kafka_error_t* e = rd_kafka_AdminOptions_set_match_consumer_group_types(o, v.data(), v.size()))
      rd_kafka_error_destroy(e);
  }
  rd_kafka_ListConsumerGroups(a->rk(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  return lua_yield(L, 0);
}

// a:_describe_groups(ids, include_ops, timeout) -> list of {group, error, state, type, simple, assignor,
// coordinator, members, authorized_operations}
int l_describe_groups(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  auto ids = string_list(L, 2, "admin:describe_groups");
  bool ops = lua_toboolean(L, 3);
  double timeout = timeout_arg(L, 4, a);
  std::vector<const char*> ptrs;
  for (auto& s : ids) ptrs.push_back(s.c_str());
  Request* r = a->begin(L, "admin:describe_groups", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    auto** groups = rd_kafka_DescribeConsumerGroups_result_groups(rd_kafka_event_DescribeConsumerGroups_result(ev), &cnt);
    lua_createtable(co, static_cast<int>(cnt), 0);
    for (size_t i = 0; i < cnt; ++i) {
      const auto* g = groups[i];
      const char* id = rd_kafka_ConsumerGroupDescription_group_id(g);
      lua_createtable(co, 0, 7);
      set_str(co, "group", id);
      set_error(co, rd_kafka_ConsumerGroupDescription_error(g), "describe_groups", id);
      set_str(co, "state", rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupDescription_state(g)));
      push_lower(co, rd_kafka_consumer_group_type_name(rd_kafka_ConsumerGroupDescription_type(g)));
      lua_setfield(co, -2, "type");
      set_bool(co, "simple", rd_kafka_ConsumerGroupDescription_is_simple_consumer_group(g));
      size_t nops;
      const rd_kafka_AclOperation_t* aops = rd_kafka_ConsumerGroupDescription_authorized_operations(g, &nops);
      set_acl_ops(co, aops, nops);
      const char* assignor = rd_kafka_ConsumerGroupDescription_partition_assignor(g);
      if (assignor && *assignor) set_str(co, "assignor", assignor);
      if (const rd_kafka_Node_t* node = rd_kafka_ConsumerGroupDescription_coordinator(g)) {
        lua_createtable(co, 0, 3);
        set_num(co, "id", rd_kafka_Node_id(node));
        set_str(co, "host", rd_kafka_Node_host(node));
        set_num(co, "port", rd_kafka_Node_port(node));
        lua_setfield(co, -2, "coordinator");
      }
      size_t mc = rd_kafka_ConsumerGroupDescription_member_count(g);
      lua_createtable(co, static_cast<int>(mc), 0);
      for (size_t m = 0; m < mc; ++m) {
        const auto* md = rd_kafka_ConsumerGroupDescription_member(g, m);
        lua_createtable(co, 0, 5);
        set_str(co, "member_id", rd_kafka_MemberDescription_consumer_id(md));
        set_str(co, "client_id", rd_kafka_MemberDescription_client_id(md));
        set_str(co, "host", rd_kafka_MemberDescription_host(md));
        const char* inst = rd_kafka_MemberDescription_group_instance_id(md);
        if (inst && *inst) set_str(co, "group_instance_id", inst);
        const auto* asg = rd_kafka_MemberDescription_assignment(md);
        const auto* parts = asg ? rd_kafka_MemberAssignment_partitions(asg) : nullptr;
        if (parts) push_partition_list(co, parts); else lua_newtable(co);
        lua_setfield(co, -2, "assignment");
        // The consumer protocol (KIP-848) also says where the member is heading.
        const auto* target = rd_kafka_MemberDescription_target_assignment(md);
        if (const auto* tparts = target ? rd_kafka_MemberAssignment_partitions(target) : nullptr) {
          push_partition_list(co, tparts);
          lua_setfield(co, -2, "target_assignment");
        }
        lua_rawseti(co, -2, static_cast<int>(m + 1));
      }
      lua_setfield(co, -2, "members");
      lua_rawseti(co, -2, static_cast<int>(i + 1));
    }
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS, r, timeout, false, false);
  include_ops(o, ops);
  rd_kafka_DescribeConsumerGroups(a->rk(), ptrs.data(), ptrs.size(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  return lua_yield(L, 0);
}

void push_group_results(lua_State* L, const rd_kafka_group_result_t** res, size_t n, const char* op) {
  lua_createtable(L, static_cast<int>(n), 0);
  for (size_t i = 0; i < n; ++i) {
    lua_createtable(L, 0, 3);
    const char* g = rd_kafka_group_result_name(res[i]);
    set_str(L, "group", g);
    set_error(L, rd_kafka_group_result_error(res[i]), op, g);
    if (const auto* parts = rd_kafka_group_result_partitions(res[i])) {
      push_partitions(L, parts, op, g);
      lua_setfield(L, -2, "partitions");
    }
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
}

// a:_delete_groups(ids, timeout) -> list of {group, error}
int l_delete_groups(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  auto ids = string_list(L, 2, "admin:delete_groups");
  double timeout = timeout_arg(L, 3, a);
  std::vector<rd_kafka_DeleteGroup_t*> del;
  for (auto& s : ids) del.push_back(rd_kafka_DeleteGroup_new(s.c_str()));
  Request* r = a->begin(L, "admin:delete_groups", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    auto** res = rd_kafka_DeleteGroups_result_groups(rd_kafka_event_DeleteGroups_result(ev), &cnt);
    push_group_results(co, res, cnt, "delete_groups");
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_DELETEGROUPS, r, timeout, false, false);
  rd_kafka_DeleteGroups(a->rk(), del.data(), del.size(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_DeleteGroup_destroy_array(del.data(), del.size());
  return lua_yield(L, 0);
}

// Group offset calls: one group per request; the result is {group, error, partitions}.
enum class GroupOffsetsOp { List, Alter, Delete };

// a:_group_offsets(kind, group, partitions|nil, timeout) -> {group, error, partitions}
int l_group_offsets(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  std::string kind = luaL_checkstring(L, 2);
  std::string group = luaL_checkstring(L, 3);
  double timeout = timeout_arg(L, 5, a);
  GroupOffsetsOp op = kind == "list" ? GroupOffsetsOp::List : kind == "alter" ? GroupOffsetsOp::Alter
                                                                               : GroupOffsetsOp::Delete;
  rd_kafka_topic_partition_list_t* parts = nullptr;
  if (!lua_isnoneornil(L, 4)) parts = check_partition_list(L, 4, "admin:group_offsets", false);
  if (op == GroupOffsetsOp::List && parts)
    for (int i = 0; i < parts->cnt; ++i) parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
  const char* opname = op == GroupOffsetsOp::List    ? "admin:list_group_offsets"
                       : op == GroupOffsetsOp::Alter ? "admin:alter_group_offsets"
                                                     : "admin:delete_group_offsets";
  Request* r = a->begin(L, opname, timeout, [op](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt = 0;
    const rd_kafka_group_result_t** res = nullptr;
    const char* name = "";
    if (op == GroupOffsetsOp::List) {
      res = rd_kafka_ListConsumerGroupOffsets_result_groups(rd_kafka_event_ListConsumerGroupOffsets_result(ev), &cnt);
      name = "list_group_offsets";
    } else if (op == GroupOffsetsOp::Alter) {
      res = rd_kafka_AlterConsumerGroupOffsets_result_groups(rd_kafka_event_AlterConsumerGroupOffsets_result(ev), &cnt);
      name = "alter_group_offsets";
    } else {
      res = rd_kafka_DeleteConsumerGroupOffsets_result_groups(rd_kafka_event_DeleteConsumerGroupOffsets_result(ev), &cnt);
      name = "delete_group_offsets";
    }
    push_group_results(co, res, cnt, name);
    lua_rawgeti(co, -1, 1);
    lua_remove(co, -2);
    return 1;
  });
  switch (op) {
    case GroupOffsetsOp::List: {
      auto* req = rd_kafka_ListConsumerGroupOffsets_new(group.c_str(), parts);
      rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, r, timeout, false, false);
      rd_kafka_ListConsumerGroupOffsets(a->rk(), &req, 1, o, a->results_queue());
      rd_kafka_AdminOptions_destroy(o);
      rd_kafka_ListConsumerGroupOffsets_destroy(req);
      break;
    }
    case GroupOffsetsOp::Alter: {
      auto* req = rd_kafka_AlterConsumerGroupOffsets_new(group.c_str(), parts);
      rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS, r, timeout, false, false);
      rd_kafka_AlterConsumerGroupOffsets(a->rk(), &req, 1, o, a->results_queue());
      rd_kafka_AdminOptions_destroy(o);
      rd_kafka_AlterConsumerGroupOffsets_destroy(req);
      break;
    }
    case GroupOffsetsOp::Delete: {
      auto* req = rd_kafka_DeleteConsumerGroupOffsets_new(group.c_str(), parts);
      rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_DELETECONSUMERGROUPOFFSETS, r, timeout, false, false);
      rd_kafka_DeleteConsumerGroupOffsets(a->rk(), &req, 1, o, a->results_queue());
      rd_kafka_AdminOptions_destroy(o);
      rd_kafka_DeleteConsumerGroupOffsets_destroy(req);
      break;
    }
  }
  if (parts) rd_kafka_topic_partition_list_destroy(parts);
  return lua_yield(L, 0);
}

// ---- native calls of librdkafka >= 2.3 --------------------------------------------------

// a:_describe_cluster(include_ops, timeout) -> {cluster_id, controller, brokers, authorized_operations}
int l_describe_cluster(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  bool ops = lua_toboolean(L, 2);
  double timeout = timeout_arg(L, 3, a);
  Request* r = a->begin(L, "admin:describe_cluster", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    const auto* res = rd_kafka_event_DescribeCluster_result(ev);
    lua_createtable(co, 0, 4);
    set_str(co, "cluster_id", rd_kafka_DescribeCluster_result_cluster_id(res));
    if (const rd_kafka_Node_t* c = rd_kafka_DescribeCluster_result_controller(res)) {
      push_node(co, c);
      lua_setfield(co, -2, "controller");
    }
    size_t n;
    const rd_kafka_Node_t** nodes = rd_kafka_DescribeCluster_result_nodes(res, &n);
    std::vector<const rd_kafka_Node_t*> sorted(nodes, nodes + n);
    std::sort(sorted.begin(), sorted.end(),
              [](auto* x, auto* y) { return rd_kafka_Node_id(x) < rd_kafka_Node_id(y); });
    lua_createtable(co, static_cast<int>(n), 0);
    for (size_t i = 0; i < n; ++i) {
      push_node(co, sorted[i]);
      lua_rawseti(co, -2, static_cast<int>(i + 1));
    }
    lua_setfield(co, -2, "brokers");
    size_t nops;
    const rd_kafka_AclOperation_t* aops = rd_kafka_DescribeCluster_result_authorized_operations(res, &nops);
    set_acl_ops(co, aops, nops);
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_DESCRIBECLUSTER, r, timeout, false, false);
  include_ops(o, ops);
  rd_kafka_DescribeCluster(a->rk(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  return lua_yield(L, 0);
}

void push_node_ids(lua_State* L, const rd_kafka_Node_t** nodes, size_t n) {
  lua_createtable(L, static_cast<int>(n), 0);
  for (size_t i = 0; i < n; ++i) {
    lua_pushnumber(L, rd_kafka_Node_id(nodes[i]));
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
}

// a:_describe_topics(names, include_ops, timeout) -> list of {name, error, topic_id, internal, partitions =
// {{partition, leader, leader_rack, replicas, isr, replica_racks}}, authorized_operations}
int l_describe_topics(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  auto names = string_list(L, 2, "admin:describe_topics");
  bool ops = lua_toboolean(L, 3);
  double timeout = timeout_arg(L, 4, a);
  std::vector<const char*> ptrs;
  for (auto& s : names) ptrs.push_back(s.c_str());
  Request* r = a->begin(L, "admin:describe_topics", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t n;
    const auto** topics = rd_kafka_DescribeTopics_result_topics(rd_kafka_event_DescribeTopics_result(ev), &n);
    lua_createtable(co, static_cast<int>(n), 0);
    for (size_t i = 0; i < n; ++i) {
      const auto* t = topics[i];
      const char* name = rd_kafka_TopicDescription_name(t);
      lua_createtable(co, 0, 6);
      set_str(co, "name", name);
      if (const rd_kafka_error_t* e = rd_kafka_TopicDescription_error(t)) {
        if (rd_kafka_error_code(e)) {
          ErrorSpec es = kafka_error(e);
          es.op = "admin:describe_topics";
          es.topic = name ? name : "";
          push_error(co, es);
          lua_setfield(co, -2, "error");
          lua_rawseti(co, -2, static_cast<int>(i + 1));
          continue;
        }
      }
      if (const rd_kafka_Uuid_t* id = rd_kafka_TopicDescription_topic_id(t)) set_str(co, "topic_id", rd_kafka_Uuid_base64str(id));
      set_bool(co, "internal", rd_kafka_TopicDescription_is_internal(t));
      size_t np;
      const auto** parts = rd_kafka_TopicDescription_partitions(t, &np);
      lua_createtable(co, static_cast<int>(np), 0);
      for (size_t j = 0; j < np; ++j) {
        const auto* p = parts[j];
        lua_createtable(co, 0, 6);
        set_num(co, "partition", rd_kafka_TopicPartitionInfo_partition(p));
        const rd_kafka_Node_t* leader = rd_kafka_TopicPartitionInfo_leader(p);
        set_num(co, "leader", leader ? rd_kafka_Node_id(leader) : -1);
        size_t nr, ni;
        const rd_kafka_Node_t** reps = rd_kafka_TopicPartitionInfo_replicas(p, &nr);
        const rd_kafka_Node_t** isr = rd_kafka_TopicPartitionInfo_isr(p, &ni);
        push_node_ids(co, reps, nr);
        lua_setfield(co, -2, "replicas");
        push_node_ids(co, isr, ni);
        lua_setfield(co, -2, "isr");
        // Racks of the replicas (by broker id), only when the brokers have racks.
        bool any_rack = false;
        for (size_t k = 0; k < nr; ++k) {
          const char* rack = rd_kafka_Node_rack(reps[k]);
          if (!rack || !*rack) continue;
          if (!any_rack) lua_createtable(co, 0, static_cast<int>(nr));
          any_rack = true;
          lua_pushstring(co, rack);
          lua_rawseti(co, -2, rd_kafka_Node_id(reps[k]));
        }
        if (any_rack) lua_setfield(co, -2, "racks");
        lua_rawseti(co, -2, static_cast<int>(j + 1));
      }
      lua_setfield(co, -2, "partitions");
      size_t nops;
      const rd_kafka_AclOperation_t* aops = rd_kafka_TopicDescription_authorized_operations(t, &nops);
      set_acl_ops(co, aops, nops);
      lua_rawseti(co, -2, static_cast<int>(i + 1));
    }
    return 1;
  });
  rd_kafka_TopicCollection_t* tc = rd_kafka_TopicCollection_of_topic_names(ptrs.data(), ptrs.size());
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_DESCRIBETOPICS, r, timeout, false, false);
  include_ops(o, ops);
  rd_kafka_DescribeTopics(a->rk(), tc, o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_TopicCollection_destroy(tc);
  return lua_yield(L, 0);
}

// a:_list_offsets({{topic=, partition=, spec=number}, ...}, read_committed, timeout) -> list of {topic,
// partition, offset, timestamp, leader_epoch, error}. spec: -2 earliest, -1 latest, -3 max timestamp,
// >= 0 a timestamp (epoch ms). An offset or timestamp of -1 (none) is left out.
int l_list_offsets(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  bool committed = lua_toboolean(L, 3);
  double timeout = timeout_arg(L, 4, a);
  int n = static_cast<int>(lua_objlen(L, 2));
  auto* list = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, 2, i);
    lua_getfield(L, -1, "topic");
    lua_getfield(L, -2, "partition");
    lua_getfield(L, -3, "spec");
    if (!lua_isstring(L, -3) || !lua_isnumber(L, -2) || !lua_isnumber(L, -1)) {
      rd_kafka_topic_partition_list_destroy(list);
      return luaL_error(L, "admin:_list_offsets: item %d needs topic, partition and a numeric spec", i);
    }
    auto* tp = rd_kafka_topic_partition_list_add(list, lua_tostring(L, -3), static_cast<int32_t>(lua_tointeger(L, -2)));
    tp->offset = static_cast<int64_t>(lua_tonumber(L, -1));
    lua_pop(L, 4);
  }
  Request* r = a->begin(L, "admin:list_offsets", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    const auto** infos = rd_kafka_ListOffsets_result_infos(rd_kafka_event_ListOffsets_result(ev), &cnt);
    lua_createtable(co, static_cast<int>(cnt), 0);
    for (size_t i = 0; i < cnt; ++i) {
      const rd_kafka_topic_partition_t* tp = rd_kafka_ListOffsetsResultInfo_topic_partition(infos[i]);
      lua_createtable(co, 0, 6);
      set_str(co, "topic", tp->topic);
      set_num(co, "partition", tp->partition);
      if (tp->err) {
        set_error(co, tp->err, nullptr, "list_offsets", tp->topic, nullptr, tp->partition);
      } else {
        if (tp->offset >= 0) set_num(co, "offset", static_cast<double>(tp->offset));
        int64_t ts = rd_kafka_ListOffsetsResultInfo_timestamp(infos[i]);
        if (ts >= 0) set_num(co, "timestamp", static_cast<double>(ts));
        int32_t epoch = rd_kafka_topic_partition_get_leader_epoch(tp);
        if (epoch >= 0) set_num(co, "leader_epoch", epoch);
      }
      lua_rawseti(co, -2, static_cast<int>(i + 1));
    }
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_LISTOFFSETS, r, timeout, false, false);
  if (rd_kafka_error_t* e = rd_kafka_AdminOptions_set_isolation_level(
          o, committed ? RD_KAFKA_ISOLATION_LEVEL_READ_COMMITTED : RD_KAFKA_ISOLATION_LEVEL_READ_UNCOMMITTED))
    rd_kafka_error_destroy(e);
  rd_kafka_ListOffsets(a->rk(), list, o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_topic_partition_list_destroy(list);
  return lua_yield(L, 0);
}

// a:_elect_leaders(unclean, partitions | nil (all), timeout) -> list of {topic, partition, error}
int l_elect_leaders(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  bool unclean = lua_toboolean(L, 2);
  rd_kafka_topic_partition_list_t* parts = nullptr;
  if (!lua_isnoneornil(L, 3)) parts = check_partition_list(L, 3, "admin:elect_leaders", false);
  double timeout = timeout_arg(L, 4, a);
  Request* r = a->begin(L, "admin:elect_leaders", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    const auto** res = rd_kafka_ElectLeaders_result_partitions(rd_kafka_event_ElectLeaders_result(ev), &cnt);
    lua_createtable(co, static_cast<int>(cnt), 0);
    for (size_t i = 0; i < cnt; ++i) {
      const rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_result_partition(res[i]);
      lua_createtable(co, 0, 3);
      set_str(co, "topic", tp->topic);
      set_num(co, "partition", tp->partition);
      if (const rd_kafka_error_t* e = rd_kafka_topic_partition_result_error(res[i]); e && rd_kafka_error_code(e)) {
        ErrorSpec es = kafka_error(e);
        es.op = "admin:elect_leaders";
        es.topic = tp->topic;
        es.partition = tp->partition;
        push_error(co, es);
        lua_setfield(co, -2, "error");
      }
      lua_rawseti(co, -2, static_cast<int>(i + 1));
    }
    return 1;
  });
  rd_kafka_ElectLeaders_t* el =
      rd_kafka_ElectLeaders_new(unclean ? RD_KAFKA_ELECTION_TYPE_UNCLEAN : RD_KAFKA_ELECTION_TYPE_PREFERRED, parts);
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_ELECTLEADERS, r, timeout, true, false);
  rd_kafka_ElectLeaders(a->rk(), el, o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_ElectLeaders_destroy(el);
  if (parts) rd_kafka_topic_partition_list_destroy(parts);
  return lua_yield(L, 0);
}

const char* scram_name(rd_kafka_ScramMechanism_t m) {
  switch (m) {
    case RD_KAFKA_SCRAM_MECHANISM_SHA_256: return "SCRAM-SHA-256";
    case RD_KAFKA_SCRAM_MECHANISM_SHA_512: return "SCRAM-SHA-512";
    default: return "unknown";
  }
}

// a:_describe_scram(users | nil (all), timeout) -> list of {user, error, credentials = {{mechanism, iterations}}}
int l_describe_scram(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  std::vector<std::string> users;
  if (!lua_isnoneornil(L, 2)) users = string_list(L, 2, "admin:describe_user_scram_credentials");
  double timeout = timeout_arg(L, 3, a);
  std::vector<const char*> ptrs;
  for (auto& s : users) ptrs.push_back(s.c_str());
  Request* r = a->begin(L, "admin:describe_user_scram_credentials", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    const auto** ds = rd_kafka_DescribeUserScramCredentials_result_descriptions(
        rd_kafka_event_DescribeUserScramCredentials_result(ev), &cnt);
    lua_createtable(co, static_cast<int>(cnt), 0);
    for (size_t i = 0; i < cnt; ++i) {
      lua_createtable(co, 0, 3);
      set_str(co, "user", rd_kafka_UserScramCredentialsDescription_user(ds[i]));
      const rd_kafka_error_t* e = rd_kafka_UserScramCredentialsDescription_error(ds[i]);
      if (e && rd_kafka_error_code(e)) {
        set_error(co, e, "describe_user_scram_credentials");
      } else {
        size_t nc = rd_kafka_UserScramCredentialsDescription_scramcredentialinfo_count(ds[i]);
        lua_createtable(co, static_cast<int>(nc), 0);
        for (size_t k = 0; k < nc; ++k) {
          const auto* info = rd_kafka_UserScramCredentialsDescription_scramcredentialinfo(ds[i], k);
          lua_createtable(co, 0, 2);
          set_str(co, "mechanism", scram_name(rd_kafka_ScramCredentialInfo_mechanism(info)));
          set_num(co, "iterations", rd_kafka_ScramCredentialInfo_iterations(info));
          lua_rawseti(co, -2, static_cast<int>(k + 1));
        }
        lua_setfield(co, -2, "credentials");
      }
      lua_rawseti(co, -2, static_cast<int>(i + 1));
    }
    return 1;
  });
  rd_kafka_AdminOptions_t* o =
      a->options(RD_KAFKA_ADMIN_OP_DESCRIBEUSERSCRAMCREDENTIALS, r, timeout, false, false);
  rd_kafka_DescribeUserScramCredentials(a->rk(), ptrs.data(), ptrs.size(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  return lua_yield(L, 0);
}

// a:_alter_scram({{user=, mechanism=1|2, iterations=, password=, salt=} | {user=, mechanism=, delete=true}},
// timeout) -> list of {user, error} (one per user, as Kafka answers). The password goes to librdkafka,
// which sends only the salted hash; it is never kept, logged or put into an error here.
int l_alter_scram(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  double timeout = timeout_arg(L, 3, a);
  int n = static_cast<int>(lua_objlen(L, 2));
  std::vector<rd_kafka_UserScramCredentialAlteration_t*> alts;
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, 2, i);
    lua_getfield(L, -1, "user");
    lua_getfield(L, -2, "mechanism");
    lua_getfield(L, -3, "delete");
    std::string user = lua_isstring(L, -3) ? lua_tostring(L, -3) : "";
    auto mech = static_cast<rd_kafka_ScramMechanism_t>(lua_tointeger(L, -2));
    bool del = lua_toboolean(L, -1);
    lua_pop(L, 3);
    if (del) {
      alts.push_back(rd_kafka_UserScramCredentialDeletion_new(user.c_str(), mech));
    } else {
      lua_getfield(L, -1, "iterations");
      lua_getfield(L, -2, "password");
      lua_getfield(L, -3, "salt");
      size_t plen = 0, slen = 0;
      const char* pw = lua_tolstring(L, -2, &plen);
      const char* salt = lua_isstring(L, -1) ? lua_tolstring(L, -1, &slen) : nullptr;
      alts.push_back(rd_kafka_UserScramCredentialUpsertion_new(
          user.c_str(), mech, static_cast<int32_t>(lua_tointeger(L, -3)), reinterpret_cast<const unsigned char*>(pw),
          plen, reinterpret_cast<const unsigned char*>(salt), slen));
      lua_pop(L, 3);
    }
    lua_pop(L, 1);
  }
  Request* r = a->begin(L, "admin:alter_user_scram_credentials", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    const auto** rs =
        rd_kafka_AlterUserScramCredentials_result_responses(rd_kafka_event_AlterUserScramCredentials_result(ev), &cnt);
    lua_createtable(co, static_cast<int>(cnt), 0);
    for (size_t i = 0; i < cnt; ++i) {
      lua_createtable(co, 0, 2);
      set_str(co, "user", rd_kafka_AlterUserScramCredentials_result_response_user(rs[i]));
      const rd_kafka_error_t* e = rd_kafka_AlterUserScramCredentials_result_response_error(rs[i]);
      if (e && rd_kafka_error_code(e)) set_error(co, e, "alter_user_scram_credentials");
      lua_rawseti(co, -2, static_cast<int>(i + 1));
    }
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_ALTERUSERSCRAMCREDENTIALS, r, timeout, false, false);
  rd_kafka_AlterUserScramCredentials(a->rk(), alts.data(), alts.size(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_UserScramCredentialAlteration_destroy_array(alts.data(), alts.size());
  return lua_yield(L, 0);
}

// ACL bindings and filters cross as tables of enum codes (the Lua half names them):
// {restype=, name=, pattern=, principal=, host=, operation=, permission=}.
struct AclFields {
  int restype = 0, pattern = 0, operation = 0, permission = 0;
  std::string name, principal, host;
  bool has_name = false, has_principal = false, has_host = false;
};

AclFields read_acl(lua_State* L, int idx) {
  AclFields f;
  auto num = [&](const char* k) {
    lua_getfield(L, idx, k);
    int v = static_cast<int>(lua_tointeger(L, -1));
    lua_pop(L, 1);
    return v;
  };
  auto str = [&](const char* k, std::string& out, bool& has) {
    lua_getfield(L, idx, k);
    if (lua_isstring(L, -1)) {
      out = lua_tostring(L, -1);
      has = true;
    }
    lua_pop(L, 1);
  };
  f.restype = num("restype");
  f.pattern = num("pattern");
  f.operation = num("operation");
  f.permission = num("permission");
  str("name", f.name, f.has_name);
  str("principal", f.principal, f.has_principal);
  str("host", f.host, f.has_host);
  return f;
}

void push_acl(lua_State* L, const rd_kafka_AclBinding_t* b) {
  lua_createtable(L, 0, 7);
  push_lower(L, rd_kafka_ResourceType_name(rd_kafka_AclBinding_restype(b)));
  lua_setfield(L, -2, "resource_type");
  set_str(L, "name", rd_kafka_AclBinding_name(b));
  push_lower(L, rd_kafka_ResourcePatternType_name(rd_kafka_AclBinding_resource_pattern_type(b)));
  lua_setfield(L, -2, "pattern_type");
  set_str(L, "principal", rd_kafka_AclBinding_principal(b));
  set_str(L, "host", rd_kafka_AclBinding_host(b));
  push_lower(L, rd_kafka_AclOperation_name(rd_kafka_AclBinding_operation(b)));
  lua_setfield(L, -2, "operation");
  push_lower(L, rd_kafka_AclPermissionType_name(rd_kafka_AclBinding_permission_type(b)));
  lua_setfield(L, -2, "permission");
}

void push_acl_list(lua_State* L, const rd_kafka_AclBinding_t** list, size_t n) {
  lua_createtable(L, static_cast<int>(n), 0);
  for (size_t i = 0; i < n; ++i) {
    push_acl(L, list[i]);
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
}

// Builds a binding (filter=false) or a filter; on failure returns nullptr with errstr set.
rd_kafka_AclBinding_t* make_acl(const AclFields& f, bool filter, char* errstr, size_t len) {
  auto restype = static_cast<rd_kafka_ResourceType_t>(f.restype);
  auto pattern = static_cast<rd_kafka_ResourcePatternType_t>(f.pattern);
  auto op = static_cast<rd_kafka_AclOperation_t>(f.operation);
  auto perm = static_cast<rd_kafka_AclPermissionType_t>(f.permission);
  const char* name = f.has_name ? f.name.c_str() : nullptr;
  const char* principal = f.has_principal ? f.principal.c_str() : nullptr;
  const char* host = f.has_host ? f.host.c_str() : nullptr;
  if (filter) return rd_kafka_AclBindingFilter_new(restype, name, pattern, principal, host, op, perm, errstr, len);
  return rd_kafka_AclBinding_new(restype, name, pattern, principal, host, op, perm, errstr, len);
}

// a:_create_acls(bindings, timeout) -> list of {error} in input order
int l_create_acls(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  double timeout = timeout_arg(L, 3, a);
  int n = static_cast<int>(lua_objlen(L, 2));
  std::vector<rd_kafka_AclBinding_t*> acls;
  char errstr[512];
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, 2, i);
    rd_kafka_AclBinding_t* b = make_acl(read_acl(L, lua_gettop(L)), false, errstr, sizeof errstr);
    lua_pop(L, 1);
    if (!b) {
      rd_kafka_AclBinding_destroy_array(acls.data(), acls.size());
      return luaL_error(L, "admin:create_acls: binding %d: %s", i, errstr);
    }
    acls.push_back(b);
  }
  Request* r = a->begin(L, "admin:create_acls", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    const auto** res = rd_kafka_CreateAcls_result_acls(rd_kafka_event_CreateAcls_result(ev), &cnt);
    lua_createtable(co, static_cast<int>(cnt), 0);
    for (size_t i = 0; i < cnt; ++i) {
      lua_createtable(co, 0, 1);
      const rd_kafka_error_t* e = rd_kafka_acl_result_error(res[i]);
      if (e && rd_kafka_error_code(e)) set_error(co, e, "create_acls");
      lua_rawseti(co, -2, static_cast<int>(i + 1));
    }
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_CREATEACLS, r, timeout, false, false);
  rd_kafka_CreateAcls(a->rk(), acls.data(), acls.size(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_AclBinding_destroy_array(acls.data(), acls.size());
  return lua_yield(L, 0);
}

// a:_describe_acls(filter, timeout) -> list of bindings
int l_describe_acls(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  double timeout = timeout_arg(L, 3, a);
  char errstr[512];
  rd_kafka_AclBindingFilter_t* f = make_acl(read_acl(L, 2), true, errstr, sizeof errstr);
  if (!f) return luaL_error(L, "admin:describe_acls: %s", errstr);
  Request* r = a->begin(L, "admin:describe_acls", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    const auto** res = rd_kafka_DescribeAcls_result_acls(rd_kafka_event_DescribeAcls_result(ev), &cnt);
    push_acl_list(co, res, cnt);
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_DESCRIBEACLS, r, timeout, false, false);
  rd_kafka_DescribeAcls(a->rk(), f, o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_AclBinding_destroy(f);
  return lua_yield(L, 0);
}

// a:_delete_acls(filters, timeout) -> list of {error, deleted = bindings} in input order
int l_delete_acls(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  double timeout = timeout_arg(L, 3, a);
  int n = static_cast<int>(lua_objlen(L, 2));
  std::vector<rd_kafka_AclBindingFilter_t*> filters;
  char errstr[512];
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, 2, i);
    rd_kafka_AclBindingFilter_t* f = make_acl(read_acl(L, lua_gettop(L)), true, errstr, sizeof errstr);
    lua_pop(L, 1);
    if (!f) {
      rd_kafka_AclBinding_destroy_array(filters.data(), filters.size());
      return luaL_error(L, "admin:delete_acls: filter %d: %s", i, errstr);
    }
    filters.push_back(f);
  }
  Request* r = a->begin(L, "admin:delete_acls", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    const auto** res = rd_kafka_DeleteAcls_result_responses(rd_kafka_event_DeleteAcls_result(ev), &cnt);
    lua_createtable(co, static_cast<int>(cnt), 0);
    for (size_t i = 0; i < cnt; ++i) {
      lua_createtable(co, 0, 2);
      const rd_kafka_error_t* e = rd_kafka_DeleteAcls_result_response_error(res[i]);
      if (e && rd_kafka_error_code(e)) {
        set_error(co, e, "delete_acls");
      } else {
        size_t m;
        const auto** matching = rd_kafka_DeleteAcls_result_response_matching_acls(res[i], &m);
        push_acl_list(co, matching, m);
        lua_setfield(co, -2, "deleted");
      }
      lua_rawseti(co, -2, static_cast<int>(i + 1));
    }
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_DELETEACLS, r, timeout, false, false);
  rd_kafka_DeleteAcls(a->rk(), filters.data(), filters.size(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_AclBinding_destroy_array(filters.data(), filters.size());
  return lua_yield(L, 0);
}

// a:_incremental_alter_configs({{type=, name=, ops={{name=, op=0..3, value=}}}}, validate_only, timeout)
// -> list of {type, name, error}. Atomic per resource, applied by the broker.
int l_incremental_alter_configs(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  bool validate_only = lua_toboolean(L, 3);
  double timeout = timeout_arg(L, 4, a);
  auto res = config_resources(L, 2, false);
  int n = static_cast<int>(lua_objlen(L, 2));
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, 2, i);
    lua_getfield(L, -1, "ops");
    int nops = lua_istable(L, -1) ? static_cast<int>(lua_objlen(L, -1)) : 0;
    for (int k = 1; k <= nops; ++k) {
      lua_rawgeti(L, -1, k);
      lua_getfield(L, -1, "name");
      lua_getfield(L, -2, "op");
      lua_getfield(L, -3, "value");
      rd_kafka_error_t* e = rd_kafka_ConfigResource_add_incremental_config(
          res[i - 1], lua_tostring(L, -3), static_cast<rd_kafka_AlterConfigOpType_t>(lua_tointeger(L, -2)),
          lua_isstring(L, -1) ? lua_tostring(L, -1) : nullptr);
      lua_pop(L, 4);
      if (e) {
        std::string msg = rd_kafka_error_string(e);
        rd_kafka_error_destroy(e);
        rd_kafka_ConfigResource_destroy_array(res.data(), res.size());
        return luaL_error(L, "admin:alter_configs: resource %d: %s", i, msg.c_str());
      }
    }
    lua_pop(L, 2);
  }
  Request* r = a->begin(L, "admin:alter_configs", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    auto** out = rd_kafka_IncrementalAlterConfigs_result_resources(rd_kafka_event_IncrementalAlterConfigs_result(ev), &cnt);
    push_config_resources(co, out, cnt, "alter_configs", false);
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS, r, timeout, false, validate_only);
  rd_kafka_IncrementalAlterConfigs(a->rk(), res.data(), res.size(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_ConfigResource_destroy_array(res.data(), res.size());
  return lua_yield(L, 0);
}

// ---- embedded ----------------------------------------------------------------------------

// a:_embedded() -> true when the handle runs on the embedded mock cluster
int l_embedded(lua_State* L) {
  auto* box = static_cast<AdminBox*>(luaL_checkudata(L, 1, ADMIN_MT));
  lua_pushboolean(L, box->a && box->a->embedded());
  return 1;
}

// a:_mock_create_topic(name, partitions, rf) -> true | nil, err
int l_mock_create_topic(lua_State* L) {
  Admin* a = check_admin(L, 1);
  std::string name = luaL_checkstring(L, 2);
  int partitions = static_cast<int>(luaL_checkinteger(L, 3));
  int rf = static_cast<int>(luaL_checkinteger(L, 4));
  if (!a->embedded()) return luaL_error(L, "not on the embedded cluster");
  rd_kafka_resp_err_t err = embedded_create_topic(a->runtime(), name, partitions, rf);
  if (err) return kafka_nil_error(L, err, {}, name);
  lua_pushboolean(L, 1);
  return 1;
}

int l_timeout(lua_State* L) {
  Admin* a = check_admin(L, 1);
  lua_pushnumber(L, a->timeout_ms());
  return 1;
}

int l_close(lua_State* L) {
  auto* box = static_cast<AdminBox*>(luaL_checkudata(L, 1, ADMIN_MT));
  return close_and_wait(L, box->a, "admin:close");
}

int l_gc(lua_State* L) {
  auto* box = static_cast<AdminBox*>(lua_touserdata(L, 1));
  collect_handle(box->a);
  box->a = nullptr;
  return 0;
}

int l_tostring(lua_State* L) {
  auto* box = static_cast<AdminBox*>(luaL_checkudata(L, 1, ADMIN_MT));
  if (box->a && box->a->rk() && box->a->usable())
    lua_pushfstring(L, "klua.admin(%s%s)", rd_kafka_name(box->a->rk()), box->a->embedded() ? ", embedded" : "");
  else
    lua_pushliteral(L, "klua.admin(closed)");
  return 1;
}

// klua.admin([config]) -> admin
int l_new(lua_State* L) {
  int idx = lua_isnoneornil(L, 1) ? 0 : 1;
  if (idx) luaL_checktype(L, 1, LUA_TTABLE);
  ClientOptions o = build_client_options(
      L, idx, "klua.admin",
      {{"isolation.level", "read_uncommitted"}, {"enable.auto.commit", "false"}},
      {"timeout_ms"});
  double timeout_ms = DEFAULT_ADMIN_TIMEOUT_MS;
  for (const auto& k : o.klua_keys) {
    lua_getfield(L, 1, k.c_str());
    if (k == "timeout_ms") {
      if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) <= 0) {
        rd_kafka_conf_destroy(o.conf);
        return luaL_error(L, "klua.admin: option 'timeout_ms' must be a positive number");
      }
      timeout_ms = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
  }
  rd_kafka_conf_set_events(o.conf, RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG);
  Runtime& rt = Runtime::from(L);
  auto* box = static_cast<AdminBox*>(lua_newuserdata(L, sizeof(AdminBox)));
  box->a = nullptr;
  luaL_getmetatable(L, ADMIN_MT);
  lua_setmetatable(L, -2);
  rd_kafka_t* rk = nullptr;
  {
    char errstr[512];
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, o.conf, errstr, sizeof errstr);
    if (!rk) {
      rd_kafka_conf_destroy(o.conf);
      ErrorSpec e;
      e.code = CODE_INVALID_ARGUMENT;
      e.name = ERR_INVALID_ARGUMENT;
      e.op = "klua.admin";
      e.message = fmt::format("klua.admin: cannot create the client: {}", errstr);
      raise_error(L, e);
    }
  }
  auto* a = new Admin(rt);
  a->set_hooks(o);
  a->start(rk, o.embedded, timeout_ms);
  box->a = a;
  return 1;
}

// kerr(code, message, {op=, topic=, group=, partition=}) -> a klua error from a librdkafka code
int l_kafka_error(lua_State* L) {
  ErrorSpec e = kafka_error(static_cast<rd_kafka_resp_err_t>(luaL_checkinteger(L, 1)), luaL_optstring(L, 2, ""));
  if (lua_istable(L, 3)) {
    auto str = [&](const char* k, std::string& out) {
      lua_getfield(L, 3, k);
      if (lua_isstring(L, -1)) out = lua_tostring(L, -1);
      lua_pop(L, 1);
    };
    str("op", e.op);
    str("topic", e.topic);
    str("group", e.group);
    lua_getfield(L, 3, "partition");
    if (lua_isnumber(L, -1)) e.partition = static_cast<int>(lua_tointeger(L, -1));
    lua_pop(L, 1);
  }
  push_error(L, e);
  return 1;
}

// topic_problem(name) -> nil | the rule the name breaks
int l_topic_problem(lua_State* L) {
  size_t len;
  const char* name = luaL_checklstring(L, 1, &len);
  std::string p = topic_name_problem(name, len);
  if (p.empty()) return 0;
  lua_pushlstring(L, p.data(), p.size());
  return 1;
}

}  // namespace

void open_admin(Runtime& rt, lua_State* L, int klua_table) {
  Scheduler& s = rt.scheduler();
  luaL_newmetatable(L, ADMIN_MT);
  lua_newtable(L);  // methods
  struct M {
    const char* name;
    lua_CFunction fn;
    bool waits;
  };
  static const M methods[] = {
      {"_metadata", l_metadata, true},
      {"_create_topics", l_create_topics, true},
      {"_delete_topics", l_delete_topics, true},
      {"_create_partitions", l_create_partitions, true},
      {"_delete_records", l_delete_records, true},
      {"_describe_configs", l_describe_configs, true},
      {"_list_groups", l_list_groups, true},
      {"_describe_groups", l_describe_groups, true},
      {"_delete_groups", l_delete_groups, true},
      {"_group_offsets", l_group_offsets, true},
      {"_describe_cluster", l_describe_cluster, true},
      {"_describe_topics", l_describe_topics, true},
      {"_list_offsets", l_list_offsets, true},
      {"_elect_leaders", l_elect_leaders, true},
      {"_describe_scram", l_describe_scram, true},
      {"_alter_scram", l_alter_scram, true},
      {"_create_acls", l_create_acls, true},
      {"_describe_acls", l_describe_acls, true},
      {"_delete_acls", l_delete_acls, true},
      {"_incremental_alter_configs", l_incremental_alter_configs, true},
      {"_embedded", l_embedded, false},
      {"_mock_create_topic", l_mock_create_topic, false},
      {"_timeout", l_timeout, false},
      {"close", l_close, true},
  };
  for (const M& m : methods) {
    if (m.waits) s.push_waiting(L, m.fn); else lua_pushcfunction(L, m.fn);
    lua_setfield(L, -2, m.name);
  }
  // The public methods, written in Lua on top of the primitives.
  load_binding_chunk(L, "admin");
  lua_pushvalue(L, -2);  // methods
  lua_pushvalue(L, klua_table);
  lua_pushcfunction(L, l_kafka_error);
  lua_pushcfunction(L, l_topic_problem);
  lua_call(L, 4, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_new);
  lua_setfield(L, klua_table, "admin");
}


}  // namespace klua
