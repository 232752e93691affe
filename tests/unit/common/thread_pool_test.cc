#include "common/thread_pool.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tandem {
namespace {

TEST(ThreadPoolTest, RunCallsEveryThreadOnce) {
  ThreadPool pool(4);
  for (int round = 0; round < 1000; ++round) {
    std::vector<std::atomic<int>> calls(4);
    pool.Run([&](int tid, int nth) {
      ASSERT_EQ(nth, 4);
      calls[tid].fetch_add(1);
    });
    for (auto& c : calls) ASSERT_EQ(c.load(), 1);
  }
}

TEST(ThreadPoolTest, ParallelForCoversRangeExactlyOnce) {
  ThreadPool pool(3);
  for (int64_t n : {1, 2, 7, 64, 1000, 1001}) {
    for (int64_t grain : {1, 4, 16}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
        EXPECT_EQ(b % grain, 0);
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << " " << grain;
    }
  }
}

TEST(ThreadPoolTest, GuidedCoversRangeExactlyOnceInClaimsOfAtLeastTheGrain) {
  ThreadPool pool(3);
  for (int64_t n : {1, 2, 7, 64, 1000, 1001}) {
    for (int64_t grain : {1, 4, 16}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelForGuided(n, grain, [&](int tid, int64_t b, int64_t e) {
        EXPECT_GE(tid, 0);
        EXPECT_LT(tid, 3);
        EXPECT_TRUE(e - b >= grain || e == n) << b << " " << e;
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << " " << grain;
    }
  }
}

// A thread held up (here: sleeping on its first claim) leaves the rest of the range to the
// others instead of a fixed share waiting for it.
TEST(ThreadPoolTest, GuidedGivesASlowThreadsShareToTheOthers) {
  ThreadPool pool(2);
  std::vector<std::atomic<int64_t>> done(2);
  pool.ParallelForGuided(1000, 1, [&](int tid, int64_t b, int64_t e) {
    if (tid == 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    done[tid].fetch_add(e - b);
  });
  EXPECT_EQ(done[0].load() + done[1].load(), 1000);
  EXPECT_GT(done[0].load(), 700) << "the static split would give thread 0 500";
}

TEST(ThreadPoolTest, WakesUpAfterWorkersFellAsleep) {
  ThreadPool pool(2);
  std::atomic<int> sum{0};
  pool.Run([&](int, int) { sum.fetch_add(1); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // workers go to sleep
  pool.Run([&](int, int) { sum.fetch_add(1); });
  EXPECT_EQ(sum.load(), 4);
}

TEST(ThreadPoolTest, SingleThreadRunsInline) {
  ThreadPool pool(1);
  const auto caller = std::this_thread::get_id();
  pool.Run([&](int tid, int nth) {
    EXPECT_EQ(tid, 0);
    EXPECT_EQ(nth, 1);
    EXPECT_EQ(std::this_thread::get_id(), caller);
  });
}

}  // namespace
}  // namespace tandem
