#include "engine/backends/cpu/cpu_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common/check.h"
#include "common/fp16.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/backends/cpu/weight_packing.h"
#include "engine/rope_tables.h"
#include "gguf/quant.h"

namespace tandem {

namespace cpu {
namespace {

using gguf::GgmlType;

bool UsesInt8Path(GgmlType t) {
  return t == GgmlType::kQ4_0 || t == GgmlType::kQ4_1 || t == GgmlType::kQ8_0;
}

// 64-byte aligned heap memory. Zeroed when `zero` (large blocks come from the kernel as zero
// pages anyway; the KV cache skips the memset so that its pages are only committed when used).
struct AlignedDeleter {
  void operator()(void* p) const { std::free(p); }
};
std::unique_ptr<void, AlignedDeleter> AlignedAlloc(size_t bytes, bool zero = true) {
  const size_t rounded = std::max<size_t>((bytes + 63) / 64 * 64, 64);
  void* p = std::aligned_alloc(64, rounded);
  if (p != nullptr && zero) std::memset(p, 0, rounded);
  return std::unique_ptr<void, AlignedDeleter>(p);
}

class CpuWeightMatrix final : public WeightMatrix {
 public:
  // `packed`: the matrix in the kernel table's packed layout (weight_packing.h), or null to
  // compute on the GGUF bytes in place.
  CpuWeightMatrix(const gguf::TensorInfo& t, std::unique_ptr<void, AlignedDeleter> packed)
      : packed_(std::move(packed)),
        data_(packed_ ? static_cast<const uint8_t*>(packed_.get()) : t.data),
        row_bytes_(gguf::RowBytes(t.type, t.dims[0])),
        bytes_(t.num_bytes) {
    out_features_ = t.rows();
    in_features_ = t.dims[0];
    source_type_ = t.type;
  }
  int64_t resident_bytes() const override { return bytes_; }
  bool packed() const { return packed_ != nullptr; }
  // Row n in the GGUF layout: only for a matrix that is not packed.
  const uint8_t* row(int64_t n) const {
    TANDEM_DCHECK(!packed());
    return data_ + n * row_bytes_;
  }
  const uint8_t* data() const { return data_; }
  int64_t row_bytes() const { return row_bytes_; }

 private:
  std::unique_ptr<void, AlignedDeleter> packed_;
  const uint8_t* data_;
  int64_t row_bytes_;
  int64_t bytes_;
};

class CpuBuffer final : public DeviceBuffer {
 public:
  CpuBuffer(DType dtype, int64_t rows, int64_t cols)
      : memory_(AlignedAlloc(static_cast<size_t>(rows * cols) * DTypeSize(dtype))) {
    tensor_ = {memory_.get(), dtype, rows, cols};
  }
  bool ok() const { return memory_ != nullptr; }

 private:
  std::unique_ptr<void, AlignedDeleter> memory_;
};

class CpuKvCache final : public KvCacheStorage {
 public:
  CpuKvCache(const KvCacheLayout& layout, int64_t num_blocks)
      : memory_(AlignedAlloc(static_cast<size_t>(num_blocks * layout.bytes_per_block()), /*zero=*/false)) {
    layout_ = layout;
    num_blocks_ = num_blocks;
  }
  bool ok() const { return memory_ != nullptr; }
  uint8_t* host_base() override { return static_cast<uint8_t*>(memory_.get()); }
  std::string_view block_format() const override { return "cpu/kt-v1"; }
  uint16_t* block(int64_t b, int layer) const {
    const int64_t per_layer = layout_.bytes_per_block_layer() / 2;
    return static_cast<uint16_t*>(memory_.get()) + (b * layout_.num_layers + layer) * per_layer;
  }
  // K of `head` in a block, transposed: [head_dim][block_size].
  uint16_t* keys(int64_t b, int layer, int head) const {
    return block(b, layer) + static_cast<int64_t>(head) * layout_.head_dim * layout_.block_size;
  }
  // V of `head` in a block: [block_size][head_dim].
  uint16_t* values(int64_t b, int layer, int head) const {
    return block(b, layer) +
           static_cast<int64_t>(layout_.num_kv_heads + head) * layout_.head_dim * layout_.block_size;
  }

