#include "bindings/modules.hpp"

#include <librdkafka/rdkafka.h>

#include <fmt/format.h>

#include "bindings/kafka_handle.hpp"
#include "bindings/json.hpp"
#include "bindings/base64.hpp"
#include "bindings/client_metrics.hpp"

namespace klua {

void open_stdout(Runtime& rt, lua_State* L, int klua_table);  // bindings/stdout.cpp
void open_process(Runtime& rt, lua_State* L, int klua_table);  // bindings/process.cpp
void open_http_server(Runtime& rt, lua_State* L, int klua_table);  // bindings/http_server.cpp
void open_http_client(Runtime& rt, lua_State* L, int klua_table);  // bindings/http_client.cpp
void open_metrics(Runtime& rt, lua_State* L, int klua_table);  // bindings/metrics.cpp
void open_protobuf(Runtime& rt, lua_State* L, int klua_table);  // bindings/protobuf_module.cpp

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
      open_client_metrics,
      [](Runtime&, lua_State* L, int klua) { open_base64(L, klua); },
      open_stdout,
      open_process,
      open_http_server,
      open_http_client,
      open_metrics,
      open_protobuf,
  };
}

// librdkafka's builtin.features tells what this build can do (compression codecs, SSL, SASL
// mechanisms, OIDC): the first thing to check when a property is refused as unsupported.
static std::string builtin_features() {
  char value[512] = "?";
  size_t size = sizeof value;
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_get(conf, "builtin.features", value, &size) != RD_KAFKA_CONF_OK) value[0] = 0;
  rd_kafka_conf_destroy(conf);
  return value;
}

std::string versions_text() {
  return fmt::format("klua {}\nlibrdkafka {} ({})\n{}\n", KLUA_VERSION, rd_kafka_version_str(), builtin_features(),
                     LUAJIT_VERSION);
}

}  // namespace klua
