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
  CHECK(klua::klua_property_names() ==
        std::vector<std::string>{"klua.unreachable.timeout.ms", "schema.registry.url", "schema.registry.basic.auth.user.info",
                                 "schema.registry.bearer.auth.token", "schema.registry.ssl.ca.location"});
}

TEST_CASE("the schema registry's properties are klua's, its credentials secrets", "[klua-property]") {
  CHECK(klua::is_klua_property("schema.registry.url"));
  CHECK(klua::is_klua_property("schema.registry.basic.auth.user.info"));
  CHECK_FALSE(klua::is_klua_property("schema.registryurl"));
  CHECK(klua::klua_property_problem("schema.registry.url", "http://127.0.0.1:8081/apis/ccompat/v7") == "");
  CHECK(klua::klua_property_problem("schema.registry.url", "https://sr.example:443") == "");
  CHECK(klua::klua_property_problem("schema.registry.url", "sr:8081").find("http://") != std::string::npos);
  CHECK(klua::klua_property_problem("schema.registry.url", "http://a:1,http://b:2").find("one URL") != std::string::npos);
  // A bad URL's user information is not repeated in the message.
  std::string p = klua::klua_property_problem("schema.registry.url", "ftp://alice:hunter2@sr");
  CHECK(p.find("hunter2") == std::string::npos);
  CHECK(p.find("***@sr") != std::string::npos);
  CHECK(klua::klua_property_problem("schema.registry.basic.auth.user.info", "alice:hunter2") == "");
  p = klua::klua_property_problem("schema.registry.basic.auth.user.info", "hunter2");
  CHECK(p.find("user:password") != std::string::npos);
  CHECK(p.find("hunter2") == std::string::npos);
  CHECK(klua::klua_property_problem("schema.registry.bearer.auth.token", "eyJ") == "");
  CHECK(klua::klua_property_problem("schema.registry.ssl.ca.location", "/etc/ssl/ca.pem") == "");
  CHECK(klua::klua_property_problem("schema.registry.uri", "x").find("unknown klua property") != std::string::npos);
  CHECK(klua::klua_property_problem("schema.registry.url", "") == "");  // none
  CHECK(klua::klua_property_problem("schema.registry.basic.auth.user.info", "") == "");
  CHECK(klua::is_secret_property("schema.registry.basic.auth.user.info"));
  CHECK(klua::is_secret_property("schema.registry.bearer.auth.token"));
  CHECK(klua::is_secret_property("basic.auth.userinfo"));
  CHECK_FALSE(klua::is_secret_property("schema.registry.url"));
  CHECK_FALSE(klua::is_secret_property("schema.registry.ssl.ca.location"));
}
