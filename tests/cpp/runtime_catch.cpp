// The runtime as a library: what an embedding C++ program sees.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <thread>

#include "bindings/kafka_handle.hpp"
#include "bindings/modules.hpp"
#include "host/runtime.hpp"

namespace {
klua::RuntimeOptions options() {
  klua::RuntimeOptions o;
  o.modules = klua::standard_modules();
  o.install_signal_handlers = false;
  return o;
}
}  // namespace

TEST_CASE("a script's exit code reaches the host", "[runtime]") {
  klua::Runtime rt(options());
  REQUIRE(rt.run_string("klua.exit(9)", "=test") == 9);
}

TEST_CASE("a script error gives exit code 1, a Kafka error 3", "[runtime]") {
  {
    klua::Runtime rt(options());
    REQUIRE(rt.run_string("error('x')", "=test") == 1);
  }
  {
    klua::Runtime rt(options());
    REQUIRE(rt.run_string("error(klua.errors.new{name='X', message='y'})", "=test") == 1);
  }
  {
    klua::Runtime rt(options());
    // An error built from a librdkafka code carries the Kafka flag.
    lua_State* L = rt.lua();
    lua_pushcfunction(L, [](lua_State* L) -> int {
      klua::raise_error(L, klua::kafka_error(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
    });
    lua_setglobal(L, "kafka_fail");
    REQUIRE(rt.run_string("kafka_fail()", "=test") == 3);
  }
}

TEST_CASE("tasks and sleeps run on the host's loop", "[runtime]") {
  klua::Runtime rt(options());
  REQUIRE(rt.run_string(R"(
    local n = 0
    for i = 1, 100 do klua.spawn(function() klua.sleep(i % 7) n = n + 1 end) end
    klua.sleep(20)
    assert(n == 100, n)
  )", "=test") == 0);
}

TEST_CASE("configuration layers: the last value wins", "[runtime]") {
  auto o = options();
  o.config = {{"client.id", "a", "-F"}, {"client.id", "b", "-X"}};
  klua::Runtime rt(std::move(o));
  REQUIRE(rt.config_value("client.id") == "b");
  REQUIRE_FALSE(rt.config_value("linger.ms").has_value());
}

TEST_CASE("topic name rules", "[producer]") {
  auto ok = [](const char* s) { return klua::topic_name_problem(s, strlen(s)).empty(); };
  REQUIRE(ok("orders"));
  REQUIRE(ok("svc.domain.event-type_v1"));
  REQUIRE_FALSE(ok(""));
  REQUIRE_FALSE(ok("."));
  REQUIRE_FALSE(ok(".."));
  REQUIRE(ok("..."));
  REQUIRE_FALSE(ok("a b"));
  REQUIRE_FALSE(ok("a/b"));
  std::string long_name(249, 'a');
  REQUIRE(ok(long_name.c_str()));
  long_name += 'a';
  REQUIRE_FALSE(ok(long_name.c_str()));
}

TEST_CASE("secret properties are recognised", "[config]") {
  REQUIRE(klua::is_secret_property("sasl.password"));
  REQUIRE(klua::is_secret_property("ssl.key.password"));
  REQUIRE(klua::is_secret_property("sasl.oauthbearer.client.secret"));
  REQUIRE(klua::is_secret_property("ssl.key.pem"));
  REQUIRE_FALSE(klua::is_secret_property("bootstrap.servers"));
  REQUIRE_FALSE(klua::is_secret_property("sasl.username"));
  // klua.secrets.is_secret's rule (scripts/klua/secrets.lua): misspellings and other shapes too
  for (const char* k : {"sasl.pasword", "SASL.PASSWORD", "ssl.keystore.password", "sasl.jaas.config", "api.key",
                        "private_key", "schema.registry.basic.auth.user.info.credential", "x.pwd"})
    REQUIRE(klua::is_secret_property(k));
  for (const char* k : {"ssl.key.location", "ssl.keystore.location", "linger.ms", "sasl.mechanism"})
    REQUIRE_FALSE(klua::is_secret_property(k));
}

TEST_CASE("two runtimes alive at once each keep working", "[runtime]") {
  klua::Runtime a(options());
  klua::Runtime b(options());
  const char* script = R"(
    local p = klua.producer()
    assert(p:send{ topic = "two-runtimes", value = "x" })
    assert(p:flush())
  )";
  REQUIRE(a.run_string(script, "=a") == 0);
  REQUIRE(b.run_string(script, "=b") == 0);
}

TEST_CASE("a runtime destroyed in another thread leaves no stale runtime behind", "[runtime]") {
  // Runtime::from must not answer with a runtime destroyed elsewhere whose Lua state's address the
  // next state reuses (an earlier per-thread cache did).
  for (int i = 0; i < 3; ++i) {
    auto a = std::make_unique<klua::Runtime>(options());
    REQUIRE(a->run_string("klua.sleep(0)", "=a") == 0);
    std::thread([&a] { a.reset(); }).join();
    klua::Runtime b(options());
    REQUIRE(b.run_string("klua.sleep(0); klua.exit(7)", "=b") == 7);
  }
}

TEST_CASE("runtimes in several threads at once share nothing", "[runtime]") {
  // Each thread runs its own runtime, embedded cluster and clients; tasks interleave on each
  // loop while the threads run in parallel. Every runtime must see only its own messages.
  constexpr int threads = 4;
  std::vector<int> codes(threads, -1);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([t, &codes] {
      klua::Runtime rt(options());
      std::string script = "local tag = '" + std::to_string(t) + R"('
        local p = klua.producer()
        for i = 1, 50 do assert(p:send{ topic = "threads", partition = 0, value = tag .. ":" .. i }) end
        assert(p:flush())
        local c = klua.consumer{ group = "g" .. tag, topics = { "threads" }, ["auto.offset.reset"] = "earliest" }
        local seen = 0
        while seen < 50 do
          local m = assert(c:poll(10000))
          assert(m.value == tag .. ":" .. (seen + 1), m.value)
          seen = seen + 1
        end
        c:close()
        klua.exit(seen == 50 and 0 or 9)
      )";
      codes[t] = rt.run_string(script, "=thread");
    });
  }
  for (auto& th : pool) th.join();
  for (int t = 0; t < threads; ++t) REQUIRE(codes[t] == 0);
}

