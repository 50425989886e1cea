// The off-loop executor (host/executor.hpp): work on its threads, completions on the loop.
#include <catch2/catch.hpp>

#include <uv.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "host/executor.hpp"

TEST_CASE("work runs off the loop thread and done on it; the loop stays alive until done", "[executor]") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    klua::Executor ex(&loop);
    const auto loop_thread = std::this_thread::get_id();
    std::atomic<int> off_loop{0};
    std::vector<int> done_order;
    for (int i = 0; i < 20; ++i) {
      ex.submit(
          [&] {
            if (std::this_thread::get_id() != loop_thread) ++off_loop;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
          },
          [&, i] {
            REQUIRE(std::this_thread::get_id() == loop_thread);
            done_order.push_back(i);
          });
    }
    REQUIRE(ex.outstanding() == 20);
    uv_run(&loop, UV_RUN_DEFAULT);  // returns only when every done has run (the async is unref'd after)
    REQUIRE(off_loop == 20);
    REQUIRE(done_order.size() == 20);
    REQUIRE(ex.outstanding() == 0);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  REQUIRE(uv_loop_close(&loop) == 0);
}

TEST_CASE("at most kThreads works run at once; stop() finishes what was submitted", "[executor]") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::atomic<int> running{0}, peak{0}, finished{0};
  int done = 0;
  {
    klua::Executor ex(&loop);
    for (int i = 0; i < 12; ++i) {
      ex.submit(
          [&] {
            int now = ++running;
            int p = peak.load();
            while (now > p && !peak.compare_exchange_weak(p, now)) {
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            --running;
            ++finished;
          },
          [&] {
            ++done;
            if (done == 1) ex.submit([&] { ++finished; }, [&] { ++done; });  // a done may submit more
          });
    }
    ex.stop();  // without running the loop: waits, and runs every done here
    REQUIRE(finished == 13);
    REQUIRE(done == 13);
    REQUIRE(peak <= static_cast<int>(klua::Executor::kThreads));
    int inline_done = 0;
    ex.submit([&] { ++finished; }, [&] { ++inline_done; });  // after stop: inline
    REQUIRE(inline_done == 1);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  REQUIRE(uv_loop_close(&loop) == 0);
}
