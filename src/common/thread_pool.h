// A fixed pool of compute threads for data-parallel kernels (matmuls, attention). The calling
// thread takes part as thread 0, so a pool of N threads starts N-1 workers.
//
// Thread-safety: Run() must be called from one thread at a time (the engine's step thread);
// it is not reentrant. Workers spin briefly between back-to-back Run() calls (a forward pass is
// hundreds of them) and then sleep, so an idle engine costs no CPU.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"

namespace tandem {

class ThreadPool {
 public:
  // `num_threads` <= 0 means one per online CPU.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return num_threads_; }

  // Calls fn(thread_index, num_threads) once on every thread of the pool and returns when all
  // calls have returned.
  void Run(absl::FunctionRef<void(int, int)> fn);

  // Splits [0, n) into contiguous ranges, one per thread, aligned to `grain`, and calls
  // fn(begin, end) for each non-empty range.
  void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn);

  // Like ParallelFor, but the threads claim ranges of [0, n) as they go: each claim takes about
  // 1 / (2 x threads) of what is left, at least `grain` (guided self-scheduling), so a thread
  // slowed by something outside its work (the other's memory traffic, another process) does not
  // leave the rest waiting at the end. fn(thread_index, begin, end) runs once per claim, so a
  // thread may get several ranges; which thread gets which range varies from run to run.
  void ParallelForGuided(int64_t n, int64_t grain, absl::FunctionRef<void(int, int64_t, int64_t)> fn);

  static int DefaultThreadCount();

 private:
  void WorkerLoop(int index);

  const int num_threads_;
  std::vector<std::thread> workers_;
  absl::FunctionRef<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace tandem
