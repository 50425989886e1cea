// klua.lag(group[, topics[, opts]]) and klua.lag.watch(group, opts, fn): consumer-group lag on a shared,
// long-lived admin handle (created at the first call; closed with the other admin handles at exit).
// The snapshot itself is admin:lag (bindings/admin.cpp); this module adds the shared handle and the
// watcher (bindings/lua/lag.lua). opts.admin uses a given klua.admin handle instead of the shared one.
#include "bindings/admin.hpp"
#include "bindings/kafka_handle.hpp"
#include "bindings/lua_chunks.hpp"

namespace klua {

void open_lag(Runtime& rt, lua_State* L, int klua_table) {
  load_binding_chunk(L, "lag");
  lua_pushvalue(L, klua_table);
  lua_call(L, 1, 1);
  lua_setfield(L, klua_table, "lag");
}

}  // namespace klua
