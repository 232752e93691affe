// The CUDA backend: the Backend op table on one GPU. Weights are dequantized on the host at load
// (any type the CPU backend takes) and kept as dense bf16 on the device; matmuls are cuBLAS
// GEMMs (bf16 inputs, f32 accumulation and output); activations are the f32 tensors the model
// allocates; the KV cache is f16 or bf16 in device memory (block-major, one contiguous byte
// range per block: see kernels/kernel_types.h). Everything runs on one stream in order;
// ReadFloat is the only synchronisation. A forward pass without logit rows returns with its KV
// writes possibly still queued: readers of device_base() on the legacy default stream are
// ordered after them (the backend's stream is a blocking one); readers on other streams must
// call Synchronize() first (or wait on an event recorded on stream()).
//
// Errors: the void operations of the Backend interface cannot return a Status, so the first
// CUDA or cuBLAS error of a forward pass is kept and returned by the next ReadFloat or
// BeginForward (later operations of that pass still run, on whatever the failed one left).
//
// Thread-safety: as Backend (one caller thread at a time). Ownership: as Backend; the backend
// owns its stream, cuBLAS handle and scratch memory.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backends/cuda/batch_plan.h"
#include "engine/backends/cuda/cuda_backend_factory.h"
#include "tandem/backend.h"

typedef struct CUstream_st* cudaStream_t;         // NOLINT: CUDA's declarations
typedef struct CUevent_st* cudaEvent_t;           // NOLINT
typedef struct cublasContext* cublasHandle_t;     // NOLINT

namespace tandem::cuda {

class DecodeGraphCache;

class CudaBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::string_view name() const override { return "cuda"; }
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }

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

  // --- beyond the Backend interface (benchmarks, tests) ---------------------------------
  // An out_features x in_features bf16 matrix of uniform values in [-scale, scale), made on
  // the device from `seed` (no host copy).
  absl::StatusOr<std::unique_ptr<WeightMatrix>> RandomMatrix(int64_t out_features,
                                                             int64_t in_features, uint64_t seed,
                                                             float scale);
  // A 1 x n f32 vector of `value`.
  absl::StatusOr<std::unique_ptr<DeviceBuffer>> ConstantVector(int64_t n, float value);
  // Waits for all queued work; returns the kept error, if any.
  absl::Status Synchronize();
  // Decode graphs captured and replayed so far (0 without cuda_graphs).
  int64_t graph_captures() const;
  int64_t graph_replays() const;

 private:
  CudaBackend() = default;
  absl::Status Init(const CudaBackendOptions& options);
  void Fail(absl::Status s);          // keeps the first error
  void Check(int cuda_error, const char* what);
  absl::Status TakeError();
  absl::Status BindDevice();
  absl::Status EnsureBytes(void** p, int64_t* capacity, int64_t bytes);
  absl::Status UploadPlan();
  // Validates the cache against the current batch (block ids in range); false after Fail().
  bool CheckCache(const KvCacheStorage& cache);
  // Runs `op` now, or (while recording a decode-graph iteration) keeps it and its signature
  // for RunPending. Operations read per-iteration device addresses when they run.
  void Enqueue(std::initializer_list<uint64_t> sig, std::function<void()> op);
  void EnqueueSig(std::vector<uint64_t> sig, std::function<void()> op);
  // Replays, or captures and launches, the recorded operations (no-op when not recording).
  void RunPending();

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t upload_done_ = nullptr;  // the last host-to-device copy of batch data
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;

  // RoPE tables (device), [max_positions][rotary_dim / 2].
  RopeConfig rope_;
  float* rope_cos_ = nullptr;
  float* rope_sin_ = nullptr;

  // The current batch: the host plan and its device copy (one int32 arena, uploaded in one
  // copy from pinned memory).
  const ForwardBatch* batch_ = nullptr;
  BatchPlan plan_;
  int block_size_ = 0;  // of the KV cache last created (the plan needs it)
  int tiles_group_ = 0;  // GQA group the uploaded prefill tiles were built for
  int64_t num_tiles_ = 0;
  int32_t* host_arena_ = nullptr;  // pinned
  int64_t host_arena_bytes_ = 0;
  int32_t* dev_arena_ = nullptr;
  int64_t dev_arena_bytes_ = 0;
  struct Offsets {  // in int32 elements into the arenas
    int64_t tokens = 0, positions = 0, slots = 0, row_seq = 0, logit_rows = 0, decode_rows = 0,
            seq_block_offset = 0, block_tables = 0, tiles = 0, end = 0;
  } off_;

  // Scratch: bf16 copy of a GEMM input, decode-attention split partials.
  void* gemm_input_ = nullptr;
  int64_t gemm_input_bytes_ = 0;
  void* attn_ws_ = nullptr;
  int64_t attn_ws_bytes_ = 0;

  absl::Status error_;

  // Decode graphs (null when off or after a failed capture).
  std::unique_ptr<DecodeGraphCache> graphs_;
  bool recording_ = false;   // this pass's operations are kept for a graph
  bool graph_grid_ = false;  // this pass uses the graph's fixed decode grid
  int graph_max_context_ = 0;
  int graph_keys_ = 0;       // keys the graph's decode grid covers
  std::vector<std::function<void()>> pending_;
  std::vector<uint64_t> signature_;
};

}  // namespace tandem::cuda
