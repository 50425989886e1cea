// klua.line_editor: terminal line editing for the REPL, with libedit through its
// readline-compatible callback interface. A uv_poll_t watches the terminal and libedit is fed one
// character whenever it is readable, so the loop never blocks on the terminal: background tasks
// keep running while the user types. Only the mechanics live here (prompt, keys, history file,
// completion and Ctrl-C plumbing); the REPL itself is scripts/klua/repl.lua.
//
// libedit keeps one global editor, so there is one line editor per process.
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <editline/readline.h>

#include "host/error.hpp"
#include "host/runtime.hpp"

namespace klua {

namespace {

struct LineEditor {
  Runtime* rt = nullptr;
  uv_poll_t* poll = nullptr;  // open while the runtime lives; started only during a read
  bool installed = false;     // a libedit callback handler is installed (terminal in edit mode)
  WaitToken waiter;
  std::string prompt;
  bool line_ready = false;
  char* line = nullptr;        // from libedit (malloc'd), null at end of input
  int completer_ref = LUA_NOREF;
  int interrupt_ref = LUA_NOREF;
  int task_error_ref = LUA_NOREF;
};

LineEditor* g_editor = nullptr;  // libedit's callbacks carry no context
// Word breaks without '.' and ':', so the completer sees `admin:li` and `klua.json.en` whole.
char g_word_breaks[] = " \t\n\"'`@$><=;|&{([,+-*/%^~#)]}";
std::vector<std::string> g_matches;  // candidates of the completion in progress

void on_line(char* line) {
  g_editor->line = line;
  g_editor->line_ready = true;
}

void stop_editing(LineEditor& ed) {
  if (ed.installed) {
    rl_callback_handler_remove();  // back to the terminal's normal mode
    ed.installed = false;
  }
  if (ed.poll) uv_poll_stop(ed.poll);
}

// Resumes the reading task with the values pushed by push (a stale token, after a cancellation,
// is dropped).
template <typename Push>
void finish_read(LineEditor& ed, Push push) {
  stop_editing(ed);
  WaitToken t = ed.waiter;
  ed.waiter = WaitToken{};
  Scheduler& s = ed.rt->scheduler();
  if (lua_State* co = s.wake_begin(t)) {
    push(co);
    s.wake_end(t, 1);
  }
}

void on_readable(uv_poll_t* h, int status, int events) {
  auto& ed = *static_cast<LineEditor*>(h->data);
  if (status < 0 || (events & UV_DISCONNECT)) {
    finish_read(ed, [](lua_State* co) { lua_pushnil(co); });
    return;
  }
  rl_callback_read_char();
  if (!ed.line_ready) return;
  ed.line_ready = false;
  char* line = ed.line;
  ed.line = nullptr;
  finish_read(ed, [line](lua_State* co) {
    if (line) lua_pushstring(co, line); else lua_pushnil(co);
  });
  std::free(line);
}

char* next_match(const char* /*text*/, int state) {
  static size_t i;
  if (state == 0) i = 0;
  return i < g_matches.size() ? strdup(g_matches[i++].c_str()) : nullptr;
}

// libedit's completion hook: asks the Lua completer (text, line, start, stop) for candidates.
char** complete(const char* text, int start, int end) {
  rl_attempted_completion_over = 1;  // no fallback to file names
  g_matches.clear();
  LineEditor& ed = *g_editor;
  if (ed.completer_ref == LUA_NOREF) return nullptr;
  lua_State* L = ed.rt->lua();
  lua_rawgeti(L, LUA_REGISTRYINDEX, ed.completer_ref);
  lua_pushstring(L, text);
  lua_pushstring(L, rl_line_buffer ? rl_line_buffer : "");
  lua_pushinteger(L, start);
  lua_pushinteger(L, end);
  if (protected_call(L, 4, 1) != 0) {
    std::fprintf(stderr, "\r\nklua: completion failed: %s\r\n", to_display_string(L, -1).c_str());
    lua_pop(L, 1);
    return nullptr;
  }
  if (lua_istable(L, -1)) {
    for (int i = 1;; ++i) {
      lua_rawgeti(L, -1, i);
      if (!lua_isstring(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      g_matches.emplace_back(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (g_matches.empty()) return nullptr;
  return rl_completion_matches(text, next_match);
}

// Ctrl-C in a pure-Lua loop: the loop's SIGINT handler runs only when the loop turns, which a
// busy chunk never lets it do. So while a REPL chunk runs (armed with interrupt_arm from its
// task), a signal handler of our own, chained before libuv's, looks at which task runs: when it
// is the chunk's (it computes: the loop is not turning), it sets a debug hook (lua_sethook is safe
// in a signal handler: LuaJIT's own luajit.c does it) that raises "interrupted" there, and the
// loop's later callback for that signal is dropped. When the chunk waits, the loop's callback
// cancels it as before. The REPL compiles chunks with jit.off: a compiled trace runs no hooks.
Scheduler* g_scheduler = nullptr;
std::atomic<lua_State*> g_interrupt_target{nullptr};  // the chunk's task coroutine
lua_State* g_main_state = nullptr;
std::atomic<int> g_interrupts_raised{0};  // signals answered by the hook
std::atomic<bool> g_hook_pending{false};  // set by the signal handler, taken by the hook
struct sigaction g_chained_sigint;
bool g_sigint_installed = false;

void clear_interrupt_hook() {
  if (g_main_state) lua_sethook(g_main_state, nullptr, 0, 0);
}

bool chunk_running() {
  lua_State* target = g_interrupt_target.load();
  return target && g_scheduler && g_scheduler->running_coroutine() == target;
}

const int INTERRUPT_HOOK_MASK = LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT;

void interrupt_hook(lua_State* L, lua_Debug* ar) {
  // Raised only in the REPL's own code (chunk name "=stdin"): library code (a consumer's poll
  // between two C calls) is not left half done; the hook waits until control is back in the
  // chunk, or until the loop's callback answers the signal (the chunk went on to wait).
  if (g_hook_pending.load() && chunk_running() && lua_getinfo(L, "S", ar) && std::strcmp(ar->source, "=stdin") != 0)
    return;
  lua_sethook(L, nullptr, 0, 0);
  if (!g_hook_pending.exchange(false) || !chunk_running()) return;
  g_interrupt_target = nullptr;
  ++g_interrupts_raised;
  lua_pushliteral(L, "interrupted");
  lua_error(L);
}

void on_sigint(int signum, siginfo_t* info, void* context) {
  if (chunk_running() && g_main_state) {
    g_hook_pending = true;
    lua_sethook(g_main_state, interrupt_hook, INTERRUPT_HOOK_MASK, 1);
  }
  if (g_chained_sigint.sa_flags & SA_SIGINFO) {
    if (g_chained_sigint.sa_sigaction) g_chained_sigint.sa_sigaction(signum, info, context);
  } else if (g_chained_sigint.sa_handler != SIG_DFL && g_chained_sigint.sa_handler != SIG_IGN) {
    g_chained_sigint.sa_handler(signum);
  }
}

// line_editor.interrupt_arm(): a Ctrl-C while the calling task computes interrupts it, even in a loop
// that never yields; interrupt_disarm() ends that. The REPL arms it around each chunk.
int l_interrupt_arm(lua_State* L) {
  if (!g_sigint_installed) {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigint;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, &g_chained_sigint) == 0) g_sigint_installed = true;
  }
  g_main_state = g_editor->rt->lua();
  g_scheduler = &g_editor->rt->scheduler();
  g_interrupt_target = L;
  return 0;
}

int l_interrupt_disarm(lua_State* L) {
  g_interrupt_target = nullptr;
  g_hook_pending = false;
  clear_interrupt_hook();
  return 0;
}

// SIGINT while reading abandons the line being typed (read returns false); otherwise the Lua
// handler set with on_interrupt decides (the REPL cancels the running line's task).
bool on_interrupt() {
  LineEditor& ed = *g_editor;
  if (g_interrupts_raised.load() > 0) {
    --g_interrupts_raised;  // this signal interrupted a computing chunk already
    return true;
  }
  g_hook_pending = false;  // the loop answers this signal: the hook must not as well
  clear_interrupt_hook();
  if (ed.waiter) {
    std::fputs("\n", stdout);
    std::fflush(stdout);
    finish_read(ed, [](lua_State* co) { lua_pushboolean(co, 0); });
    return true;
  }
  if (ed.interrupt_ref == LUA_NOREF) return false;
  lua_State* L = ed.rt->lua();
  lua_rawgeti(L, LUA_REGISTRYINDEX, ed.interrupt_ref);
  if (!call_hook(L, 0, 1)) return true;
  bool handled = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return handled;
}

LineEditor& editor(lua_State* L) { return *g_editor; }

// line_editor.available(): true when stdin and stdout are terminals.
int l_available(lua_State* L) {
  lua_pushboolean(L, isatty(0) && isatty(1));
  return 1;
}

// line_editor.read(prompt): yields until a line is entered; the line, nil at end of input
// (Ctrl-D), or false when Ctrl-C abandoned it. A later read ends an earlier one with nil.
int l_read(lua_State* L) {
  const char* prompt = luaL_checkstring(L, 1);
  LineEditor& ed = editor(L);
  if (!isatty(0)) return luaL_error(L, "line_editor.read: standard input is not a terminal");
  Scheduler& s = Runtime::from(L).scheduler();
  if (ed.waiter) {
    // One reader at a time: an earlier read (if its task still waits) ends as at end of input.
    if (lua_State* co = s.wake_begin(ed.waiter)) {
      lua_pushnil(co);
      s.wake_end(ed.waiter, 1);
    }
  }
  ed.waiter = s.prepare_wait(L, "line_editor.read", -1, OnTimeout::ResumeEmpty);
  ed.prompt = prompt;
  if (!ed.poll) {
    ed.poll = new uv_poll_t;
    uv_poll_init(ed.rt->loop(), ed.poll, 0);
    ed.poll->data = &ed;
  }
  rl_callback_handler_install(ed.prompt.c_str(), on_line);  // shows the prompt
  ed.installed = true;
  uv_poll_start(ed.poll, UV_READABLE | UV_DISCONNECT, on_readable);
  return lua_yield(L, 0);
}

// line_editor.output(fn, ...): calls fn(...) (which writes to the terminal) with the line being
// edited taken off the screen and drawn again below the output, so a background task's print
// does not garble the prompt. Without a read in progress it just calls fn.
int l_output(lua_State* L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  LineEditor& ed = editor(L);
  bool editing = ed.installed;
  if (editing) {
    std::fputs("\r\x1b[K", stdout);  // to the start of the line, erase it
    std::fflush(stdout);
  }
  int status = lua_pcall(L, lua_gettop(L) - 1, 0, 0);
  if (editing && ed.installed) {
    std::fflush(stdout);
    rl_forced_update_display();  // prompt and the text typed so far, on the current line
  }
  if (status != 0) return lua_error(L);
  return 0;
}

int l_add_history(lua_State* L) {
  const char* line = luaL_checkstring(L, 1);
  if (*line) add_history(line);
  return 0;
}

// load_history(path): true, or nil and a message (a missing file is not an error: true).
int l_load_history(lua_State* L) {
  const char* path = luaL_checkstring(L, 1);
  if (access(path, F_OK) != 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (read_history(path) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot read history %s: %s", path, std::strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

// save_history(path [, max_lines]): creates the file's directories; keeps the last max_lines.
int l_save_history(lua_State* L) {
  std::string path = luaL_checkstring(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, 1000);
  luaL_argcheck(L, max > 0, 2, "max_lines must be positive");
  for (size_t p = path.find('/', 1); p != std::string::npos; p = path.find('/', p + 1))
    ::mkdir(path.substr(0, p).c_str(), 0700);
  // Typed lines may hold secrets: the file is the user's alone.
  if (write_history(path.c_str()) != 0 || history_truncate_file(path.c_str(), static_cast<int>(max)) != 0 ||
      ::chmod(path.c_str(), 0600) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot write history %s: %s", path.c_str(), std::strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

void set_ref(lua_State* L, int& ref, const char* what) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);  // the old one first (a new ref could reuse its slot)
  ref = LUA_NOREF;
  if (!lua_isnoneornil(L, 1)) {
    lua_pushvalue(L, 1);
    ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  (void)what;
}

// set_completer(fn(text, line, start, stop) -> list of candidates replacing text) or nil.
int l_set_completer(lua_State* L) {
  set_ref(L, editor(L).completer_ref, "set_completer");
  return 0;
}

// on_interrupt(fn() -> handled) or nil: called for Ctrl-C (SIGINT) while no line is being read.
int l_on_interrupt(lua_State* L) {
  set_ref(L, editor(L).interrupt_ref, "on_interrupt");
  // While set, SIGINT is the REPL's Ctrl-C, not a request to stop klua (host/signals.cpp).
  Runtime::claim_sigint(editor(L).interrupt_ref != LUA_NOREF);
  return 0;
}

// An error in a task nobody joins (at the top of L, left there) goes to the function set with
// on_task_error(fn(err, traceback, task_id)) instead of ending the script.
bool on_task_error(lua_State* L, const std::string& traceback, uint64_t task_id) {
  if (!g_editor || g_editor->task_error_ref == LUA_NOREF) return false;
  lua_rawgeti(L, LUA_REGISTRYINDEX, g_editor->task_error_ref);
  lua_pushvalue(L, -2);
  lua_pushlstring(L, traceback.data(), traceback.size());
  lua_pushnumber(L, static_cast<lua_Number>(task_id));
  call_hook(L, 3, 0);
  return true;
}

int l_on_task_error(lua_State* L) {
  set_ref(L, editor(L).task_error_ref, "on_task_error");
  Runtime& rt = *editor(L).rt;
  if (editor(L).task_error_ref == LUA_NOREF)
    rt.set_task_error_hook(nullptr);
  else
    rt.set_task_error_hook(on_task_error);
  return 0;
}

int l_gc(lua_State* L) {
  auto* ed = static_cast<LineEditor*>(lua_touserdata(L, 1));
  stop_editing(*ed);
  if (ed->poll) {
    uv_close(reinterpret_cast<uv_handle_t*>(ed->poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    ed->poll = nullptr;
  }
  std::free(ed->line);
  ed->rt->set_interrupt_hook(nullptr);
  ed->rt->set_task_error_hook(nullptr);
  if (ed->interrupt_ref != LUA_NOREF) Runtime::claim_sigint(false);
  g_interrupt_target = nullptr;
  clear_interrupt_hook();
  g_main_state = nullptr;
  g_scheduler = nullptr;
  if (g_sigint_installed) {
    sigaction(SIGINT, &g_chained_sigint, nullptr);
    g_sigint_installed = false;
  }
  if (g_editor == ed) g_editor = nullptr;
  ed->~LineEditor();
  return 0;
}

}  // namespace

void open_line_editor(Runtime& rt, lua_State* L, int klua_table) {
  auto* ed = static_cast<LineEditor*>(lua_newuserdata(L, sizeof(LineEditor)));
  new (ed) LineEditor();
  ed->rt = &rt;
  g_editor = ed;
  lua_newtable(L);
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "klua.line_editor");

  // libedit setup is cheap and touches no terminal until the first read.
  rl_catch_signals = 0;  // SIGINT reaches the loop's handler, not libedit's (which re-raises it)
  rl_readline_name = "klua";
  rl_attempted_completion_function = complete;
  rl_completer_word_break_characters = g_word_breaks;
  rl_basic_word_break_characters = g_word_breaks;  // the one libedit's completion actually reads
  rl_completion_append_character = '\0';
  rt.set_interrupt_hook(on_interrupt);

  lua_newtable(L);
  lua_pushcfunction(L, l_available);
  lua_setfield(L, -2, "available");
  rt.scheduler().push_waiting(L, l_read);
  lua_setfield(L, -2, "read");
  lua_pushcfunction(L, l_output);
  lua_setfield(L, -2, "output");
  lua_pushcfunction(L, l_add_history);
  lua_setfield(L, -2, "add_history");
  lua_pushcfunction(L, l_load_history);
  lua_setfield(L, -2, "load_history");
  lua_pushcfunction(L, l_save_history);
  lua_setfield(L, -2, "save_history");
  lua_pushcfunction(L, l_set_completer);
  lua_setfield(L, -2, "set_completer");
  lua_pushcfunction(L, l_on_interrupt);
  lua_setfield(L, -2, "on_interrupt");
  lua_pushcfunction(L, l_interrupt_arm);
  lua_setfield(L, -2, "interrupt_arm");
  lua_pushcfunction(L, l_interrupt_disarm);
  lua_setfield(L, -2, "interrupt_disarm");
  lua_pushcfunction(L, l_on_task_error);
  lua_setfield(L, -2, "on_task_error");
  lua_setfield(L, klua_table, "line_editor");
}

}  // namespace klua
