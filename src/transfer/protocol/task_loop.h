// TaskLoop: the thread of a medium that has no progress engine of its own (in-process, CUDA IPC;
// UCX has UcxWorkerLoop). Runs posted tasks in (time, posting) order, deferred work right after
// the task that deferred it, and a ticker (MediumEvents::OnTick) after every batch of tasks and
// again when the ticker asked for.
//
// Thread-safety: Post, Stop and OnThread may be called from any thread; Defer only on the loop's
// thread. Stop must not be called from the loop's thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "transfer/protocol/medium.h"

namespace tandem::transfer {

class TaskLoop {
 public:
  TaskLoop() = default;
  ~TaskLoop();  // Stop(nullptr)
  TaskLoop(const TaskLoop&) = delete;
  TaskLoop& operator=(const TaskLoop&) = delete;

  // Starts the thread. `ticker` (may be empty) gets the time and returns when it next needs to
  // run.
  void Start(std::function<absl::Time(absl::Time now)> ticker);
  // Runs `task` on the loop no earlier than `at`. False (the task dropped) once Stop has begun.
  bool Post(std::function<void()> task, absl::Time at = absl::InfinitePast());
  // Runs `task` on the loop after the current task returns (also while stopping).
  void Defer(std::function<void()> task);
  // Lets the tasks already due run, then `on_stop` and whatever it deferred, drops tasks posted
  // for later, and joins the thread. Idempotent.
  void Stop(std::function<void()> on_stop);
  bool OnThread() const { return std::this_thread::get_id() == thread_id_; }

 private:
  using TaskMap = std::map<std::pair<absl::Time, uint64_t>, std::function<void()>>;
  void Run();
  // Waits for due tasks (or the tick, or Stop) and takes them; true once stopping.
  bool TakeDue(std::vector<std::function<void()>>* batch);
  void RunDeferred();

  std::mutex mu_;
  std::condition_variable cv_;
  TaskMap tasks_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_stop_ ABSL_GUARDED_BY(mu_);

  // Loop-thread state.
  std::function<absl::Time(absl::Time)> ticker_;
  absl::Time next_tick_ = absl::InfinitePast();
  std::vector<std::function<void()>> deferred_;

  std::thread thread_;
  std::thread::id thread_id_;
};

// A Medium whose thread is a TaskLoop: Post and OnThread, and the loop started with the
// protocol's ticks and stopped with its shutdown. Thread-safety: as Medium.
class TaskLoopMedium : public Medium {
 public:
  bool Post(std::function<void()> task) final { return loop_.Post(std::move(task)); }
  bool OnThread() const final { return loop_.OnThread(); }

 protected:
  // Starts the loop; from now on `events` hears the ticks (and whatever the medium delivers).
  void StartLoop(MediumEvents* events);
  // Stops the loop after running, on it, the protocol's OnShutdown and then `close_all`.
  void StopLoop(std::function<void()> close_all);
  MediumEvents* events() const { return events_; }
  TaskLoop& loop() { return loop_; }

 private:
  MediumEvents* events_ = nullptr;
  TaskLoop loop_;
};

}  // namespace tandem::transfer
