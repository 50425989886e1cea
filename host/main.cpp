// The thin CLI over the runtime library: parses flags into configuration layers,
// picks the command, runs it, returns the exit code.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <librdkafka/rdkafka.h>

#include "bindings/kafka_handle.hpp"
#include "bindings/metrics_cli.hpp"
#include "bindings/modules.hpp"
#include "host/cli_args.hpp"
#include "host/log.hpp"
#include "host/profiles.hpp"
#include "host/runtime.hpp"

namespace {

const char* const USAGE = R"(usage: klua [options] command [args...]     klua [options] FILE [args...]

commands:
  run FILE [args...]   run a Lua script (also: klua FILE [args...]); args are in `arg`
  -e CODE [args...]    run CODE
  repl                 interactive prompt (the default on a terminal with no arguments)
  test [--filter P] [--tap] [--junit FILE] PATH...   run test files (*_test.lua in directories)
  topic list|describe|create|delete|alter ...    topics (kafka-topics.sh, kafka-configs.sh)
  group list|describe|delete|reset ...           consumer groups (kafka-consumer-groups.sh)
  topics [--json]      list topics                    groups [--json]   list consumer groups
  offsets TOPIC [-p N] [--time T]   low/high watermarks, or the offsets for a time (kcat -Q)
  metadata [TOPIC...]  brokers, topics, partitions, leaders (kcat -L)
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

options (before or after the command; after run FILE, -e CODE or FILE, every argument is the script's):
  -b, --brokers LIST   bootstrap servers (overrides -F, the profile and KLUA_BROKERS)
  --embedded           use the embedded mock cluster (the one-liners need it or a broker named)
  -X key=value         a librdkafka property for every client (repeatable), or klua's own:
                       klua.unreachable.timeout.ms=MS (5000) how long calls wait for a dead cluster,
                       schema.registry.* (url, basic.auth.user.info, bearer.auth.token,
                       ssl.ca.location) for klua.registry
  --schema-registry URL  the schema registry (schema.registry.url; overrides -F, the profile and
                       KLUA_SCHEMA_REGISTRY): Avro, Protobuf and JSON Schema values
  -F FILE              a properties file (key=value lines, # comments)
  -d, --debug LIST     librdkafka debug contexts (e.g. broker,topic,msg or all)
  --log-format FMT     text (default) or json: klua's messages on stderr as one JSON object a line
  --log-level LEVEL    debug, info (default), warn or error: the least severe record written
  --metrics HOST:PORT  serve /metrics, /healthz and /readyz for a script's life (run, -e, FILE,
                       repl; PORT alone: 127.0.0.1:PORT, 0 a free port); turns statistics on
  -p, --profile NAME   a profile of the config file (overrides KLUA_PROFILE); after produce,
                       consume, replay and offsets, -p is their partition: use --profile there
  -h, --help           this text

environment:
  KLUA_BROKERS         bootstrap servers when neither -b nor -X/-F/a profile/the script name any
  KLUA_PROFILE         the profile to use (else the one named "default", if any)
  KLUA_SCHEMA_REGISTRY the schema registry's URL when neither --schema-registry nor -X/-F/a
                       profile name one
  KLUA_LOG_FORMAT, KLUA_LOG_LEVEL   defaults of --log-format and --log-level
  config file          $XDG_CONFIG_HOME/klua/config.lua (~/.config/klua/config.lua): named profiles

The one-liners that talk to a cluster (all but config, completion, version, help and test)
need a broker (-b, KLUA_BROKERS, a profile) or --embedded. Scripts and the REPL start an embedded
mock cluster when no broker is configured, and say so (klua help embedded).
Exit codes: 0 ok, 1 script error, 2 usage, 3 Kafka error, 4 check failed, 130/143 signals.
)";

// The commands run by a bundled script. Adding a one-liner (scripts/klua/cli/NAME.lua with a
// main(...)) is one line here and one in scripts/klua/cli/completion.lua.
struct Command {
  const char* name;
  const char* module;
  bool cluster;           // talks to a Kafka cluster: refuses to run on the embedded default
  const char* own_short;  // short options of the command that shadow global ones after it
};
const Command COMMANDS[] = {
    {"repl", "klua.repl", false, ""},
    {"test", "klua.test_runner", false, ""},
    {"config", "klua.cli.config", false, ""},
    {"completion", "klua.cli.completion", false, ""},
    {"topics", "klua.cli.topics", true, ""},
    {"groups", "klua.cli.groups", true, ""},
    {"lag", "klua.cli.lag", true, ""},
    {"produce", "klua.cli.produce", true, "-p"},
    {"consume", "klua.cli.consume", true, "-p"},
    {"provision", "klua.cli.provision", true, ""},
    {"replay", "klua.cli.replay", true, "-p"},
    {"topic", "klua.cli.topic", true, ""},
    {"group", "klua.cli.group", true, ""},
    {"offsets", "klua.cli.offsets", true, "-p"},
    {"metadata", "klua.cli.metadata", true, ""},
};
// Handled here rather than by a bundled script's main.
const char* const BUILTIN_COMMANDS[] = {"run", "help", "version"};

const Command* find_command(const std::string& name) {
  for (const auto& c : COMMANDS)
    if (name == c.name) return &c;
  return nullptr;
}

// One line naming the mistake, then where the help is: never the whole usage text.
int usage_error(const std::string& msg, const std::string& command = "") {
  fmt::print(stderr, "klua: {} (see klua {}--help)\n", msg, command.empty() ? "" : command + " ");
  return klua::EXIT_USAGE;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The nearest of candidates by edit distance, when near enough to be a plausible typo.
std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

// librdkafka's property names (from its own table: rd_kafka_conf_properties_show).
std::vector<std::string> librdkafka_properties() {
  std::vector<std::string> names;
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  if (!f) return names;
  rd_kafka_conf_properties_show(f);
  std::fclose(f);
  std::istringstream in(std::string(buf, len));
  std::free(buf);
  std::string line;
  while (std::getline(in, line)) {
    size_t bar = line.find(" |");
    if (bar == std::string::npos) continue;
    std::string name = line.substr(0, line.find(' '));
    if (!name.empty() && name != "Property" && name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789._") == std::string::npos)
      names.push_back(name);
  }
  return names;
}

// A property given on the command line (-X, -F) is checked before anything runs: a bad one is a
// usage error naming it, its source and the nearest valid name.
bool check_property(const klua::ConfigEntry& e, std::string& err) {
  if (klua::is_klua_property(e.key)) {  // klua's own (klua.unreachable.timeout.ms): never librdkafka's
    std::string problem = klua::klua_property_problem(e.key, e.value);
    if (!problem.empty()) err = fmt::format("{}: {}", e.source, problem);
    return problem.empty();
  }
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // plugin.library.paths loads the plugins when set: only its name is checked here.
  const char* value = e.key == "plugin.library.paths" ? "" : e.value.c_str();
  rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, e.key.c_str(), value, errstr, sizeof errstr);
  rd_kafka_conf_destroy(conf);
  if (res == RD_KAFKA_CONF_OK) return true;
  if (res == RD_KAFKA_CONF_UNKNOWN) {
    std::string near = nearest(e.key, librdkafka_properties());
    err = fmt::format("{}: unknown librdkafka property '{}'{}", e.source, e.key,
                      near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near));
  } else {
    err = fmt::format("{}: bad value for '{}': {}", e.source, e.key, errstr);
  }
  return false;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The global options, wherever they are given (host/cli_args.cpp parses them): 1 when argv[i] was
// one, 0 when it was not, -1 after a usage error (printed; exit 2). -h and --version print here.
struct Globals : klua::GlobalOptions {
  int exit_now = -1;  // -h / --version: the exit code once printed
};

int parse_global(Globals& g, int argc, char** argv, int& i, bool before_command) {
  std::string err;
  int r = klua::parse_global_option(g, argc, argv, i, before_command, err);
  if (r < 0) return usage_error(err), -1;
  if (g.print == klua::GlobalOptions::Print::usage) fmt::print("{}", USAGE);
  if (g.print == klua::GlobalOptions::Print::version) fmt::print("{}", klua::versions_text());
  if (g.print != klua::GlobalOptions::Print::none) g.exit_now = 0;
  return r;
}

bool has_brokers(const std::vector<klua::ConfigEntry>& layer) {
  for (const auto& e : layer)
    if (e.key == "bootstrap.servers" || e.key == "metadata.broker.list") return true;
  return false;
}

void drop_brokers(std::vector<klua::ConfigEntry>& layer) {
  std::erase_if(layer, [](const klua::ConfigEntry& e) {
    return e.key == "bootstrap.servers" || e.key == "metadata.broker.list";
  });
}

// Lua string literal (for the names put into the bundled commands' chunk).
std::string lua_quote(const std::string& s) { return fmt::format("'{}'", s); }

}  // namespace

int main(int argc, char** argv) {
  // A closed standard stream (`klua ... 2>&-`) made the first message to it throw, and klua
  // aborted before its producers flushed: it reads and writes /dev/null instead.
  for (int fd = 0; fd <= 2; ++fd)
    if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      int nul = open("/dev/null", O_RDWR);
      if (nul >= 0 && nul != fd) {
        dup2(nul, fd);
        close(nul);
      }
    }
  // One descriptor per connection (klua.http.serve, the client, Kafka brokers): the soft limit is
  // raised to the hard one, as servers do (often 1024 soft against 524288 hard).
  if (struct rlimit rl {}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  Globals g;
  std::vector<klua::ConfigEntry> env_layer, profile_layer;
  if (const char* p = std::getenv("KLUA_PROFILE"); p && *p) g.profile = {p, "KLUA_PROFILE"};
  if (const char* b = std::getenv("KLUA_BROKERS"); b && *b) env_layer.push_back({"bootstrap.servers", b, "KLUA_BROKERS"});
  if (const char* r = std::getenv("KLUA_SCHEMA_REGISTRY"); r && *r)
    env_layer.push_back({"schema.registry.url", r, "KLUA_SCHEMA_REGISTRY"});

  // Global options before the command.
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    int r = parse_global(g, argc, argv, i, true);
    if (r < 0) return klua::EXIT_USAGE;
    if (g.exit_now >= 0) return g.exit_now;
    if (r > 0) continue;
    if (a == "--") {
      ++i;
      break;
    }
    if (a.size() > 1 && a[0] == '-' && a != "-e") {
      std::string near = nearest(a, {"--brokers", "--embedded", "--debug", "--profile", "--metrics", "--help", "--version",
                                     "--log-format", "--log-level", "--schema-registry"});
      return usage_error(fmt::format("unknown option {}{}", a, near.empty() ? "" : fmt::format(" (did you mean {}?)", near)));
    }
    break;
  }

