// The modules klua ships: what a host passes to RuntimeOptions::modules.
#pragma once
#include <string>
#include <vector>

#include "host/runtime.hpp"

namespace klua {
std::vector<ModuleOpener> standard_modules();
// "klua X, librdkafka Y, LuaJIT Z" lines for `klua version`.
std::string versions_text();
}  // namespace klua
