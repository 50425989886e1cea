// klua.admin([config]): cluster, topic, config and group administration on one
// long-lived handle. The C++ half below offers thin primitives (methods whose
// names start with "_"): each sends one librdkafka admin request on the handle's
// result queue, correlated by the request's opaque, or runs one blocking call
// (metadata, offsets_for_times) on the thread pool, and converts the result to
// plain tables. The public methods are Lua (bindings/lua/admin.lua):
// argument checks, per-item results in input order, the embedded-cluster
// decisions, and the composite operations (if_not_exists, the emulated
// incremental alter_configs, reset_group_offsets).
//
// The handle is a consumer-type rd_kafka_t without a group (admin requests work on
// any handle type): consumer-scope properties such as isolation.level then apply
// without warnings. It reads watermarks with isolation.level=read_uncommitted (the
// high watermark); a second handle with read_committed, created on first need,
// gives the last stable offset ("end").
#include "bindings/admin.hpp"

#include <librdkafka/rdkafka.h>

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
  }

  void start(rd_kafka_t* rk, rd_kafka_conf_t* committed_conf, bool embedded, double timeout_ms) {
    rk_ = rk;
    committed_conf_ = committed_conf;
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

  // The read_committed handle (created on first use; nullptr with *err set on failure).
  rd_kafka_t* committed_handle(std::string* err) {
    if (rk2_) return rk2_;
    if (!committed_conf_) {
      *err = "no configuration for the read_committed handle";
      return nullptr;
    }
    char errstr[512];
    rd_kafka_conf_t* c = rd_kafka_conf_dup(committed_conf_);
    rd_kafka_conf_set(c, "isolation.level", "read_committed", errstr, sizeof errstr);
    rk2_ = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof errstr);
    if (!rk2_) {
      rd_kafka_conf_destroy(c);
      *err = errstr;
      return nullptr;
    }
    main2_q_ = rd_kafka_queue_get_main(rk2_);
    rd_kafka_set_log_queue(rk2_, nullptr);
    main2_w_ = std::make_unique<QueueWatcher>(rt_.loop(), main2_q_, [this] { drain_main(main2_q_); });
    return rk2_;
  }

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
  rd_kafka_conf_t* committed_conf_ = nullptr;
  rd_kafka_t* rk2_ = nullptr;
  rd_kafka_queue_t *main_q_ = nullptr, *res_q_ = nullptr, *main2_q_ = nullptr;
  std::unique_ptr<QueueWatcher> main_w_, res_w_, main2_w_;
  std::unordered_set<Request*> pending_;
  uv_work_t destroy_work_;
};