  std::string command = i < argc ? argv[i] : "";
  const Command* cmd = find_command(command);
  // A command's own arguments, with the global options given after it taken out (its own short
  // options first: after consume, -p is the partition). After `run FILE`, `-e CODE` and `FILE`,
  // every argument is the script's.
  std::vector<std::string> cmd_args;
  if (cmd || command == "help" || command == "version") {
    std::string own = cmd ? cmd->own_short : "";
    for (int k = i + 1; k < argc; ++k) {
      std::string a = argv[k];
      if (a == "--") {
        for (; k < argc; ++k) cmd_args.emplace_back(argv[k]);
        break;
      }
      bool shadowed = a.size() == 2 && a[0] == '-' && own.find(a) != std::string::npos;
      if (!shadowed) {
        int r = parse_global(g, argc, argv, k, false);
        if (r < 0) return klua::EXIT_USAGE;
        if (r > 0) continue;
      }
      cmd_args.push_back(a);
    }
  }

  // klua run [options] FILE: global options may come between run and FILE (klua run --metrics 9464
  // FILE); from FILE on, every argument is the script's.
  int run_file_at = i + 1;
  if (command == "run") {
    for (; run_file_at < argc; ++run_file_at) {
      std::string a = argv[run_file_at];
      if (a == "--") {
        ++run_file_at;
        break;
      }
      int r = parse_global(g, argc, argv, run_file_at, false);
      if (r < 0) return klua::EXIT_USAGE;
      if (r == 0) break;
    }
  }
  bool metrics = g.metrics_port >= 0;
  if (metrics && ((cmd && command != "repl") || command == "help" || command == "version"))
    return usage_error(fmt::format("--metrics serves a script's metrics: give it with run, -e, FILE or repl, not {}", command));

