// The thin CLI over the runtime library: parses flags into configuration layers,
// picks the command, runs it, returns the exit code.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bindings/modules.hpp"
#include "host/profiles.hpp"
#include "host/runtime.hpp"

namespace {

const char* const USAGE = R"(usage: klua [options] [command | FILE] [args...]

commands:
  run FILE [args...]   run a Lua script (also: klua FILE [args...]); args are in `arg`
  -e CODE [args...]    run CODE
  repl                 interactive prompt (the default on a terminal with no arguments)
  test [--filter P] [--tap] [--junit FILE] PATH...   run test files (*_test.lua in directories)
  topics [--json]      list topics                    groups [--json]   list consumer groups
  lag GROUP [--max-lag N]    a group's lag per partition (exit 4 when over N)
  produce TOPIC [-k SEP]     send stdin lines as messages
  consume TOPIC [--from beginning|end|OFFSET|TIME] [-n N] [-e] [-f FMT | --json]
  provision FILE [--apply|--check] [--prune] [--json]   desired-state topics (exit 4 on drift)
  replay SOURCE TARGET [--from T] [--to T] [--since 2h] [--rate N]   copy a range of records
                       (each command has --help)
  config show [--json] the effective configuration and where each value comes from (secrets hidden)
  completion bash      a bash completion script (source <(klua completion bash))
  version              print klua, librdkafka and LuaJIT versions
  help [NAME]          this text; with NAME the reference: a page (consumer) or a function
                       (consumer.poll, c:poll, list_topics); help alone also lists the pages

options (before the command):
  -b, --brokers LIST   bootstrap servers (overrides -F, the profile and KLUA_BROKERS)
  -X key=value         a librdkafka property for every client (repeatable)
  -F FILE              a properties file (key=value lines, # comments)
  -d, --debug LIST     librdkafka debug contexts (e.g. broker,topic,msg or all)
  -p, --profile NAME   a profile of the config file (overrides KLUA_PROFILE)
  -h, --help           this text

environment:
  KLUA_BROKERS         bootstrap servers when neither -b nor -X/-F/a profile/the script name any
  KLUA_PROFILE         the profile to use (else the one named "default", if any)
  config file          $XDG_CONFIG_HOME/klua/config.lua (~/.config/klua/config.lua): named profiles

With no broker configured, klua starts an embedded mock cluster (klua help embedded).
Exit codes: 0 ok, 1 script error, 2 usage, 3 Kafka error, 4 check failed, 130/143 signals.
)";

int usage_error(const std::string& msg) {
  fmt::print(stderr, "klua: {}\n\n{}", msg, USAGE);
  return klua::EXIT_USAGE;
}

bool read_properties_file(const std::string& path, std::vector<klua::ConfigEntry>& out, std::string& err) {
  std::ifstream in(path);
  if (!in) {
    err = fmt::format("-F {}: cannot open: {}", path, std::strerror(errno));
    return false;
  }
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) {
      err = fmt::format("{}:{}: expected key=value", path, lineno);
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

}  // namespace

int main(int argc, char** argv) {
  std::vector<klua::ConfigEntry> env_layer, profile_layer, file_layer, brokers_layer, x_layer, debug_layer;
  klua::ProfileChoice profile;
  if (const char* p = std::getenv("KLUA_PROFILE"); p && *p) profile = {p, "KLUA_PROFILE"};
  if (const char* b = std::getenv("KLUA_BROKERS"); b && *b) env_layer.push_back({"bootstrap.servers", b, "KLUA_BROKERS"});

  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    auto need = [&](const char* what) -> const char* {
      if (i + 1 >= argc) return nullptr;
      (void)what;
      return argv[++i];
    };
    if (a == "-b" || a == "--brokers") {
      const char* v = need("-b");
      if (!v) return usage_error(a + " needs a broker list");
      brokers_layer = {{"bootstrap.servers", v, a}};
    } else if (a.rfind("--brokers=", 0) == 0) {
      brokers_layer = {{"bootstrap.servers", a.substr(10), "--brokers"}};
    } else if (a == "-X") {
      const char* v = need("-X");
      if (!v) return usage_error("-X needs key=value");
      std::string kv = v;
      size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) return usage_error(fmt::format("-X {}: expected key=value", kv));
      x_layer.push_back({kv.substr(0, eq), kv.substr(eq + 1), "-X"});
    } else if (a == "-F") {
      const char* v = need("-F");
      if (!v) return usage_error("-F needs a file");
      std::string err;
      if (!read_properties_file(v, file_layer, err)) return usage_error(err);
    } else if (a == "-p" || a == "--profile" || a.rfind("--profile=", 0) == 0) {
      const char* v = a.rfind("--profile=", 0) == 0 ? argv[i] + 10 : need("--profile");
      if (!v || !*v) return usage_error(a + " needs a profile name");
      profile = {v, "--profile"};
    } else if (a == "-d" || a == "--debug") {
      const char* v = need("-d");
      if (!v) return usage_error(a + " needs debug contexts (e.g. all)");
      debug_layer = {{"debug", v, a}};
    } else if (a == "-h" || a == "--help" ) {
      fmt::print("{}", USAGE);
      return 0;
    } else if (a == "--version") {
      fmt::print("{}", klua::versions_text());
      return 0;
    } else if (a == "--") {
      ++i;
      break;
    } else if (a.size() > 1 && a[0] == '-' && a != "-e") {
      return usage_error(fmt::format("unknown option {}", a));
    } else {
      break;
    }
  }

  std::string command = i < argc ? argv[i] : "";
  if (command != "help" && command != "version" && command != "completion") {
    std::string err;
    if (!klua::load_profile(klua::config_file_path(), profile, profile_layer, err)) {
      fmt::print(stderr, "klua: {}\n", err);
      return klua::EXIT_USAGE;
    }
  }

  // Lowest precedence first: a profile beats KLUA_BROKERS; -F, -b and -X beat the profile.
  klua::RuntimeOptions opts;
  for (auto* layer : {&env_layer, &profile_layer, &file_layer, &brokers_layer, &x_layer, &debug_layer})
    opts.config.insert(opts.config.end(), layer->begin(), layer->end());
  opts.modules = klua::standard_modules();

  enum { RunFile, RunCode, RunBundled } mode = RunFile;
  std::string target;
  int args_from = 0;
  if (command.empty()) {
    if (isatty(0)) {
      mode = RunBundled;
      target = "klua.repl";
    } else {
      target = "-";  // a script on stdin
    }
    args_from = argc;
  } else if (command == "help") {
    // klua help [NAME...]: the bundled reference (docs/), read by scripts/klua/help.lua; alone,
    // this usage text and then the list of pages.
    if (i + 1 >= argc) fmt::print("{}\n", USAGE);
    mode = RunBundled;
    target = "klua.help";
    args_from = i + 1;
  } else if (command == "version") {
    fmt::print("{}", klua::versions_text());
    return 0;
  } else if (command == "-e") {
    if (i + 1 >= argc) return usage_error("-e needs a chunk of Lua code");
    mode = RunCode;
    target = argv[i + 1];
    args_from = i + 2;
  } else if (command == "run") {
    if (i + 1 >= argc) return usage_error("run needs a FILE");
    target = argv[i + 1];
    args_from = i + 2;
  } else if (command == "repl") {
    mode = RunBundled;
    target = "klua.repl";
    args_from = i + 1;
  } else if (command == "topics" || command == "groups" || command == "lag" || command == "produce" ||
             command == "topic" || command == "group" || command == "offsets" || command == "metadata" ||
             command == "consume" || command == "provision" || command == "replay") {
    // The everyday one-liners: short scripts in scripts/klua/cli/ (subcommands win over files of
    // the same name: `klua run topics` runs a file).
    mode = RunBundled;
    target = "klua.cli." + command;
    args_from = i + 1;
  } else if (command == "test") {
    if (i + 1 >= argc) return usage_error("test needs at least one PATH");
    mode = RunBundled;
    target = "klua.test_runner";
    args_from = i + 1;
  } else if (command == "config" || command == "completion") {
    // klua config show, klua completion bash: scripts in scripts/klua/cli/ like the one-liners.
    mode = RunBundled;
    target = "klua.cli." + command;
    args_from = i + 1;
  } else {
    target = command;  // klua FILE [args]
    args_from = i + 1;
  }
  for (int k = args_from; k < argc; ++k) opts.script_args.emplace_back(argv[k]);
  opts.script_name = mode == RunCode ? "-e" : target;

  klua::Runtime rt(std::move(opts));
  switch (mode) {
    case RunCode:
      return rt.run_string(target, "=(command line)");
    case RunBundled:
      return rt.run_string(fmt::format("return require('{}').main(...)", target), "=" + target);
    case RunFile:
      if (target == "-") {
        std::stringstream ss;
        ss << std::cin.rdbuf();
        return rt.run_string(ss.str(), "=stdin");
      }
      if (access(target.c_str(), R_OK) != 0)
        return usage_error(fmt::format("cannot read {}: {}", target, std::strerror(errno)));
      return rt.run_file(target);
  }
  return 0;
}
