// AVX-512 kernels (F, BW, VL, DQ, VNNI). Quantized GEMMs run VPDPBUSD on two weight rows at
// once (one per 256-bit half of a register) against a block of activations broadcast to both
// halves, in tiles of up to 4 activation rows x 4 weight rows; each half follows the 8-lane
// recipe of cpu_kernels.h exactly, so results equal the scalar table's bit for bit.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/fp16.h"
#include "engine/backends/cpu/cpu_kernels.h"
#include "engine/backends/cpu/scalar_math.h"
#include "engine/backends/cpu/simd_math.h"
#include "gguf/quant.h"

namespace tandem::cpu {
namespace {

using gguf::BlockQ4_0;
using gguf::BlockQ4_1;
using gguf::BlockQ8_0;

constexpr int kMaxBlocks = 1024;

// Hardware half conversions (F16C): the same bits as common/fp16.h, far cheaper.
inline float HalfToFloat(uint16_t h) { return _cvtsh_ss(h); }
inline float RoundToHalf(float f) { return _cvtsh_ss(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }  // rows of up to 32768 elements

struct PreparedWeights {
  __m512i v;
  __m512i correction;  // Q8_0: 128 * (sum of each 4 weights), taken off the biased product
};

// Weights of block b of rows r0 and r1 (r1 may be null) unpacked to bytes in element order,
// one row per 256-bit half.
inline __m512i UnpackNibblePair(const uint8_t* qs0, const uint8_t* qs1) {
  const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0));
  const __m128i b = qs1 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1)) : _mm_setzero_si128();
  const __m256i raw = _mm256_set_m128i(b, a);
  const __m256i mask = _mm256_set1_epi8(0x0f);
  const __m256i lo = _mm256_and_si256(raw, mask);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
  const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);  // lo0 lo1 hi0 hi1
  return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));                // lo0 hi0 lo1 hi1
}

struct Q4_1Format {
  using Block = BlockQ4_1;
  static constexpr bool kHasMin = true;
  static constexpr bool kActivationCorrection = false;
  static PreparedWeights Prepare(const Block* r0, const Block* r1, int64_t b) {
    return {UnpackNibblePair(r0[b].qs, r1 ? r1[b].qs : nullptr), _mm512_setzero_si512()};
  }
  static __m512i Dot(const PreparedWeights& w, __m512i x, __m512i) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w.v, x);
  }
  static float Min(const Block& b) { return HalfToFloat(b.m); }
  // [d(r0), m(r0), d(r1), m(r1)] of block b.
  static __m128 Scales(const Block* r0, const Block* r1, int64_t b) {
    uint32_t a, c = 0;
    std::memcpy(&a, &r0[b], 4);
    if (r1) std::memcpy(&c, &r1[b], 4);
    return _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<int64_t>(a) | (static_cast<int64_t>(c) << 32)));
  }
};

struct Q4_0Format {
  using Block = BlockQ4_0;
  static constexpr bool kHasMin = false;
  static constexpr bool kActivationCorrection = true;  // (q - 8) x = q x - 8 x, per 4 elements
  static PreparedWeights Prepare(const Block* r0, const Block* r1, int64_t b) {
    return {UnpackNibblePair(r0[b].qs, r1 ? r1[b].qs : nullptr), _mm512_setzero_si512()};
  }
  static __m512i Dot(const PreparedWeights& w, __m512i x, __m512i x_correction) {
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w.v, x), x_correction);
  }
  static float Min(const Block&) { return 0.0f; }
  // [d(r0), 0, d(r1), 0] of block b.
  static __m128 Scales(const Block* r0, const Block* r1, int64_t b) {
    return _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<int64_t>(r0[b].d) |
                                          (static_cast<int64_t>(r1 ? r1[b].d : 0) << 32)));
  }
};

struct Q8_0Format {
  using Block = BlockQ8_0;
  static constexpr bool kHasMin = false;
  static constexpr bool kActivationCorrection = false;
  static PreparedWeights Prepare(const Block* r0, const Block* r1, int64_t b) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0[b].qs));
    const __m256i c = r1 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1[b].qs)) : _mm256_setzero_si256();
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(a), c, 1);
    const __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), v);
    return {v, _mm512_slli_epi32(sum, 7)};
  }
  // x is signed: multiply (x + 128) as unsigned, then take 128 * sum(w) back off.
  static __m512i Dot(const PreparedWeights& w, __m512i x, __m512i) {
    const __m512i xu = _mm512_xor_si512(x, _mm512_set1_epi8(static_cast<char>(0x80)));
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), xu, w.v), w.correction);
  }
  static float Min(const Block&) { return 0.0f; }
  // [d(r0), 0, d(r1), 0] of block b.
  static __m128 Scales(const Block* r0, const Block* r1, int64_t b) {
    return _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<int64_t>(r0[b].d) |
                                          (static_cast<int64_t>(r1 ? r1[b].d : 0) << 32)));
  }
};

