// Named cluster profiles from the user's config file ($XDG_CONFIG_HOME/klua/config.lua, or
// ~/.config/klua/config.lua): plain Lua data, run in an empty environment, e.g.
//   return { profiles = {
//     default = { brokers = "localhost:9092" },
//     prod = { brokers = "k1:9093,k2:9093", ["security.protocol"] = "SASL_SSL",
//              ["sasl.mechanism"] = "PLAIN", ["sasl.username"] = "svc",
//              ["sasl.password"] = { env = "KAFKA_PASSWORD" },      -- or { file = "/run/secrets/x" }
//              ["linger.ms"] = 5 } } }
// A profile becomes one configuration layer (below -F, -b and -X; above KLUA_BROKERS).
#pragma once
#include <string>
#include <vector>

#include "host/runtime.hpp"

namespace klua {

// The config file's path (it may not exist); empty when neither XDG_CONFIG_HOME nor HOME is set.
std::string config_file_path();

struct ProfileChoice {
  std::string name;    // empty: none asked for (the "default" profile is used if present)
  std::string chosen_by;  // "--profile" or "KLUA_PROFILE"
};

// Loads the chosen profile's entries into out. Returns false with a message for the user (exit 2):
// an unknown profile (naming it and the ones there are), a bad file, an unset secret env var or an
// unreadable secret file. A missing file is fine unless a profile was asked for.
bool load_profile(const std::string& path, const ProfileChoice& choice, std::vector<ConfigEntry>& out,
                  std::string& err);

}  // namespace klua
