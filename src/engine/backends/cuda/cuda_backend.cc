#include "engine/backends/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/backends/cuda/decode_graph_cache.h"
#include "engine/backends/cuda/weight_convert.h"
#include "engine/rope_tables.h"
#include "gguf/quant.h"
#include "kernels/attention_kernels.h"
#include "kernels/elementwise_kernels.h"
#include "kernels/rope_kv_kernels.h"

namespace tandem::cuda {
namespace {

constexpr int64_t kCublasWorkspaceBytes = 32LL << 20;

absl::Status CudaStatus(cudaError_t e, std::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  const auto code = e == cudaErrorMemoryAllocation ? absl::StatusCode::kResourceExhausted
                                                   : absl::StatusCode::kInternal;
  return absl::Status(code, StrCat(what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
}

#define TANDEM_CUDA_RETURN_IF_ERROR(expr, what) \
  TANDEM_RETURN_IF_ERROR(CudaStatus((expr), (what)))

// Device memory freed with the owner.
struct DeviceMemory {
  void* p = nullptr;
  DeviceMemory() = default;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() {
    if (p != nullptr) cudaFree(p);
  }
  absl::Status Alloc(int64_t bytes, std::string_view what) {
    return CudaStatus(cudaMalloc(&p, static_cast<size_t>(std::max<int64_t>(bytes, 16))), what);
  }
};

class CudaWeightMatrix final : public WeightMatrix {
 public:
  CudaWeightMatrix(int64_t out, int64_t in, gguf::GgmlType source) {
    out_features_ = out;
    in_features_ = in;
    source_type_ = source;
  }
  int64_t resident_bytes() const override { return out_features_ * in_features_ * 2; }
  const __nv_bfloat16* data() const { return static_cast<const __nv_bfloat16*>(mem.p); }
  DeviceMemory mem;
};

class CudaBuffer final : public DeviceBuffer {
 public:
  void Set(DType dtype, int64_t rows, int64_t cols) { tensor_ = {mem.p, dtype, rows, cols}; }
  DeviceMemory mem;
};

class CudaKvCache final : public KvCacheStorage {
 public:
  CudaKvCache(const KvCacheLayout& layout, int64_t num_blocks, int device) : device_(device) {
    layout_ = layout;
    num_blocks_ = num_blocks;
  }
  uint8_t* device_base() override { return static_cast<uint8_t*>(mem.p); }
  int device() const override { return device_; }
  std::string_view block_format() const override {
    return layout_.dtype == DType::kBF16 ? "cuda/nhd-v1/bf16" : "cuda/nhd-v1/f16";
  }
  kernels::KvGeometry geometry() const {
    kernels::KvGeometry g;
    g.num_layers = layout_.num_layers;
    g.num_kv_heads = layout_.num_kv_heads;
    g.head_dim = layout_.head_dim;
    g.block_size = layout_.block_size;
    g.elem = layout_.dtype == DType::kBF16 ? kernels::KvElem::kBF16 : kernels::KvElem::kF16;
    return g;
  }
  DeviceMemory mem;

 private:
  int device_;
};

float* F32(const Tensor& t) { return static_cast<float*>(t.data); }

// A batch a decode graph can serve: every row its own one-row sequence, logits of every row
// in row order (so every offset into the batch arena is a function of the row count alone).
bool IsDecodeOnly(const ForwardBatch& b, const BatchPlan& plan) {
  const size_t n = b.tokens.size();
  if (n == 0 || plan.decode_rows.size() != n || b.logit_rows.size() != n) return false;
  for (size_t i = 0; i < n; ++i) {
    if (b.logit_rows[i] != static_cast<int32_t>(i)) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const CudaBackendOptions& options) {
  auto backend = std::unique_ptr<CudaBackend>(new CudaBackend());
  if (options.cuda_graphs) {
    if (options.max_graph_batch <= 0 || options.graph_max_context <= 0) {
      return absl::InvalidArgumentError("max_graph_batch and graph_max_context must be > 0");
    }
    backend->graph_max_context_ = options.graph_max_context;
    backend->graphs_ = std::make_unique<DecodeGraphCache>(options.max_graph_batch);
  }
  TANDEM_RETURN_IF_ERROR(backend->Init(options));
  return backend;
}

absl::Status CudaBackend::Init(const CudaBackendOptions& options) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    return absl::FailedPreconditionError(StrCat("no CUDA device is available (",
                                                e == cudaSuccess ? "none found" : cudaGetErrorString(e), ")"));
  }
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError(StrCat("CUDA device ", options.device, " does not exist (", count, " found)"));
  }
  device_ = options.device;
  TANDEM_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
  // A blocking stream: work on the legacy default stream (e.g. a transport's cudaMemcpy of KV
  // blocks) waits for this stream's queued work, such as the KV writes of a forward pass that
  // returned without reading logits.
  TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamDefault), "cudaStreamCreate");
  TANDEM_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&upload_done_, cudaEventDisableTiming), "cudaEventCreate");
  if (cublasCreate(&cublas_) != CUBLAS_STATUS_SUCCESS) return absl::InternalError("cublasCreate failed");
  if (cublasSetStream(cublas_, stream_) != CUBLAS_STATUS_SUCCESS) return absl::InternalError("cublasSetStream failed");
  // A fixed workspace keeps cuBLAS from allocating during a forward pass (and graph capture).
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMalloc(&cublas_workspace_, kCublasWorkspaceBytes), "cublas workspace");
  if (cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspaceBytes) != CUBLAS_STATUS_SUCCESS) {
    return absl::InternalError("cublasSetWorkspace failed");
  }
  return absl::OkStatus();
}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  graphs_.reset();
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  for (void* p : {cublas_workspace_, static_cast<void*>(rope_cos_), static_cast<void*>(rope_sin_),
                  static_cast<void*>(dev_arena_), gemm_input_, attn_ws_}) {
    if (p != nullptr) cudaFree(p);
  }
  if (host_arena_ != nullptr) cudaFreeHost(host_arena_);
  if (upload_done_ != nullptr) cudaEventDestroy(upload_done_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void CudaBackend::Fail(absl::Status s) {
  if (error_.ok() && !s.ok()) error_ = std::move(s);
}

void CudaBackend::Check(int cuda_error, const char* what) {
  if (cuda_error != 0) Fail(CudaStatus(static_cast<cudaError_t>(cuda_error), what));
}

absl::Status CudaBackend::TakeError() {
  absl::Status s = std::move(error_);
  error_ = absl::OkStatus();
  return s;
}

absl::Status CudaBackend::BindDevice() {
  // The current device is per host thread; the engine may load on one thread and step on another.
  return CudaStatus(cudaSetDevice(device_), "cudaSetDevice");
}

absl::Status CudaBackend::Synchronize() {
  Check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  return TakeError();
}

absl::Status CudaBackend::EnsureBytes(void** p, int64_t* capacity, int64_t bytes) {
  if (bytes <= *capacity) return absl::OkStatus();
  const int64_t grown = std::max(bytes, *capacity * 3 / 2);
  if (*p != nullptr) {
    // The old scratch may still be read by queued kernels.
    TANDEM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    TANDEM_CUDA_RETURN_IF_ERROR(cudaFree(*p), "cudaFree");
    *p = nullptr;
    *capacity = 0;
  }
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMalloc(p, static_cast<size_t>(grown)), "scratch allocation");
  *capacity = grown;
  if (graphs_ != nullptr) graphs_->Clear();  // captured graphs use the old address
  return absl::OkStatus();
}

