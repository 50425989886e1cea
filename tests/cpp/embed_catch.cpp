// The public embedding API (include/klua/, host/embed.cpp): modules and C++ functions, calls in
// both directions, errors, the caller's loop driving klua, and stop() flushing a producer.
#include <catch2/catch.hpp>
#include <uv.h>

#include <string>

#include "klua/runtime.hpp"

namespace embed = klua::embed;

TEST_CASE("a C++ function and a Lua module, called from a script on the runtime's own loop", "[embed]") {
  embed::Runtime rt;
  int calls = 0;
  embed::Module m("native");
  m.function("add", [&](const embed::Values& a) {
    ++calls;
    return embed::Values{std::get<double>(a.at(0)) + std::get<double>(a.at(1)), std::string("sum")};
  });
  m.function("fail", [](const embed::Values&) -> embed::Values { throw std::runtime_error("no such sku"); });
  // The Lua half of the module gets the C++ functions as `...` and adds policy.
  m.lua("local native = ... return { add3 = function(a, b, c) return native.add(native.add(a, b), c) end,"
        " fail = native.fail }");
  rt.add_module(m);
  rt.add_lua_module("util", "return { twice = function(s) return s .. s end }");
  int rc = rt.run_string(R"(
    local native, util = require("native"), require("util")
    assert(native.add3(1, 2, 3) == 6)
    assert(util.twice("ab") == "abab")
    local ok, err = pcall(native.fail)
    assert(not ok and err:find("no such sku", 1, true), err)
    local ok2, err2 = pcall(require("native").add3, {}, 1, 2)
    assert(not ok2 and err2:find("bad argument #1 (table given", 1, true), err2)
  )");
  CHECK(rc == 0);
  CHECK(calls == 2);  // add3 calls add twice; a bad argument never reaches C++
  CHECK(rt.stopped());
  CHECK_THROWS_AS(rt.call("print"), embed::Error);
}

TEST_CASE("call() returns a Lua function's values and turns its errors into Error", "[embed]") {
  embed::Runtime rt;
  rt.add_lua_module("m", "return { pair = function(a) return a, a and #a, nil, true end,"
                         " boom = function() error('boom!') end, t = function() return {} end }");
  embed::Values r = rt.call("m.pair", {std::string("abc")});
  REQUIRE(r.size() == 4);
  CHECK(std::get<std::string>(r[0]) == "abc");
  CHECK(std::get<double>(r[1]) == 3);
  CHECK(std::holds_alternative<std::monostate>(r[2]));
  CHECK(std::get<bool>(r[3]));
  CHECK(std::get<std::string>(rt.call("m.t").at(0)).rfind("table: ", 0) == 0);
  CHECK_THROWS_WITH(rt.call("m.boom"), Catch::Contains("boom!"));
  CHECK_THROWS_WITH(rt.call("m.nothing"), Catch::Contains("m.nothing is a nil"));
  CHECK_THROWS_WITH(rt.call("string.nope.x"), Catch::Contains("not a table"));
  CHECK(std::get<std::string>(rt.call("string.rep", {std::string("x"), 3.0}).at(0)) == "xxx");
  // A function that waits needs a task: spawn it.
  CHECK_THROWS_AS(rt.call("klua.sleep", {1.0}), embed::Error);
  CHECK_THROWS_AS(rt.start_string("this is not Lua"), embed::Error);
}

TEST_CASE("options: properties are layered and embedded_cluster refuses a broker", "[embed]") {
  embed::Options o;
  o.properties = {{"linger.ms", "7"}, {"client.id", "embed-test"}};
  o.args = {"one", "two"};
  embed::Runtime rt(o);
  rt.start_string("local a, b = ... assert(a == 'one' and b == 'two' and arg[2] == 'two')"
                  " assert(klua.config()['linger.ms'] == '7' and klua.config()['client.id'] == 'embed-test')");
  CHECK(rt.run() == 0);

  embed::Options bad;
  bad.embedded_cluster = true;
  bad.properties = {{"bootstrap.servers", "k:9092"}};
  CHECK_THROWS_WITH(embed::Runtime(bad), Catch::Contains("names brokers"));
  embed::Options unknown;
  unknown.profile = "no-such-profile-for-embed-test";
  CHECK_THROWS_AS(embed::Runtime(unknown), embed::Error);
  CHECK(embed::Runtime::librdkafka_version().rfind("2.", 0) == 0);
}

TEST_CASE("on the caller's loop: tasks run between the caller's callbacks; stop() cancels them", "[embed]") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    embed::Runtime rt(&loop);
    embed::Result slept, forever;
    int done = 0;
    rt.spawn("klua.sleep", {30.0}, [&](const embed::Result& r) { slept = r, ++done; });
    rt.start_string("klua.sleep(60000)", "=forever", [&](const embed::Result& r) { forever = r, ++done; });
    // The caller's loop runs klua's sleep timer: run it until the first task ended.
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = &done;
    uv_timer_start(&t, [](uv_timer_t* h) { if (*static_cast<int*>(h->data) >= 1) uv_stop(h->loop); }, 1, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(done == 1);
    CHECK(slept.ok);
    uv_close(reinterpret_cast<uv_handle_t*>(&t), nullptr);
    CHECK(rt.stop() == 0);
    CHECK(done == 2);
    CHECK_FALSE(forever.ok);
    CHECK_THAT(forever.error, Catch::Contains("KLUA_CANCELLED"));
    CHECK(rt.stopped());
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the close callbacks of klua's handles on this loop
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("on the caller's loop: klua.exit ends the runtime and calls on_exit; the loop then ends", "[embed]") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int exit_code = -1;
  {
    embed::Runtime rt(&loop);
    rt.on_exit([&](int code) { exit_code = code; });
    rt.start_string("klua.sleep(10) klua.exit(4)");
    uv_run(&loop, UV_RUN_DEFAULT);  // ends by itself: klua's loop has nothing left
    CHECK(exit_code == 4);
    CHECK(rt.stopped());
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("stop() flushes a producer: a message sent with linger.ms=10000 is delivered", "[embed][kafka]") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int delivered = 0;
  {
    embed::Options o;
    o.embedded_cluster = true;
    embed::Runtime rt(&loop, o);
    embed::Module m("host");
    m.function("delivered", [&](const embed::Values& a) {
      if (std::holds_alternative<std::monostate>(a.at(0))) ++delivered;  // no error
      return embed::Values{};
    });
    rt.add_module(m);
    bool sent = false, ended = false;
    rt.start_string(R"(
      p = klua.producer{ ["linger.ms"] = 10000, on_delivery = function(report, err) require("host").delivered(err) end }
      assert(p:send{ topic = "embed-stop", value = "x" })
    )", "=send", [&](const embed::Result& r) {
      sent = r.ok, ended = true;
      if (!r.ok) FAIL_CHECK(r.error);
    });
    while (!ended) uv_run(&loop, UV_RUN_ONCE);
    REQUIRE(sent);
    CHECK(delivered == 0);
    rt.stop();
    CHECK(delivered == 1);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}
