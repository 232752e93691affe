// CUDA graphs for decode-only iterations, one per batch size (the bucket is the exact number
// of rows, so no padding rows are needed and every buffer the model sized for n rows holds
// them). The first iteration of a size runs eagerly (warm-up: kernel modules load and
// shared-memory attributes are set outside capture); the second is captured and launched; later
// ones replay the graph when the iteration's signature (every operation with its tensor
// pointers, shapes and parameters) equals the captured one, and are captured again when not.
// Per-iteration data (tokens, positions, slots, block tables) lives at fixed device addresses
// that the graph reads, refreshed by a copy before each launch.
//
// Thread-safety: none (owned by one CudaBackend).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "absl/status/status.h"

typedef struct CUstream_st* cudaStream_t;       // NOLINT
typedef struct CUgraphExec_st* cudaGraphExec_t;  // NOLINT

namespace tandem::cuda {

class DecodeGraphCache {
 public:
  enum class Mode { kEager, kWarmUp, kGraph };

  explicit DecodeGraphCache(int max_batch) : max_batch_(max_batch) {}
  ~DecodeGraphCache();
  DecodeGraphCache(const DecodeGraphCache&) = delete;
  DecodeGraphCache& operator=(const DecodeGraphCache&) = delete;

  // How to run a decode-only iteration of `rows` rows (marks the size as seen).
  Mode Plan(int rows);
  // Launches the graph for `rows` on `stream`, capturing it first (by calling `record`, which
  // enqueues every operation on `stream`) when there is none or its signature differs.
  absl::Status Launch(int rows, const std::vector<uint64_t>& signature,
                      const std::function<void()>& record, cudaStream_t stream);
  // Forgets every graph (device addresses they use have changed).
  void Clear();

  int64_t captures() const { return captures_; }
  int64_t replays() const { return replays_; }

 private:
  struct Entry {
    std::vector<uint64_t> signature;
    cudaGraphExec_t exec = nullptr;
  };
  int max_batch_;
  std::map<int, Entry> graphs_;
  std::vector<bool> seen_;
  int64_t captures_ = 0, replays_ = 0;
};

}  // namespace tandem::cuda
