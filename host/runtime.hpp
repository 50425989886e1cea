// The embeddable runtime: one Lua state, one libuv loop, the task scheduler,
// layered client configuration, and the ordered close of open handles at exit.
// host/ knows nothing of Kafka: bindings register themselves as modules and as
// Closables; configuration is passed through as key/value pairs.
#pragma once
#include <uv.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <lua.hpp>

#include "host/executor.hpp"
#include "host/scheduler.hpp"

namespace klua {

class Runtime;

// One configuration property and where it came from (for error messages).
struct ConfigEntry {
  std::string key;
  std::string value;
  std::string source;  // "-X", "-b", "-F path:line", "KLUA_BROKERS", ...
};

// A module opener: fills fields of the `klua` table at index klua_table.
using ModuleOpener = std::function<void(Runtime&, lua_State*, int klua_table)>;

struct RuntimeOptions {
  // Configuration layers, lowest precedence first; later entries override earlier ones.
  std::vector<ConfigEntry> config;
  std::vector<ModuleOpener> modules;
  std::vector<std::string> script_args;  // arg[1..n]
  std::string script_name;               // arg[0]
  bool install_signal_handlers = true;
};

// Something that must be closed at exit, in priority order (lower first):
// producers flush (10), consumers commit and leave (20), admin (30), clusters (40).
class Closable {
 public:
  virtual ~Closable() = default;
  virtual int close_priority() const = 0;
  // Starts closing; the loop keeps running until is_closed(). Must be idempotent.
  virtual void begin_close() = 0;
  virtual bool is_closed() const = 0;
  // How many messages would be lost if the process ended now (a producer: queued, in flight or
  // failed). Called at an exit that cannot wait (the second signal), under lock_closables(), and
  // possibly from the signal watchdog thread while the loop thread is stuck in a busy Lua loop:
  // an implementation uses only thread-safe librdkafka calls, and a handle that is being
  // destroyed leaves its Open/Closing state under the same lock first.
  virtual long undelivered() { return 0; }
};

enum ExitCode { EXIT_OK = 0, EXIT_SCRIPT_ERROR = 1, EXIT_USAGE = 2, EXIT_KAFKA_ERROR = 3, EXIT_CHECK_FAILED = 4 };

class Runtime {
 public:
  explicit Runtime(RuntimeOptions opts);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  static Runtime& from(lua_State* L);
  // The registry's integer slot holding the runtime (taken before any luaL_ref).
  static constexpr int RUNTIME_SLOT = 1;

  lua_State* lua() const { return L_; }
  uv_loop_t* loop() { return &loop_; }
  Scheduler& scheduler() { return *scheduler_; }
  // The one off-loop pool (host/executor.hpp): klua's only threads.
  Executor& executor() { return *executor_; }
  const std::vector<ConfigEntry>& config() const { return opts_.config; }
  // Adds a property above every layer, for clients created from now on (the REPL's :connect).
  // (A secret's value is masked in the log from then on.)
  void set_config(ConfigEntry e);
  // The last value of key in the configuration layers, if any.
  std::optional<std::string> config_value(const std::string& key) const;

  // Runs a file / a string as the main task and the loop until the script is done, then closes
  // open handles. Returns the process exit code.
  int run_file(const std::string& path);
  int run_string(const std::string& code, const std::string& chunkname);
  // Loads a chunk and runs it as the main task (the chunk is on the stack).
  int run_main_chunk();
  // Runs the loop until the main task and every task are done (or exit/failure), then shuts down.
  int run_loop();
  // Runs one pass of the loop without blocking (for hosts that drive klua from their own loop).
  void run_once();
  // Closes every registered Closable in priority order, running the loop until each group is closed.
  void shutdown();

  // Called when a task or an inline callback failed with the error at the top of L (popped).
  // traceback may be empty. Ends the script with exit code 1 (3 for Kafka errors).
  void fail(lua_State* L, const std::string& traceback);
  // klua.exit(code): stop running script code, close handles, exit with code.
  void request_exit(int code);
  bool exiting() const { return exiting_; }
  int exit_code() const { return exit_code_; }
  void set_exit_code(int c) { exit_code_ = c; }

  void add_closable(Closable* c);
  void remove_closable(Closable* c);
  // Held while the closables list changes and while a closable leaves its open states for good
  // (see Closable::undelivered).
  std::unique_lock<std::mutex> lock_closables() { return std::unique_lock<std::mutex>(closables_mutex_); }
  // The sum of undelivered() over the closables (under the lock).
  long undelivered_messages();

  // Loads a bundled module (scripts/) by name; pushes the chunk. Returns false if absent.
  bool load_bundled(lua_State* L, const char* name);

  // SIGINT/SIGTERM as the loop sees them (host/signals.cpp): the first cancels every task and
  // exits 128+signum once the tasks are done and the clients closed; the second exits at once.
  void on_signal(int signum);
  // A hook that may take SIGINT for itself (the REPL: Ctrl-C cancels the running line or clears
  // the input, not the program). Returns true when it handled the signal.
  void set_interrupt_hook(std::function<bool()> hook) { interrupt_hook_ = std::move(hook); }
  // While claimed (the interactive REPL), a SIGINT goes to the interrupt hook first and is not
  // counted by the signal handler as a request to stop.
  static void claim_sigint(bool claimed);
  // Exits the process now with code, after saying how many messages are lost (the second signal).
  [[noreturn]] void exit_at_once(int code, const char* why);
  // The signal that stopped the script (0 when none).
  int stop_signal() const;
  // on_signal has run (every task then running was cancelled).
  bool signal_seen_by_loop() const { return signal_count_ > 0; }
  // Called for an error in a task nobody joins (the error at the top of L, left there), with its
  // traceback and the task's id; true when handled (the REPL prints it and goes on), else the
  // error ends the script.
  using TaskErrorHook = std::function<bool(lua_State*, const std::string& traceback, uint64_t task_id)>;
  void set_task_error_hook(TaskErrorHook hook) { task_error_hook_ = std::move(hook); }
  const TaskErrorHook& task_error_hook() const { return task_error_hook_; }

 private:
  void open_libs();
  void install_signals();
  void uninstall_signals();
  void push_args();
  static int l_exit(lua_State* L);

  RuntimeOptions opts_;
  uv_loop_t loop_;
  lua_State* L_ = nullptr;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Executor> executor_;
  std::vector<Closable*> closables_;
  std::mutex closables_mutex_;
  uv_signal_t sigint_, sigterm_, sigpipe_;
  bool signals_installed_ = false;
  std::function<bool()> interrupt_hook_;
  TaskErrorHook task_error_hook_;
  int signal_count_ = 0;
  bool exiting_ = false;
  bool failed_ = false;
  bool script_exit_ = false;  // the exit code is the script's own (klua.exit, os.exit)
  int exit_code_ = 0;
};

// Calls the function below nargs arguments on L's stack in protected mode with a traceback
// handler. On error, leaves the error message with traceback (a string) or the error object on
// the stack and returns non-zero; traceback receives the traceback text.
int protected_call(lua_State* L, int nargs, int nresults, std::string* traceback = nullptr);

// The same, but any error ends the script through Runtime::fail (for hooks and callbacks run
// inline by the loop). Returns true on success.
bool call_hook(lua_State* L, int nargs, int nresults);

// tostring() of the value at idx, using __tostring. Never raises: a __tostring that raises (or
// returns no string) gives "error object (table) whose __tostring raised: ..." instead.
std::string to_display_string(lua_State* L, int idx);

}  // namespace klua
