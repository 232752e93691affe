// Portable kernels: plain loops that emulate the SIMD tables' lanes exactly (see
// cpu_kernels.h). Used on CPUs without AVX2 and as the reference the SIMD tables must match
// bit for bit.
#include <cmath>
#include <cstring>

#include "common/fp16.h"
#include "engine/backends/cpu/cpu_kernels.h"
#include "engine/backends/cpu/scalar_math.h"
#include "gguf/quant.h"

namespace tandem::cpu {
namespace {

using gguf::BlockQ4_0;
using gguf::BlockQ4_1;
using gguf::BlockQ8_0;

inline float RoundFp16(float x) { return Fp16ToFp32(Fp32ToFp16(x)); }

void QuantizeRowQ8(const float* x, int64_t cols, int8_t* q, float* d, float* s) {
  for (int64_t b = 0; b < cols / 32; ++b) {
    const float* xb = x + b * 32;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float scale = amax / 127.0f;
    const float inv = amax != 0 ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int v = static_cast<int>(std::nearbyint(xb[j] * inv));
      q[b * 32 + j] = static_cast<int8_t>(v);
      sum += v;
    }
    d[b] = RoundFp16(scale);
    s[b] = RoundFp16(scale * static_cast<float>(sum));
  }
}

// Per-lane integer partials of one block: lane j = sum of elements 4j..4j+3.
template <typename WeightAt>
void Partials(WeightAt w, const int8_t* x, int32_t lanes[8]) {
  for (int j = 0; j < 8; ++j) {
    int32_t sum = 0;
    for (int e = 4 * j; e < 4 * j + 4; ++e) sum += w(e) * x[e];
    lanes[j] = sum;
  }
}

inline int Nibble(const uint8_t* qs, int e) { return e < 16 ? qs[e] & 0x0f : qs[e - 16] >> 4; }

template <typename Block, typename RowDot>
void GemmRows(const uint8_t* w, int64_t w_row_bytes, int64_t n_begin, int64_t n_end,
              const Q8Rows& x, float* y, int64_t y_stride, RowDot row_dot) {
  const int64_t nb = x.cols / 32;
  for (int64_t m = 0; m < x.rows; ++m) {
    for (int64_t n = n_begin; n < n_end; ++n) {
      const Block* blocks = reinterpret_cast<const Block*>(w + n * w_row_bytes);
      y[m * y_stride + n] = row_dot(blocks, x.q + m * x.cols, x.d + m * nb, x.s + m * nb, nb);
    }
  }
}

template <typename Block, bool kHasMin, typename WeightValue, typename MinOf>
float QuantRowDot(const Block* b, const int8_t* xq, const float* xd, const float* xs, int64_t nb,
                  WeightValue value, MinOf min_of) {
  float acc[8] = {};
  float summs = 0;
  int32_t lanes[8];
  for (int64_t k = 0; k < nb; ++k) {
    const float d0d1 = Fp16ToFp32(b[k].d) * xd[k];
    Partials([&](int e) { return value(b[k], e); }, xq + 32 * k, lanes);
    for (int j = 0; j < 8; ++j) acc[j] = std::fma(d0d1, static_cast<float>(lanes[j]), acc[j]);
    if constexpr (kHasMin) summs = std::fma(min_of(b[k]), xs[k], summs);
  }
  return recipe::Sum8(acc) + summs;
}

void GemmQ4_0(const uint8_t* w, int64_t w_row_bytes, int64_t n_begin, int64_t n_end,
              const Q8Rows& x, float* y, int64_t y_stride) {
  GemmRows<BlockQ4_0>(w, w_row_bytes, n_begin, n_end, x, y, y_stride,
                      [](const BlockQ4_0* b, const int8_t* xq, const float* xd, const float* xs, int64_t nb) {
                        return QuantRowDot<BlockQ4_0, false>(
                            b, xq, xd, xs, nb, [](const BlockQ4_0& blk, int e) { return Nibble(blk.qs, e) - 8; },
                            [](const BlockQ4_0&) { return 0.0f; });
                      });
}

void GemmQ4_1(const uint8_t* w, int64_t w_row_bytes, int64_t n_begin, int64_t n_end,
              const Q8Rows& x, float* y, int64_t y_stride) {
  GemmRows<BlockQ4_1>(w, w_row_bytes, n_begin, n_end, x, y, y_stride,
                      [](const BlockQ4_1* b, const int8_t* xq, const float* xd, const float* xs, int64_t nb) {
                        return QuantRowDot<BlockQ4_1, true>(
                            b, xq, xd, xs, nb, [](const BlockQ4_1& blk, int e) { return Nibble(blk.qs, e); },
                            [](const BlockQ4_1& blk) { return Fp16ToFp32(blk.m); });
                      });
}

void GemmQ8_0(const uint8_t* w, int64_t w_row_bytes, int64_t n_begin, int64_t n_end,
              const Q8Rows& x, float* y, int64_t y_stride) {
  GemmRows<BlockQ8_0>(w, w_row_bytes, n_begin, n_end, x, y, y_stride,
                      [](const BlockQ8_0* b, const int8_t* xq, const float* xd, const float* xs, int64_t nb) {
                        return QuantRowDot<BlockQ8_0, false>(
                            b, xq, xd, xs, nb, [](const BlockQ8_0& blk, int e) { return int{blk.qs[e]}; },
                            [](const BlockQ8_0&) { return 0.0f; });
                      });
}

// 16 lanes: lane l takes elements l, l+16, ...; the tail continues in lanes 0..r-1.
float DotF32(const float* a, const float* b, int64_t n) {
  float lanes[16] = {};
  for (int64_t i = 0; i < n; ++i) lanes[i % 16] = std::fma(a[i], b[i], lanes[i % 16]);
  return recipe::Sum16(lanes);
}

void GemmF32(const float* w, int64_t w_stride, int64_t w_rows, const float* x, int64_t x_stride,
             int64_t x_rows, int64_t cols, float* y, int64_t y_stride) {
  for (int64_t m = 0; m < x_rows; ++m) {
    for (int64_t n = 0; n < w_rows; ++n) y[m * y_stride + n] = DotF32(w + n * w_stride, x + m * x_stride, cols);
  }
}

void F16ToF32(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = Fp16ToFp32(src[i]);
}

void F32ToF16(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = Fp32ToFp16(src[i]);
}

// Squares in float, summed in 8 double lanes (lane i % 8), reduced in the recipe order.
void RmsNorm(const float* x, const float* w, float eps, float* out, int64_t n) {
  double lanes[8] = {};
  for (int64_t i = 0; i < n; ++i) lanes[i % 8] += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(recipe::Sum8(lanes) / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * w[i];
}

void SwiGlu(const float* g, const float* u, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = recipe::Silu(g[i]) * u[i];
}

void AttnScores(const float* q, const uint16_t* const* k, int num_blocks, int64_t k_stride, int head_dim,
                float* scores) {
  for (int b = 0; b < num_blocks; ++b) {
    for (int t = 0; t < kAttendBlockKeys; ++t) {
      float s = 0;
      for (int d = 0; d < head_dim; ++d) s = std::fma(q[d], Fp16ToFp32(k[b][d * k_stride + t]), s);
      scores[b * kAttendBlockKeys + t] = s;
    }
  }
}

void SoftmaxFp16(float* x, int n, float scale) {
  float max = -INFINITY;
  for (int i = 0; i < n; ++i) {
    x[i] *= scale;
    max = std::fmax(max, x[i]);
  }
  double lanes[8] = {};
  for (int i = 0; i < n; ++i) {
    x[i] = recipe::Exp(x[i] - max);
    lanes[i % 8] += x[i];
  }
  const float inv = static_cast<float>(1.0 / recipe::Sum8(lanes));
  for (int i = 0; i < n; ++i) x[i] = RoundFp16(x[i] * inv);
}

void AttnAccumulate(const float* p, const uint16_t* v, int n, int head_dim, float* acc) {
  for (int d = 0; d < head_dim; ++d) {
    float a = acc[d];
    for (int t = 0; t < n; ++t) a = std::fma(p[t], Fp16ToFp32(v[t * head_dim + d]), a);
    acc[d] = a;
  }
}

}  // namespace

const KernelTable& ScalarKernels() {
  static const KernelTable table = {
      .isa = Isa::kScalar,
      .quantize_row_q8 = QuantizeRowQ8,
      .gemm_q4_0 = GemmQ4_0,
      .gemm_q4_1 = GemmQ4_1,
      .gemm_q8_0 = GemmQ8_0,
      .gemm_f32 = GemmF32,
      .f16_to_f32 = F16ToF32,
      .f32_to_f16 = F32ToF16,
      .rms_norm = RmsNorm,
      .swiglu = SwiGlu,
      .attn_scores = AttnScores,
      .softmax_fp16 = SoftmaxFp16,
      .attn_accumulate = AttnAccumulate,
  };
  return table;
}

}  // namespace tandem::cpu
