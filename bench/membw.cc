// DRAM read bandwidth, for the CPU benchmark's roofline: decode at batch 1 reads every weight
// once per token, so tokens/s can be at most read bandwidth / weight bytes per token.
// Each thread sums its own slice of a buffer several times larger than the last-level cache
// (so the reads come from DRAM, not the cache); the best of several passes is reported, with
// 1 thread and with N. Prints one JSON object (bench/run_cpu_bench.sh puts it next to the
// engines' numbers from the same run). GB means 1e9 bytes.
//
// usage: membw [--threads N] [--bytes B] [--repeats 5]
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"

namespace {

using Clock = std::chrono::steady_clock;
// 16-byte vectors (SSE2 / NEON, in every build) and eight independent sums: two such loads per
// cycle are far more than a core's share of DRAM bandwidth, so the loop never limits the result.
using Vec = uint64_t __attribute__((vector_size(16)));
constexpr size_t kUnroll = 8;
constexpr size_t kAlign = size_t{2} << 20;  // huge-page aligned: fewer TLB misses

struct Args {
  int threads = 0;
  int64_t bytes = 0;  // 0: max(1 GiB, 4 x the last-level cache)
  int repeats = 5;
};

uint64_t SumSlice(const Vec* p, size_t n) {
  Vec acc[kUnroll] = {};
  for (size_t i = 0; i + kUnroll <= n; i += kUnroll) {
    for (size_t k = 0; k < kUnroll; ++k) acc[k] += p[i + k];
  }
  Vec s = {};
  for (const Vec& a : acc) s += a;
  return s[0] + s[1];
}

// Seconds for `threads` threads to read the whole buffer once, each its own contiguous slice.
double OnePass(const Vec* buf, size_t n, int threads) {
  std::atomic<bool> go{false};
  std::atomic<uint64_t> sink{0};
  std::vector<std::thread> pool;
  const size_t per = n / threads / kUnroll * kUnroll;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      while (!go.load(std::memory_order_acquire)) {
      }
      sink.fetch_add(SumSlice(buf + t * per, per), std::memory_order_relaxed);
    });
  }
  // Let every thread reach its spin before the clock starts.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto t0 = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (sink.load() == 42) std::fprintf(stderr, " ");  // keeps the sums from being optimised out
  return secs;
}

double BestGbPerS(const Vec* buf, size_t n, int threads, int repeats) {
  const size_t per = n / threads / kUnroll * kUnroll;
  const double bytes = static_cast<double>(per) * threads * sizeof(Vec);
  double best = 0;
  for (int r = 0; r < repeats; ++r) best = std::max(best, bytes / OnePass(buf, n, threads) / 1e9);
  return best;
}

int64_t LastLevelCacheBytes() {
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  return std::max<int64_t>({l3, l2, 0});
}

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (k == "--threads") a->threads = std::atoi(v);
    else if (k == "--bytes") a->bytes = std::atoll(v);
    else if (k == "--repeats") a->repeats = std::atoi(v);
    else return false;
  }
  return a->repeats > 0 && a->threads >= 0 && a->bytes >= 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    std::fprintf(stderr, "usage: membw [--threads N] [--bytes B] [--repeats 5]\n");
    return 2;
  }
  if (a.threads == 0) a.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int64_t llc = LastLevelCacheBytes();
  if (a.bytes == 0) a.bytes = std::max<int64_t>(int64_t{1} << 30, 4 * llc);
  const size_t bytes = (static_cast<size_t>(a.bytes) + kAlign - 1) / kAlign * kAlign;
  auto* buf = static_cast<Vec*>(std::aligned_alloc(kAlign, bytes));
  if (buf == nullptr) {
    std::fprintf(stderr, "membw: cannot allocate %zu bytes\n", bytes);
    return 1;
  }
  madvise(buf, bytes, MADV_HUGEPAGE);  // a hint; fine if the kernel declines
  std::memset(buf, 1, bytes);          // fault every page in before timing
  const size_t n = bytes / sizeof(Vec);
  nlohmann::json out;
  out["buffer_bytes"] = bytes;
  out["last_level_cache_bytes"] = llc;
  out["repeats"] = a.repeats;
  out["statistic"] = "best pass";
  std::vector<int> counts = {1};
  if (a.threads > 1) counts.push_back(a.threads);
  for (int t : counts) out["read_gb_per_s"][std::to_string(t)] = BestGbPerS(buf, n, t, a.repeats);
  std::free(buf);
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
