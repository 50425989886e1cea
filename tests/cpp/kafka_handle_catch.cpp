// bindings/kafka_handle.cpp's helpers without a client: redact_userinfo (user information in
// URL-like bootstrap items never reaches a message, and text without any is left alone) and the
// check of klua's own properties that the command line can make before anything runs.
#include <catch2/catch.hpp>

#include <string>

#include "bindings/kafka_handle.hpp"

using klua::redact_userinfo;

TEST_CASE("user information before an '@' is masked, up to a separator", "[redact]") {
  CHECK(redact_userinfo("SASL_SSL://user:secret@k1:9093") == "SASL_SSL://***@k1:9093");
  CHECK(redact_userinfo("user:secret@k1:9093,k2:9093") == "***@k1:9093,k2:9093");
  CHECK(redact_userinfo("a:b@k1:1,SSL://c:d@k2:2") == "***@k1:1,SSL://***@k2:2");
  CHECK(redact_userinfo("[user:secret@127.0.0.1:1]:9092/bootstrap: Failed to resolve '[user:secret@127.0.0.1:1]:9092'") ==
        "[***@127.0.0.1:1]:9092/bootstrap: Failed to resolve '[***@127.0.0.1:1]:9092'");
}

TEST_CASE("text without user information is unchanged", "[redact]") {
  CHECK(redact_userinfo("127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused") ==
        "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused");
  CHECK(redact_userinfo("") == "");
  CHECK(redact_userinfo("@ at the start, and a lone @ here") == "@ at the start, and a lone @ here");
}

TEST_CASE("klua's properties: names and values", "[klua-property]") {
  CHECK(klua::is_klua_property("klua.unreachable.timeout.ms"));
  CHECK(klua::is_klua_property("klua.nonsense"));
  CHECK_FALSE(klua::is_klua_property("linger.ms"));
  CHECK(klua::klua_property_problem("klua.unreachable.timeout.ms", "2500") == "");
  CHECK(klua::klua_property_problem("klua.unreachable.timeout.ms", "0") == "");
  CHECK(klua::klua_property_problem("klua.unreachable.timeout.ms", "soon").find("expected a number") != std::string::npos);
  CHECK(klua::klua_property_problem("klua.unreachable.timeout.ms", "-1").find("expected a number") != std::string::npos);
  CHECK(klua::klua_property_problem("klua.unreachable.timeout.ms", "").find("expected a number") != std::string::npos);
  CHECK(klua::klua_property_problem("klua.unreachable.timeot.ms", "5").find("unknown klua property") != std::string::npos);
  CHECK(klua::klua_property_names() == std::vector<std::string>{"klua.unreachable.timeout.ms"});
}
