// redact_userinfo (bindings/kafka_handle.cpp): user information in URL-like bootstrap items never
// reaches a message, and text without any is left alone.
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
