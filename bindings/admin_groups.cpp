// klua.admin primitives: consumer groups and their committed offsets (see bindings/admin_internal.hpp for the split;
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

// ---- groups --------------------------------------------------------------------------

// P.list_groups(a, states (codes) | nil, types (codes) | nil, timeout) -> list of {group, state, type, simple},
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
  int yielded = a->send(L, "admin:list_groups", RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS, timeout, false, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
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
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
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
        rd_kafka_ListConsumerGroups(a->rk(), o, q);
      });
  return yielded;
}

// P.describe_groups(a, ids, include_ops, timeout) -> list of {group, error, state, type, simple, assignor,
// coordinator, members, authorized_operations}
int l_describe_groups(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  auto ids = string_list(L, 2, "admin:describe_groups");
  bool ops = lua_toboolean(L, 3);
  double timeout = timeout_arg(L, 4, a);
  std::vector<const char*> ptrs;
  for (auto& s : ids) ptrs.push_back(s.c_str());
  int yielded = a->send(L, "admin:describe_groups", RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS, timeout, false, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
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
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        include_ops(o, ops);
        rd_kafka_DescribeConsumerGroups(a->rk(), ptrs.data(), ptrs.size(), o, q);
      });
  return yielded;
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

// P.delete_groups(a, ids, timeout) -> list of {group, error}
int l_delete_groups(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  auto ids = string_list(L, 2, "admin:delete_groups");
  double timeout = timeout_arg(L, 3, a);
  std::vector<rd_kafka_DeleteGroup_t*> del;
  for (auto& s : ids) del.push_back(rd_kafka_DeleteGroup_new(s.c_str()));
  int yielded = a->send(L, "admin:delete_groups", RD_KAFKA_ADMIN_OP_DELETEGROUPS, timeout, false, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
        size_t cnt;
        auto** res = rd_kafka_DeleteGroups_result_groups(rd_kafka_event_DeleteGroups_result(ev), &cnt);
        push_group_results(co, res, cnt, "delete_groups");
        return 1;
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_DeleteGroups(a->rk(), del.data(), del.size(), o, q);
      });
  rd_kafka_DeleteGroup_destroy_array(del.data(), del.size());
  return yielded;
}

// Group offset calls: one group per request; the result is {group, error, partitions}.
enum class GroupOffsetsOp { List, Alter, Delete };

// P.group_offsets(a, kind, group, partitions|nil, timeout) -> {group, error, partitions}
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
  static const rd_kafka_admin_op_t apis[] = {RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
                                              RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS,
                                              RD_KAFKA_ADMIN_OP_DELETECONSUMERGROUPOFFSETS};
  int yielded = a->send(L, opname, apis[static_cast<int>(op)], timeout, false, false,
      [op](lua_State* co, rd_kafka_event_t* ev) {
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
    },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        switch (op) {
          case GroupOffsetsOp::List: {
            auto* req = rd_kafka_ListConsumerGroupOffsets_new(group.c_str(), parts);
            rd_kafka_ListConsumerGroupOffsets(a->rk(), &req, 1, o, q);
            rd_kafka_ListConsumerGroupOffsets_destroy(req);
            break;
          }
          case GroupOffsetsOp::Alter: {
            auto* req = rd_kafka_AlterConsumerGroupOffsets_new(group.c_str(), parts);
            rd_kafka_AlterConsumerGroupOffsets(a->rk(), &req, 1, o, q);
            rd_kafka_AlterConsumerGroupOffsets_destroy(req);
            break;
          }
          case GroupOffsetsOp::Delete: {
            auto* req = rd_kafka_DeleteConsumerGroupOffsets_new(group.c_str(), parts);
            rd_kafka_DeleteConsumerGroupOffsets(a->rk(), &req, 1, o, q);
            rd_kafka_DeleteConsumerGroupOffsets_destroy(req);
            break;
          }
        }
      });
  if (parts) rd_kafka_topic_partition_list_destroy(parts);
  return yielded;
}

}  // namespace klua::admin_impl
