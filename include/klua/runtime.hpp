// klua's embedding API, part 2: a runtime (one Lua state running klua's library) inside a C++
// program. Link klua::klua (libklua.so) or klua::klua_static from find_package(klua), or use
// pkg-config klua.
//
// A runtime runs either on a libuv loop of its own (run_file / run_string / run(), which block
// like `klua run`), or driven by the caller's loop: Runtime(loop, options) adds four handles to
// that loop (a poll on klua's own loop's backend fd, a timer for its next timeout, an idle handle
// while it has work ready, a prepare hook) and every script, task, delivery report and C++ function callback then runs in the
// caller's uv_run, on the caller's thread, between the caller's own callbacks. klua starts no
// thread of its own for this (librdkafka's internal threads never touch Lua).
//
// stop() is the graceful end, as at klua's own exit: running tasks are cancelled (they see
// KLUA_CANCELLED), producers flush, consumers commit stored offsets and leave their groups, admin
// handles close, the embedded cluster goes last. It blocks the calling thread while that happens.
// The destructor stops a runtime that is still running.
//
// One runtime belongs to one thread; several runtimes in several threads share nothing.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "klua/module.hpp"

struct uv_loop_s;  // uv_loop_t

namespace klua::embed {

struct Options {
  // Bootstrap servers for every client. Empty, with nothing else naming a broker: the embedded
  // mock cluster (librdkafka's, in process), started at the first Kafka client.
  std::string brokers;
  // librdkafka properties for every client (like klua's -X); a script's own table overrides them.
  std::vector<std::pair<std::string, std::string>> properties;
  // A profile of klua's config file ($XDG_CONFIG_HOME/klua/config.lua). Empty: none, unless
  // use_environment (then KLUA_PROFILE, else a profile named "default" if the file has one).
  std::string profile;
  // Also read KLUA_BROKERS and KLUA_PROFILE and the default profile, as the klua command does.
  bool use_environment = false;
  // Insist on the embedded cluster: an Error when brokers, a property, a profile or the
  // environment names a broker.
  bool embedded_cluster = false;
  // arg[0] and arg[1..n] (also `...` of a script started by run_* / start_*).
  std::string script_name = "embedded";
  std::vector<std::string> args;
  // SIGINT/SIGTERM (and SIGPIPE) stop the runtime as they stop klua, and a second signal ends the
  // process at once (docs/cli.md, Exit codes); one runtime of a process takes them (off: the host
  // owns its signals).
  bool handle_signals = false;
};

class Runtime {
 public:
  // A runtime on a loop of its own. Throws Error for bad options (an unknown profile...).
  explicit Runtime(Options options = {});
  // A runtime driven by the caller's loop (which must outlive it and run after it is destroyed,
  // for the close callbacks of klua's four handles on it).
  Runtime(uv_loop_s* loop, Options options = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Adds a module for require(name). May be called any time before stop().
  void add_module(const Module& module);
  // A module written in Lua (source text), for require(name).
  void add_lua_module(const std::string& name, const std::string& source);

  // Own loop only: run a file / a chunk as the main task and the loop until every task is done
  // (or klua.exit), then close every client as at klua's exit. Returns klua's exit code
  // (0 ok, 1 script error, 3 a Kafka error...). The runtime is stopped afterwards.
  int run_file(const std::string& path);
  int run_string(const std::string& code, const std::string& chunkname = "=(embedded)");

  // Either mode: start a file / a chunk as a task and return at once. done (on the loop) gets its
  // results or its error; without done, an error ends the runtime as in klua (see on_exit).
  void start_file(const std::string& path, Done done = {});
  void start_string(const std::string& code, const std::string& chunkname = "=(embedded)", Done done = {});
  // Runs the global function `function` (a dotted path: "handlers.order") as a task: it may wait
  // (poll, produce, sleep...). done gets its results or error.
  void spawn(const std::string& function, Values args = {}, Done done = {});
  // Calls the global function at once, on this thread, and returns its results. It must not wait
  // (a waiting call raises "not in a task"). Throws Error with the Lua error's text.
  Values call(const std::string& function, const Values& args = {});

  // Own loop only: runs the loop until every task is done or the script exits, then stops.
  // Returns the exit code.
  int run();
  // Cancels the tasks, waits up to timeout_ms for them to unwind, then closes every client
  // (producers flush, consumers commit and leave). Idempotent; returns the exit code.
  int stop(int timeout_ms = 10000);
  bool stopped() const;
  // Called once when the runtime ends by itself while driven by the caller's loop (klua.exit, or a
  // task's error that nobody handled), after its clients are closed, with klua's exit code.
  void on_exit(std::function<void(int exit_code)> callback);

  // The Lua state, for hosts using the Lua C API (<lua.hpp>) directly.
  lua_State* lua_state();

  // "2.15.1": the version of the librdkafka klua runs on (linked into klua, not the system's).
  static std::string librdkafka_version();
  // klua's, librdkafka's (with its builtin.features) and LuaJIT's versions, one per line.
  static std::string versions();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace klua::embed