 private:
  std::unique_ptr<void, AlignedDeleter> memory_;
};

float* F32(const Tensor& t) {
  TANDEM_DCHECK(t.dtype == DType::kF32);
  return static_cast<float*>(t.data);
}

// Dequantizes row `n` of a weight matrix into `dst` (in_features floats).
void DequantRow(const KernelTable& k, const CpuWeightMatrix& w, int64_t n, float* dst) {
  const uint8_t* src;
  if (w.packed()) {  // back to the GGUF layout first
    thread_local std::vector<uint8_t> row;
    row.resize(w.row_bytes());
    UnpackRow(w.source_type(), w.data(), n, w.in_features(), row.data());
    src = row.data();
  } else {
    src = w.row(n);
  }
  switch (w.source_type()) {
    case GgmlType::kF16:
      k.f16_to_f32(reinterpret_cast<const uint16_t*>(src), dst, w.in_features());
      break;
    default: {
      absl::Status s = gguf::DequantizeRowRef(w.source_type(), src, dst, w.in_features());
      TANDEM_DCHECK(s.ok());
      (void)s;
    }
  }
}

// Asks the kernel to drop the pages of [p, p + n) that nothing reads any more (the GGUF bytes of
// a matrix that was packed): a hint that keeps their contents (MADV_PAGEOUT re-reads a file page
// on the next touch), so resident memory stays one copy of the weights.
void ReleasePages(const uint8_t* p, int64_t n) {
#ifdef MADV_PAGEOUT
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(n)) / page * page;
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);
#else
  (void)p;
  (void)n;
#endif
}

constexpr int kAttentionRowsPerTask = 16;
// The fewest 4-row weight tiles a thread claims at once in MatMul: at batch 1, 8 tiles of a
// 576-wide Q4_1 matrix are 11.5 KB, ~1 us of streaming against a ~0.1 us claim.
constexpr int64_t kMatMulGrain = 8;

// Up to kAttentionRowsPerTask query rows of one sequence against one KV head, for the query
// heads [g_begin, g_end) of its group.
struct AttentionTask {
  int seq;
  int kv_head;
  int row_begin, row_end;  // absolute rows of the batch
  int g_begin, g_end;
};

// Runs attention tasks with scratch buffers of its own (one runner per thread). Three passes per
// task (scores, softmax, weighted values), so that every query row sees exactly the same
// arithmetic however the rows are grouped: queries rounded to fp16 as the keys are,
// probabilities normalised and rounded to fp16 before the value product.
class AttentionRunner {
 public:
  AttentionRunner(const KernelTable& k, const CpuKvCache& kv, const ForwardBatch& batch, Tensor q, Tensor out,
                  int layer, int group, float scale)
      : k_(k), kv_(kv), batch_(batch), q_(q), out_(out), layer_(layer), group_(group), scale_(scale),
        hd_(kv.layout().head_dim), bs_(kv.layout().block_size),
        kt_(static_cast<size_t>(kMaxScoreBlocks) * hd_ * kAttendBlockKeys),
        qr_(static_cast<size_t>(kAttentionRowsPerTask) * group * hd_), half_(hd_), block_scores_(kMaxScoreBlocks * kAttendBlockKeys) {}

  void Run(const AttentionTask& task) {
    const int rows = task.row_end - task.row_begin;
    const int max_keys = batch_.positions[task.row_end - 1] + 1;
    scores_.resize(static_cast<size_t>(rows) * group_ * max_keys);
    LoadQueries(task, rows);
    Scores(task, rows, max_keys);
    Softmax(task, rows, max_keys);
    WeightedValues(task, rows, max_keys);
  }

 private:
  // Keys [key0, key0 + Step(key0, max_keys)): at most 16, all in one cache block.
  int Step(int key0, int max_keys) const {
    return std::min({kAttendBlockKeys, bs_ - key0 % bs_, max_keys - key0});
  }
  float* OutRow(const AttentionTask& task, int r, int g) const {
    return F32(out_) + static_cast<int64_t>(task.row_begin + r) * out_.cols + (task.kv_head * group_ + g) * hd_;
  }
  // Keys visible to row r within [key0, key0 + n).
  int Visible(const AttentionTask& task, int r, int key0, int n) const {
    return std::min(n, batch_.positions[task.row_begin + r] + 1 - key0);
  }