// --- set-up -------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<WeightMatrix>> CudaBackend::LoadMatrix(const gguf::TensorInfo& t) {
  TANDEM_RETURN_IF_ERROR(BindDevice());
  const auto& traits = gguf::Traits(t.type);
  if (!traits.supported) {
    return absl::UnimplementedError(
        StrCat("tensor ", t.name, " has type ", traits.name, ", which tandem cannot compute with"));
  }
  if (t.dims.size() != 2) return absl::InvalidArgumentError(StrCat("tensor ", t.name, " is not a matrix"));
  const int64_t out = t.dims[1], in = t.dims[0];
  auto w = std::make_unique<CudaWeightMatrix>(out, in, t.type);
  TANDEM_RETURN_IF_ERROR(w->mem.Alloc(out * in * 2, StrCat("weight ", t.name)));
  // Convert in slices of ~16M elements to bound host memory.
  const int64_t rows_per_slice = std::max<int64_t>(1, (16LL << 20) / std::max<int64_t>(in, 1));
  std::vector<uint16_t> host;
  for (int64_t r = 0; r < out; r += rows_per_slice) {
    const int64_t rows = std::min(rows_per_slice, out - r);
    host.clear();
    TANDEM_RETURN_IF_ERROR(DequantizeRowsToBf16(t, r, rows, &host));
    TANDEM_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(static_cast<uint16_t*>(w->mem.p) + r * in, host.data(), host.size() * 2,
                        cudaMemcpyHostToDevice, stream_),
        StrCat("upload ", t.name));
    // `host` is reused for the next slice: wait until this one is on the device.
    TANDEM_RETURN_IF_ERROR(Synchronize());
  }
  return std::unique_ptr<WeightMatrix>(std::move(w));
}

