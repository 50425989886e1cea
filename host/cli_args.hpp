// The CLI's global options (-b, -X, -F, -p, -d, --embedded, --metrics, --log-format, --log-level,
// --schema-registry, -h,
// --version) and the -F properties
// file, parsed into configuration layers. Apart from host/main.cpp so that the parser can be
// tested and fuzzed (tests/fuzz/cli_args_fuzz.cpp) without running a command.
#pragma once
#include <string>
#include <vector>

#include "host/profiles.hpp"
#include "host/runtime.hpp"

namespace klua {

struct GlobalOptions {
  std::vector<ConfigEntry> file_layer, brokers_layer, x_layer, debug_layer;
  // --schema-registry URL: schema.registry.url, at -b's precedence.
  std::vector<ConfigEntry> registry_layer;
  ProfileChoice profile;
  bool embedded = false;
  // --log-format text|json, --log-level debug|info|warn|error (checked; empty when not given)
  std::string log_format, log_level;
  // --metrics HOST:PORT (or PORT: 127.0.0.1): klua.metrics' endpoints served for a script's life.
  std::string metrics_host;
  int metrics_port = -1;  // -1: not given
  enum class Print { none, usage, version } print = Print::none;  // -h / --version: print, exit 0
};

// Reads the global option at argv[i], advancing i past its value. Returns 1 when it was one, 0
// when it was not (argv[i] is left to the caller), -1 on a usage error, described in err.
// -h and --version are options only before the command (before_command).
int parse_global_option(GlobalOptions& g, int argc, char** argv, int& i, bool before_command, std::string& err);

// The value of --metrics: HOST:PORT, [IPv6]:PORT or PORT (127.0.0.1). False on a bad value.
bool parse_metrics_address(const std::string& value, std::string& host, int& port);

// A Java-style properties file (key=value lines, # comments) as entries whose source is
// "-F path:line". Refuses a directory and a file over 1 MiB (-F /dev/zero would never end).
bool read_properties_file(const std::string& path, std::vector<ConfigEntry>& out, std::string& err);

}  // namespace klua