  void LoadQueries(const AttentionTask& task, int rows) {
    for (int r = 0; r < rows; ++r) {
      for (int g = task.g_begin; g < task.g_end; ++g) {
        const float* src =
            F32(q_) + static_cast<int64_t>(task.row_begin + r) * q_.cols + (task.kv_head * group_ + g) * hd_;
        k_.f32_to_f16(src, half_.data(), hd_);
        k_.f16_to_f32(half_.data(), qr_.data() + static_cast<size_t>(r * group_ + g) * hd_, hd_);
      }
    }
  }

  // Keys [key0, key0 + n) of one cache block, transposed, as the score kernel reads them: in
  // place (row stride: the block size), or for a block of fewer than 16 keys (the size divides 16)
  // copied out to scratch slot `slot` (stride 16).
  const uint16_t* KeysAt(const ForwardSequence& seq, int key0, int n, int slot, int64_t* stride) {
    const uint16_t* ks = kv_.keys(seq.block_table[key0 / bs_], layer_, task_kv_head_) + key0 % bs_;
    if (bs_ - key0 % bs_ >= kAttendBlockKeys) {
      *stride = bs_;
      return ks;
    }
    uint16_t* out = kt_.data() + static_cast<size_t>(slot) * hd_ * kAttendBlockKeys;
    for (int d = 0; d < hd_; ++d) {
      uint16_t* col = out + d * kAttendBlockKeys;
      std::copy(ks + d * bs_, ks + d * bs_ + n, col);
      std::fill(col + n, col + kAttendBlockKeys, uint16_t{0});
    }
    *stride = kAttendBlockKeys;
    return out;
  }

  // Up to kMaxScoreBlocks steps of keys per kernel call and (row, head).
  void Scores(const AttentionTask& task, int rows, int max_keys) {
    const ForwardSequence& seq = batch_.sequences[task.seq];
    task_kv_head_ = task.kv_head;
    for (int key0 = 0; key0 < max_keys;) {
      int key0s[kMaxScoreBlocks], ns[kMaxScoreBlocks], nb = 0;
      const uint16_t* ks[kMaxScoreBlocks];
      int64_t stride = bs_;
      for (; nb < kMaxScoreBlocks && key0 < max_keys; ++nb) {
        key0s[nb] = key0;
        ns[nb] = Step(key0, max_keys);
        ks[nb] = KeysAt(seq, key0, ns[nb], nb, &stride);  // the same stride for every block
        key0 += ns[nb];
      }
      for (int r = 0; r < rows; ++r) {
        int used = 0;  // blocks with keys row r sees: a prefix
        while (used < nb && Visible(task, r, key0s[used], ns[used]) > 0) ++used;
        for (int g = task.g_begin; used > 0 && g < task.g_end; ++g) {
          const int st = r * group_ + g;
          k_.attn_scores(qr_.data() + static_cast<size_t>(st) * hd_, ks, used, stride, hd_, block_scores_.data());
          for (int b = 0; b < used; ++b) {
            const auto first = block_scores_.begin() + b * kAttendBlockKeys;
            std::copy(first, first + Visible(task, r, key0s[b], ns[b]),
                      scores_.begin() + static_cast<size_t>(st) * max_keys + key0s[b]);
          }
        }
      }
    }
  }

  // Softmax over each row's visible keys; the output rows start at zero.
  void Softmax(const AttentionTask& task, int rows, int max_keys) {
    for (int r = 0; r < rows; ++r) {
      const int visible = batch_.positions[task.row_begin + r] + 1;
      for (int g = task.g_begin; g < task.g_end; ++g) {
        k_.softmax_fp16(scores_.data() + static_cast<size_t>(r * group_ + g) * max_keys, visible, scale_);
        float* o = OutRow(task, r, g);
        std::fill(o, o + hd_, 0.0f);
      }
    }
  }

  void WeightedValues(const AttentionTask& task, int rows, int max_keys) {
    const ForwardSequence& seq = batch_.sequences[task.seq];
    for (int key0 = 0, n = 0; key0 < max_keys; key0 += n) {
      n = Step(key0, max_keys);
      const uint16_t* vs =
          kv_.values(seq.block_table[key0 / bs_], layer_, task.kv_head) + static_cast<int64_t>(key0 % bs_) * hd_;
      for (int r = 0; r < rows; ++r) {
        const int n_valid = Visible(task, r, key0, n);
        for (int g = task.g_begin; n_valid > 0 && g < task.g_end; ++g) {
          const int st = r * group_ + g;
          k_.attn_accumulate(scores_.data() + static_cast<size_t>(st) * max_keys + key0, vs, n_valid, hd_,
                             OutRow(task, r, g));
        }
      }
    }
  }

