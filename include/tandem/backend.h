// The backend interface: the table of operations a llama-family forward pass is written over
// (embedding, RMSNorm, matmul on quantized or float weights, RoPE with paged KV writes,
// attention over paged KV, SwiGLU, logits read-back). The CPU backend is the reference; the
// CUDA backend implements the same table. Model code never branches on the backend.
//
// Thread-safety: a Backend and everything it creates are used by one thread at a time (the
// engine's step thread); backends may use their own worker threads inside an operation.
// Ownership: weights, tensors and KV caches created by a backend are owned by the caller and
// must not outlive the backend.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "gguf/gguf_file.h"
#include "tandem/forward_batch.h"
#include "tandem/kv_cache_storage.h"
#include "types/dtype.h"

namespace tandem {

// A dense row-major 2-D view of backend memory (an activation). Does not own its memory.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;

  Tensor Rows(int64_t begin, int64_t count) const {
    return {static_cast<char*>(data) + begin * cols * static_cast<int64_t>(DTypeSize(dtype)),
            dtype, count, cols};
  }
};

// Backend memory owned by the caller; `tensor` views all of it.
class DeviceBuffer {
 public:
  virtual ~DeviceBuffer() = default;
  const Tensor& tensor() const { return tensor_; }

 protected:
  Tensor tensor_;
};

// A weight matrix prepared for one backend's kernels (CPU: the GGUF blocks as they are;
// CUDA: a dense bf16 copy). out_features rows of in_features each: y = W x.
class WeightMatrix {
 public:
  virtual ~WeightMatrix() = default;
  int64_t out_features() const { return out_features_; }
  int64_t in_features() const { return in_features_; }
  gguf::GgmlType source_type() const { return source_type_; }
  // Bytes this weight occupies in backend memory.
  virtual int64_t resident_bytes() const = 0;

 protected:
  int64_t out_features_ = 0;
  int64_t in_features_ = 0;
  gguf::GgmlType source_type_ = gguf::GgmlType::kF32;
};

// Rotary position embedding parameters. Pair i of a head rotates by position * theta_i; the
// "normal" mode (llama) pairs dims (2i, 2i+1), the NEOX mode (qwen2, GPT-NeoX) pairs
// (i, i + rotary_dim / 2).
struct RopeConfig {
  int rotary_dim = 0;          // leading dims of each head that rotate (even, <= head_dim)
  bool neox = false;           // NEOX pairing instead of adjacent pairs
  float theta = 10000.0f;      // frequency base
  float freq_scale = 1.0f;     // 1 / linear scaling factor
  std::vector<float> freq_factors;  // optional per-pair divisors (Llama 3 "rope_freqs")
  int max_positions = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // --- set-up ---------------------------------------------------------------------------
  virtual absl::StatusOr<std::unique_ptr<WeightMatrix>> LoadMatrix(const gguf::TensorInfo& t) = 0;
  // A 1-D float vector (norm weights), converted to f32.
  virtual absl::StatusOr<std::unique_ptr<DeviceBuffer>> LoadVector(const gguf::TensorInfo& t) = 0;
  virtual absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(DType dtype, int64_t rows,
                                                                 int64_t cols) = 0;
  virtual absl::StatusOr<std::unique_ptr<KvCacheStorage>> CreateKvCache(
      const KvCacheLayout& layout, int64_t num_blocks) = 0;
  virtual absl::Status SetRope(const RopeConfig& rope) = 0;

  // --- one forward pass -----------------------------------------------------------------
  // Makes `batch` the current batch for the operations below (token ids, positions, per
  // sequence block tables). The batch must stay alive until the next BeginForward.
  virtual absl::Status BeginForward(const ForwardBatch& batch) = 0;

  // out[i] = row tokens[i] of `table` (dequantized).
  virtual void Embed(const WeightMatrix& table, Tensor out) = 0;
  // out = rmsnorm(x) * weight.
  virtual void RmsNorm(Tensor x, const DeviceBuffer& weight, float eps, Tensor out) = 0;
  // residual += delta; out = rmsnorm(residual) * weight.
  virtual void AddRmsNorm(Tensor residual, Tensor delta, const DeviceBuffer& weight, float eps,
                          Tensor out) = 0;
  // outs[k] = x * weights[k]^T for every k; all weights share in_features = x.cols.
  virtual void MatMul(Tensor x, std::span<const WeightMatrix* const> weights,
                      std::span<const Tensor> outs) = 0;
  // x[r] += bias for every row r (bias: x.cols floats). Q/K/V and output biases (qwen2).
  virtual void AddBias(Tensor x, const DeviceBuffer& bias) = 0;
  // Applies RoPE to q (num_heads) and k (num_kv_heads) in place at the batch positions and
  // writes k and v into the KV cache slots of `layer`.
  virtual void RopeAndStoreKv(Tensor q, Tensor k, Tensor v, KvCacheStorage& cache, int layer) = 0;
  // Causal attention of every query row over its sequence's cached keys/values
  // (GQA: num_heads query heads share num_kv_heads), scaled by `scale`.
  virtual void Attention(Tensor q, KvCacheStorage& cache, int layer, int num_heads,
                         float scale, Tensor out) = 0;
  // out = silu(gate) * up.
  virtual void SwiGlu(Tensor gate, Tensor up, Tensor out) = 0;
  // out[j] = x[batch.logit_rows[j]].
  virtual void GatherLogitRows(Tensor x, Tensor out) = 0;
  // Copies a float tensor to host memory (blocks until done).
  virtual absl::Status ReadFloat(Tensor src, float* dst) = 0;
};

}  // namespace tandem
