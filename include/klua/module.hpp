// klua's embedding API, part 1: values exchanged with Lua, and modules a host program adds
// (C++ functions and Lua source), which scripts load with require(name).
//
// These headers are the whole installed interface: they name no libuv, LuaJIT or librdkafka type
// beyond the forward declarations below. A host that wants the raw Lua C API includes <lua.hpp>
// (LuaJIT's) itself and registers lua_CFunctions with Module::raw.
#pragma once
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

struct lua_State;

namespace klua::embed {

// A value crossing between C++ and Lua: nil, boolean, number or (binary-safe) string.
// Lua numbers are doubles; a Lua table or function given to a C++ function is an argument error.
using Value = std::variant<std::monostate, bool, double, std::string>;
using Values = std::vector<Value>;

// A C++ function callable from Lua. It runs on the loop's thread, inside the calling task, and
// must not block. A thrown std::exception becomes a Lua error carrying what() at the Lua caller.
using Function = std::function<Values(const Values& args)>;
// A raw lua_CFunction (include <lua.hpp> to write one).
using RawFunction = int (*)(lua_State*);

// Thrown by the embedding API: bad options, a Lua error in Runtime::call, use after stop().
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A module for require(name). Without lua(), require returns a table of the functions; with it,
// the Lua chunk runs once with that table as its first argument (`local native = ...`) and
// require returns what the chunk returns: argument checking and policy can live in Lua.
//
//   klua::embed::Module m("inventory");
//   m.function("reserve", [&](const klua::embed::Values& a) { ...; return klua::embed::Values{true}; });
//   rt.add_module(m);                          -- Lua: require("inventory").reserve("sku-1", 2)
class Module {
 public:
  explicit Module(std::string name) : name_(std::move(name)) {}
  Module& function(std::string name, Function fn) {
    functions_.emplace_back(std::move(name), std::move(fn));
    return *this;
  }
  Module& raw(std::string name, RawFunction fn) {
    raw_.emplace_back(std::move(name), fn);
    return *this;
  }
  Module& lua(std::string source) {
    source_ = std::move(source);
    return *this;
  }
  const std::string& name() const { return name_; }

 private:
  friend class Runtime;
  std::string name_;
  std::vector<std::pair<std::string, Function>> functions_;
  std::vector<std::pair<std::string, RawFunction>> raw_;
  std::string source_;
};

// The outcome of a script, a spawned call or a task: its return values, or its error.
struct Result {
  bool ok = true;
  Values values;
  std::string error;      // the error's tostring() when !ok
  std::string traceback;  // where it was raised, when !ok
};
using Done = std::function<void(const Result&)>;

}  // namespace klua::embed
