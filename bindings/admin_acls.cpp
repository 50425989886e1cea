// klua.admin primitives: SCRAM credentials and ACLs (see bindings/admin_internal.hpp for the split;
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

const char* scram_name(rd_kafka_ScramMechanism_t m) {
  switch (m) {
    case RD_KAFKA_SCRAM_MECHANISM_SHA_256: return "SCRAM-SHA-256";
    case RD_KAFKA_SCRAM_MECHANISM_SHA_512: return "SCRAM-SHA-512";
    default: return "unknown";
  }
}

// P.describe_scram(a, users | nil (all), timeout) -> list of {user, error, credentials = {{mechanism, iterations}}}
int l_describe_scram(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  std::vector<std::string> users;
  if (!lua_isnoneornil(L, 2)) users = string_list(L, 2, "admin:describe_user_scram_credentials");
  double timeout = timeout_arg(L, 3, a);
  std::vector<const char*> ptrs;
  for (auto& s : users) ptrs.push_back(s.c_str());
  int yielded = a->send(L, "admin:describe_user_scram_credentials", RD_KAFKA_ADMIN_OP_DESCRIBEUSERSCRAMCREDENTIALS, timeout, false, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
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
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_DescribeUserScramCredentials(a->rk(), ptrs.data(), ptrs.size(), o, q);
      });
  return yielded;
}

// P.alter_scram(a, {{user=, mechanism=1|2, iterations=, password=, salt=} | {user=, mechanism=, delete=true}},
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
  int yielded = a->send(L, "admin:alter_user_scram_credentials", RD_KAFKA_ADMIN_OP_ALTERUSERSCRAMCREDENTIALS, timeout, false, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
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
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_AlterUserScramCredentials(a->rk(), alts.data(), alts.size(), o, q);
      });
  rd_kafka_UserScramCredentialAlteration_destroy_array(alts.data(), alts.size());
  return yielded;
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

// P.create_acls(a, bindings, timeout) -> list of {error} in input order
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
      raise_bad_argument(L, 2, "admin:create_acls", fmt::format("binding {}: {}", i, errstr));
    }
    acls.push_back(b);
  }
  int yielded = a->send(L, "admin:create_acls", RD_KAFKA_ADMIN_OP_CREATEACLS, timeout, false, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
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
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_CreateAcls(a->rk(), acls.data(), acls.size(), o, q);
      });
  rd_kafka_AclBinding_destroy_array(acls.data(), acls.size());
  return yielded;
}

// P.describe_acls(a, filter, timeout) -> list of bindings
int l_describe_acls(lua_State* L) {
  Admin* a = check_admin_waiting(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  double timeout = timeout_arg(L, 3, a);
  char errstr[512];
  rd_kafka_AclBindingFilter_t* f = make_acl(read_acl(L, 2), true, errstr, sizeof errstr);
  if (!f) raise_bad_argument(L, 2, "admin:describe_acls", errstr);
  int yielded = a->send(L, "admin:describe_acls", RD_KAFKA_ADMIN_OP_DESCRIBEACLS, timeout, false, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
        size_t cnt;
        const auto** res = rd_kafka_DescribeAcls_result_acls(rd_kafka_event_DescribeAcls_result(ev), &cnt);
        push_acl_list(co, res, cnt);
        return 1;
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_DescribeAcls(a->rk(), f, o, q);
      });
  rd_kafka_AclBinding_destroy(f);
  return yielded;
}

// P.delete_acls(a, filters, timeout) -> list of {error, deleted = bindings} in input order
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
      raise_bad_argument(L, 2, "admin:delete_acls", fmt::format("filter {}: {}", i, errstr));
    }
    filters.push_back(f);
  }
  int yielded = a->send(L, "admin:delete_acls", RD_KAFKA_ADMIN_OP_DELETEACLS, timeout, false, false,
      [](lua_State* co, rd_kafka_event_t* ev) {
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
      },
      [&](rd_kafka_AdminOptions_t* o, rd_kafka_queue_t* q) {
        rd_kafka_DeleteAcls(a->rk(), filters.data(), filters.size(), o, q);
      });
  rd_kafka_AclBinding_destroy_array(filters.data(), filters.size());
  return yielded;
}

}  // namespace klua::admin_impl