absl::StatusOr<std::unique_ptr<DeviceBuffer>> CudaBackend::LoadVector(const gguf::TensorInfo& t) {
  TANDEM_RETURN_IF_ERROR(BindDevice());
  if (t.dims.size() != 1) return absl::InvalidArgumentError(StrCat("tensor ", t.name, " is not a vector"));
  std::vector<float> host(t.dims[0]);
  TANDEM_RETURN_IF_ERROR(gguf::DequantizeRowRef(t.type, t.data, host.data(), t.dims[0]));
  auto buf = std::make_unique<CudaBuffer>();
  TANDEM_RETURN_IF_ERROR(buf->mem.Alloc(t.dims[0] * 4, StrCat("vector ", t.name)));
  buf->Set(DType::kF32, 1, t.dims[0]);
  TANDEM_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(buf->mem.p, host.data(), host.size() * 4, cudaMemcpyHostToDevice, stream_),
      StrCat("upload ", t.name));
  TANDEM_RETURN_IF_ERROR(Synchronize());
  return std::unique_ptr<DeviceBuffer>(std::move(buf));
}

absl::StatusOr<std::unique_ptr<DeviceBuffer>> CudaBackend::Allocate(DType dtype, int64_t rows,
                                                                    int64_t cols) {
  TANDEM_RETURN_IF_ERROR(BindDevice());
  if (rows < 0 || cols < 0) return absl::InvalidArgumentError("negative tensor shape");
  auto buf = std::make_unique<CudaBuffer>();
  const int64_t bytes = rows * cols * static_cast<int64_t>(DTypeSize(dtype));
  TANDEM_RETURN_IF_ERROR(buf->mem.Alloc(bytes, StrCat("cannot allocate ", rows, "x", cols, " buffer")));
  // Zeroed, so that rows a kernel never writes read as 0, not garbage.
  TANDEM_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(buf->mem.p, 0, static_cast<size_t>(std::max<int64_t>(bytes, 16)), stream_), "cudaMemset");
  buf->Set(dtype, rows, cols);
  return std::unique_ptr<DeviceBuffer>(std::move(buf));
}

absl::StatusOr<std::unique_ptr<KvCacheStorage>> CudaBackend::CreateKvCache(const KvCacheLayout& layout,
                                                                           int64_t num_blocks) {
  TANDEM_RETURN_IF_ERROR(BindDevice());
  if (layout.dtype != DType::kF16 && layout.dtype != DType::kBF16) {
    return absl::UnimplementedError("the CUDA KV cache is f16 or bf16");
  }
  if (layout.block_size <= 0 || layout.num_kv_heads <= 0 || layout.num_layers <= 0 || num_blocks <= 0) {
    return absl::InvalidArgumentError("invalid KV cache layout");
  }
  const int hd = layout.head_dim;
  if (hd % 8 != 0 || hd > kernels::kMaxHeadDim || ((hd / 8) & (hd / 8 - 1)) != 0) {
    return absl::InvalidArgumentError(
        StrCat("the CUDA attention kernels need head_dim = 8 * 2^k <= ", kernels::kMaxHeadDim, ", not ", hd));
  }
  if (num_blocks * layout.block_size > INT32_MAX) {
    return absl::InvalidArgumentError("KV slots must fit in 32 bits");
  }
  auto cache = std::make_unique<CudaKvCache>(layout, num_blocks, device_);
  TANDEM_RETURN_IF_ERROR(cache->mem.Alloc(num_blocks * layout.bytes_per_block(),
                                          StrCat("KV cache of ", num_blocks * layout.bytes_per_block(), " bytes")));
  // Zero, so that a never-written slot holds finite values (they are masked anyway).
  TANDEM_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(cache->mem.p, 0, static_cast<size_t>(num_blocks * layout.bytes_per_block()), stream_),
      "cudaMemset");
  block_size_ = layout.block_size;
  return std::unique_ptr<KvCacheStorage>(std::move(cache));
}