// Where a tile gets each block's weight scales (and Q4_1 mins) from: arrays prepared once per
// weight tile (many activation rows: prefill), or the blocks themselves (decode). Load(b) is
// called once per block, then pair(p) and mins() read the result.
template <typename F>
struct PreparedScales {
  const float* const* wd;  // [row][block]
  const float* mins_t;     // [block][row], 4 rows
  int64_t b = 0;
  void Load(const typename F::Block* const*, int64_t block) { b = block; }
  __m512 pair(int p) const {
    return _mm512_insertf32x8(_mm512_set1_ps(wd[2 * p][b]), _mm256_set1_ps(wd[2 * p + 1][b]), 1);
  }
  __m128 mins() const { return _mm_loadu_ps(mins_t + 4 * b); }
};

template <typename F>
struct InlineScales {
  __m128 dm[2];  // [d, m, d, m] of rows 0-1 and 2-3
  void Load(const typename F::Block* const* w, int64_t b) {
    dm[0] = F::Scales(w[0], w[1], b);
    dm[1] = w[2] ? F::Scales(w[2], w[3], b) : _mm_setzero_ps();  // rows 2-3 may not exist
  }
  __m512 pair(int p) const {
    const __m512i spread = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(dm[p]));
  }
  __m128 mins() const { return _mm_shuffle_ps(dm[0], dm[1], _MM_SHUFFLE(3, 1, 3, 1)); }
};

// MR activation rows x (2 * NP) weight rows, over all blocks.
template <typename F, int MR, int NP, typename Scales>
void Tile(const typename F::Block* const* w, Scales scales, const Q8Rows& x, int64_t m0, int nr,
          float* y, int64_t y_stride, int64_t n0) {
  const int64_t nb = x.cols / 32;
  __m512 acc[MR][NP];
  __m128 summs[MR];
  for (int m = 0; m < MR; ++m) {
    summs[m] = _mm_setzero_ps();
    for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    PreparedWeights pw[NP];
    __m512 ws[NP];
    scales.Load(w, b);
    for (int p = 0; p < NP; ++p) {
      pw[p] = F::Prepare(w[2 * p], w[2 * p + 1], b);
      ws[p] = scales.pair(p);
    }
    __m128 mins;
    if constexpr (F::kHasMin) mins = scales.mins();
    for (int m = 0; m < MR; ++m) {
      const int64_t row = m0 + m;
      const __m512i xv = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + row * x.cols + 32 * b)));
      __m512i xc = _mm512_setzero_si512();
      if constexpr (F::kActivationCorrection) {
        xc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(8), xv);
      }
      const __m512 dx = _mm512_set1_ps(x.d[row * nb + b]);
      for (int p = 0; p < NP; ++p) {
        const __m512 isum = _mm512_cvtepi32_ps(F::Dot(pw[p], xv, xc));
        acc[m][p] = _mm512_fmadd_ps(_mm512_mul_ps(ws[p], dx), isum, acc[m][p]);
      }
      if constexpr (F::kHasMin) summs[m] = _mm_fmadd_ps(mins, _mm_set1_ps(x.s[row * nb + b]), summs[m]);
    }
  }
  for (int m = 0; m < MR; ++m) {
    alignas(16) float sm[4];
    _mm_store_ps(sm, summs[m]);
    for (int r = 0; r < nr; ++r) {
      const __m512 v = acc[m][r / 2];
      const __m256 half = r % 2 == 0 ? _mm512_castps512_ps256(v) : _mm512_extractf32x8_ps(v, 1);
      float out = simd::Sum8(half);
      if constexpr (F::kHasMin) out += sm[r];
      y[(m0 + m) * y_stride + n0 + r] = out;
    }
  }
}

template <typename F, int MR>
void QuantGemmFewRows(const uint8_t* w, int64_t w_row_bytes, int64_t n_begin, int64_t n_end,
                      const Q8Rows& x, float* y, int64_t y_stride) {
  for (int64_t n = n_begin; n < n_end; n += 4) {
    const int nr = static_cast<int>(std::min<int64_t>(4, n_end - n));
    const typename F::Block* rows[4] = {};
    for (int r = 0; r < nr; ++r) rows[r] = reinterpret_cast<const typename F::Block*>(w + (n + r) * w_row_bytes);
    if (nr > 2) {
      Tile<F, MR, 2>(rows, InlineScales<F>{}, x, 0, nr, y, y_stride, n);
    } else {
      Tile<F, MR, 1>(rows, InlineScales<F>{}, x, 0, nr, y, y_stride, n);
    }
  }
}