  // The log's settings: the options, else the environment (a bad value there is named as well).
  for (auto [opt, var, is_format] : {std::tuple{&g.log_format, "KLUA_LOG_FORMAT", true},
                                     std::tuple{&g.log_level, "KLUA_LOG_LEVEL", false}}) {
    std::string v = *opt;
    if (v.empty())
      if (const char* e = std::getenv(var); e && *e) {
        v = e;
        if (is_format ? !klua::log::parse_format(v) : !klua::log::parse_level(v))
          return usage_error(fmt::format("{} must be {}, got '{}'", var,
                                         is_format ? "text or json" : "debug, info, warn or error", v));
      }
    if (v.empty()) continue;
    if (is_format) klua::log::set_format(*klua::log::parse_format(v));
    else klua::log::set_level(*klua::log::parse_level(v));
  }

  if (g.embedded && (!g.brokers_layer.empty() || has_brokers(g.x_layer) || has_brokers(g.file_layer)))
    return usage_error(fmt::format("--embedded and {} both say where the data goes: give one",
                                   !g.brokers_layer.empty() ? g.brokers_layer[0].source
                                   : has_brokers(g.x_layer) ? "-X bootstrap.servers"
                                                            : "-F's bootstrap.servers"));
  for (const auto* layer : {&env_layer, &g.file_layer, &g.registry_layer, &g.x_layer, &g.debug_layer})
    for (const auto& e : *layer) {
      std::string err;
      if (!check_property(e, err)) return usage_error(err);
    }

