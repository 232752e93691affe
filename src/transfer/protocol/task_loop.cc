#include "transfer/protocol/task_loop.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "common/check.h"

namespace tandem::transfer {
namespace {

// The longest single wait: far deadlines must not overflow the clock conversion.
constexpr absl::Duration kMaxWait = absl::Minutes(1);

}  // namespace

TaskLoop::~TaskLoop() { Stop(nullptr); }

void TaskLoop::Start(std::function<absl::Time(absl::Time)> ticker) {
  ticker_ = std::move(ticker);
  thread_ = std::thread([this] { Run(); });
  thread_id_ = thread_.get_id();
}

bool TaskLoop::Post(std::function<void()> task, absl::Time at) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    tasks_.emplace(std::make_pair(at, next_seq_++), std::move(task));
  }
  cv_.notify_one();
  return true;
}

void TaskLoop::Defer(std::function<void()> task) {
  TANDEM_DCHECK(OnThread());
  deferred_.push_back(std::move(task));
}

void TaskLoop::Stop(std::function<void()> on_stop) {
  TANDEM_CHECK(!OnThread()) << "TaskLoop::Stop called on the loop's thread";
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    on_stop_ = std::move(on_stop);
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

bool TaskLoop::TakeDue(std::vector<std::function<void()>>* batch) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const absl::Time now = absl::Now();
    while (!tasks_.empty() && tasks_.begin()->first.first <= now) {
      batch->push_back(std::move(tasks_.begin()->second));
      tasks_.erase(tasks_.begin());
    }
    if (!batch->empty() || stopping_ || now >= next_tick_) return stopping_;
    absl::Time wake = next_tick_;
    if (!tasks_.empty()) wake = std::min(wake, tasks_.begin()->first.first);
    cv_.wait_until(lock, absl::ToChronoTime(std::min(wake, now + kMaxWait)));
  }
}

void TaskLoop::RunDeferred() {
  while (!deferred_.empty()) {
    std::vector<std::function<void()>> batch;
    batch.swap(deferred_);
    for (auto& fn : batch) fn();
  }
}

void TaskLoop::Run() {
  for (;;) {
    std::vector<std::function<void()>> batch;
    const bool stopping = TakeDue(&batch);
    for (auto& task : batch) {
      task();
      RunDeferred();
    }
    if (stopping) break;
    next_tick_ = ticker_ ? ticker_(absl::Now()) : absl::InfiniteFuture();
    RunDeferred();
  }
  std::function<void()> on_stop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    on_stop = std::move(on_stop_);
    tasks_.clear();  // posted for later: dropped
  }
  if (on_stop) on_stop();
  RunDeferred();
}

void TaskLoopMedium::StartLoop(MediumEvents* events) {
  events_ = events;
  loop_.Start([events](absl::Time now) { return events->OnTick(now); });
}

void TaskLoopMedium::StopLoop(std::function<void()> close_all) {
  loop_.Stop([this, close_all = std::move(close_all)] {
    events_->OnShutdown();
    if (close_all) close_all();
  });
}

}  // namespace tandem::transfer