template <typename F, int NP>
void RowsForWeightTile(const typename F::Block* const* w, const PreparedScales<F>& scales, const Q8Rows& x,
                       int nr, float* y, int64_t y_stride, int64_t n0) {
  int64_t m = 0;
  for (; m + 4 <= x.rows; m += 4) Tile<F, 4, NP>(w, scales, x, m, nr, y, y_stride, n0);
  switch (x.rows - m) {
    case 3: Tile<F, 3, NP>(w, scales, x, m, nr, y, y_stride, n0); break;
    case 2: Tile<F, 2, NP>(w, scales, x, m, nr, y, y_stride, n0); break;
    case 1: Tile<F, 1, NP>(w, scales, x, m, nr, y, y_stride, n0); break;
    default: break;
  }
}

template <typename F>
void QuantGemm(const uint8_t* w, int64_t w_row_bytes, int64_t n_begin, int64_t n_end,
               const Q8Rows& x, float* y, int64_t y_stride) {
  switch (x.rows) {
    case 1: return QuantGemmFewRows<F, 1>(w, w_row_bytes, n_begin, n_end, x, y, y_stride);
    case 2: return QuantGemmFewRows<F, 2>(w, w_row_bytes, n_begin, n_end, x, y, y_stride);
    case 3: return QuantGemmFewRows<F, 3>(w, w_row_bytes, n_begin, n_end, x, y, y_stride);
    case 4: return QuantGemmFewRows<F, 4>(w, w_row_bytes, n_begin, n_end, x, y, y_stride);
    default: break;
  }
  constexpr int kNR = 4;
  const int64_t nb = x.cols / 32;
  alignas(64) float scales[kNR][kMaxBlocks];
  alignas(64) float mins_t[kMaxBlocks * kNR];
  for (int64_t n = n_begin; n < n_end; n += kNR) {
    const int nr = static_cast<int>(std::min<int64_t>(kNR, n_end - n));
    const typename F::Block* rows[kNR] = {};
    const float* wd[kNR];
    for (int r = 0; r < kNR; ++r) {
      wd[r] = scales[r];
      if (r >= nr) {
        std::fill(scales[r], scales[r] + nb, 0.0f);
        if constexpr (F::kHasMin) {
          for (int64_t b = 0; b < nb; ++b) mins_t[b * kNR + r] = 0.0f;
        }
        continue;
      }
      rows[r] = reinterpret_cast<const typename F::Block*>(w + (n + r) * w_row_bytes);
      for (int64_t b = 0; b < nb; ++b) {
        scales[r][b] = HalfToFloat(rows[r][b].d);
        if constexpr (F::kHasMin) mins_t[b * kNR + r] = F::Min(rows[r][b]);
      }
    }
    const PreparedScales<F> prepared{wd, mins_t};
    if (nr > 2) {
      RowsForWeightTile<F, 2>(rows, prepared, x, nr, y, y_stride, n);
    } else {
      RowsForWeightTile<F, 1>(rows, prepared, x, nr, y, y_stride, n);
    }
  }
}

void QuantizeRowQ8(const float* x, int64_t cols, int8_t* q, float* d, float* s) {
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < cols / 32; ++b) {
    const __m512 a = _mm512_loadu_ps(x + 32 * b);
    const __m512 c = _mm512_loadu_ps(x + 32 * b + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(a, abs_mask), _mm512_and_ps(c, abs_mask)));
    const float scale = amax / 127.0f;
    const __m512 inv = _mm512_set1_ps(amax != 0 ? 127.0f / amax : 0.0f);
    const __m512i qa = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(a, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m512i qc = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(c, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * b), _mm512_cvtsepi32_epi8(qa));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * b + 16), _mm512_cvtsepi32_epi8(qc));
    const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qc));
    d[b] = RoundToHalf((scale));
    s[b] = RoundToHalf((scale * static_cast<float>(sum)));
  }
}

inline __mmask16 TailMask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
}

template <int MR, int NR>
void GemmF32Tile(const float* w, int64_t w_stride, const float* x, int64_t x_stride, int64_t cols,
                 float* y, int64_t y_stride) {
  __m512 acc[MR][NR];
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NR; ++n) acc[m][n] = _mm512_setzero_ps();
  for (int64_t i = 0; i < cols; i += 16) {
    const __mmask16 mask = TailMask(cols - i);
    __m512 wv[NR];
    for (int n = 0; n < NR; ++n) wv[n] = _mm512_maskz_loadu_ps(mask, w + n * w_stride + i);
    for (int m = 0; m < MR; ++m) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + m * x_stride + i);
      for (int n = 0; n < NR; ++n) acc[m][n] = _mm512_fmadd_ps(wv[n], xv, acc[m][n]);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NR; ++n) y[m * y_stride + n] = simd::Sum16(acc[m][n]);
}

