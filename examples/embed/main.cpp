// examples/embed: a C++ program with its own libuv loop that embeds klua. The runtime is driven
// by the program's loop; a consumer handler written in C++ (host.handle) is called by a Lua
// consumer loop for each message, between the program's own timer callbacks. It produces a few
// messages on the embedded cluster, handles them, and stops klua gracefully (the consumer
// commits the stored offsets and leaves its group) before the program's loop ends.
//
//   embed [MESSAGES]      (default 5)
#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <klua/log.hpp>
#include <klua/runtime.hpp>
#ifdef EMBED_WITH_SYSTEM_RDKAFKA
#include <librdkafka/rdkafka.h>
#endif

namespace embed = klua::embed;

// The Lua side: produce, then consume and hand each message to the C++ handler.
const char* const ORDERS_LUA = R"(
local host = require("host")
local M = {}

function M.produce(topic, n)
  local p = klua.producer()
  for i = 1, n do
    assert(p:produce{ topic = topic, key = "order-" .. i, value = klua.json.encode{ n = i, total = i * 10 } })
  end
  return n
end

-- A consumer handler loop: every message goes to host.handle, then its offset is stored (the
-- runtime's stop() commits stored offsets as the consumer leaves).
function M.handle(topic, group, n)
  local c = klua.consumer{ group = group, topics = { topic }, ["auto.offset.reset"] = "earliest" }
  local handled = 0
  while handled < n do
    local msg, err = c:poll(10000)
    assert(not err, err)
    assert(msg, "no message within 10 s")
    host.handle(msg.topic, msg.partition, msg.offset, msg.key, msg.value)
    c:store(msg)
    handled = handled + 1
  end
  return handled
end

function M.run(topic, group, n)
  M.produce(topic, n)
  klua.log.info("produced", { topic = topic, messages = n })
  return M.handle(topic, group, n)
end

return M
)";

int main(int argc, char** argv) {
  int messages = argc > 1 ? std::atoi(argv[1]) : 5;
  uv_loop_t loop;
  uv_loop_init(&loop);

  std::printf("klua's librdkafka %s\n", embed::Runtime::librdkafka_version().c_str());
#ifdef EMBED_WITH_SYSTEM_RDKAFKA
  std::printf("this program's own librdkafka %s\n", rd_kafka_version_str());
#endif

  // klua's log (klua.log in the scripts, klua's own messages) into the program's output, as a
  // program with a logger of its own would take it.
  klua::log::set_sink([](const klua::log::Record& r, std::string_view line) {
    std::printf("[klua %s] %.*s", klua::log::level_name(r.level), static_cast<int>(line.size()), line.data());
  });

  embed::Options options;
  options.embedded_cluster = true;  // no broker: librdkafka's mock cluster, in process
  embed::Runtime rt(&loop, options);

  // The program's own work on the same loop: a ticker.
  uv_timer_t ticker;
  int ticks = 0;
  uv_timer_init(&loop, &ticker);
  ticker.data = &ticks;
  uv_timer_start(&ticker, [](uv_timer_t* t) { ++*static_cast<int*>(t->data); }, 5, 5);

  int handled = 0;
  int ticks_at_first = -1;
  embed::Module host("host");
  host.function("handle", [&](const embed::Values& a) {
    // topic, partition, offset, key, value
    if (ticks_at_first < 0) ticks_at_first = ticks;
    ++handled;
    std::printf("handled %s [%d] @%d key=%s value=%s\n", std::get<std::string>(a[0]).c_str(),
                static_cast<int>(std::get<double>(a[1])), static_cast<int>(std::get<double>(a[2])),
                std::get<std::string>(a[3]).c_str(), std::get<std::string>(a[4]).c_str());
    return embed::Values{};
  });
  rt.add_module(host);
  rt.add_lua_module("orders", ORDERS_LUA);

  int exit_code = 1;
  std::string topic = "embed-orders", group = "embed-handler";
  rt.spawn("orders.run", {topic, group, static_cast<double>(messages)}, [&](const embed::Result& r) {
    if (!r.ok) {
      std::fprintf(stderr, "embed: %s\n%s\n", r.error.c_str(), r.traceback.c_str());
    } else {
      std::printf("the Lua handler loop returned %g\n", std::get<double>(r.values.at(0)));
      exit_code = 0;
    }
    // Graceful stop from inside the loop: the consumer commits what it stored and leaves.
    rt.stop();
    uv_timer_stop(&ticker);
    uv_close(reinterpret_cast<uv_handle_t*>(&ticker), nullptr);
  });

  uv_run(&loop, UV_RUN_DEFAULT);  // returns when neither the program nor klua has work left
  std::printf("program loop ended: %d messages handled, the program's timer ticked %d times (%d before the "
              "first message)\n", handled, ticks, ticks_at_first);
  if (handled != messages) exit_code = 1;
  if (exit_code == 0) std::printf("embed ok\n");
  int rc = uv_loop_close(&loop);
  if (rc != 0) std::fprintf(stderr, "embed: uv_loop_close: %s\n", uv_strerror(rc));
  return exit_code;
}
