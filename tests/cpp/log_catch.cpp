// klua's log (include/klua/log.hpp, host/log.cpp): the sink an embedding program sets, JSON lines that
// a strict parser (nlohmann::json) accepts whatever the bytes, the text shape, the threshold, and the
// masking of secrets.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "host/log.hpp"
#include "klua/log.hpp"
#include "klua/runtime.hpp"

namespace kl = klua::log;

namespace {
// Captures every record for the test's length, then puts the defaults back.
struct Capture {
  std::vector<std::string> lines;
  std::vector<kl::Level> levels;
  Capture(kl::Format f, kl::Level threshold = kl::Level::info) {
    kl::set_format(f);
    kl::set_level(threshold);
    kl::set_sink([this](const kl::Record& r, std::string_view line) {
      lines.emplace_back(line);
      levels.push_back(r.level);
    });
  }
  ~Capture() {
    kl::set_sink({});
    kl::set_format(kl::Format::text);
    kl::set_level(kl::Level::info);
  }
};
}  // namespace

TEST_CASE("JSON lines are valid JSON whatever the bytes, one object a line", "[log]") {
  Capture c(kl::Format::json);
  std::string nasty = std::string("a\"b\\c\nd\re\tf") + '\0' + "\x1b\x7f bad:\xff\xfe half:\xe2\x82 overlong:\xc0\xaf"
                      " surrogate:\xed\xa0\x80 ok:\xe2\x82\xac \xf0\x9f\x98\x80";
  kl::write(kl::Level::warn, nasty, {{"bytes", nasty}, {"n", "42", true}, {"obj", R"({"a":[1,2]})", true}});
  REQUIRE(c.lines.size() == 1);
  const std::string& line = c.lines[0];
  REQUIRE(line.back() == '\n');
  REQUIRE(line.find('\n') == line.size() - 1);
  auto j = nlohmann::json::parse(line.substr(0, line.size() - 1));  // throws on invalid UTF-8 too
  CHECK(j["level"] == "warn");
  std::string msg = j["message"];
  CHECK(msg.substr(0, 13) == std::string("a\"b\\c\nd\re\tf") + '\0' + "\x1b");
  // U+FFFD for each maximal ill-formed subpart (as klua.json.encode's invalid_utf8 = "replace")
  CHECK(msg.find("bad:\xef\xbf\xbd\xef\xbf\xbd half:\xef\xbf\xbd overlong:\xef\xbf\xbd\xef\xbf\xbd surrogate:"
                 "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd ok") != std::string::npos);
  CHECK(msg.find("ok:\xe2\x82\xac \xf0\x9f\x98\x80") != std::string::npos);  // valid UTF-8 kept as is
  CHECK(j["fields"]["bytes"] == msg);
  CHECK(j["fields"]["n"] == 42);
  CHECK(j["fields"]["obj"]["a"][1] == 2);
  CHECK(std::string(j["time"]).size() == 24);
}

TEST_CASE("the text format: time, level, message, logfmt fields; klua's own lines as they were", "[log]") {
  Capture c(kl::Format::text);
  kl::write(kl::Level::info, "two\nlines", {{"port", "8080", true}, {"name", "a b"}, {"empty", ""}, {"eq", "x=y"}});
  kl::diagnostic(kl::Level::warn, "a warning", {{"client", "rdkafka#producer-1"}});
  kl::diagnostic(kl::Level::error, "boom", {{"traceback", "stack traceback:\n\t..."}}, "klua: boom\nstack traceback:\n\t...");
  REQUIRE(c.lines.size() == 3);
  CHECK(c.lines[0].substr(23) == "Z INFO two\\nlines port=8080 name=\"a b\" empty=\"\" eq=\"x=y\"\n");
  CHECK(c.lines[1] == "klua: a warning\n");
  CHECK(c.lines[2] == "klua: boom\nstack traceback:\n\t...\n");
}

