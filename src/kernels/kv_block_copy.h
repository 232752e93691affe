// Packing a list of KV blocks into one contiguous buffer and back (for KV transfers): block
// blocks[i] of the cache <-> bytes [i * block_bytes, (i + 1) * block_bytes) of the buffer.
#pragma once

#include <cstdint>

#include "kernels/kernel_types.h"

namespace tandem::kernels {

// block_bytes must be a multiple of 16 and both pointers 16-byte aligned. `blocks` (device)
// holds `n` block ids; ids outside [0, num_blocks) are skipped (their bytes left as they are).
int LaunchKvGather(const void* cache, int64_t num_blocks, int64_t block_bytes,
                   const int32_t* blocks, int64_t n, void* packed, cudaStream_t stream);
int LaunchKvScatter(const void* packed, const int32_t* blocks, int64_t n, int64_t block_bytes,
                    void* cache, int64_t num_blocks, cudaStream_t stream);

}  // namespace tandem::kernels
