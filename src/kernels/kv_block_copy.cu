#include <cuda_runtime.h>

#include "kernels/kv_block_copy.h"

namespace tandem::kernels {
namespace {

// Grid: x = list entry, y = chunks of the block. 16-byte copies, coalesced.
__global__ void KvCopyKernel(const uint4* src, uint4* dst, const int32_t* blocks,
                             int64_t num_blocks, int64_t block_vecs, bool gather) {
  const int64_t i = blockIdx.x;
  const int32_t b = blocks[i];
  if (b < 0 || b >= num_blocks) return;
  const int64_t cache_at = static_cast<int64_t>(b) * block_vecs, packed_at = i * block_vecs;
  for (int64_t v = blockIdx.y * int64_t{blockDim.x} + threadIdx.x; v < block_vecs;
       v += int64_t{gridDim.y} * blockDim.x) {
    if (gather) {
      dst[packed_at + v] = src[cache_at + v];
    } else {
      dst[cache_at + v] = src[packed_at + v];
    }
  }
}

int Launch(const void* src, void* dst, const int32_t* blocks, int64_t n, int64_t num_blocks,
           int64_t block_bytes, bool gather, cudaStream_t stream) {
  if (block_bytes % 16 != 0 || reinterpret_cast<uintptr_t>(src) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(dst) % 16 != 0) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (n <= 0) return 0;
  const int64_t vecs = block_bytes / 16;
  const int threads = 256;
  int64_t chunks = (vecs + threads - 1) / threads;
  if (chunks > 64) chunks = 64;
  for (int64_t i0 = 0; i0 < n; i0 += 0x7fffffff) {
    const int64_t m = n - i0 < 0x7fffffff ? n - i0 : 0x7fffffff;
    KvCopyKernel<<<dim3(static_cast<unsigned>(m), static_cast<unsigned>(chunks)), threads, 0,
                   stream>>>(static_cast<const uint4*>(src) + (gather ? 0 : i0 * vecs),
                             static_cast<uint4*>(dst) + (gather ? i0 * vecs : 0), blocks + i0,
                             num_blocks, vecs, gather);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int LaunchKvGather(const void* cache, int64_t num_blocks, int64_t block_bytes,
                   const int32_t* blocks, int64_t n, void* packed, cudaStream_t stream) {
  return Launch(cache, packed, blocks, n, num_blocks, block_bytes, /*gather=*/true, stream);
}

int LaunchKvScatter(const void* packed, const int32_t* blocks, int64_t n, int64_t block_bytes,
                    void* cache, int64_t num_blocks, cudaStream_t stream) {
  return Launch(packed, cache, blocks, n, num_blocks, block_bytes, /*gather=*/false, stream);
}

}  // namespace tandem::kernels