  if (command != "help" && command != "version" && command != "completion") {
    std::string err;
    if (!klua::load_profile(klua::config_file_path(), g.profile, profile_layer, err)) {
      fmt::print(stderr, "klua: {}\n", err);
      return klua::EXIT_USAGE;
    }
    // The profile's properties are checked like -X's, so a typo names the nearest property too.
    for (const auto& e : profile_layer)
      if (!check_property(e, err)) return usage_error(err);
  }
  if (g.embedded) {
    // --embedded wins over the brokers of KLUA_BROKERS and the profile.
    drop_brokers(env_layer);
    drop_brokers(profile_layer);
  }

  // Lowest precedence first: a profile beats KLUA_BROKERS (and KLUA_SCHEMA_REGISTRY); -F, -b,
  // --schema-registry and -X beat the profile.
  klua::RuntimeOptions opts;
  // --metrics turns librdkafka's statistics on (broker round-trip time and state come from them)
  // for every client, as the lowest layer: a value set anywhere else wins.
  if (metrics) opts.config.push_back({"statistics.interval.ms", "5000", "--metrics"});
  for (auto* layer : {&env_layer, &profile_layer, &g.file_layer, &g.brokers_layer, &g.registry_layer, &g.x_layer,
                      &g.debug_layer})
    opts.config.insert(opts.config.end(), layer->begin(), layer->end());
  opts.modules = klua::standard_modules();

