// Helpers for the GPU transfer tests and their peer process: a cudaMalloc'ed KV cache, a
// deterministic byte pattern per (seed, block), and the skip-without-a-device rule
// (TANDEM_REQUIRE_GPU=1 turns the skip into a failure).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tandem/kv_transport.h"

namespace tandem::transfer::gpu_testing {

// Number of CUDA devices (0 when there is no driver or no device).
int DeviceCount();
bool GpuRequired();  // TANDEM_REQUIRE_GPU=1

// 4 layers x 2 KV heads x head dim 64 x block 16, bf16: 32 KiB per block.
KvLayoutInfo TestLayout();

class DeviceKvCache final : public KvCacheStorage {
 public:
  static absl::StatusOr<std::unique_ptr<DeviceKvCache>> Create(const KvLayoutInfo& layout,
                                                               int64_t num_blocks, int device = 0);
  ~DeviceKvCache() override;
  uint8_t* device_base() override { return base_; }
  int device() const override { return device_; }
  std::string_view block_format() const override { return format_; }

  // Block b := Pattern(seed, b) for every block.
  absl::Status FillPattern(uint64_t seed);
  absl::Status FillByte(uint8_t value);
  absl::StatusOr<std::vector<uint8_t>> ReadBlock(int64_t block);

 private:
  DeviceKvCache() = default;
  uint8_t* base_ = nullptr;
  int device_ = 0;
  std::string format_;
};

// The bytes of block `block` of a cache filled with FillPattern(seed).
std::vector<uint8_t> Pattern(uint64_t seed, int64_t block, int64_t bytes);

}  // namespace tandem::transfer::gpu_testing

// At the top of a GPU test: skips without a device, fails instead under TANDEM_REQUIRE_GPU=1.
#define TANDEM_REQUIRE_DEVICE_OR_SKIP()                                                  \
  do {                                                                                   \
    if (::tandem::transfer::gpu_testing::DeviceCount() == 0) {                           \
      if (::tandem::transfer::gpu_testing::GpuRequired()) {                              \
        FAIL() << "TANDEM_REQUIRE_GPU=1 but no CUDA device is usable";                   \
      }                                                                                  \
      GTEST_SKIP() << "no CUDA device";                                                  \
    }                                                                                    \
  } while (0)