  const KernelTable& k_;
  const CpuKvCache& kv_;
  const ForwardBatch& batch_;
  const Tensor q_, out_;
  const int layer_, group_;
  const float scale_;
  const int hd_, bs_;
  int task_kv_head_ = 0;
  std::vector<uint16_t> kt_;  // keys of blocks smaller than 16, copied out
  std::vector<float> qr_;
  std::vector<uint16_t> half_;
  std::vector<float> scores_, block_scores_;
};

}  // namespace

CpuBackend::CpuBackend(const CpuBackendOptions& options)
    : pool_(options.threads), k_(SelectKernels(options.isa)) {}

CpuBackend::~CpuBackend() = default;

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Create(const CpuBackendOptions& options) {
  if (!IsaSupported(options.isa)) {
    return absl::FailedPreconditionError(
        StrCat("this CPU does not support the ", IsaName(options.isa), " kernels"));
  }
  return std::unique_ptr<CpuBackend>(new CpuBackend(options));
}

absl::StatusOr<std::unique_ptr<WeightMatrix>> CpuBackend::LoadMatrix(const gguf::TensorInfo& t) {
  const auto& traits = gguf::Traits(t.type);
  if (!traits.supported) {
    return absl::UnimplementedError(
        StrCat("tensor ", t.name, " has type ", traits.name, ", which tandem cannot compute with"));
  }
  if (t.dims.size() != 2) {
    return absl::InvalidArgumentError(StrCat("tensor ", t.name, " is not a matrix"));
  }
  if (UsesInt8Path(t.type) && t.dims[0] % 32 != 0) {
    return absl::InvalidArgumentError(StrCat("tensor ", t.name, " rows must be a multiple of 32"));
  }
  if (t.dims[0] > 32 * 1024) {
    return absl::InvalidArgumentError(StrCat("tensor ", t.name, " rows longer than 32768"));
  }
  std::unique_ptr<void, AlignedDeleter> packed;
  if (k_.packed_weights && PackableType(t.type)) {
    packed = AlignedAlloc(static_cast<size_t>(PackedBytes(t.type, t.rows(), t.dims[0])), /*zero=*/false);
    if (packed == nullptr) return absl::ResourceExhaustedError(StrCat("out of memory packing ", t.name));
    auto* dst = static_cast<uint8_t*>(packed.get());
    const int64_t groups = (t.rows() + kPackRows - 1) / kPackRows;
    pool_.ParallelFor(groups, 64, [&](int64_t begin, int64_t end) {
      PackWeightGroups(t.type, t.data, t.rows(), t.dims[0], dst, begin, end);
    });
    ReleasePages(t.data, t.num_bytes);
  }
  return std::unique_ptr<WeightMatrix>(new CpuWeightMatrix(t, std::move(packed)));
}

absl::StatusOr<std::unique_ptr<DeviceBuffer>> CpuBackend::LoadVector(const gguf::TensorInfo& t) {
  if (t.dims.size() != 1) return absl::InvalidArgumentError(StrCat("tensor ", t.name, " is not a vector"));
  auto buf = std::make_unique<CpuBuffer>(DType::kF32, 1, t.dims[0]);
  if (!buf->ok()) return absl::ResourceExhaustedError("out of memory");
  TANDEM_RETURN_IF_ERROR(gguf::DequantizeRowRef(t.type, t.data, F32(buf->tensor()), t.dims[0]));
  return std::unique_ptr<DeviceBuffer>(std::move(buf));
}

absl::StatusOr<std::unique_ptr<DeviceBuffer>> CpuBackend::Allocate(DType dtype, int64_t rows,
                                                                   int64_t cols) {
  auto buf = std::make_unique<CpuBuffer>(dtype, rows, cols);
  if (!buf->ok()) {
    return absl::ResourceExhaustedError(StrCat("cannot allocate ", rows, "x", cols, " buffer"));
  }
  return std::unique_ptr<DeviceBuffer>(std::move(buf));
}

