#include "host/cli_args.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <fstream>

#include "host/log.hpp"

namespace klua {

namespace {

constexpr size_t MAX_PROPERTIES_FILE = 1 << 20;

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

bool read_properties_file(const std::string& path, std::vector<ConfigEntry>& out, std::string& err) {
  if (is_directory(path)) {  // an ifstream opens a directory and reads nothing: not an empty file
    err = fmt::format("-F {}: is a directory, not a properties file", path);
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    err = fmt::format("-F {}: cannot open: {}", path, std::strerror(errno));
    return false;
  }
  // Read with a bound rather than line by line: a pipe (-F <(vault ...)) is fine, a device that
  // never ends is not.
  std::string text;
  char buf[65536];
  while (text.size() <= MAX_PROPERTIES_FILE && in.read(buf, sizeof buf).gcount() > 0)
    text.append(buf, static_cast<size_t>(in.gcount()));
  if (text.size() > MAX_PROPERTIES_FILE) {
    err = fmt::format("-F {}: larger than 1 MiB, not a properties file", path);
    return false;
  }
  int lineno = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    ++lineno;
    size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) {
      err = fmt::format("{}:{}: expected key=value", path, lineno);
      return false;
    }
    if (eq == b) {
      err = fmt::format("{}:{}: expected key=value, the key is empty", path, lineno);
      return false;
    }
    std::string key = line.substr(b, eq - b);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    std::string value = line.substr(eq + 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == ' ')) value.pop_back();
    size_t vb = value.find_first_not_of(" \t");
    value = vb == std::string::npos ? "" : value.substr(vb);
    out.push_back({key, value, fmt::format("-F {}:{}", path, lineno)});
  }
  return true;
}

bool parse_metrics_address(const std::string& value, std::string& host, int& port) {
  auto decimal_port = [&](const std::string& s) {
    if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos) return false;
    port = std::stoi(s);
    return port <= 65535;
  };
  size_t colon = value.rfind(':');
  if (colon == std::string::npos) {
    host = "127.0.0.1";  // a port alone: the local interface, as klua.metrics.serve's default
    return decimal_port(value);
  }
  host = value.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  // An empty host (":9464", every interface in Go's convention) and a bare IPv6 address with a port
  // (::1:9464, ambiguous) are refused rather than guessed.
  else if (host.empty() || host.find(':') != std::string::npos) return false;
  return decimal_port(value.substr(colon + 1));
}

int parse_global_option(GlobalOptions& g, int argc, char** argv, int& i, bool before_command, std::string& err) {
  std::string a = argv[i];
  auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
  auto fail = [&](std::string msg) {
    err = std::move(msg);
    return -1;
  };
  if (a == "-b" || a == "--brokers") {
    const char* v = value();
    // (an empty list, -b "$UNSET_VAR", would wait 300 s for no broker at all)
    if (!v || !*v) return fail(a + " needs a broker list");
    g.brokers_layer = {{"bootstrap.servers", v, a}};
  } else if (a.rfind("--brokers=", 0) == 0) {
    if (a.size() == 10) return fail("--brokers= needs a broker list");
    g.brokers_layer = {{"bootstrap.servers", a.substr(10), "--brokers"}};
  } else if (a == "--schema-registry" || a.rfind("--schema-registry=", 0) == 0) {
    const char* v = a == "--schema-registry" ? value() : argv[i] + 18;
    if (!v || !*v) return fail("--schema-registry needs a URL (e.g. http://127.0.0.1:8081)");
    g.registry_layer = {{"schema.registry.url", v, "--schema-registry"}};
  } else if (a == "--embedded") {
    g.embedded = true;
  } else if (a == "--metrics" || a.rfind("--metrics=", 0) == 0) {
    const char* v = a == "--metrics" ? value() : argv[i] + 10;
    if (!v || !*v) return fail("--metrics needs HOST:PORT or PORT (e.g. 127.0.0.1:9464)");
    if (!parse_metrics_address(v, g.metrics_host, g.metrics_port))
      return fail(fmt::format("--metrics: expected HOST:PORT, [IPv6]:PORT or PORT from 0 to 65535 (e.g. "
                              "127.0.0.1:9464), got '{}'", v));
  } else if (a == "-X") {
    const char* v = value();
    if (!v) return fail("-X needs key=value");
    std::string kv = v;
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return fail(fmt::format("-X {}: expected key=value", kv));
    g.x_layer.push_back({kv.substr(0, eq), kv.substr(eq + 1), "-X"});
  } else if (a == "-F") {
    const char* v = value();
    if (!v) return fail("-F needs a file");
    if (!read_properties_file(v, g.file_layer, err)) return -1;
  } else if (a == "-p" || a == "--profile" || a.rfind("--profile=", 0) == 0) {
    const char* v = a.rfind("--profile=", 0) == 0 ? argv[i] + 10 : value();
    if (!v || !*v) return fail(a + " needs a profile name");
    g.profile = {v, "--profile"};
  } else if (a == "-d" || a == "--debug") {
    const char* v = value();
    if (!v) return fail(a + " needs debug contexts (e.g. all)");
    g.debug_layer = {{"debug", v, a}};
  } else if (a == "--log-format" || a.rfind("--log-format=", 0) == 0 || a == "--log-level" ||
             a.rfind("--log-level=", 0) == 0) {
    bool is_format = a.rfind("--log-format", 0) == 0;
    const char* name = is_format ? "--log-format" : "--log-level";
    size_t eq = a.find('=');
    const char* v = eq != std::string::npos ? argv[i] + eq + 1 : value();
    if (!v || !*v) return fail(fmt::format("{} needs {}", name, is_format ? "text or json" : "debug, info, warn or error"));
    if (is_format ? !log::parse_format(v).has_value() : !log::parse_level(v).has_value())
      return fail(fmt::format("{} must be {}, got '{}'", name, is_format ? "text or json" : "debug, info, warn or error", v));
    (is_format ? g.log_format : g.log_level) = v;
  } else if (before_command && (a == "-h" || a == "--help")) {
    g.print = GlobalOptions::Print::usage;
  } else if (before_command && a == "--version") {
    g.print = GlobalOptions::Print::version;
  } else {
    return 0;
  }
  return 1;
}

}  // namespace klua