TEST_CASE("the threshold drops records before anything is formatted; diagnostic_always ignores it", "[log]") {
  Capture c(kl::Format::json, kl::Level::warn);
  CHECK_FALSE(kl::enabled(kl::Level::info));
  kl::write(kl::Level::info, "dropped");
  kl::diagnostic(kl::Level::debug, "dropped too");
  kl::diagnostic_always(kl::Level::debug, "asked for", {});
  kl::write(kl::Level::error, "kept");
  REQUIRE(c.lines.size() == 2);
  CHECK(nlohmann::json::parse(c.lines[0])["level"] == "debug");
  CHECK(c.levels[1] == kl::Level::error);
  CHECK(kl::parse_level("WARNING") == kl::Level::warn);
  CHECK_FALSE(kl::parse_level("trace"));
  CHECK(kl::parse_format("json") == kl::Format::json);
  CHECK_FALSE(kl::parse_format("xml"));
}

TEST_CASE("secrets are masked: registered values, secret field names, URLs, name=value, auth headers", "[log]") {
  Capture c(kl::Format::json);
  kl::add_secret("s3cr3t-value");
  kl::write(kl::Level::info, "pw s3cr3t-value https://bob:hunter2@h/x password=abc \"token\": \"t0k\" "
                               "Authorization: Bearer xyz.123 key=order-7 linger.ms=5",
             {{"password", "p"}, {"api_key", "k"}, {"Authorization", "Basic QQ=="}, {"key", "order-7"},
              {"note", "s3cr3t-value"}, {"n", "12345678", true}, {"body", R"({"token":123,"a":"s3cr3t-value"})", true}});
  kl::add_secret("12345678");
  kl::write(kl::Level::info, "n", {{"n", "12345678", true}});
  auto j = nlohmann::json::parse(c.lines[0]);
  CHECK(j["message"] == "pw *** https://***@h/x password=*** \"token\": \"***\" Authorization: Bearer *** key=order-7 "
                       "linger.ms=5");
  auto f = j["fields"];
  CHECK(f["password"] == "********");
  CHECK(f["api_key"] == "********");
  CHECK(f["Authorization"] == "********");
  CHECK(f["key"] == "order-7");  // a Kafka message's key is no secret
  CHECK(f["note"] == "***");
  CHECK(f["body"]["token"] == "***");  // masked inside the object, which stays JSON
  CHECK(f["body"]["a"] == "***");
  // a number that is a secret: masked, and no longer a number
  CHECK(nlohmann::json::parse(c.lines[1])["fields"]["n"] == "***");
}

TEST_CASE("the schema registry's credentials are secret names", "[log]") {
  CHECK(kl::is_secret_name("schema.registry.basic.auth.user.info"));
  CHECK(kl::is_secret_name("schema.registry.bearer.auth.token"));
  CHECK_FALSE(kl::is_secret_name("schema.registry.url"));
}

TEST_CASE("the signal handler's line needs no allocation and is the same record", "[log]") {
  char buf[512];
  kl::set_format(kl::Format::json);
  size_t n = kl::signal_safe_line(buf, sizeof buf, kl::Level::warn, "SIGTERM \"received\"");
  auto j = nlohmann::json::parse(std::string(buf, n));
  CHECK(j["message"] == "SIGTERM \"received\"");
  CHECK(j["level"] == "warn");
  CHECK(j["fields"]["logger"] == "klua");
  CHECK(std::string(j["time"]).size() == 24);
  kl::set_format(kl::Format::text);
  n = kl::signal_safe_line(buf, sizeof buf, kl::Level::warn, "SIGINT received");
  CHECK(std::string(buf, n) == "klua: SIGINT received\n");
  kl::set_level(kl::Level::error);
  CHECK(kl::signal_safe_line(buf, sizeof buf, kl::Level::warn, "x") == 0);
  kl::set_level(kl::Level::info);
}

TEST_CASE("an embedding program takes klua.log's records and klua's own through its sink", "[log]") {
  Capture c(kl::Format::json);
  klua::embed::Runtime rt;
  int rc = rt.run_string(R"(
    klua.log.info("from the script", { order = 7 })
    assert(not pcall(klua.log.info, 1))
    klua.log.debug("below the threshold")
  )");
  CHECK(rc == 0);
  REQUIRE(c.lines.size() == 1);
  auto j = nlohmann::json::parse(c.lines[0]);
  CHECK(j["message"] == "from the script");
  CHECK(j["fields"]["order"] == 7);
}