absl::StatusOr<std::unique_ptr<KvCacheStorage>> CpuBackend::CreateKvCache(
    const KvCacheLayout& layout, int64_t num_blocks) {
  if (layout.dtype != DType::kF16) return absl::UnimplementedError("the CPU KV cache is fp16 only");
  if (layout.block_size <= 0 || layout.head_dim <= 0 || layout.num_kv_heads <= 0 ||
      layout.num_layers <= 0 || num_blocks <= 0) {
    return absl::InvalidArgumentError("invalid KV cache layout");
  }
  if (layout.block_size % kAttendBlockKeys != 0 && kAttendBlockKeys % layout.block_size != 0) {
    return absl::InvalidArgumentError(
        StrCat("KV block size ", layout.block_size, " must divide or be a multiple of ", kAttendBlockKeys));
  }
  auto cache = std::make_unique<CpuKvCache>(layout, num_blocks);
  if (!cache->ok()) {
    return absl::ResourceExhaustedError(
        StrCat("cannot allocate a KV cache of ", num_blocks * layout.bytes_per_block(), " bytes"));
  }
  return std::unique_ptr<KvCacheStorage>(std::move(cache));
}

absl::Status CpuBackend::SetRope(const RopeConfig& rope) {
  TANDEM_RETURN_IF_ERROR(BuildRopeTables(rope, &rope_cos_, &rope_sin_));
  rope_ = rope;
  return absl::OkStatus();
}

absl::Status CpuBackend::BeginForward(const ForwardBatch& batch) {
  for (int32_t p : batch.positions) {
    if (p < 0 || p >= rope_.max_positions) {
      return absl::OutOfRangeError(StrCat("position ", p, " is beyond the model's context of ",
                                          rope_.max_positions));
    }
  }
  batch_ = &batch;
  return absl::OkStatus();
}

void CpuBackend::Embed(const WeightMatrix& table, Tensor out) {
  const auto& w = static_cast<const CpuWeightMatrix&>(table);
  pool_.ParallelFor(out.rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int32_t tok = batch_->tokens[i];
      TANDEM_DCHECK(tok >= 0 && tok < w.out_features());
      float* dst = F32(out) + i * out.cols;
      if (w.source_type() == GgmlType::kF32) {
        std::memcpy(dst, w.row(tok), sizeof(float) * out.cols);
      } else {
        DequantRow(k_, w, tok, dst);
      }
    }
  });
}

void CpuBackend::RmsNorm(Tensor x, const DeviceBuffer& weight, float eps, Tensor out) {
  const float* w = F32(weight.tensor());
  pool_.ParallelFor(x.rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      k_.rms_norm(F32(x) + r * x.cols, w, eps, F32(out) + r * out.cols, x.cols);
    }
  });
}

void CpuBackend::AddRmsNorm(Tensor residual, Tensor delta, const DeviceBuffer& weight, float eps,
                            Tensor out) {
  const float* w = F32(weight.tensor());
  pool_.ParallelFor(residual.rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* res = F32(residual) + r * residual.cols;
      const float* d = F32(delta) + r * delta.cols;
      for (int64_t c = 0; c < residual.cols; ++c) res[c] += d[c];
      k_.rms_norm(res, w, eps, F32(out) + r * out.cols, residual.cols);
    }
  });
}

void CpuBackend::QuantizeActivations(Tensor x) {
  const int64_t nb = x.cols / 32;
  if (q8_.size() < static_cast<size_t>(x.rows * x.cols)) {
    q8_.resize(x.rows * x.cols);
    q8_d_.resize(x.rows * nb);
    q8_s_.resize(x.rows * nb);
  }
  pool_.ParallelFor(x.rows, 4, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      k_.quantize_row_q8(F32(x) + r * x.cols, x.cols, q8_.data() + r * x.cols, q8_d_.data() + r * nb,
                         q8_s_.data() + r * nb);
    }
  });
}