  enum { RunFile, RunCode, RunBundled, RunCommand } mode = RunFile;
  std::string target;
  int args_from = argc;
  if (command.empty()) {
    if (isatty(0)) {
      mode = RunCommand;
      cmd = find_command("repl");
    } else {
      target = "-";  // a script on stdin
    }
  } else if (command == "help") {
    // klua help [NAME...]: the bundled reference (docs/), read by scripts/klua/help.lua; alone,
    // this usage text and then the list of pages.
    if (cmd_args.empty()) fmt::print("{}\n", USAGE);
    mode = RunBundled;
    target = "klua.help";
  } else if (command == "version") {
    if (!cmd_args.empty() && (cmd_args[0] == "-h" || cmd_args[0] == "--help")) {
      fmt::print("usage: klua version\n  prints klua's, librdkafka's and LuaJIT's versions\n");
      return 0;
    }
    if (!cmd_args.empty()) return usage_error(fmt::format("unexpected argument '{}'", cmd_args[0]), "version");
    fmt::print("{}", klua::versions_text());
    return 0;
  } else if (command == "-e") {
    if (i + 1 >= argc) return usage_error("-e needs a chunk of Lua code");
    mode = RunCode;
    target = argv[i + 1];
    args_from = i + 2;
  } else if (command == "run") {
    if (run_file_at >= argc) return usage_error("run needs a FILE");
    target = argv[run_file_at];
    args_from = run_file_at + 1;
  } else if (cmd) {
    // The everyday one-liners and the other bundled commands: scripts in scripts/klua/ (commands
    // win over files of the same name: `klua run topics` runs a file).
    if (command == "test" && cmd_args.empty()) return usage_error("test needs at least one PATH", "test");
    mode = RunCommand;
  } else {
    // klua FILE [args]; a bare word that is neither a file nor a command is a mistyped command.
    target = command;
    args_from = i + 1;
    bool path_like = command.find('/') != std::string::npos ||
                     (command.size() > 4 && command.compare(command.size() - 4, 4, ".lua") == 0);
    if (command == "-") target = "-";  // klua - : the script on standard input
    if (!path_like && command != "-" && access(command.c_str(), F_OK) != 0) {
      std::vector<std::string> names(std::begin(BUILTIN_COMMANDS), std::end(BUILTIN_COMMANDS));
      for (const auto& c : COMMANDS) names.emplace_back(c.name);
      std::string near = nearest(command, names);
      fmt::print(stderr, "klua: unknown command '{}' ({})\n", command,
                 near.empty() ? "klua --help lists the commands" : fmt::format("did you mean '{}'?", near));
      return klua::EXIT_USAGE;
    }
  }
  if (mode == RunCommand || mode == RunBundled)
    opts.script_args = cmd_args;
  else
    for (int k = args_from; k < argc; ++k) opts.script_args.emplace_back(argv[k]);
  opts.script_name = mode == RunCode ? "-e" : mode == RunCommand ? std::string(cmd->module) : target;

  if (mode == RunFile && target != "-") {
    bool dir = is_directory(target);  // readable, but no script
    if (dir || access(target.c_str(), R_OK) != 0) {
      fmt::print(stderr, "klua: cannot read {}: {}\n", target, dir ? "Is a directory" : std::strerror(errno));
      return klua::EXIT_USAGE;
    }
  }
  // Declared before the runtime, which closes its handle at its end.
  klua::CliMetrics cli_metrics;
  klua::Runtime rt(std::move(opts));
  if (metrics) {
    std::string err;
    std::string url = cli_metrics.start(rt, g.metrics_host, g.metrics_port, err);
    if (url.empty()) {
      fmt::print(stderr, "klua: --metrics: {}\n", err);
      return klua::EXIT_USAGE;
    }
    klua::log::diagnostic(klua::log::Level::info, fmt::format("metrics on {}", url), {{"url", url}});
  }
  switch (mode) {
    case RunCode:
      return rt.run_string(target, "=(command line)");
    case RunBundled:
      return rt.run_string(fmt::format("return require('{}').main(...)", target), "=" + target);
    case RunCommand:
      // klua.cli.common.run: the command's name for its messages, whether it needs a cluster
      // named, and whether --embedded asked for the embedded one.
      return rt.run_string(fmt::format("return require('klua.cli.common').run({}, {}, {}, {}, ...)",
                                       lua_quote(cmd->name), lua_quote(cmd->module), cmd->cluster, g.embedded),
                           fmt::format("=klua {}", cmd->name));
    case RunFile:
      if (target == "-") {
        std::stringstream ss;
        ss << std::cin.rdbuf();
        return rt.run_string(ss.str(), "=stdin");
      }
      return rt.run_file(target);
  }
  return 0;
}
