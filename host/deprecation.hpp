// Old spellings kept for one release: each prints one warning per runtime (not per call, not
// per process: the flag lives in the Lua state's registry). In host/ because the scheduler's
// task:join needs it too (host does not include bindings/).
#pragma once
#include <lua.hpp>

namespace klua {
// Prints "klua: <file:line>: deprecated: <what>; use <instead> ..." to stderr the first time `what` is used
// in this runtime, located at the user's call (host/error.hpp's user_location).
void warn_deprecated(lua_State* L, const char* what, const char* instead);
}  // namespace klua
