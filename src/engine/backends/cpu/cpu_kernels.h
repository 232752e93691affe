// The CPU backend's compute kernels, one table per instruction set. Each table is built in its
// own translation unit compiled for that ISA (kernels_scalar.cc, kernels_avx2.cc,
// kernels_avx512.cc); SelectKernels() picks the best one the running CPU supports.
//
// Numerics. The quantized GEMMs follow the arithmetic that GGUF's reference runtime uses for
// these formats (so that tandem's logits agree with llama.cpp's as closely as the formats
// allow): activations are quantized per 32-element block with an fp16 scale d = amax / 127,
// q = round-half-even(x * 127 / amax) and an fp16 s = d * sum(q); each output element
// accumulates, block after block, fma(d_w * d_x, float(partial), acc) into 8 lanes whose
// partials are the integer dot products of 4 consecutive elements, then adds the 8 lanes as
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), then the fma-accumulated min terms (Q4_1).
//
// Every table computes exactly the same bits (the scalar table emulates the lanes), and each
// output element goes through the same operations whatever the number of rows in the call, the
// tile it falls in or the thread computing it. That is what makes a sequence's greedy tokens
// identical alone, batched, chunked, or recomputed after preemption.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "gguf/ggml_type.h"

namespace tandem::cpu {

enum class Isa { kScalar, kAvx2, kAvx512 };
std::string_view IsaName(Isa isa);

// Activation rows quantized to 8 bits in blocks of 32: x ~= d[b] * q[b*32 + j]; d and s hold
// fp16-representable values (see above). Row r's data starts at q + r * cols, d + r * cols/32.
struct Q8Rows {
  const int8_t* q = nullptr;
  const float* d = nullptr;
  const float* s = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};

// y[m * y_stride + n] = dot(weight row n, x row m) for m in [0, x.rows), n in [n_begin, n_end).
using QuantGemmFn = void (*)(const uint8_t* w, int64_t w_row_bytes, int64_t n_begin,
                             int64_t n_end, const Q8Rows& x, float* y, int64_t y_stride);

struct KernelTable {
  Isa isa;
  // Quantizes one row of `cols` floats (a multiple of 32).
  void (*quantize_row_q8)(const float* x, int64_t cols, int8_t* q, float* d, float* s);
  // Integer-dot GEMMs for the formats with 32-element blocks.
  QuantGemmFn gemm_q4_0;
  QuantGemmFn gemm_q4_1;
  QuantGemmFn gemm_q8_0;
  // True: the three GEMMs above read weights in the packed layout of weight_packing.h (the
  // backend packs each matrix once at load); false: in the GGUF layout.
  bool packed_weights = false;
  // Float GEMM over weight rows already in f32 (w_stride floats apart):
  // y[m * y_stride + n] = dot(w row n, x row m) for m < x_rows, n < w_rows. Each dot product
  // uses 16 lanes (lane l takes elements l, l+16, ...), reduced in the fixed recipe order.
  void (*gemm_f32)(const float* w, int64_t w_stride, int64_t w_rows, const float* x,
                   int64_t x_stride, int64_t x_rows, int64_t cols, float* y, int64_t y_stride);
  // Half <-> float rows (round to nearest even).
  void (*f16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  void (*f32_to_f16)(const float* src, uint16_t* dst, int64_t n);
  // out = x / rms(x) * w over n floats (sum of squares in double).
  void (*rms_norm)(const float* x, const float* w, float eps, float* out, int64_t n);
  // out = silu(g) * u over n floats.
  void (*swiglu)(const float* g, const float* u, float* out, int64_t n);
  // Attention pieces, reading the fp16 KV cache in place. scores[16 * b + t] = dot(q, key t of
  // block b) for the 16 keys of each of the num_blocks (1 to kMaxScoreBlocks) blocks, each stored
  // transposed: element d of key t at k[b][d * k_stride + t] (all 16 columns are read; scores of
  // keys past the caller's valid ones are garbage it ignores). Blocks are independent (several
  // at once only keep more fma chains in flight).
  void (*attn_scores)(const float* q, const uint16_t* const* k, int num_blocks, int64_t k_stride, int head_dim,
                      float* scores);
  // In place over n scores: x * scale, softmax (max-subtracted exp, sum in double), each
  // probability rounded to fp16 (the precision the value product uses).
  void (*softmax_fp16)(float* scores, int n, float scale);
  // acc[0, head_dim) += sum_t p[t] * v[t][0, head_dim) for t < n (fp16 v rows of head_dim).
  void (*attn_accumulate)(const float* p, const uint16_t* v, int n, int head_dim, float* acc);
};

constexpr int kAttendBlockKeys = 16;
constexpr int kMaxScoreBlocks = 4;

// Tables available on this CPU, best first; kScalar is always there.
const KernelTable& SelectKernels(Isa isa);
// The best kernel table this CPU supports, at most `cap` (for comparisons and tests).
Isa BestIsa(std::optional<Isa> cap = std::nullopt);
bool IsaSupported(Isa isa);

// The per-ISA tables (defined in their translation units).
const KernelTable& ScalarKernels();
const KernelTable& Avx2Kernels();
const KernelTable& Avx512Kernels();

}  // namespace tandem::cpu
