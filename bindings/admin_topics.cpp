// klua.admin primitives: metadata, topics, partitions, records and configs (see bindings/admin_internal.hpp for the split;
// the public methods are in bindings/lua/).
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fmt/format.h>
#include <memory>
#include <vector>

#include "bindings/admin_internal.hpp"

namespace klua::admin_impl {

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

// P.metadata(a, all_topics, timeout) -> metadata table (+rtt_ms)
int l_metadata(lua_State* L) {
  Admin* a = check_admin(L, 1);
  bool all_topics = lua_toboolean(L, 2);
  double timeout = timeout_arg(L, 3, a);
  rd_kafka_t* rk = a->rk();
  auto h = std::make_shared<MetadataHolder>();
  return a->run_blocking(
      L, "admin:metadata", timeout,
      [=](int t) {
        uint64_t t0 = uv_hrtime();
        h->err = rd_kafka_metadata(rk, all_topics ? 1 : 0, nullptr, &h->md, t);
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

// P.create_topics(a, specs, validate_only, timeout) -> list of {name, error}
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
      raise_bad_argument(L, 2, "admin:create_topics", fmt::format("topic \"{}\": {}", name, errstr));
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
          raise_bad_argument(L, 2, "admin:create_topics", fmt::format("topic \"{}\": {}", name, errstr));
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
  int yielded = a->send(L, "admin:create_topics", RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout, true, validate_only,
      [](lua_State* co, rd_kafka_event_t* ev) {
        size_t cnt;
        auto** res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
        push_topic_results(co, res, cnt, "create_topics");
        return 1;
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_CreateTopics(a->rk(), topics.data(), topics.size(), o, q);
      });
  cleanup();
  return yielded;
}

// P.delete_topics(a, names, timeout) -> list of {name, error}
int l_delete_topics(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  auto names = string_list(L, 2, "admin:delete_topics");
  double timeout = timeout_arg(L, 3, a);
  std::vector<rd_kafka_DeleteTopic_t*> del;
  for (auto& n : names) del.push_back(rd_kafka_DeleteTopic_new(n.c_str()));
  int yielded = a->send(L, "admin:delete_topics", RD_KAFKA_ADMIN_OP_DELETETOPICS, timeout, true, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
        size_t cnt;
        auto** res = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &cnt);
        push_topic_results(co, res, cnt, "delete_topics");
        return 1;
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_DeleteTopics(a->rk(), del.data(), del.size(), o, q);
      });
  rd_kafka_DeleteTopic_destroy_array(del.data(), del.size());
  return yielded;
}

// P.create_partitions(a, {{topic=, partitions=total}, ...}, validate_only, timeout) -> list of {name, error}
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
      raise_bad_argument(L, 2, "admin:create_partitions", fmt::format("topic \"{}\": {}", topic, errstr));
    }
    np.push_back(p);
  }
  int yielded = a->send(L, "admin:create_partitions", RD_KAFKA_ADMIN_OP_CREATEPARTITIONS, timeout, true, validate_only,
      [](lua_State* co, rd_kafka_event_t* ev) {
        size_t cnt;
        auto** res = rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &cnt);
        push_topic_results(co, res, cnt, "create_partitions");
        return 1;
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_CreatePartitions(a->rk(), np.data(), np.size(), o, q);
      });
  rd_kafka_NewPartitions_destroy_array(np.data(), np.size());
  return yielded;
}

// P.delete_records(a, partition list with offsets, timeout) -> partition list (offset: new low watermark)
int l_delete_records(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  double timeout = timeout_arg(L, 3, a);  // may raise: before the list is allocated
  auto* list = check_partition_list(L, 2, "admin:delete_records", false);
  rd_kafka_DeleteRecords_t* dr = rd_kafka_DeleteRecords_new(list);
  rd_kafka_topic_partition_list_destroy(list);
  int yielded = a->send(L, "admin:delete_records", RD_KAFKA_ADMIN_OP_DELETERECORDS, timeout, true, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
        const auto* res = rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
        push_partitions(co, res, "delete_records", nullptr);
        return 1;
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_DeleteRecords(a->rk(), &dr, 1, o, q);
      });
  rd_kafka_DeleteRecords_destroy(dr);
  return yielded;
}

// ---- configs -------------------------------------------------------------------------

rd_kafka_ResourceType_t resource_type(lua_State* L, int idx) {
  std::string t = luaL_checkstring(L, idx);
  if (t == "topic") return RD_KAFKA_RESOURCE_TOPIC;
  if (t == "broker") return RD_KAFKA_RESOURCE_BROKER;
  if (t == "group") return RD_KAFKA_RESOURCE_GROUP;
  raise_misuse(L, "klua.admin", fmt::format("unknown resource type \"{}\" (use \"topic\", \"broker\" or \"group\")", t));
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
    case RD_KAFKA_CONFIG_SOURCE_GROUP_CONFIG: return "group";  // a group's own config (KIP-848)
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

// P.describe_configs(a, {{type=, name=}, ...}, timeout) -> list of {type, name, error, configs={name=entry}}
int l_describe_configs(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  double timeout = timeout_arg(L, 3, a);
  auto res = config_resources(L, 2, false);
  int yielded = a->send(L, "admin:describe_configs", RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, timeout, false, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
        size_t cnt;
        auto** out = rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &cnt);
        push_config_resources(co, out, cnt, "describe_configs", true);
        return 1;
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_DescribeConfigs(a->rk(), res.data(), res.size(), o, q);
      });
  rd_kafka_ConfigResource_destroy_array(res.data(), res.size());
  return yielded;
}

// P.incremental_alter_configs(a, {{type=, name=, ops={{name=, op=0..3, value=}}}}, validate_only, timeout)
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
        raise_bad_argument(L, 2, "admin:alter_configs", fmt::format("resource {}: {}", i, msg));
      }
    }
    lua_pop(L, 2);
  }
  int yielded = a->send(L, "admin:alter_configs", RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS, timeout, false, validate_only,
      [](lua_State* co, rd_kafka_event_t* ev) {
        size_t cnt;
        auto** out = rd_kafka_IncrementalAlterConfigs_result_resources(rd_kafka_event_IncrementalAlterConfigs_result(ev), &cnt);
        push_config_resources(co, out, cnt, "alter_configs", false);
        return 1;
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_IncrementalAlterConfigs(a->rk(), res.data(), res.size(), o, q);
      });
  rd_kafka_ConfigResource_destroy_array(res.data(), res.size());
  return yielded;
}

}  // namespace klua::admin_impl
