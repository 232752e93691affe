// Helpers shared by the KV transport tests: real CPU-backend caches, a recording lease handler,
// Finish waiting, and a child process speaking lines on a pipe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <condition_variable>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "engine/backends/cpu/cpu_backend.h"
#include "tandem/kv_transport.h"
#if TANDEM_HAVE_UCX
#include "transfer/ucx/ucx_kv_transport.h"
#endif

namespace tandem::transfer::testing {

// 2 layers x 2 KV heads x head dim 16 x block 4, f16: 1024 bytes per block.
KvLayoutInfo SmallLayout();
// SmolLM2-135M: 30 layers x 3 KV heads x head dim 64 x block 16, f16: 368,640 bytes per block.
KvLayoutInfo SmolLm2Layout();

// A CPU-backend KV cache (the backend lives as long as the cache).
struct TestCache {
  std::unique_ptr<cpu::CpuBackend> backend;
  std::unique_ptr<KvCacheStorage> cache;
  KvCacheStorage* get() const { return cache.get(); }
  uint8_t* block(int64_t b) const {
    return cache->host_base() + b * cache->layout().bytes_per_block();
  }
  int64_t bytes_per_block() const { return cache->layout().bytes_per_block(); }
};
TestCache MakeCache(const KvLayoutInfo& layout, int64_t num_blocks);
// Every block of the cache filled with bytes from a generator seeded with `seed`.
void FillRandom(const TestCache& cache, uint64_t seed);
// Every byte of the cache set to `value` (guard pattern).
void FillByte(const TestCache& cache, uint8_t value);
bool BlockEquals(const TestCache& a, int64_t block_a, const TestCache& b, int64_t block_b);
bool BlockIsByte(const TestCache& cache, int64_t block, uint8_t value);

// Records the transport's calls; refuses leases listed in `refusals`. Thread-safe.
class RecordingLeaseHandler : public KvLeaseHandler {
 public:
  absl::Status TransferStarting(const std::string& lease_id, std::span<const int32_t> blocks) override;
  void TransferEnded(const std::string& lease_id, const absl::Status& status, int32_t filled_blocks) override;
  // The filled_blocks of the last TransferEnded for `lease_id` (-1 if none).
  int32_t filled(const std::string& lease_id) const;

  void Refuse(const std::string& lease_id, absl::Status status);
  // Waits for TransferEnded(lease_id); nullopt on timeout.
  std::optional<absl::Status> WaitEnded(const std::string& lease_id, absl::Duration timeout);
  bool WaitStarted(const std::string& lease_id, absl::Duration timeout);
  int starts() const;
  int ends() const;
  // Leases with TransferStarting OK and no TransferEnded yet.
  int pinned() const;
  // Number of TransferEnded calls for `lease_id` (must never exceed 1 per start).
  int ended_count(const std::string& lease_id) const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, absl::Status> refusals_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> started_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<absl::Status>> ended_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int32_t> filled_ ABSL_GUARDED_BY(mu_);
  int starts_ ABSL_GUARDED_BY(mu_) = 0;
  int ends_ ABSL_GUARDED_BY(mu_) = 0;
  int pinned_ ABSL_GUARDED_BY(mu_) = 0;
};

// Calls Finish and waits for its callback; nullopt if it did not come within `timeout`.
std::optional<absl::Status> FinishAndWait(KvTransfer& transfer, absl::Duration timeout);

// A destination covering `blocks` of `endpoint`.
KvDestination Destination(const KvEndpoint& endpoint, const std::string& lease_id,
                          std::vector<int32_t> blocks);

// A child process (fork + exec) whose stdout we read line by line.
class ChildProcess {
 public:
  static std::unique_ptr<ChildProcess> Spawn(const std::vector<std::string>& argv);
  ~ChildProcess();  // kills and reaps the child if still running
  // The next line of the child's stdout (without '\n'); nullopt on EOF or timeout.
  std::optional<std::string> ReadLine(absl::Duration timeout);
  // Waits for a line starting with `prefix`; returns the rest of it.
  std::optional<std::string> WaitFor(const std::string& prefix, absl::Duration timeout);
  void Kill9();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
};

#if TANDEM_HAVE_UCX
// UCX transport options as the tests use them: TCP and shared memory, a 500 ms keepalive.
UcxKvTransportOptions TestUcxOptions(const std::string& worker_id, KvCacheStorage* cache,
                                     const KvLayoutInfo& layout, KvLeaseHandler* handler);
#endif

// Text form of a KvEndpoint for passing on a command line, and back.
std::string EndpointToArg(const KvEndpoint& e);
KvEndpoint EndpointFromArg(const std::string& arg, const KvLayoutInfo& layout);

}  // namespace tandem::transfer::testing
