// klua.admin primitives: DescribeCluster, DescribeTopics, ListOffsets and ElectLeaders (see bindings/admin_internal.hpp for the split;
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

// ---- native calls of librdkafka >= 2.3 --------------------------------------------------

// P.describe_cluster(a, include_ops, timeout) -> {cluster_id, controller, brokers, authorized_operations}
int l_describe_cluster(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  bool ops = lua_toboolean(L, 2);
  double timeout = timeout_arg(L, 3, a);
  int yielded = a->send(L, "admin:describe_cluster", RD_KAFKA_ADMIN_OP_DESCRIBECLUSTER, timeout, false, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
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
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        include_ops(o, ops);
        rd_kafka_DescribeCluster(a->rk(), o, q);
      });
  return yielded;
}

void push_node_ids(lua_State* L, const rd_kafka_Node_t** nodes, size_t n) {
  lua_createtable(L, static_cast<int>(n), 0);
  for (size_t i = 0; i < n; ++i) {
    lua_pushnumber(L, rd_kafka_Node_id(nodes[i]));
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
}

// P.describe_topics(a, names, include_ops, timeout) -> list of {name, error, topic_id, internal, partitions =
// {{partition, leader, leader_rack, replicas, isr, replica_racks}}, authorized_operations}
int l_describe_topics(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  auto names = string_list(L, 2, "admin:describe_topics");
  bool ops = lua_toboolean(L, 3);
  double timeout = timeout_arg(L, 4, a);
  std::vector<const char*> ptrs;
  for (auto& s : names) ptrs.push_back(s.c_str());
  rd_kafka_TopicCollection_t* tc = rd_kafka_TopicCollection_of_topic_names(ptrs.data(), ptrs.size());
  int yielded = a->send(L, "admin:describe_topics", RD_KAFKA_ADMIN_OP_DESCRIBETOPICS, timeout, false, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
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
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        include_ops(o, ops);
        rd_kafka_DescribeTopics(a->rk(), tc, o, q);
      });
  rd_kafka_TopicCollection_destroy(tc);
  return yielded;
}

// P.list_offsets(a, {{topic=, partition=, spec=number}, ...}, read_committed, timeout) -> list of {topic,
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
      raise_bad_argument(L, 2, "admin:list_offsets", fmt::format("item {} needs topic, partition and a numeric spec", i));
    }
    auto* tp = rd_kafka_topic_partition_list_add(list, lua_tostring(L, -3), static_cast<int32_t>(lua_tointeger(L, -2)));
    tp->offset = static_cast<int64_t>(lua_tonumber(L, -1));
    lua_pop(L, 4);
  }
  int yielded = a->send(L, "admin:list_offsets", RD_KAFKA_ADMIN_OP_LISTOFFSETS, timeout, false, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
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
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        if (rd_kafka_error_t* e = rd_kafka_AdminOptions_set_isolation_level(
                o, committed ? RD_KAFKA_ISOLATION_LEVEL_READ_COMMITTED : RD_KAFKA_ISOLATION_LEVEL_READ_UNCOMMITTED))
          rd_kafka_error_destroy(e);
        rd_kafka_ListOffsets(a->rk(), list, o, q);
      });
  rd_kafka_topic_partition_list_destroy(list);
  return yielded;
}

// P.elect_leaders(a, unclean, partitions | nil (all), timeout) -> list of {topic, partition, error}
int l_elect_leaders(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  bool unclean = lua_toboolean(L, 2);
  double timeout = timeout_arg(L, 4, a);  // may raise: before the list is allocated
  rd_kafka_topic_partition_list_t* parts = nullptr;
  if (!lua_isnoneornil(L, 3)) parts = check_partition_list(L, 3, "admin:elect_leaders", false);
  rd_kafka_ElectLeaders_t* el =
      rd_kafka_ElectLeaders_new(unclean ? RD_KAFKA_ELECTION_TYPE_UNCLEAN : RD_KAFKA_ELECTION_TYPE_PREFERRED, parts);
  int yielded = a->send(L, "admin:elect_leaders", RD_KAFKA_ADMIN_OP_ELECTLEADERS, timeout, true, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
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
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_ElectLeaders(a->rk(), el, o, q);
      });
  rd_kafka_ElectLeaders_destroy(el);
  if (parts) rd_kafka_topic_partition_list_destroy(parts);
  return yielded;
}

}  // namespace klua::admin_impl
