// The one off-loop executor: a small fixed pool of threads owned by the Runtime, the only code of
// klua that creates threads (librdkafka's and libcurl's own threads are theirs and never touch
// Lua). It serves only what has no asynchronous form in librdkafka: the transactional calls
// (init/send_offsets/commit/abort), rd_kafka_destroy, and the few blocking calls
// KafkaHandle::run_blocking serves. Everything with a queue-based form stays on the loop.
//
// submit(work, done): `work` runs on a pool thread and must not touch Lua; `done` runs afterwards
// on the loop thread (brought back by one uv_async). Work runs in submission order, up to kThreads
// at a time; a blocking call must bound itself (every librdkafka call given here takes a timeout).
#pragma once
#include <uv.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace klua {

class Executor {
 public:
  // Four threads: eight concurrent transactional commits take two rounds of the pool instead of
  // eight threads, and a transactional call never waits behind more than three others (each
  // bounded by its timeout_ms). The threads start at the first submit: a script that never needs
  // them starts none.
  static constexpr size_t kThreads = 4;

  explicit Executor(uv_loop_t* loop);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  void submit(std::function<void()> work, std::function<void()> done);
  // Work submitted and not yet completed on the loop (queued, running, or done but not reported).
  size_t outstanding() const { return outstanding_; }
  // Waits for every submitted work to finish (on this thread), runs their `done` here, then stops
  // the threads and closes the async handle. Called by the runtime after its shutdown, before the
  // Lua state closes. Later submits run work and done inline.
  void stop();

 private:
  struct Job {
    std::function<void()> work, done;
  };
  static void on_async(uv_async_t* h);
  void thread_main();
  void deliver_done();
  void update_ref();

  uv_loop_t* loop_;
  uv_async_t* async_ = nullptr;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;       // work queued or stopping (pool threads wait on it)
  std::condition_variable idle_cv_;  // a job finished (stop() waits on it)
  std::deque<Job> queue_;            // guarded by mu_
  std::vector<Job> finished_;        // guarded by mu_: work done, `done` not yet run
  size_t running_ = 0;               // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  bool stopped_ = false;             // loop thread only
  size_t outstanding_ = 0;           // loop thread only
};

}  // namespace klua