absl::Status CudaBackend::SetRope(const RopeConfig& rope) {
  TANDEM_RETURN_IF_ERROR(BindDevice());
  std::vector<float> cs, sn;
  TANDEM_RETURN_IF_ERROR(BuildRopeTables(rope, &cs, &sn));
  TANDEM_RETURN_IF_ERROR(Synchronize());
  if (graphs_ != nullptr) graphs_->Clear();  // they read the old tables
  for (float** p : {&rope_cos_, &rope_sin_}) {
    if (*p != nullptr) cudaFree(*p);
    *p = nullptr;
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(p), cs.size() * 4), "RoPE table");
  }
  TANDEM_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(rope_cos_, cs.data(), cs.size() * 4, cudaMemcpyHostToDevice, stream_), "RoPE upload");
  TANDEM_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(rope_sin_, sn.data(), sn.size() * 4, cudaMemcpyHostToDevice, stream_), "RoPE upload");
  TANDEM_RETURN_IF_ERROR(Synchronize());
  rope_ = rope;
  return absl::OkStatus();
}

// --- one forward pass -----------------------------------------------------------------------

absl::Status CudaBackend::BeginForward(const ForwardBatch& batch) {
  TANDEM_RETURN_IF_ERROR(BindDevice());
  RunPending();  // a recorded pass that never reached ReadFloat still runs, in order
  TANDEM_RETURN_IF_ERROR(TakeError());
  if (rope_.max_positions == 0) return absl::FailedPreconditionError("SetRope was not called");
  TANDEM_ASSIGN_OR_RETURN(plan_, PlanBatch(batch, block_size_, rope_.max_positions));
  batch_ = &batch;
  const int64_t n = batch.num_tokens();
  recording_ = false;
  graph_grid_ = false;
  graph_keys_ = std::min(rope_.max_positions, graph_max_context_);
  if (graphs_ != nullptr && IsDecodeOnly(batch, plan_) && plan_.max_decode_keys <= graph_keys_) {
    const DecodeGraphCache::Mode mode = graphs_->Plan(static_cast<int>(n));
    recording_ = mode == DecodeGraphCache::Mode::kGraph;
    // The warm-up pass launches exactly what the capture will (same grids, so the same kernels
    // are loaded and configured before capture).
    graph_grid_ = mode != DecodeGraphCache::Mode::kEager;
  }
  // Arena layout (int32 elements). Tiles are filled in by the first Attention call (the GQA
  // group is known only then); at most one tile per row.
  Offsets o;
  o.tokens = 0;
  o.positions = o.tokens + n;
  o.slots = o.positions + n;
  o.row_seq = o.slots + n;
  o.logit_rows = o.row_seq + n;
  o.decode_rows = o.logit_rows + static_cast<int64_t>(batch.logit_rows.size());
  o.seq_block_offset = o.decode_rows + static_cast<int64_t>(plan_.decode_rows.size());
  o.block_tables = o.seq_block_offset + static_cast<int64_t>(plan_.seq_block_offset.size());
  o.tiles = o.block_tables + static_cast<int64_t>(plan_.block_tables.size());
  o.end = o.tiles + 2 * n;
  off_ = o;
  const int64_t bytes = o.end * 4;
  // The pinned staging buffer may still be the source of the previous (asynchronous) upload.
  TANDEM_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(upload_done_), "cudaEventSynchronize");
  if (bytes > host_arena_bytes_) {
    if (host_arena_ != nullptr) cudaFreeHost(host_arena_);
    host_arena_ = nullptr;
    host_arena_bytes_ = 0;
    const int64_t grown = std::max<int64_t>(bytes * 2, 4096);
    TANDEM_CUDA_RETURN_IF_ERROR(cudaMallocHost(reinterpret_cast<void**>(&host_arena_), grown), "pinned arena");
    host_arena_bytes_ = grown;
  }
  {
    void* p = dev_arena_;
    TANDEM_RETURN_IF_ERROR(EnsureBytes(&p, &dev_arena_bytes_, std::max<int64_t>(bytes * 2, 4096)));
    dev_arena_ = static_cast<int32_t*>(p);
  }
  auto put = [&](int64_t at, const std::vector<int32_t>& v) {
    if (!v.empty()) std::memcpy(host_arena_ + at, v.data(), v.size() * 4);
  };
  put(o.tokens, batch.tokens);
  put(o.positions, batch.positions);
  put(o.slots, batch.slot_mapping);
  put(o.row_seq, plan_.row_seq);
  put(o.logit_rows, batch.logit_rows);
  put(o.decode_rows, plan_.decode_rows);
  put(o.seq_block_offset, plan_.seq_block_offset);
  put(o.block_tables, plan_.block_tables);
  tiles_group_ = 0;
  num_tiles_ = 0;
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dev_arena_, host_arena_, static_cast<size_t>(o.tiles * 4),
                                              cudaMemcpyHostToDevice, stream_),
                              "batch upload");
  TANDEM_CUDA_RETURN_IF_ERROR(cudaEventRecord(upload_done_, stream_), "cudaEventRecord");
  return absl::OkStatus();
}

