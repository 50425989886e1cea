// libFuzzer target: klua's log (host/log.cpp). The input is message NUL key NUL value [NUL secret];
// the record is written in JSON (to a sink) with a plain field, a JSON field (the value when it is
// JSON by nlohmann's reading) and the value registered as a secret. Properties: every line is one
// valid JSON object (nlohmann parses it, strict UTF-8) with the four keys; valid UTF-8 in a message
// that holds nothing to mask comes back unchanged; the text format is one line for a klua.log record.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "host/log.hpp"

namespace {
[[noreturn]] void fail(const std::string& what, const std::string& line) {
  std::fprintf(stderr, "log_fuzz: %s\nline: %s\n", what.c_str(), line.c_str());
  std::abort();
}
std::string lines;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace kl = klua::log;
  static bool init = (kl::set_sink([](const kl::Record&, std::string_view line) { lines.append(line); }), true);
  (void)init;
  std::string in(reinterpret_cast<const char*>(data), size), parts[4];
  for (int i = 0, pos = 0; i < 4; ++i) {
    size_t nul = in.find('\0', pos);
    parts[i] = in.substr(pos, nul == std::string::npos ? std::string::npos : nul - pos);
    if (nul == std::string::npos) break;
    pos = static_cast<int>(nul + 1);
  }
  const std::string &msg = parts[0], &key = parts[1], &value = parts[2];
  bool value_is_json = nlohmann::json::accept(value) && !value.empty();
  kl::Fields fields{{key, value}};
  if (value_is_json) fields.push_back({key + "_json", value, true});

  kl::set_format(kl::Format::json);
  lines.clear();
  kl::write(kl::Level::info, msg, fields);
  if (lines.empty() || lines.back() != '\n' || lines.find('\n') != lines.size() - 1) fail("not one line", lines);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(lines.substr(0, lines.size() - 1));
  } catch (const std::exception& e) {
    fail(std::string("invalid JSON: ") + e.what(), lines);
  }
  if (!j.is_object() || j.size() != 4 || !j["message"].is_string() || !j["fields"].is_object())
    fail("not the four keys", lines);
  if (kl::redact(msg) == msg) {
    try {
      (void)nlohmann::json(msg).dump();  // throws on invalid UTF-8
      if (j["message"] != msg) fail("valid UTF-8 changed", lines);
    } catch (const nlohmann::json::type_error&) {
    }
  }

  kl::set_format(kl::Format::text);
  lines.clear();
  kl::write(kl::Level::warn, msg, fields);
  if (lines.find('\n') != lines.size() - 1) fail("a text record on more than one line", lines);

  if (!parts[3].empty()) kl::add_secret(parts[3]);  // later inputs are masked against it
  return 0;
}
