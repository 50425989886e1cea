// klua.metrics: the registry, the exposition and the endpoints are Lua (bindings/lua/metrics.lua,
// metrics_serve.lua: a child's inc/observe compiles into the caller's trace). This file opens them
// and gives them the two things Lua cannot see: the process's own figures for the process_ metrics
// (read from /proc and getrusage at scrape time only) and whether the runtime is shutting down
// (for /readyz).
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bindings/kafka_handle.hpp"
#include "bindings/lua_chunks.hpp"
#include "host/runtime.hpp"

namespace klua {

namespace {

// The whole of a small /proc file ("" when it cannot be read).
std::string read_proc(const char* path) {
  std::string s;
  if (FILE* f = std::fopen(path, "re")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    std::fclose(f);
  }
  return s;
}

struct ProcStat {
  bool ok = false;
  double start_ticks = 0;  // field 22: starttime, clock ticks after boot
  double vsize = 0;        // field 23: bytes
  double rss_pages = 0;    // field 24
};

// /proc/self/stat: the command name (field 2) may hold spaces and parentheses, so fields are
// counted from after its last ')'.
ProcStat proc_self_stat() {
  ProcStat st;
  std::string s = read_proc("/proc/self/stat");
  size_t close = s.rfind(')');
  if (close == std::string::npos) return st;
  const char* p = s.c_str() + close + 1;
  int field = 2;
  while (*p && field < 24) {
    while (*p == ' ') ++p;
    ++field;
    char* end;
    double v = std::strtod(p, &end);
    if (field == 22) st.start_ticks = v;
    if (field == 23) st.vsize = v;
    if (field == 24) {
      st.rss_pages = v;
      st.ok = true;
    }
    p = end;
    while (*p && *p != ' ') ++p;
  }
  return st;
}

// The process's start, seconds since the epoch: boot time (/proc/stat btime) + its start in ticks.
double start_time_seconds(const ProcStat& st) {
  static const double value = [&] {
    std::string s = read_proc("/proc/stat");
    size_t at = s.find("\nbtime ");
    if (at == std::string::npos || !st.ok) return -1.0;
    double btime = std::strtod(s.c_str() + at + 7, nullptr);
    return btime + st.start_ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  }();
  return value;
}

long open_fds() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  long n = 0;
  int own = dirfd(d);
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    if (std::atoi(e->d_name) == own) continue;  // the descriptor reading the directory
    ++n;
  }
  closedir(d);
  return n;
}

void set_number(lua_State* L, const char* key, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, key);
}

// P.process_stats() -> {cpu_seconds=, resident_memory_bytes=, virtual_memory_bytes=, open_fds=,
// max_fds=, start_time_seconds=}; a figure that cannot be read is absent.
int l_process_stats(lua_State* L) {
  lua_createtable(L, 0, 6);
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    set_number(L, "cpu_seconds", static_cast<double>(ru.ru_utime.tv_sec) + ru.ru_utime.tv_usec / 1e6 +
                                     static_cast<double>(ru.ru_stime.tv_sec) + ru.ru_stime.tv_usec / 1e6);
  }
  ProcStat st = proc_self_stat();
  if (st.ok) {
    set_number(L, "resident_memory_bytes", st.rss_pages * static_cast<double>(sysconf(_SC_PAGESIZE)));
    set_number(L, "virtual_memory_bytes", st.vsize);
    double start = start_time_seconds(st);
    if (start > 0) set_number(L, "start_time_seconds", start);
  }
  long fds = open_fds();
  if (fds >= 0) set_number(L, "open_fds", static_cast<double>(fds));
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    set_number(L, "max_fds", static_cast<double>(rl.rlim_cur));
  return 1;
}

// P.shutting_down(): the loop has seen SIGINT/SIGTERM, or the script called klua.exit.
int l_shutting_down(lua_State* L) {
  Runtime& rt = Runtime::from(L);
  lua_pushboolean(L, rt.exiting() || rt.signal_seen_by_loop());
  return 1;
}

}  // namespace

void open_metrics(Runtime&, lua_State* L, int klua_table) {
  lua_newtable(L);  // P
  int P = lua_gettop(L);
  lua_pushcfunction(L, l_process_stats);
  lua_setfield(L, P, "process_stats");
  lua_pushcfunction(L, l_shutting_down);
  lua_setfield(L, P, "shutting_down");
  load_binding_chunk(L, "metrics_serve");
  lua_pushvalue(L, klua_table);
  lua_pushvalue(L, P);
  lua_call(L, 2, 1);
  lua_setfield(L, P, "install_serve");

  load_binding_chunk(L, "metrics");
  lua_pushvalue(L, klua_table);
  lua_pushvalue(L, P);
  lua_call(L, 2, 2);  // the module, its private half
  push_private_table(L);
  lua_insert(L, -2);
  lua_setfield(L, -2, "metrics");  // debug.getregistry()["klua.private"].metrics
  lua_pop(L, 1);
  lua_setfield(L, klua_table, "metrics");
  lua_settop(L, P - 1);
}

}  // namespace klua