namespace {

uint64_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
uint64_t Ptr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

}  // namespace

void CudaBackend::Embed(const WeightMatrix& table, Tensor out) {
  const auto* w = static_cast<const CudaWeightMatrix*>(&table);
  Enqueue({1, Ptr(w->data()), Ptr(out.data), static_cast<uint64_t>(out.cols)}, [this, w, out] {
    Check(kernels::LaunchEmbed(w->data(), w->out_features(), dev_arena_ + off_.tokens, F32(out), out.cols,
                               out.rows, out.cols, stream_),
          "embed");
  });
}

void CudaBackend::RmsNorm(Tensor x, const DeviceBuffer& weight, float eps, Tensor out) {
  const float* w = F32(weight.tensor());
  Enqueue({2, Ptr(x.data), Ptr(w), Bits(eps), Ptr(out.data), static_cast<uint64_t>(x.cols)}, [=, this] {
    Check(kernels::LaunchRmsNorm(F32(x), x.cols, w, eps, F32(out), out.cols, x.rows, x.cols, stream_), "rmsnorm");
  });
}

void CudaBackend::AddRmsNorm(Tensor residual, Tensor delta, const DeviceBuffer& weight, float eps,
                             Tensor out) {
  const float* w = F32(weight.tensor());
  Enqueue({3, Ptr(residual.data), Ptr(delta.data), Ptr(w), Bits(eps), Ptr(out.data),
           static_cast<uint64_t>(residual.cols)},
          [=, this] {
            Check(kernels::LaunchAddRmsNorm(F32(residual), residual.cols, F32(delta), delta.cols, w, eps,
                                            F32(out), out.cols, residual.rows, residual.cols, stream_),
                  "add+rmsnorm");
          });
}

