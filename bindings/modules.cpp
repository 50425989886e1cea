#include "bindings/modules.hpp"

#include <librdkafka/rdkafka.h>

#include <fmt/format.h>

#include "bindings/client.hpp"
#include "bindings/json.hpp"

namespace klua {

std::vector<ModuleOpener> standard_modules() {
  return {
      [](Runtime&, lua_State* L, int klua) {
        open_json(L);
        // Kept in the registry for the stats hook (on_stats receives decoded JSON).
        lua_getfield(L, -1, "decode");
        lua_setfield(L, LUA_REGISTRYINDEX, "klua.json.decode");
        lua_setfield(L, klua, "json");
      },
      open_kafka_common,
      open_embedded,
      open_producer,
      open_consumer,
      open_admin,
      open_lag,
      open_transactions,
  };
}

std::string versions_text() {
  return fmt::format("klua {}\nlibrdkafka {}\n{}\n", KLUA_VERSION, rd_kafka_version_str(), LUAJIT_VERSION);
}

}  // namespace klua