void CpuBackend::MatMul(Tensor x, std::span<const WeightMatrix* const> weights,
                        std::span<const Tensor> outs) {
  TANDEM_CHECK_EQ(weights.size(), outs.size());
  bool need_q8 = false;
  int64_t units = 0;  // 4-row tiles over all weights
  constexpr int64_t kTile = 4;
  std::vector<int64_t> first_unit(weights.size() + 1);
  for (size_t k = 0; k < weights.size(); ++k) {
    TANDEM_DCHECK(weights[k]->in_features() == x.cols);
    need_q8 |= UsesInt8Path(weights[k]->source_type());
    first_unit[k] = units;
    units += (weights[k]->out_features() + kTile - 1) / kTile;
  }
  first_unit[weights.size()] = units;
  if (need_q8) QuantizeActivations(x);
  const Q8Rows q8{q8_.data(), q8_d_.data(), q8_s_.data(), x.rows, x.cols};

  auto run_range = [&](int64_t u_begin, int64_t u_end, std::vector<float>& row_buf) {
    for (size_t k = 0; k < weights.size(); ++k) {
      const int64_t lo = std::max(u_begin, first_unit[k]), hi = std::min(u_end, first_unit[k + 1]);
      if (lo >= hi) continue;
      const auto& w = static_cast<const CpuWeightMatrix&>(*weights[k]);
      const int64_t n_begin = (lo - first_unit[k]) * kTile;
      const int64_t n_end = std::min(w.out_features(), (hi - first_unit[k]) * kTile);
      float* y = F32(outs[k]);
      const int64_t y_stride = outs[k].cols;
      switch (w.source_type()) {
        case GgmlType::kQ4_0: k_.gemm_q4_0(w.data(), w.row_bytes(), n_begin, n_end, q8, y, y_stride); break;
        case GgmlType::kQ4_1: k_.gemm_q4_1(w.data(), w.row_bytes(), n_begin, n_end, q8, y, y_stride); break;
        case GgmlType::kQ8_0: k_.gemm_q8_0(w.data(), w.row_bytes(), n_begin, n_end, q8, y, y_stride); break;
        default: {
          // Float path: dequantize a tile of weight rows once, then multiply all activations.
          if (w.source_type() == GgmlType::kF32) {
            k_.gemm_f32(reinterpret_cast<const float*>(w.row(n_begin)), w.row_bytes() / 4, n_end - n_begin,
                        F32(x), x.cols, x.rows, x.cols, y + n_begin, y_stride);
            break;
          }
          constexpr int64_t kRowsPerTile = 16;
          row_buf.resize(static_cast<size_t>(kRowsPerTile) * x.cols);
          for (int64_t n = n_begin; n < n_end; n += kRowsPerTile) {
            const int64_t rows = std::min(kRowsPerTile, n_end - n);
            for (int64_t r = 0; r < rows; ++r) DequantRow(k_, w, n + r, row_buf.data() + r * x.cols);
            k_.gemm_f32(row_buf.data(), x.cols, rows, F32(x), x.cols, x.rows, x.cols, y + n, y_stride);
          }
        }
      }
    }
  };
  // Claimed as the threads go, not split in fixed halves: decode's GEMVs are bound by memory
  // traffic, and a thread that finished its fixed share early left half the bandwidth unused.
  if (row_bufs_.size() < static_cast<size_t>(pool_.size())) row_bufs_.resize(pool_.size());
  pool_.ParallelForGuided(units, kMatMulGrain, [&](int tid, int64_t u_begin, int64_t u_end) {
    run_range(u_begin, u_end, row_bufs_[tid]);
  });
}

void CpuBackend::AddBias(Tensor x, const DeviceBuffer& bias) {
  const float* b = F32(bias.tensor());
  const int64_t n = std::min(x.cols, bias.tensor().cols);
  for (int64_t r = 0; r < x.rows; ++r) {
    float* row = F32(x) + r * x.cols;
    for (int64_t c = 0; c < n; ++c) row[c] += b[c];
  }
}

