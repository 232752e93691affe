// The CPU backend: the reference implementation of the Backend interface. Quantized weights
// stay in their GGUF blocks (the file's read-only mapping, no copy), activations are quantized
// to 8 bits per 32-element block for the integer-dot formats (Q4_0, Q4_1, Q8_0); F32, F16,
// BF16, Q4_K and Q6_K weights go through float dot products one dequantized row at a time.
// Kernels come from the best instruction-set table the CPU has (cpu_kernels.h).
//
// KV cache layout, per block and layer: K transposed [kv_head][head_dim][block_size], then V
// [kv_head][block_size][head_dim], fp16; blocks are contiguous across layers (block-major) so
// one block is one contiguous range of bytes.
//
// Thread-safety: as Backend (one caller thread); operations run on an internal thread pool.
#pragma once

#include <memory>
#include <vector>

#include "common/thread_pool.h"
#include "engine/backends/cpu/cpu_kernels.h"
#include "tandem/backend.h"

namespace tandem::cpu {

struct CpuBackendOptions {
  int threads = 0;        // <= 0: one per CPU
  Isa isa = BestIsa();    // lower it to test other kernel tables
};

class CpuBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(const CpuBackendOptions& options);
  ~CpuBackend() override;

  std::string_view name() const override { return "cpu"; }
  const KernelTable& kernels() const { return k_; }
  int threads() const { return pool_.size(); }

  absl::StatusOr<std::unique_ptr<WeightMatrix>> LoadMatrix(const gguf::TensorInfo& t) override;
  absl::StatusOr<std::unique_ptr<DeviceBuffer>> LoadVector(const gguf::TensorInfo& t) override;
  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(DType dtype, int64_t rows,
                                                         int64_t cols) override;
  absl::StatusOr<std::unique_ptr<KvCacheStorage>> CreateKvCache(const KvCacheLayout& layout,
                                                                int64_t num_blocks) override;
  absl::Status SetRope(const RopeConfig& rope) override;

  absl::Status BeginForward(const ForwardBatch& batch) override;
  void Embed(const WeightMatrix& table, Tensor out) override;
  void RmsNorm(Tensor x, const DeviceBuffer& weight, float eps, Tensor out) override;
  void AddRmsNorm(Tensor residual, Tensor delta, const DeviceBuffer& weight, float eps,
                  Tensor out) override;
  void MatMul(Tensor x, std::span<const WeightMatrix* const> weights,
              std::span<const Tensor> outs) override;
  void AddBias(Tensor x, const DeviceBuffer& bias) override;
  void RopeAndStoreKv(Tensor q, Tensor k, Tensor v, KvCacheStorage& cache, int layer) override;
  void Attention(Tensor q, KvCacheStorage& cache, int layer, int num_heads, float scale,
                 Tensor out) override;
  void SwiGlu(Tensor gate, Tensor up, Tensor out) override;
  void GatherLogitRows(Tensor x, Tensor out) override;
  absl::Status ReadFloat(Tensor src, float* dst) override;

 private:
  explicit CpuBackend(const CpuBackendOptions& options);
  void QuantizeActivations(Tensor x);

  ThreadPool pool_;
  const KernelTable& k_;
  const ForwardBatch* batch_ = nullptr;
  RopeConfig rope_;
  std::vector<float> rope_cos_, rope_sin_;  // [position][rotary_dim / 2]
  // Scratch for activations quantized to Q8 (grown on demand).
  std::vector<int8_t> q8_;
  std::vector<float> q8_d_, q8_s_;
  std::vector<std::vector<float>> row_bufs_;  // per pool thread: float-path weight rows
};

}  // namespace tandem::cpu
