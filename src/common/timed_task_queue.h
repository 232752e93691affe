// A single thread that runs posted tasks in time order (a task may be posted to run later).
// Used for delayed retries (the router), asynchronous steps and deadlines (transfer media).
//
// Thread-safety: Post and Stop may be called from any thread; tasks run one at a time on the
// queue's thread, in (time, posting order). Stop must not be called from a task.
#pragma once

#include <cstdint>
#include <functional>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tandem {

class TimedTaskQueue {
 public:
  TimedTaskQueue();
  ~TimedTaskQueue();  // Stop()
  TimedTaskQueue(const TimedTaskQueue&) = delete;
  TimedTaskQueue& operator=(const TimedTaskQueue&) = delete;

  // Runs `task` on the queue's thread no earlier than `at`. Returns false (and drops the
  // task) once Stop has begun.
  bool Post(std::function<void()> task, absl::Time at = absl::InfinitePast());
  // Runs every task still queued at once (ignoring their times, so that no completion is
  // lost), refuses new ones and joins the thread. Idempotent.
  void Stop();
  // True on the queue's own thread.
  bool OnQueueThread() const { return std::this_thread::get_id() == thread_id_; }

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<absl::Time, uint64_t>, std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace tandem
