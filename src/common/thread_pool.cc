#include "common/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace tandem {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

using Clock = std::chrono::steady_clock;
// Between the operations of a forward pass workers wait microseconds: spin briefly, then yield
// the CPU (so an oversubscribed machine still makes progress), then sleep.
constexpr auto kSpinFor = std::chrono::microseconds(50);
constexpr auto kYieldFor = std::chrono::milliseconds(2);

// Waits until `done()` holds: pause-spins for kSpinFor, then yields. Returns false if
// `give_up_after` passed first.
template <typename Done>
bool SpinThenYield(Done done, Clock::duration give_up_after) {
  const auto start = Clock::now();
  for (int i = 0;; ++i) {
    if (done()) return true;
    if ((i & 63) != 63) {
      CpuRelax();
      continue;
    }
    const auto waited = Clock::now() - start;
    if (waited > give_up_after) return false;
    if (waited > kSpinFor) sched_yield();
  }
}

}  // namespace

int ThreadPool::DefaultThreadCount() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(num_threads > 0 ? num_threads : DefaultThreadCount()) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  for (auto& t : workers_) t.join();
}

void ThreadPool::Run(absl::FunctionRef<void(int, int)> fn) {
  if (num_threads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  pending_.store(num_threads_ - 1);
  generation_.fetch_add(1);
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  fn(0, num_threads_);
  SpinThenYield([&] { return pending_.load(std::memory_order_acquire) == 0; }, Clock::duration::max());
  job_ = nullptr;
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t units = (n + grain - 1) / grain;
  if (num_threads_ == 1 || units == 1) {
    fn(0, n);
    return;
  }
  Run([&](int tid, int nth) {
    const int64_t per = units / nth, extra = units % nth;
    const int64_t first = tid * per + std::min<int64_t>(tid, extra);
    const int64_t count = per + (tid < extra ? 1 : 0);
    const int64_t begin = first * grain, end = std::min(n, (first + count) * grain);
    if (begin < end) fn(begin, end);
  });
}

void ThreadPool::ParallelForGuided(int64_t n, int64_t grain,
                                   absl::FunctionRef<void(int, int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (num_threads_ == 1 || n <= grain) {
    fn(0, 0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  const int64_t divisor = 2 * int64_t{num_threads_};
  Run([&](int tid, int) {
    int64_t begin = next.load(std::memory_order_relaxed);
    for (;;) {
      if (begin >= n) return;
      const int64_t take = std::min(n - begin, std::max(grain, (n - begin) / divisor));
      if (!next.compare_exchange_weak(begin, begin + take, std::memory_order_relaxed)) continue;
      fn(tid, begin, begin + take);
      begin = next.load(std::memory_order_relaxed);
    }
  });
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = seen;
    SpinThenYield([&] { return (gen = generation_.load(std::memory_order_acquire)) != seen; }, kYieldFor);
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1);
      cv_.wait(lock, [&] { return generation_.load() != seen; });
      sleepers_.fetch_sub(1);
      gen = generation_.load();
    }
    seen = gen;
    if (stop_.load()) return;
    (*job_)(index, num_threads_);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace tandem