void Admin::drain_results() {
  if (state_ == Destroying || state_ == Closed) return;
  Scheduler& s = rt_.scheduler();
  while (rd_kafka_event_t* ev = rd_kafka_queue_poll(res_q_, 0)) {
    auto* r = static_cast<Request*>(rd_kafka_event_opaque(ev));
    if (r && pending_.erase(r)) {
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
  for (auto* w : {main_w_.get(), res_w_.get(), main2_w_.get()})
    if (w) w->close();
  for (rd_kafka_queue_t* q : {main_q_, res_q_, main2_q_}) {
    if (!q) continue;
    while (rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 0)) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
  }
  main_q_ = res_q_ = main2_q_ = nullptr;
  if (committed_conf_) rd_kafka_conf_destroy(committed_conf_);
  committed_conf_ = nullptr;
  release_hooks();
  destroy_work_.data = this;
  uv_queue_work(rt_.loop(), &destroy_work_,
                [](uv_work_t* w) {
                  auto* self = static_cast<Admin*>(w->data);
                  if (self->rk2_) rd_kafka_destroy(self->rk2_);
                  rd_kafka_destroy(self->rk_);
                },
                [](uv_work_t* w, int) {
                  auto* self = static_cast<Admin*>(w->data);
                  self->rk_ = self->rk2_ = nullptr;
                  self->state_ = Closed;
                  wake_close_waiters(self->rt_.scheduler(), std::move(self->close_waiters));
                  if (self->orphaned) delete self;
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

// ---- metadata and cluster (blocking calls on the thread pool) ---------------------------

struct MetadataHolder {
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  char* cluster_id = nullptr;
  int32_t controller = -1;
  double elapsed_ms = 0;
  ~MetadataHolder() {
    if (md) rd_kafka_metadata_destroy(md);
    if (cluster_id) rd_kafka_mem_free(nullptr, cluster_id);
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

// a:_metadata(all_topics, with_cluster, timeout) -> metadata table (+cluster_id, controller_id, rtt_ms)
int l_metadata(lua_State* L) {
  Admin* a = check_admin(L, 1);
  bool all_topics = lua_toboolean(L, 2);
  bool with_cluster = lua_toboolean(L, 3);
  double timeout = timeout_arg(L, 4, a);
  rd_kafka_t* rk = a->rk();
  auto h = std::make_shared<MetadataHolder>();
  return a->run_blocking(
      L, "admin:metadata", timeout + 1000,
      [=] {
        uint64_t t0 = uv_hrtime();
        h->err = rd_kafka_metadata(rk, all_topics ? 1 : 0, nullptr, &h->md, timeout_int(timeout));
        h->elapsed_ms = static_cast<double>(uv_hrtime() - t0) / 1e6;
        if (!h->err && with_cluster) {
          h->cluster_id = rd_kafka_clusterid(rk, timeout_int(timeout));
          h->controller = rd_kafka_controllerid(rk, timeout_int(timeout));
        }
      },
      [=](lua_State* co) {
        if (h->err) {
          ErrorSpec e = kafka_error(h->err, fmt::format("metadata request failed: {}", rd_kafka_err2str(h->err)));
          e.op = "admin:metadata";
          return nil_error(co, e);
        }
        push_metadata(co, h->md);
        set_num(co, "rtt_ms", h->elapsed_ms);
        if (h->cluster_id) set_str(co, "cluster_id", h->cluster_id);
        if (with_cluster && h->controller >= 0) set_num(co, "controller_id", h->controller);
        return 1;
      });
}

// a:_watermarks(partitions, want_end, timeout) -> list of {topic, partition, low, high, end, error}
int l_watermarks(lua_State* L) {
  Admin* a = check_admin(L, 1);
  auto* low = check_partition_list(L, 2, "admin:watermarks", false);
  bool want_end = lua_toboolean(L, 3);
  double timeout = timeout_arg(L, 4, a);
  rd_kafka_t* rk = a->rk();
  rd_kafka_t* rk2 = nullptr;
  if (want_end) {
    std::string why;
    rk2 = a->committed_handle(&why);
    if (!rk2) {
      rd_kafka_topic_partition_list_destroy(low);
      return kafka_nil_error(L, RD_KAFKA_RESP_ERR__FAIL, "cannot create the read_committed handle: " + why);
    }
  }
  struct Lists {
    rd_kafka_topic_partition_list_t *low = nullptr, *high = nullptr, *end = nullptr;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    ~Lists() {
      for (auto* l : {low, high, end})
        if (l) rd_kafka_topic_partition_list_destroy(l);
    }
  };
  auto h = std::make_shared<Lists>();
  h->low = low;
  for (int i = 0; i < low->cnt; ++i) low->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
  h->high = rd_kafka_topic_partition_list_copy(low);
  for (int i = 0; i < low->cnt; ++i) h->high->elems[i].offset = RD_KAFKA_OFFSET_END;
  if (want_end) h->end = rd_kafka_topic_partition_list_copy(h->high);
  return a->run_blocking(
      L, "admin:watermarks", timeout + 1000,
      [=] {
        int t = timeout_int(timeout);
        h->err = rd_kafka_offsets_for_times(rk, h->low, t);
        if (!h->err) h->err = rd_kafka_offsets_for_times(rk, h->high, t);
        if (!h->err && h->end) h->err = rd_kafka_offsets_for_times(rk2, h->end, t);
      },
      [=](lua_State* co) {
        if (h->err) {
          ErrorSpec e = kafka_error(h->err, fmt::format("listing offsets failed: {}", rd_kafka_err2str(h->err)));
          e.op = "admin:watermarks";
          return nil_error(co, e);
        }
        lua_createtable(co, h->low->cnt, 0);
        for (int i = 0; i < h->low->cnt; ++i) {
          const auto& l = h->low->elems[i];
          lua_createtable(co, 0, 6);
          set_str(co, "topic", l.topic);
          set_num(co, "partition", l.partition);
          rd_kafka_resp_err_t err = l.err;
          const auto& hi = h->high->elems[i];
          if (!err) err = hi.err;
          if (l.offset >= 0) set_num(co, "low", static_cast<double>(l.offset));
          if (hi.offset >= 0) set_num(co, "high", static_cast<double>(hi.offset));
          if (h->end) {
            const auto& e = h->end->elems[i];
            if (!err) err = e.err;
            if (e.offset >= 0) set_num(co, "end", static_cast<double>(e.offset));
          }
          set_error(co, err, nullptr, "watermarks", l.topic, nullptr, l.partition);
          lua_rawseti(co, -2, i + 1);
        }
        return 1;
      });
}

// a:_offsets_for_times(partitions with offset = timestamp, timeout) -> partition list (offset nil: none)
int l_offsets_for_times(lua_State* L) {
  Admin* a = check_admin(L, 1);
  auto* list = check_partition_list(L, 2, "admin:offsets_for_times", false);
  double timeout = timeout_arg(L, 3, a);
  rd_kafka_t* rk = a->rk();
  struct H {
    rd_kafka_topic_partition_list_t* list;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    ~H() { rd_kafka_topic_partition_list_destroy(list); }
  };
  auto h = std::make_shared<H>();
  h->list = list;
  return a->run_blocking(
      L, "admin:offsets_for_times", timeout + 1000,
      [=] { h->err = rd_kafka_offsets_for_times(rk, h->list, timeout_int(timeout)); },
      [=](lua_State* co) {
        if (h->err) return kafka_nil_error(co, h->err, fmt::format("offsets_for_times failed: {}", rd_kafka_err2str(h->err)));
        push_partitions(co, h->list, "offsets_for_times", nullptr);
        return 1;
      });
}

// ---- topics ------------------------------------------------------------------------

// a:_create_topics(specs, validate_only, timeout) -> list of {name, error}
// spec: {name=, partitions=, replication_factor=, assignment={{broker,...}, ...}, configs={k=v}}
int l_create_topics(lua_State* L) {
  Admin* a = check_admin(L, 1);
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
  Admin* a = check_admin(L, 1);
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
  Admin* a = check_admin(L, 1);
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
  Admin* a = check_admin(L, 1);
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
  Admin* a = check_admin(L, 1);
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

// a:_alter_configs({{type=, name=, configs={k=v}}, ...}, validate_only, timeout) -> list of {type, name, error}
// (AlterConfigs replaces the resource's whole dynamic configuration.)
int l_alter_configs(lua_State* L) {
  Admin* a = check_admin(L, 1);
  bool validate_only = lua_toboolean(L, 3);
  double timeout = timeout_arg(L, 4, a);
  auto res = config_resources(L, 2, true);
  Request* r = a->begin(L, "admin:alter_configs", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    size_t cnt;
    auto** out = rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &cnt);
    push_config_resources(co, out, cnt, "alter_configs", false);
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_ALTERCONFIGS, r, timeout, false, validate_only);
  rd_kafka_AlterConfigs(a->rk(), res.data(), res.size(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_ConfigResource_destroy_array(res.data(), res.size());
  return lua_yield(L, 0);
}

// ---- groups --------------------------------------------------------------------------

// a:_list_groups(timeout) -> list of {group, state, simple}, list of errors
int l_list_groups(lua_State* L) {
  Admin* a = check_admin(L, 1);
  double timeout = timeout_arg(L, 2, a);
  Request* r = a->begin(L, "admin:list_groups", timeout, [](lua_State* co, rd_kafka_event_t* ev) {
    const auto* res = rd_kafka_event_ListConsumerGroups_result(ev);
    size_t cnt, ecnt;
    auto** valid = rd_kafka_ListConsumerGroups_result_valid(res, &cnt);
    lua_createtable(co, static_cast<int>(cnt), 0);
    for (size_t i = 0; i < cnt; ++i) {
      lua_createtable(co, 0, 3);
      set_str(co, "group", rd_kafka_ConsumerGroupListing_group_id(valid[i]));
      set_str(co, "state", rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupListing_state(valid[i])));
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
  rd_kafka_ListConsumerGroups(a->rk(), o, a->results_queue());
  rd_kafka_AdminOptions_destroy(o);
  return lua_yield(L, 0);
}

// a:_describe_groups(ids, timeout) -> list of {group, error, state, simple, protocol, coordinator, members}
int l_describe_groups(lua_State* L) {
  Admin* a = check_admin(L, 1);
  auto ids = string_list(L, 2, "admin:describe_groups");
  double timeout = timeout_arg(L, 3, a);
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
      set_bool(co, "simple", rd_kafka_ConsumerGroupDescription_is_simple_consumer_group(g));
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
        lua_rawseti(co, -2, static_cast<int>(m + 1));
      }
      lua_setfield(co, -2, "members");
      lua_rawseti(co, -2, static_cast<int>(i + 1));
    }
    return 1;
  });
  rd_kafka_AdminOptions_t* o = a->options(RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS, r, timeout, false, false);
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
  Admin* a = check_admin(L, 1);
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
  Admin* a = check_admin(L, 1);
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
  rd_kafka_conf_t* committed = rd_kafka_conf_dup(o.conf);
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
      rd_kafka_conf_destroy(committed);
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
  a->start(rk, committed, o.embedded, timeout_ms);
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
      {"_watermarks", l_watermarks, true},
      {"_offsets_for_times", l_offsets_for_times, true},
      {"_create_topics", l_create_topics, true},
      {"_delete_topics", l_delete_topics, true},
      {"_create_partitions", l_create_partitions, true},
      {"_delete_records", l_delete_records, true},
      {"_describe_configs", l_describe_configs, true},
      {"_alter_configs", l_alter_configs, true},
      {"_list_groups", l_list_groups, true},
      {"_describe_groups", l_describe_groups, true},
      {"_delete_groups", l_delete_groups, true},
      {"_group_offsets", l_group_offsets, true},
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
