// Old spellings kept for one release: each prints one warning per runtime (not per call, not
// per process: the flag lives in the Lua state's registry).
#pragma once
#include <lua.hpp>

namespace klua {
// Prints "klua: deprecated: <what> ...; use <instead>" to stderr the first time `what` is used
// in this runtime, with the caller's location when Lua knows it.
void warn_deprecated(lua_State* L, const char* what, const char* instead);
}  // namespace klua