template <int NR>
void GemmF32Rows(const float* w, int64_t w_stride, const float* x, int64_t x_stride, int64_t x_rows,
                 int64_t cols, float* y, int64_t y_stride) {
  int64_t m = 0;
  for (; m + 4 <= x_rows; m += 4) GemmF32Tile<4, NR>(w, w_stride, x + m * x_stride, x_stride, cols, y + m * y_stride, y_stride);
  for (; m < x_rows; ++m) GemmF32Tile<1, NR>(w, w_stride, x + m * x_stride, x_stride, cols, y + m * y_stride, y_stride);
}

void GemmF32(const float* w, int64_t w_stride, int64_t w_rows, const float* x, int64_t x_stride,
             int64_t x_rows, int64_t cols, float* y, int64_t y_stride) {
  int64_t n = 0;
  for (; n + 4 <= w_rows; n += 4) GemmF32Rows<4>(w + n * w_stride, w_stride, x, x_stride, x_rows, cols, y + n, y_stride);
  for (; n < w_rows; ++n) GemmF32Rows<1>(w + n * w_stride, w_stride, x, x_stride, x_rows, cols, y + n, y_stride);
}

void F16ToF32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = Fp16ToFp32(src[i]);
}

void F32ToF16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) dst[i] = Fp32ToFp16(src[i]);
}

void RmsNorm(const float* x, const float* w, float eps, float* out, int64_t n) {
  __m512d lanes = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    lanes = _mm512_add_pd(lanes, _mm512_cvtps_pd(_mm256_mul_ps(v, v)));
  }
  alignas(64) double l[8];
  _mm512_store_pd(l, lanes);
  for (; i < n; ++i) l[i % 8] += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(recipe::Sum8(l) / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  const __m512 vs = _mm512_set1_ps(scale);
  for (i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs),
                                                    _mm512_maskz_loadu_ps(m, w + i)));
  }
}

void SwiGlu(const float* g, const float* u, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    const __m512 vg = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 silu = _mm512_div_ps(vg, _mm512_add_ps(one, simd::Exp(_mm512_sub_ps(_mm512_setzero_ps(), vg))));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(m, u + i)));
  }
}

void AttnScores(const float* q, const float* k_t, int head_dim, float* scores) {
  __m512 s = _mm512_setzero_ps();
  for (int d = 0; d < head_dim; ++d) {
    s = _mm512_fmadd_ps(_mm512_set1_ps(q[d]), _mm512_loadu_ps(k_t + d * kAttendBlockKeys), s);
  }
  _mm512_storeu_ps(scores, s);
}

void SoftmaxFp16(float* x, int n, float scale) {
  const __m512 vscale = _mm512_set1_ps(scale);
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vscale);
    _mm512_mask_storeu_ps(x + i, m, v);
    vmax = _mm512_mask_max_ps(vmax, m, vmax, v);
  }
  const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  __m512d lanes = _mm512_setzero_pd();
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    const __m512 e = _mm512_maskz_mov_ps(m, simd::Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), max)));
    _mm512_mask_storeu_ps(x + i, m, e);
    lanes = _mm512_add_pd(lanes, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    lanes = _mm512_add_pd(lanes, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
  }
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / simd::Sum8(lanes)));
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    const __m256i h = _mm512_cvtps_ph(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm512_mask_storeu_ps(x + i, m, _mm512_cvtph_ps(h));
  }
}

void AttnAccumulate(const float* p, const float* v, int n, int head_dim, float* acc) {
  for (int d = 0; d < head_dim; d += 16) {
    const __mmask16 dm = TailMask(head_dim - d);
    __m512 a = _mm512_maskz_loadu_ps(dm, acc + d);
    for (int t = 0; t < n; ++t) {
      a = _mm512_fmadd_ps(_mm512_set1_ps(p[t]), _mm512_maskz_loadu_ps(dm, v + t * head_dim + d), a);
    }
    _mm512_mask_storeu_ps(acc + d, dm, a);
  }
}

}  // namespace

const KernelTable& Avx512Kernels() {
  static const KernelTable table = {
      .isa = Isa::kAvx512,
      .quantize_row_q8 = QuantizeRowQ8,
      .gemm_q4_0 = QuantGemm<Q4_0Format>,
      .gemm_q4_1 = QuantGemm<Q4_1Format>,
      .gemm_q8_0 = QuantGemm<Q8_0Format>,
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
