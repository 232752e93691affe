#include "gpu_transfer/gpu_test_util.h"

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>

#include "common/strings.h"

namespace tandem::transfer::gpu_testing {
namespace {

absl::Status Check(cudaError_t e, std::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(StrCat(what, ": ", cudaGetErrorString(e)));
}

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

bool GpuRequired() {
  const char* v = std::getenv("TANDEM_REQUIRE_GPU");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

KvLayoutInfo TestLayout() {
  KvLayoutInfo l;
  l.model_id = "gpu-transfer-test";
  l.layout.num_layers = 4;
  l.layout.num_kv_heads = 2;
  l.layout.head_dim = 64;
  l.layout.block_size = 16;
  l.layout.dtype = DType::kBF16;
  l.block_format = "cuda/test-v1";
  return l;
}

absl::StatusOr<std::unique_ptr<DeviceKvCache>> DeviceKvCache::Create(const KvLayoutInfo& layout,
                                                                     int64_t num_blocks,
                                                                     int device) {
  auto cache = std::unique_ptr<DeviceKvCache>(new DeviceKvCache());
  cache->layout_ = layout.layout;
  cache->num_blocks_ = num_blocks;
  cache->device_ = device;
  cache->format_ = layout.block_format;
  if (absl::Status s = Check(cudaSetDevice(device), "cudaSetDevice"); !s.ok()) return s;
  void* p = nullptr;
  if (absl::Status s = Check(cudaMalloc(&p, static_cast<size_t>(num_blocks * layout.layout.bytes_per_block())),
                             "cudaMalloc");
      !s.ok()) {
    return s;
  }
  cache->base_ = static_cast<uint8_t*>(p);
  return cache;
}

DeviceKvCache::~DeviceKvCache() {
  if (base_ != nullptr) {
    cudaSetDevice(device_);
    cudaFree(base_);
  }
}

absl::Status DeviceKvCache::FillPattern(uint64_t seed) {
  cudaSetDevice(device_);
  const int64_t bpb = layout_.bytes_per_block();
  for (int64_t b = 0; b < num_blocks_; ++b) {
    std::vector<uint8_t> bytes = Pattern(seed, b, bpb);
    if (absl::Status s = Check(cudaMemcpy(base_ + b * bpb, bytes.data(), bytes.size(),
                                          cudaMemcpyHostToDevice),
                               "cudaMemcpy H2D");
        !s.ok()) {
      return s;
    }
  }
  // A pageable H2D cudaMemcpy may return before the DMA lands, and transports copy on streams of
  // their own (or from another process): wait until the bytes are really there.
  return Check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

absl::Status DeviceKvCache::FillByte(uint8_t value) {
  cudaSetDevice(device_);
  if (absl::Status s = Check(cudaMemset(base_, value, static_cast<size_t>(num_blocks_ * layout_.bytes_per_block())),
                             "cudaMemset");
      !s.ok()) {
    return s;
  }
  // cudaMemset is asynchronous: it must not land after another process's writes.
  return Check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

absl::StatusOr<std::vector<uint8_t>> DeviceKvCache::ReadBlock(int64_t block) {
  const int64_t bpb = layout_.bytes_per_block();
  std::vector<uint8_t> out(static_cast<size_t>(bpb));
  cudaSetDevice(device_);
  if (absl::Status s = Check(cudaMemcpy(out.data(), base_ + block * bpb, out.size(),
                                        cudaMemcpyDeviceToHost),
                             "cudaMemcpy D2H");
      !s.ok()) {
    return s;
  }
  return out;
}

std::vector<uint8_t> Pattern(uint64_t seed, int64_t block, int64_t bytes) {
  std::vector<uint8_t> out(static_cast<size_t>(bytes));
  for (int64_t i = 0; i < bytes; i += 8) {
    const uint64_t v = SplitMix(seed * 0x100000001b3ULL ^ (static_cast<uint64_t>(block) << 32) ^
                                static_cast<uint64_t>(i));
    std::memcpy(out.data() + i, &v, static_cast<size_t>(std::min<int64_t>(8, bytes - i)));
  }
  return out;
}

}  // namespace tandem::transfer::gpu_testing
