#include "bindings/metrics_cli.hpp"

#include "bindings/lua_chunks.hpp"

namespace klua {

std::string CliMetrics::start(Runtime& rt, const std::string& host, int port, std::string& err) {
  rt_ = &rt;
  lua_State* L = rt.lua();
  int top = lua_gettop(L);
  load_binding_chunk(L, "metrics_cli");
  lua_pushlstring(L, host.data(), host.size());
  lua_pushinteger(L, port);
  if (protected_call(L, 2, 2) != 0) {
    err = to_display_string(L, -1);
    lua_settop(L, top);
    return "";
  }
  if (lua_isnil(L, -2)) {
    err = to_display_string(L, -1);
    lua_settop(L, top);
    return "";
  }
  std::string url = lua_tostring(L, -2);
  close_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, top);
  // The tasks alive now are the server's (its keeper): once the main task has ended and no other
  // task is left, the script is done and the server closes. A prepare handle sees that before the
  // loop next blocks, in the iteration where the last task ended (tasks end in loop callbacks),
  // without a timer; unreferenced, it keeps nothing alive.
  baseline_ = rt.scheduler().live_tasks();
  uv_prepare_init(rt.loop(), &prepare_);
  prepare_.data = this;
  uv_prepare_start(&prepare_, on_prepare);
  uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
  watching_ = true;
  rt.add_closable(this);
  return url;
}

void CliMetrics::on_prepare(uv_prepare_t* h) {
  auto* self = static_cast<CliMetrics*>(h->data);
  Runtime& rt = *self->rt_;
  Scheduler& s = rt.scheduler();
  // A scrape in flight is a task too: the close waits for its end (a few ms).
  if (!self->watching_ || rt.exiting() || !s.main_done() || s.live_tasks() > self->baseline_) return;
  self->begin_close();
  lua_State* L = rt.lua();
  lua_rawgeti(L, LUA_REGISTRYINDEX, self->close_ref_);
  call_hook(L, 0, 0);
}

void CliMetrics::begin_close() {
  if (!watching_) return;
  watching_ = false;
  uv_prepare_stop(&prepare_);  // the handle itself is closed with the loop's at the runtime's end
}

}  // namespace klua