TEST_CASE("to_display_string never raises, whatever __tostring does", "[runtime]") {
  klua::Runtime rt(options());
  lua_State* L = rt.lua();
  int top = lua_gettop(L);
  auto shown = [&](const char* chunk) {
    REQUIRE(luaL_dostring(L, chunk) == 0);
    std::string s = klua::to_display_string(L, -1);
    lua_pop(L, 1);
    return s;
  };
  CHECK(shown("return setmetatable({}, { __tostring = function() return 'fine' end })") == "fine");
  CHECK(shown("return setmetatable({}, { __tostring = function() error('broken', 0) end })") ==
        "error object (table) whose __tostring raised: broken");
  // What the failing __tostring raised is not trusted either: its own __tostring is not called.
  CHECK(shown("local inner = setmetatable({}, { __tostring = function() error('again') end }) "
              "return setmetatable({}, { __tostring = function() error(inner) end })") ==
        "error object (table) whose __tostring raised: (table value)");
  CHECK(shown("return setmetatable({}, { __tostring = function() return {} end })") ==
        "error object (table) whose __tostring returned a table");
  CHECK(shown("return newproxy(true)") .find("userdata") != std::string::npos);
  CHECK(lua_gettop(L) == top);
}

TEST_CASE("klua._stdout is a buffer per runtime, written out when its runtime closes", "[runtime]") {
  // fd 1 goes to a pipe for the test (64 KiB of pipe buffer is plenty for what is written).
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  int saved = dup(1);
  fflush(stdout);
  dup2(fds[1], 1);
  auto drain = [&] {
    std::string got;
    char buf[256];
    int flags = fcntl(fds[0], F_GETFL);
    fcntl(fds[0], F_SETFL, flags | O_NONBLOCK);
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
    return got;
  };
  std::string after_second, after_first;
  {
    auto first = std::make_unique<klua::Runtime>(options());
    first->run_string("klua._stdout.put('one')", "=first");  // buffered, not written
    {
      klua::Runtime second(options());
      second.run_string("klua._stdout.put('two') klua._stdout.flush()", "=second");
    }
    after_second = drain();  // the second runtime wrote its own bytes only
    first.reset();
    after_first = drain();  // the first one's buffer went out when it closed
  }
  dup2(saved, 1);
  close(saved);
  close(fds[0]);
  close(fds[1]);
  CHECK(after_second == "two");
  CHECK(after_first == "one");
}
