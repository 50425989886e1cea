// libFuzzer target: the config file's profile loader (host/profiles.cpp) on arbitrary file text,
// asking for the default profile and for a named one. It must return true or false with a
// message, never crash, hang or leak; a file that runs too long is stopped by its budget.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "host/profiles.hpp"

namespace {

// One scratch file per process, in the fuzzer's working directory (never /tmp).
const std::string& scratch() {
  static const std::string path = "profile_fuzz." + std::to_string(getpid()) + ".lua";
  static bool registered = (std::atexit([] { unlink(path.c_str()); }), true);
  (void)registered;
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = scratch();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  for (const char* name : {"", "prod"}) {
    std::vector<klua::ConfigEntry> out;
    std::string err;
    bool ok = klua::load_profile(path, {name, name[0] ? "--profile" : ""}, out, err);
    if (!ok && err.empty()) {
      std::fprintf(stderr, "profile_fuzz: failed without a message\n");
      std::abort();
    }
  }
  return 0;
}
