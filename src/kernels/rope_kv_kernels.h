// RoPE (llama "normal" mode: adjacent pairs (2i, 2i+1) rotate by pos * theta_i; NEOX mode:
// pairs (i, i + rotary_dim / 2)) applied in place to q and k, fused with writing k and v into the paged KV cache.
#pragma once

#include <cstdint>

#include "kernels/kernel_types.h"

namespace tandem::kernels {

struct RopeKvArgs {
  float* q = nullptr;          // [rows][num_heads * head_dim], rotated in place
  int64_t q_stride = 0;
  float* k = nullptr;          // [rows][num_kv_heads * head_dim], rotated in place
  int64_t k_stride = 0;
  const float* v = nullptr;    // [rows][num_kv_heads * head_dim]
  int64_t v_stride = 0;
  int64_t rows = 0;
  int num_heads = 0;
  const int32_t* positions = nullptr;     // [rows], device
  const int32_t* slot_mapping = nullptr;  // [rows], device; slot < 0: do not store this row
  const float* cos = nullptr;  // [max_positions][rotary_dim / 2], device
  const float* sin = nullptr;
  int rotary_dim = 0;          // even, <= head_dim
  void* cache = nullptr;       // the KV cache base (KvGeometry layout)
  KvGeometry geo;
  int layer = 0;
  bool neox = false;           // NEOX pairing (qwen2)
};

// One block per row; threads stride over the (head, pair) rotations and then the K/V stores.
int LaunchRopeAndStoreKv(const RopeKvArgs& a, cudaStream_t stream);

}  // namespace tandem::kernels
