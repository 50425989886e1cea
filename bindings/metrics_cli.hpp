// `klua run --metrics HOST:PORT FILE` (host/main.cpp): klua.metrics' endpoints (/metrics, /healthz,
// /readyz) served for the script's life. The server is klua.metrics.serve's; what this adds is its
// end: a server keeps a script running (its keeper task), so the one --metrics started is closed
// once everything else the script runs has ended, and the script then exits as it would without it.
#pragma once
#include <uv.h>

#include <cstddef>
#include <string>

#include "host/runtime.hpp"

namespace klua {

class CliMetrics : public Closable {
 public:
  CliMetrics() = default;
  CliMetrics(const CliMetrics&) = delete;
  CliMetrics& operator=(const CliMetrics&) = delete;

  // Serves the endpoints on host:port before the script runs (no client exists yet). Returns the
  // bound URL of /metrics, or "" with err set (the address is not an IP, it is in use...).
  // The object must outlive rt: its prepare handle is closed by the runtime's end.
  std::string start(Runtime& rt, const std::string& host, int port, std::string& err);

  // Closable: the watch stops first of all at shutdown (klua.exit, a signal, the normal end).
  int close_priority() const override { return 0; }
  void begin_close() override;
  bool is_closed() const override { return !watching_; }

 private:
  static void on_prepare(uv_prepare_t* h);

  Runtime* rt_ = nullptr;
  uv_prepare_t prepare_{};
  bool watching_ = false;
  size_t baseline_ = 0;        // the tasks that are the server's own (its keeper) when the script starts
  int close_ref_ = LUA_NOREF;  // the Lua function that closes the server
};

}  // namespace klua