void CudaBackend::MatMul(Tensor x, std::span<const WeightMatrix* const> weights,
                         std::span<const Tensor> outs) {
  if (weights.size() != outs.size() || x.dtype != DType::kF32) {
    Fail(absl::InvalidArgumentError("MatMul: weights and outputs differ in number, or x is not f32"));
    return;
  }
  if (x.rows == 0) return;
  std::vector<const CudaWeightMatrix*> ws;
  std::vector<Tensor> os(outs.begin(), outs.end());
  std::vector<uint64_t> sig = {4, Ptr(x.data), static_cast<uint64_t>(x.cols)};
  for (size_t k = 0; k < weights.size(); ++k) {
    const auto* w = static_cast<const CudaWeightMatrix*>(weights[k]);
    if (w->in_features() != x.cols || outs[k].cols < w->out_features() || outs[k].rows < x.rows ||
        outs[k].dtype != DType::kF32) {
      Fail(absl::InvalidArgumentError("MatMul: shapes do not match"));
      return;
    }
    ws.push_back(w);
    sig.push_back(Ptr(w->data()));
    sig.push_back(Ptr(outs[k].data));
    sig.push_back(static_cast<uint64_t>(outs[k].cols));
  }
  // Scratch is sized now, outside any capture; the operation reads the pointer when it runs.
  if (absl::Status st = EnsureBytes(&gemm_input_, &gemm_input_bytes_, x.rows * x.cols * 2); !st.ok()) {
    Fail(std::move(st));
    return;
  }
  EnqueueSig(std::move(sig), [this, x, ws = std::move(ws), os = std::move(os)] {
    auto* xb = static_cast<__nv_bfloat16*>(gemm_input_);
    Check(kernels::LaunchF32ToBf16(F32(x), x.cols, xb, x.rows, x.cols, stream_), "f32->bf16");
    const float alpha = 1.0f, beta = 0.0f;
    for (size_t k = 0; k < ws.size(); ++k) {
      // Row-major y[rows][out] = x[rows][in] * W[out][in]^T is, column-major,
      // Y (out x rows, ld = y.cols) = W^T (W is in x out column-major, ld = in) * X (in x rows).
      const cublasStatus_t st = cublasGemmEx(
          cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(ws[k]->out_features()), static_cast<int>(x.rows),
          static_cast<int>(x.cols), &alpha, ws[k]->data(), CUDA_R_16BF, static_cast<int>(x.cols), xb,
          CUDA_R_16BF, static_cast<int>(x.cols), &beta, os[k].data, CUDA_R_32F, static_cast<int>(os[k].cols),
          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      if (st != CUBLAS_STATUS_SUCCESS) {
        Fail(absl::InternalError(StrCat("cublasGemmEx failed: ", cublasGetStatusString(st))));
        return;
      }
    }
  });
}

bool CudaBackend::CheckCache(const KvCacheStorage& cache) {
  if (cache.device() != device_ || cache.layout().block_size != block_size_) {
    Fail(absl::InvalidArgumentError("the KV cache is not this backend's current cache"));
    return false;
  }
  if (plan_.max_block_id >= cache.num_blocks()) {
    Fail(absl::InvalidArgumentError(StrCat("block id ", plan_.max_block_id, " is beyond the KV cache's ",
                                           cache.num_blocks(), " blocks")));
    return false;
  }
  return true;
}

void CudaBackend::AddBias(Tensor x, const DeviceBuffer& bias) {
  const float* b = F32(bias.tensor());
  const int64_t cols = std::min(x.cols, bias.tensor().cols);
  Enqueue({9, Ptr(x.data), Ptr(b), static_cast<uint64_t>(x.cols)}, [=, this] {
    Check(kernels::LaunchAddBias(F32(x), x.cols, b, x.rows, cols, stream_), "bias add");
  });
}

void CudaBackend::RopeAndStoreKv(Tensor q, Tensor k, Tensor v, KvCacheStorage& cache, int layer) {
  if (!CheckCache(cache)) return;
  auto& kv = static_cast<CudaKvCache&>(cache);
  kernels::RopeKvArgs a;
  a.q = F32(q);
  a.q_stride = q.cols;
  a.k = F32(k);
  a.k_stride = k.cols;
  a.v = F32(v);
  a.v_stride = v.cols;
  a.rows = q.rows;
  a.num_heads = static_cast<int>(q.cols / kv.layout().head_dim);
  a.cos = rope_cos_;
  a.sin = rope_sin_;
  a.rotary_dim = rope_.rotary_dim;
  a.neox = rope_.neox;
  a.cache = kv.device_base();
  a.geo = kv.geometry();
  a.layer = layer;
  if (rope_.rotary_dim > a.geo.head_dim) {
    Fail(absl::InvalidArgumentError("rotary_dim exceeds head_dim"));
    return;
  }
  Enqueue({5, Ptr(a.q), Ptr(a.k), Ptr(a.v), static_cast<uint64_t>(q.cols), static_cast<uint64_t>(k.cols),
           Ptr(a.cache), static_cast<uint64_t>(layer), static_cast<uint64_t>(a.geo.block_size), Ptr(a.cos),
           static_cast<uint64_t>(a.rotary_dim) * 2 + (a.neox ? 1 : 0)},
          [this, a]() mutable {
            a.positions = dev_arena_ + off_.positions;
            a.slot_mapping = dev_arena_ + off_.slots;
            Check(kernels::LaunchRopeAndStoreKv(a, stream_), "rope+kv store");
          });
}

void CudaBackend::Attention(Tensor q, KvCacheStorage& cache, int layer, int num_heads, float scale,
                            Tensor out) {
  if (!CheckCache(cache)) return;
  auto& kv = static_cast<CudaKvCache&>(cache);
  const int kvh = kv.layout().num_kv_heads;
  if (num_heads % kvh != 0 || num_heads / kvh > kernels::kMaxGroup) {
    Fail(absl::InvalidArgumentError(StrCat("unsupported GQA: ", num_heads, " heads over ", kvh, " KV heads")));
    return;
  }
  kernels::AttentionArgs a;
  a.q = F32(q);
  a.q_stride = q.cols;
  a.out = F32(out);
  a.out_stride = out.cols;
  a.num_heads = num_heads;
  a.scale = scale;
  a.cache = kv.device_base();
  a.geo = kv.geometry();
  a.layer = layer;

  const int64_t n_dec = static_cast<int64_t>(plan_.decode_rows.size());
  // A graph serves every iteration of its size, so its decode grid covers the longest context.
  const int max_keys = graph_grid_ ? graph_keys_ : plan_.max_decode_keys;
  if (n_dec > 0) {
    const int64_t ws = kernels::DecodeAttentionWorkspaceFloats(n_dec, num_heads, a.geo.head_dim, max_keys);
    if (absl::Status s = EnsureBytes(&attn_ws_, &attn_ws_bytes_, ws * 4); !s.ok()) {
      Fail(std::move(s));
      return;
    }
  }
  const int group = num_heads / kvh;
  if (tiles_group_ != group) {  // no prefill rows when recording (decode-only batches)
    const std::vector<int32_t> tiles = PrefillTiles(*batch_, kernels::PrefillRowsPerTile(group));
    num_tiles_ = static_cast<int64_t>(tiles.size()) / 2;
    tiles_group_ = group;
    if (!tiles.empty()) {
      Check(cudaEventSynchronize(upload_done_), "cudaEventSynchronize");
      std::memcpy(host_arena_ + off_.tiles, tiles.data(), tiles.size() * 4);
      Check(cudaMemcpyAsync(dev_arena_ + off_.tiles, host_arena_ + off_.tiles, tiles.size() * 4,
                            cudaMemcpyHostToDevice, stream_),
            "tile upload");
      Check(cudaEventRecord(upload_done_, stream_), "cudaEventRecord");
    }
  }
  const int64_t n_tiles = num_tiles_;
  Enqueue({6, Ptr(a.q), Ptr(a.out), static_cast<uint64_t>(q.cols), static_cast<uint64_t>(out.cols),
           static_cast<uint64_t>(num_heads), Bits(scale), Ptr(a.cache), static_cast<uint64_t>(layer),
           static_cast<uint64_t>(a.geo.block_size)},
          [this, a, n_dec, max_keys, n_tiles]() mutable {
            a.positions = dev_arena_ + off_.positions;
            a.row_seq = dev_arena_ + off_.row_seq;
            a.seq_block_offset = dev_arena_ + off_.seq_block_offset;
            a.block_tables = dev_arena_ + off_.block_tables;
            if (n_dec > 0) {
              Check(kernels::LaunchDecodeAttention(a, dev_arena_ + off_.decode_rows, n_dec, max_keys,
                                                   static_cast<float*>(attn_ws_), attn_ws_bytes_ / 4, stream_),
                    "decode attention");
            }
            if (n_tiles > 0) {
              Check(kernels::LaunchPrefillAttention(a, dev_arena_ + off_.tiles, n_tiles, stream_),
                    "prefill attention");
            }
          });
}

void CudaBackend::SwiGlu(Tensor gate, Tensor up, Tensor out) {
  Enqueue({7, Ptr(gate.data), Ptr(up.data), Ptr(out.data), static_cast<uint64_t>(gate.cols)}, [=, this] {
    Check(kernels::LaunchSwiGlu(F32(gate), gate.cols, F32(up), up.cols, F32(out), out.cols, gate.rows, gate.cols,
                                stream_),
          "swiglu");
  });
}

void CudaBackend::GatherLogitRows(Tensor x, Tensor out) {
  const int64_t n = static_cast<int64_t>(batch_->logit_rows.size());
  Enqueue({8, Ptr(x.data), Ptr(out.data), static_cast<uint64_t>(x.cols)}, [=, this] {
    Check(kernels::LaunchGatherRows(F32(x), x.cols, dev_arena_ + off_.logit_rows, F32(out), out.cols, n, x.cols,
                                    stream_),
          "gather logit rows");
  });
}

void CudaBackend::EnqueueSig(std::vector<uint64_t> sig, std::function<void()> op) {
  if (!recording_) {
    op();
    return;
  }
  signature_.push_back(sig.size());
  signature_.insert(signature_.end(), sig.begin(), sig.end());
  pending_.push_back(std::move(op));
}

void CudaBackend::Enqueue(std::initializer_list<uint64_t> sig, std::function<void()> op) {
  EnqueueSig(std::vector<uint64_t>(sig), std::move(op));
}

void CudaBackend::RunPending() {
  const bool recording = recording_;
  recording_ = false;
  if (recording && !pending_.empty()) {
    const int rows = batch_->num_tokens();
    const auto record = [this] {
      for (auto& op : pending_) op();
    };
    const absl::Status before = error_;
    const absl::Status s = graphs_->Launch(rows, signature_, record, stream_);
    if (!s.ok()) {
      // The capture failed, so nothing ran (launches inside it may have reported errors of
      // their own): forget those, stop using graphs, and run the operations eagerly.
      GetLogger("cuda")->warn("CUDA graph capture failed, decode graphs are now off: {}", s.message());
      cudaGetLastError();
      error_ = before;
      graphs_.reset();
      record();
    } else if (before.ok() && !error_.ok()) {
      graphs_->Clear();  // an operation failed while being captured: never replay that graph
    }
  }
  pending_.clear();
  signature_.clear();
}

absl::Status CudaBackend::ReadFloat(Tensor src, float* dst) {
  if (src.dtype != DType::kF32) return absl::InvalidArgumentError("ReadFloat needs an f32 tensor");
  RunPending();
  Check(cudaMemcpyAsync(dst, src.data, static_cast<size_t>(src.rows * src.cols * 4), cudaMemcpyDeviceToHost,
                        stream_),
        "read back");
  return Synchronize();
}

// --- beyond the interface -------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<WeightMatrix>> CudaBackend::RandomMatrix(int64_t out_features,
                                                                        int64_t in_features, uint64_t seed,
                                                                        float scale) {
  auto w = std::make_unique<CudaWeightMatrix>(out_features, in_features, gguf::GgmlType::kBF16);
  TANDEM_RETURN_IF_ERROR(w->mem.Alloc(out_features * in_features * 2, "random weight"));
  TANDEM_CUDA_RETURN_IF_ERROR(
      static_cast<cudaError_t>(kernels::LaunchFillRandomBf16(static_cast<__nv_bfloat16*>(w->mem.p),
                                                             out_features * in_features, seed, scale, stream_)),
      "fill random");
  TANDEM_RETURN_IF_ERROR(Synchronize());
  return std::unique_ptr<WeightMatrix>(std::move(w));
}

absl::StatusOr<std::unique_ptr<DeviceBuffer>> CudaBackend::ConstantVector(int64_t n, float value) {
  std::vector<float> host(n, value);
  auto buf = std::make_unique<CudaBuffer>();
  TANDEM_RETURN_IF_ERROR(buf->mem.Alloc(n * 4, "vector"));
  buf->Set(DType::kF32, 1, n);
  TANDEM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(buf->mem.p, host.data(), n * 4, cudaMemcpyHostToDevice, stream_),
                              "upload");
  TANDEM_RETURN_IF_ERROR(Synchronize());
  return std::unique_ptr<DeviceBuffer>(std::move(buf));
}

int64_t CudaBackend::graph_captures() const { return graphs_ != nullptr ? graphs_->captures() : 0; }
int64_t CudaBackend::graph_replays() const { return graphs_ != nullptr ? graphs_->replays() : 0; }

}  // namespace tandem::cuda
