// The shape of a paged KV cache and what two caches must agree on to exchange blocks. The
// decode worker publishes its layout with its KV endpoint; the prefill side and every transfer
// medium compare it before a byte moves.
//
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <string>

#include "types/dtype.h"

namespace tandem {

// Geometry of the paged KV cache. Block b of layer l holds, for each KV head, block_size
// token rows of head_dim keys and the same of values.
struct KvCacheLayout {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  DType dtype = DType::kF16;

  int64_t bytes_per_block_layer() const {
    return 2LL * num_kv_heads * block_size * head_dim * static_cast<int64_t>(DTypeSize(dtype));
  }
  int64_t bytes_per_block() const { return bytes_per_block_layer() * num_layers; }
  int64_t bytes_per_token() const { return bytes_per_block() / block_size; }
};

// What must match for two caches to exchange blocks.
struct KvLayoutInfo {
  std::string model_id;      // identity of the weights (ModelIdentity, types/model_info.h)
  KvCacheLayout layout;      // layers, KV heads, head dim, block size, dtype
  std::string block_format;  // arrangement inside a block, e.g. "cpu/kt-v1"

  bool operator==(const KvLayoutInfo& o) const;
  // "model=... layers=30 kv_heads=3 head_dim=64 block=16 dtype=f16 format=cpu/kt-v1"
  std::string Describe() const;
  // Empty when equal, else which fields differ (for error messages).
  std::string Mismatch(const KvLayoutInfo& other) const;
};

}  // namespace tandem
