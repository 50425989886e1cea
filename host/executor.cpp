#include "host/executor.hpp"

#include <pthread.h>
#include <signal.h>

namespace klua {

Executor::Executor(uv_loop_t* loop) : loop_(loop) {
  async_ = new uv_async_t;
  uv_async_init(loop_, async_, on_async);
  async_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(async_));
}

Executor::~Executor() { stop(); }

void Executor::update_ref() {
  // Work in flight keeps the loop alive (as libuv's own pool did): its `done` resumes a task or
  // finishes a close.
  if (!async_) return;
  if (outstanding_ > 0)
    uv_ref(reinterpret_cast<uv_handle_t*>(async_));
  else
    uv_unref(reinterpret_cast<uv_handle_t*>(async_));
}

void Executor::submit(std::function<void()> work, std::function<void()> done) {
  if (stopped_) {
    // After the runtime's shutdown (a handle collected while the Lua state closes): inline.
    work();
    if (done) done();
    return;
  }
  if (threads_.empty()) {
    // The threads block every signal, as librdkafka's own do: SIGINT/SIGTERM reach the loop
    // thread's handlers. They inherit the mask in force when they are created.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (size_t i = 0; i < kThreads; ++i) threads_.emplace_back([this] { thread_main(); });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  ++outstanding_;
  update_ref();
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(Job{std::move(work), std::move(done)});
  }
  cv_.notify_one();
}

void Executor::thread_main() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    Job job = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    lock.unlock();
    job.work();
    job.work = nullptr;
    lock.lock();
    --running_;
    finished_.push_back(std::move(job));
    idle_cv_.notify_all();
    if (async_) uv_async_send(async_);
  }
}

void Executor::on_async(uv_async_t* h) { static_cast<Executor*>(h->data)->deliver_done(); }

void Executor::deliver_done() {
  std::vector<Job> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done.swap(finished_);
  }
  for (Job& j : done) {
    --outstanding_;
    if (j.done) j.done();  // may submit more work
  }
  update_ref();
}

void Executor::stop() {
  if (stopped_) return;
  // Let every submitted work finish (each bounds itself), reporting as they complete: a `done`
  // may submit more (a close that destroys the handle after its last call).
  while (outstanding_ > 0) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      idle_cv_.wait(lock, [this] { return !finished_.empty(); });
    }
    deliver_done();
  }
  stopped_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  if (async_) {
    uv_close(reinterpret_cast<uv_handle_t*>(async_), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
    async_ = nullptr;
  }
}

}  // namespace klua