void CpuBackend::RopeAndStoreKv(Tensor q, Tensor k, Tensor v, KvCacheStorage& cache, int layer) {
  auto& kv = static_cast<CpuKvCache&>(cache);
  const KvCacheLayout& L = kv.layout();
  const int hd = L.head_dim, bs = L.block_size;
  const int half = rope_.rotary_dim / 2;
  const int n_q_heads = static_cast<int>(q.cols / hd), n_kv_heads = L.num_kv_heads;
  const bool neox = rope_.neox;  // pairs (i, i + half), else (2i, 2i + 1)
  pool_.ParallelFor(q.rows, 4, [&](int64_t begin, int64_t end) {
    std::vector<uint16_t> tmp(hd);
    for (int64_t r = begin; r < end; ++r) {
      const int pos = batch_->positions[r];
      const float* cs = rope_cos_.data() + static_cast<size_t>(pos) * half;
      const float* sn = rope_sin_.data() + static_cast<size_t>(pos) * half;
      auto rotate = [&](float* head) {
        for (int i = 0; i < half; ++i) {
          const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
          const float x0 = head[a], x1 = head[b];
          head[a] = x0 * cs[i] - x1 * sn[i];
          head[b] = x0 * sn[i] + x1 * cs[i];
        }
      };
      float* qr = F32(q) + r * q.cols;
      for (int h = 0; h < n_q_heads; ++h) rotate(qr + h * hd);
      float* kr = F32(k) + r * k.cols;
      const float* vr = F32(v) + r * v.cols;
      const int slot = batch_->slot_mapping[r];
      const int64_t blk = slot / bs;
      const int off = slot % bs;
      for (int h = 0; h < n_kv_heads; ++h) {
        rotate(kr + h * hd);
        k_.f32_to_f16(kr + h * hd, tmp.data(), hd);
        uint16_t* kd = kv.keys(blk, layer, h);
        for (int d = 0; d < hd; ++d) kd[d * bs + off] = tmp[d];
        k_.f32_to_f16(vr + h * hd, kv.values(blk, layer, h) + static_cast<int64_t>(off) * hd, hd);
      }
    }
  });
}

void CpuBackend::Attention(Tensor q, KvCacheStorage& cache, int layer, int num_heads, float scale,
                           Tensor out) {
  const auto& kv = static_cast<const CpuKvCache&>(cache);
  const KvCacheLayout& L = kv.layout();
  const int group = num_heads / L.num_kv_heads;
  std::vector<AttentionTask> tasks;
  for (size_t s = 0; s < batch_->sequences.size(); ++s) {
    const ForwardSequence& seq = batch_->sequences[s];
    for (int h = 0; h < L.num_kv_heads; ++h) {
      for (int r = 0; r < seq.query_len; r += kAttentionRowsPerTask) {
        tasks.push_back({static_cast<int>(s), h, seq.query_start + r,
                         seq.query_start + std::min(seq.query_len, r + kAttentionRowsPerTask), 0, group});
      }
    }
  }
  // Few tasks (decode of a small batch: 3 KV heads on 2 threads is 2:1) balance badly: split each
  // by query head. Every (row, head) keeps the same arithmetic whichever task computes it.
  if (group > 1 && tasks.size() < 4 * static_cast<size_t>(pool_.size())) {
    std::vector<AttentionTask> split;
    for (const AttentionTask& t : tasks) {
      for (int g = 0; g < group; ++g) split.push_back({t.seq, t.kv_head, t.row_begin, t.row_end, g, g + 1});
    }
    tasks = std::move(split);
  }
  std::atomic<size_t> next{0};
  auto worker = [&](int, int) {
    AttentionRunner runner(k_, kv, *batch_, q, out, layer, group, scale);
    for (size_t t = next.fetch_add(1); t < tasks.size(); t = next.fetch_add(1)) runner.Run(tasks[t]);
  };
  if (tasks.size() == 1 || pool_.size() == 1) {
    worker(0, 1);
  } else {
    pool_.Run(worker);
  }
}

void CpuBackend::SwiGlu(Tensor gate, Tensor up, Tensor out) {
  pool_.ParallelFor(gate.rows, 4, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      k_.swiglu(F32(gate) + r * gate.cols, F32(up) + r * up.cols, F32(out) + r * out.cols, gate.cols);
    }
  });
}

void CpuBackend::GatherLogitRows(Tensor x, Tensor out) {
  for (size_t j = 0; j < batch_->logit_rows.size(); ++j) {
    std::memcpy(F32(out) + j * out.cols, F32(x) + batch_->logit_rows[j] * x.cols,
                sizeof(float) * x.cols);
  }
}

absl::Status CpuBackend::ReadFloat(Tensor src, float* dst) {
  if (src.dtype != DType::kF32) return absl::InvalidArgumentError("ReadFloat needs an f32 tensor");
  std::memcpy(dst, src.data, sizeof(float) * src.rows * src.cols);
  return absl::OkStatus();
}

}  // namespace cpu
}  // namespace tandem
