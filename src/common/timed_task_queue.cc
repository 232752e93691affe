#include "common/timed_task_queue.h"

#include "common/check.h"

namespace tandem {

TimedTaskQueue::TimedTaskQueue() {
  thread_ = std::thread([this] { Loop(); });
  thread_id_ = thread_.get_id();
}

TimedTaskQueue::~TimedTaskQueue() { Stop(); }

bool TimedTaskQueue::Post(std::function<void()> task, absl::Time at) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    tasks_.emplace(std::make_pair(at, next_seq_++), std::move(task));
  }
  cv_.notify_one();
  return true;
}

void TimedTaskQueue::Stop() {
  TANDEM_CHECK(!OnQueueThread()) << "TimedTaskQueue::Stop called from one of its tasks";
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void TimedTaskQueue::Loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (;;) {
        const absl::Time now = absl::Now();
        const bool due = !tasks_.empty() && (stopping_ || tasks_.begin()->first.first <= now);
        if (due) break;
        if (stopping_) return;
        if (tasks_.empty()) {
          cv_.wait(lock);
        } else {
          const absl::Time wake = std::max(tasks_.begin()->first.first, now);
          cv_.wait_until(lock, absl::ToChronoTime(wake));
        }
      }
      auto it = tasks_.begin();
      task = std::move(it->second);
      tasks_.erase(it);
    }
    task();
  }
}

}  // namespace tandem
