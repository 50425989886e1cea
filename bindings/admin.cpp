// klua.admin([config]): cluster, topic, config, group, ACL and SCRAM administration on
// one long-lived handle. The C++ half offers thin primitives (P.name(a, ...) in Lua: a
// private table, not the public metatable; split by job into admin_*.cpp, see
// admin_internal.hpp): each sends one librdkafka admin request on the handle's
// result queue, correlated by the request's opaque, or runs one blocking call
// (metadata) on the thread pool, and converts the result to plain tables. The
// public methods are Lua (bindings/lua/admin*.lua): argument checks, per-item
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

#include "bindings/admin_internal.hpp"
#include "bindings/kafka_handle.hpp"
#include "bindings/lua_chunks.hpp"

namespace klua {

namespace admin_impl {

void Admin::drain_results() {
  if (state_ == Destroying || state_ == Closed) return;
  Scheduler& s = rt_.scheduler();
  while (rd_kafka_event_t* ev = rd_kafka_queue_poll(res_q_, 0)) {
    auto* r = static_cast<Request*>(rd_kafka_event_opaque(ev));
    if (r && abandoned_.erase(r)) {
      delete r;  // its task was already answered (authentication error, unreachable cluster)
    } else if (r && pending_.erase(r)) {
      std::unique_ptr<Request> own(r);
      end_watch(r->watch);
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

std::string Admin::describe() const {
  return fmt::format("klua.admin({}{})", rd_kafka_name(rk_), embedded_ ? ", embedded" : "");
}

void Admin::begin_close() {
  if (state_ != Open) return;
  state_ = Closing;
  abort_broker_waits();  // a metadata call waiting for a broker returns now
  if (inflight_ == 0) finish_close();
}

void Admin::finish_close() {
  if (state_ != Closing) return;
  state_ = Destroying;
  // Requests still waiting end with KLUA_CLOSED.
  Scheduler& s = rt_.scheduler();
  for (Request* r : pending_) {
    end_watch(r->watch);
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
  destroy_handle(0);
}

// ---- helpers ---------------------------------------------------------------------


Admin* check_admin(lua_State* L, int idx) {
  auto* box = static_cast<AdminBox*>(luaL_checkudata(L, idx, ADMIN_MT));
  return usable_handle(L, box->handle, "admin client");
}

// check_admin for calls that wait: raises as the wait itself would (not in a task, cancelled)
// before the call builds librdkafka objects that a raise would leak (a SCRAM alteration holds
// a copy of the password).
Admin* check_admin_waiting(lua_State* L, int idx) {
  Admin* a = check_admin(L, idx);
  Scheduler& s = Runtime::from(L).scheduler();
  if (!s.can_wait(L))
    raise_misuse(L, "klua.admin", "admin calls wait for the broker: call them from a klua task (the main chunk, a "
                                  "klua.spawn function or a hook), not from a plain coroutine or an inline callback");
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
void set_error(lua_State* L, rd_kafka_resp_err_t code, const char* msg, const char* op, const char* topic,
               const char* group, int partition) {
  if (!code) return;
  ErrorSpec e = kafka_error(code, msg && *msg ? msg : rd_kafka_err2str(code));
  e.op = std::string("admin:") + op;
  if (topic) e.topic = topic;
  if (group) e.group = group;
  if (partition >= 0) e.partition = partition;
  push_error(L, e);
  lua_setfield(L, -2, "error");
}

void set_error(lua_State* L, const rd_kafka_error_t* err, const char* op, const char* group) {
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
    if (lua_type(L, -1) != LUA_TSTRING) raise_misuse(L, what, fmt::format("item {} must be a string", i));
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

// ---- embedded ----------------------------------------------------------------------------

// P.embedded(a) -> true when the handle runs on the embedded mock cluster
int l_embedded(lua_State* L) {
  auto* box = static_cast<AdminBox*>(luaL_checkudata(L, 1, ADMIN_MT));
  lua_pushboolean(L, box->handle && box->handle->embedded());
  return 1;
}

// P.mock_create_topic(a, name, partitions, rf) -> true | nil, err
int l_mock_create_topic(lua_State* L) {
  Admin* a = check_admin(L, 1);
  std::string name = luaL_checkstring(L, 2);
  int partitions = static_cast<int>(luaL_checkinteger(L, 3));
  int rf = static_cast<int>(luaL_checkinteger(L, 4));
  if (!a->embedded()) raise_misuse(L, "klua.admin", "not on the embedded cluster");
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
  return close_and_wait(L, box->handle, "admin:close");
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
        raise_bad_argument(L, 1, "klua.admin", "option 'timeout_ms' must be a positive number");
      }
      timeout_ms = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
  }
  rd_kafka_conf_set_events(o.conf, RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG);
  Runtime& rt = Runtime::from(L);
  auto* box = static_cast<AdminBox*>(lua_newuserdata(L, sizeof(AdminBox)));
  box->handle = nullptr;
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
  box->handle = a;
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

}  // namespace admin_impl

using namespace admin_impl;

void open_admin(Runtime& rt, lua_State* L, int klua_table) {
  Scheduler& s = rt.scheduler();
  luaL_newmetatable(L, ADMIN_MT);
  lua_newtable(L);  // M: the public methods (close here, the rest in Lua)
  s.push_waiting(L, l_close);
  lua_setfield(L, -2, "close");
  lua_newtable(L);  // P: the primitives, private to the Lua halves (P.metadata(a, ...))
  struct Primitive {
    const char* name;
    lua_CFunction fn;
    bool waits;
  };
  static const Primitive primitives[] = {
      {"metadata", l_metadata, true},
      {"create_topics", l_create_topics, true},
      {"delete_topics", l_delete_topics, true},
      {"create_partitions", l_create_partitions, true},
      {"delete_records", l_delete_records, true},
      {"describe_configs", l_describe_configs, true},
      {"incremental_alter_configs", l_incremental_alter_configs, true},
      {"list_groups", l_list_groups, true},
      {"describe_groups", l_describe_groups, true},
      {"delete_groups", l_delete_groups, true},
      {"group_offsets", l_group_offsets, true},
      {"describe_cluster", l_describe_cluster, true},
      {"describe_topics", l_describe_topics, true},
      {"list_offsets", l_list_offsets, true},
      {"elect_leaders", l_elect_leaders, true},
      {"describe_scram", l_describe_scram, true},
      {"alter_scram", l_alter_scram, true},
      {"create_acls", l_create_acls, true},
      {"describe_acls", l_describe_acls, true},
      {"delete_acls", l_delete_acls, true},
      {"embedded", l_embedded, false},
      {"mock_create_topic", l_mock_create_topic, false},
      {"timeout", l_timeout, false},
  };
  for (const Primitive& p : primitives) {
    if (p.waits) s.push_waiting(L, p.fn); else lua_pushcfunction(L, p.fn);
    lua_setfield(L, -2, p.name);
  }
  // The public methods, written in Lua on top of the primitives: admin.lua returns the helpers
  // the other parts share (H), each part adds its methods to M.
  load_binding_chunk(L, "admin");
  lua_pushvalue(L, -3);  // M
  lua_pushvalue(L, -3);  // P
  lua_pushvalue(L, klua_table);
  lua_pushcfunction(L, l_kafka_error);
  lua_pushcfunction(L, l_topic_problem);
  lua_call(L, 5, 1);  // H
  for (const char* part : {"admin_offsets", "admin_topics", "admin_groups", "admin_acls"}) {
    load_binding_chunk(L, part);
    lua_pushvalue(L, -4);  // M
    lua_pushvalue(L, -4);  // P
    lua_pushvalue(L, -4);  // H
    lua_call(L, 3, 0);
  }
  lua_pop(L, 2);  // H, P
  lua_setfield(L, -2, "__index");
  set_handle_metamethods<AdminBox>(L);
  lua_pop(L, 1);
  lua_pushcfunction(L, l_new);
  lua_setfield(L, klua_table, "admin");
}

}  // namespace klua
