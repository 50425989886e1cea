// libFuzzer target: the CLI's global options (host/cli_args.cpp). The input is an argv, its
// arguments separated by NUL bytes; the part after the first "\n\n" (if any) is the text of a
// properties file that every -F names. parse_global_option is called as host/main.cpp calls it.
// Properties: no crash; a usage error always says something; -X entries have a non-empty key;
// -F entries name their file and line.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "host/cli_args.hpp"

namespace {

const std::string& scratch() {  // one properties file per process, in the working directory
  static const std::string path = "cli_args_fuzz." + std::to_string(getpid()) + ".properties";
  static bool registered = (std::atexit([] { unlink(path.c_str()); }), true);
  (void)registered;
  return path;
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "cli_args_fuzz: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::string props;
  if (size_t split = input.find("\n\n"); split != std::string::npos) {
    props = input.substr(split + 2);
    input.resize(split);
  }
  const std::string& file = scratch();
  if (FILE* f = std::fopen(file.c_str(), "wb")) {
    std::fwrite(props.data(), 1, props.size(), f);
    std::fclose(f);
  }
  std::vector<std::string> args{"klua"};
  for (size_t pos = 0; pos <= input.size();) {
    size_t nul = input.find('\0', pos);
    args.push_back(input.substr(pos, nul == std::string::npos ? std::string::npos : nul - pos));
    if (nul == std::string::npos) break;
    pos = nul + 1;
  }
  for (size_t k = 1; k + 1 < args.size(); ++k)
    if (args[k] == "-F") args[k + 1] = file;  // never a path of the machine
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int argc = static_cast<int>(args.size());

  klua::GlobalOptions g;
  for (int i = 1; i < argc; ++i) {
    std::string err;
    int r = klua::parse_global_option(g, argc, argv.data(), i, i < 3, err);
    if (r < 0 && err.empty()) fail("a usage error without a message");
    if (r < 0) break;
    if (r == 0 && std::string(argv[i]) == "--") break;
  }
  for (const auto& e : g.x_layer)
    if (e.key.empty()) fail("an -X entry with an empty key");
  for (const auto& e : g.file_layer)
    if (e.key.empty() || e.source.rfind("-F " + file + ":", 0) != 0) fail("an -F entry without key or line: " + e.source);
  return 0;
}
