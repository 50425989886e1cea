// klua's one error type: a Lua table with a shared metatable (readable __tostring)
// and the fields the API conventions name. Created here so that host, bindings
// and the scheduler all produce identical errors.
#pragma once
#include <lua.hpp>
#include <optional>
#include <string>

namespace klua {

// klua's own error names (librdkafka's names come from rd_kafka_err2name).
inline constexpr const char* ERR_CANCELLED = "KLUA_CANCELLED";
inline constexpr const char* ERR_INVALID_ARGUMENT = "KLUA_INVALID_ARGUMENT";
inline constexpr const char* ERR_EMBEDDED_UNSUPPORTED = "KLUA_EMBEDDED_UNSUPPORTED";
inline constexpr const char* ERR_TIMED_OUT = "_TIMED_OUT";  // same name as librdkafka's
inline constexpr const char* ERR_JSON = "KLUA_JSON";
inline constexpr const char* ERR_CLOSED = "KLUA_CLOSED";
// Schema registry and codecs (klua.registry, klua.avro, klua.protobuf, klua.json_schema, klua.serde).
inline constexpr const char* ERR_NO_REGISTRY = "KLUA_NO_REGISTRY";
inline constexpr const char* ERR_REGISTRY = "KLUA_REGISTRY";
inline constexpr const char* ERR_SCHEMA = "KLUA_SCHEMA";
inline constexpr const char* ERR_SERIALIZATION = "KLUA_SERIALIZATION";
inline constexpr const char* ERR_DESERIALIZATION = "KLUA_DESERIALIZATION";

// Codes for klua's own errors, below librdkafka's range (which starts at -200).
inline constexpr int CODE_CANCELLED = -1001;
inline constexpr int CODE_INVALID_ARGUMENT = -1002;
inline constexpr int CODE_EMBEDDED_UNSUPPORTED = -1003;
inline constexpr int CODE_JSON = -1004;
inline constexpr int CODE_CLOSED = -1005;
// -11xx: klua.http (bindings/http_client.cpp); -12xx: klua.process; -13xx: schemas and the registry.
inline constexpr int CODE_NO_REGISTRY = -1301;
inline constexpr int CODE_REGISTRY = -1302;
inline constexpr int CODE_SCHEMA = -1303;
inline constexpr int CODE_SERIALIZATION = -1304;
inline constexpr int CODE_DESERIALIZATION = -1305;
inline constexpr int CODE_TIMED_OUT = -185;  // RD_KAFKA_RESP_ERR__TIMED_OUT

struct ErrorSpec {
  int code = 0;
  std::string name;
  std::string message;
  bool retriable = false;
  bool fatal = false;
  bool txn_requires_abort = false;
  bool kafka = false;  // carries a Kafka (librdkafka/broker) code: exit code 3 when uncaught
  // Context, set where known.
  std::string op;
  std::string topic;
  std::optional<int> partition;
  std::string group;
  std::optional<double> timeout_ms;
  // Where a programmer error was made: "file.lua:12", the user's call (tostring puts it first).
  std::string where;
};

// Pushes a new error table onto L's stack.
void push_error(lua_State* L, const ErrorSpec& spec);
// Pushes nil followed by the error: `return nil_error(L, spec);` from a lua_CFunction.
int nil_error(lua_State* L, const ErrorSpec& spec);
// Raises the error (does not return).
[[noreturn]] void raise_error(lua_State* L, const ErrorSpec& spec);

// True when the value at idx is a klua error table.
bool is_error(lua_State* L, int idx);
// Reads the named string field of the error at idx ("" when absent).
std::string error_field(lua_State* L, int idx, const char* field);
// True when the error at idx carries a Kafka code (exit status 3 when uncaught).
bool error_is_kafka(lua_State* L, int idx);

// Programmer errors raise one way: a KLUA_INVALID_ARGUMENT error whose message reads like Lua's own
// ("bad argument #2 to 'admin:create_topics' (expected a list of topic specs, got number)"; for a
// method, self is argument #1) and whose `where` is the user's call: the innermost stack frame that is
// not klua's own code (bundled scripts/klua, bindings/lua and host/lua chunks, klua's wrappers, C functions).
// Lua code raises the same error with klua.errors.bad_argument(fn, arg, detail).
[[noreturn]] void raise_bad_argument(lua_State* L, int arg, const std::string& fn, const std::string& detail);
// Raises "bad argument #arg to 'fn' (T expected, got U)" unless the value at arg has Lua type `type`.
void check_arg_type(lua_State* L, int arg, int type, const std::string& fn);
// A programmer error that is not about one argument ("fn: detail", or detail when fn is empty), located
// the same way.
[[noreturn]] void raise_misuse(lua_State* L, const std::string& fn, const std::string& detail);
// The options table {timeout_ms=} at arg (nil: dflt). Any other key, a non-number timeout_ms or
// another type raises a bad argument naming fn; callers that also take a bare number check it first.
double check_timeout_opts(lua_State* L, int arg, const std::string& fn, double dflt);
// "file.lua:12" of the user's call ("" when no Lua frame has a line).
std::string user_location(lua_State* L);
// True for the chunk names of klua's own code (lua_Debug::source).
bool is_klua_source(const char* source);

// Registers a code's name for klua.errors (codes, names, descriptions); open_errors registers klua's own.
void register_error_code(lua_State* L, int errors_table, const char* name, int code, const char* description);

// Installs the shared metatable and klua.errors (name constants) into the table at idx.
void open_errors(lua_State* L, int klua_table);

}  // namespace klua
