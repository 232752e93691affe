// Types shared by the kernel launchers: the CUDA stream (forward-declared so that callers need
// no CUDA headers) and the element type of a paged KV cache.
//
// Every launcher returns the CUDA error code of its launch as an int (0 = success, otherwise a
// cudaError_t value; see cudaGetErrorString). Launchers never synchronize.
#pragma once

#include <cstdint>

typedef struct CUstream_st* cudaStream_t;  // NOLINT: the CUDA runtime's own declaration

namespace tandem::kernels {

// Element type of the KV cache (and of its blocks on the wire).
enum class KvElem : uint8_t { kF16 = 0, kBF16 = 1 };

// Geometry of the device KV cache. Block b, layer l starts at element
// (b * num_layers + l) * block_layer_elems(); inside it K is [kv_head][block_size][head_dim],
// then V with the same shape ("cuda/nhd-v1"). All layers of a block are contiguous, so one
// block is one byte range (KV transfers move whole blocks).
struct KvGeometry {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;
  KvElem elem = KvElem::kF16;

  constexpr int64_t head_elems() const { return int64_t{block_size} * head_dim; }
  constexpr int64_t block_layer_elems() const { return 2 * int64_t{num_kv_heads} * head_elems(); }
  constexpr int64_t block_bytes() const { return block_layer_elems() * num_layers * 2; }
};

}  // namespace tandem::kernels
