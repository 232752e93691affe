// AVX-512 kernels (F, BW, VL, DQ, VNNI). Quantized GEMMs read weights in the packed layout of
// weight_packing.h and run VPDPBUSD on two weight rows at once (one per 256-bit half of a
// register) against a block of activations broadcast to both halves, in tiles of up to
// 4 activation rows x one group of 4 weight rows; each half follows the 8-lane recipe of
// cpu_kernels.h exactly, so results equal the scalar table's bit for bit.
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

// Hardware half rounding (F16C): the same bits as common/fp16.h, far cheaper.
inline float RoundToHalf(float f) { return _cvtsh_ss(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }

constexpr int kPrefetchBytes = 1280;

// One block of a packed 4-row group (engine/backends/cpu/weight_packing.h) ready for VPDPBUSD:
// v[0] holds rows 0-1, v[1] rows 2-3, one row per 256-bit half, bytes in element order.
struct GroupWeights {
  __m512i v[2];
  __m512i correction[2];  // Q8_0: 128 * (sum of each 4 weights), taken off the biased product
};

// Q4 quants of a record: low nibbles are rows 0-1, high nibbles rows 2-3.
inline void UnpackQ4(const uint8_t* rec, GroupWeights& w) {
  const __m512i raw = _mm512_loadu_si512(rec);
  const __m512i mask = _mm512_set1_epi8(0x0f);
  w.v[0] = _mm512_and_si512(raw, mask);
  w.v[1] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), mask);
}

struct Q4_1Format {
  static constexpr int64_t kRecordBytes = 4 * sizeof(BlockQ4_1);
  static constexpr bool kHasMin = true;
  static constexpr bool kActivationCorrection = false;
  static void Prepare(const uint8_t* rec, GroupWeights& w) { UnpackQ4(rec, w); }
  static __m512i Dot(const GroupWeights& w, int p, __m512i x, __m512i) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w.v[p], x);
  }
  // [d0 d1 d2 d3 m0 m1 m2 m3].
  static __m256 Scales(const uint8_t* rec) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + 64)));
  }
};

struct Q4_0Format {
  static constexpr int64_t kRecordBytes = 4 * sizeof(BlockQ4_0);
  static constexpr bool kHasMin = false;
  static constexpr bool kActivationCorrection = true;  // (q - 8) x = q x - 8 x, per 4 elements
  static void Prepare(const uint8_t* rec, GroupWeights& w) { UnpackQ4(rec, w); }
  static __m512i Dot(const GroupWeights& w, int p, __m512i x, __m512i x_correction) {
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w.v[p], x), x_correction);
  }
  // [d0 d1 d2 d3 0 0 0 0].
  static __m256 Scales(const uint8_t* rec) {
    return _mm256_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(rec + 64)));
  }
};

struct Q8_0Format {
  static constexpr int64_t kRecordBytes = 4 * sizeof(BlockQ8_0);
  static constexpr bool kHasMin = false;
  static constexpr bool kActivationCorrection = false;
  static void Prepare(const uint8_t* rec, GroupWeights& w) {
    for (int p = 0; p < 2; ++p) {
      w.v[p] = _mm512_loadu_si512(rec + 64 * p);
      const __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), w.v[p]);
      w.correction[p] = _mm512_slli_epi32(sum, 7);
    }
  }
  // x is signed: multiply (x + 128) as unsigned, then take 128 * sum(w) back off.
  static __m512i Dot(const GroupWeights& w, int p, __m512i x, __m512i) {
    const __m512i xu = _mm512_xor_si512(x, _mm512_set1_epi8(static_cast<char>(0x80)));
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), xu, w.v[p]), w.correction[p]);
  }
  // [d0 d1 d2 d3 0 0 0 0].
  static __m256 Scales(const uint8_t* rec) {
    return _mm256_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(rec + 128)));
  }
};

// MR activation rows (from m0) x one packed group of 4 weight rows, over all blocks; writes the
// group's rows [r_lo, r_hi) (weight row n0 + r).
template <typename F, int MR>
void Tile(const uint8_t* group, const Q8Rows& x, int64_t m0, float* y, int64_t y_stride, int64_t n0,
          int r_lo, int r_hi) {
  const int64_t nb = x.cols / 32;
  const __m512i spread01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i spread23 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
  __m512 acc[MR][2];
  __m128 summs[MR];
  for (int m = 0; m < MR; ++m) {
    summs[m] = _mm_setzero_ps();
    acc[m][0] = acc[m][1] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* rec = group + b * F::kRecordBytes;
    GroupWeights gw;
    F::Prepare(rec, gw);
    const __m256 dm = F::Scales(rec);
    // Batch tiles: each row pair's scales across its 256-bit half (batch 1 spreads d_w * d_x).
    __m512 ws[2];
    if constexpr (MR > 1) {
      const __m512 dm512 = _mm512_castps256_ps512(dm);
      ws[0] = _mm512_permutexvar_ps(spread01, dm512);
      ws[1] = _mm512_permutexvar_ps(spread23, dm512);
    }
    // The hardware prefetcher alone leaves a GEMV at half the DRAM bandwidth here (measured:
    // 16 records ahead took decode's GEMVs from 12.8 to 9.9 ms per token on one thread).
    _mm_prefetch(reinterpret_cast<const char*>(rec) + kPrefetchBytes, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(rec) + kPrefetchBytes + 64, _MM_HINT_T0);
    for (int m = 0; m < MR; ++m) {
      const int64_t row = m0 + m;
      const __m512i xv = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + row * x.cols + 32 * b)));
      __m512i xc = _mm512_setzero_si512();
      if constexpr (F::kActivationCorrection) {
        xc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(8), xv);
      }
      const __m512 dx = _mm512_set1_ps(x.d[row * nb + b]);
      if constexpr (MR == 1) {
        // Decode: one multiply gives the four rows' d_w * d_x (the same bits as four), spread after.
        const __m512 dd = _mm512_castps256_ps512(_mm256_mul_ps(dm, _mm512_castps512_ps256(dx)));
        acc[m][0] = _mm512_fmadd_ps(_mm512_permutexvar_ps(spread01, dd), _mm512_cvtepi32_ps(F::Dot(gw, 0, xv, xc)),
                                    acc[m][0]);
        acc[m][1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(spread23, dd), _mm512_cvtepi32_ps(F::Dot(gw, 1, xv, xc)),
                                    acc[m][1]);
      } else {
        for (int p = 0; p < 2; ++p) {
          const __m512 isum = _mm512_cvtepi32_ps(F::Dot(gw, p, xv, xc));
          acc[m][p] = _mm512_fmadd_ps(_mm512_mul_ps(ws[p], dx), isum, acc[m][p]);
        }
      }
      if constexpr (F::kHasMin) {
        summs[m] = _mm_fmadd_ps(_mm256_extractf128_ps(dm, 1), _mm_set1_ps(x.s[row * nb + b]), summs[m]);
      }
    }
  }
  for (int m = 0; m < MR; ++m) {
    alignas(16) float sm[4];
    _mm_store_ps(sm, summs[m]);
    for (int r = r_lo; r < r_hi; ++r) {
      const __m512 v = acc[m][r / 2];
      const __m256 half = r % 2 == 0 ? _mm512_castps512_ps256(v) : _mm512_extractf32x8_ps(v, 1);
      float out = simd::Sum8(half);
      if constexpr (F::kHasMin) out += sm[r];
      y[(m0 + m) * y_stride + n0 + r] = out;
    }
  }
}

// Weights in the packed layout (Avx512Kernels().packed_weights): for each group of 4 weight rows
// that [n_begin, n_end) touches, every activation row in tiles of up to 4.
template <typename F>
void QuantGemm(const uint8_t* w, int64_t w_row_bytes, int64_t n_begin, int64_t n_end,
               const Q8Rows& x, float* y, int64_t y_stride) {
  for (int64_t g = n_begin / 4; 4 * g < n_end; ++g) {
    const uint8_t* group = w + 4 * g * w_row_bytes;
    const int64_t n0 = 4 * g;
    const int r_lo = static_cast<int>(std::max<int64_t>(n_begin - n0, 0));
    const int r_hi = static_cast<int>(std::min<int64_t>(n_end - n0, 4));
    int64_t m = 0;
    for (; m + 4 <= x.rows; m += 4) Tile<F, 4>(group, x, m, y, y_stride, n0, r_lo, r_hi);
    switch (x.rows - m) {
      case 3: Tile<F, 3>(group, x, m, y, y_stride, n0, r_lo, r_hi); break;
      case 2: Tile<F, 2>(group, x, m, y, y_stride, n0, r_lo, r_hi); break;
      case 1: Tile<F, 1>(group, x, m, y, y_stride, n0, r_lo, r_hi); break;
      default: break;
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

// One fma chain per block over d: several blocks at once hide the fma latency.
template <int NB>
void AttnScoresN(const float* q, const uint16_t* const* k, int64_t k_stride, int head_dim, float* scores) {
  __m512 s[NB];
  for (int b = 0; b < NB; ++b) s[b] = _mm512_setzero_ps();
  for (int d = 0; d < head_dim; ++d) {
    const __m512 qd = _mm512_set1_ps(q[d]);
    for (int b = 0; b < NB; ++b) {
      const __m512 keys = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(k[b] + d * k_stride)));
      s[b] = _mm512_fmadd_ps(qd, keys, s[b]);
    }
  }
  for (int b = 0; b < NB; ++b) _mm512_storeu_ps(scores + b * kAttendBlockKeys, s[b]);
}

void AttnScores(const float* q, const uint16_t* const* k, int num_blocks, int64_t k_stride, int head_dim,
                float* scores) {
  switch (num_blocks) {
    case 4: return AttnScoresN<4>(q, k, k_stride, head_dim, scores);
    case 3: return AttnScoresN<3>(q, k, k_stride, head_dim, scores);
    case 2: return AttnScoresN<2>(q, k, k_stride, head_dim, scores);
    default: return AttnScoresN<1>(q, k, k_stride, head_dim, scores);
  }
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

// Four 16-lane chunks of the head at a time: four independent fma chains over t (each lane's
// order over t is unchanged, so are its bits).
void AttnAccumulate(const float* p, const uint16_t* v, int n, int head_dim, float* acc) {
  auto values = [&](int t, int d, __mmask16 dm) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(dm, v + t * head_dim + d));
  };
  int d = 0;
  for (; d + 64 <= head_dim; d += 64) {
    __m512 a[4];
    for (int c = 0; c < 4; ++c) a[c] = _mm512_loadu_ps(acc + d + 16 * c);
    for (int t = 0; t < n; ++t) {
      const __m512 pt = _mm512_set1_ps(p[t]);
      for (int c = 0; c < 4; ++c) a[c] = _mm512_fmadd_ps(pt, values(t, d + 16 * c, 0xffff), a[c]);
    }
    for (int c = 0; c < 4; ++c) _mm512_storeu_ps(acc + d + 16 * c, a[c]);
  }
  for (; d < head_dim; d += 16) {
    const __mmask16 dm = TailMask(head_dim - d);
    __m512 a = _mm512_maskz_loadu_ps(dm, acc + d);
    for (int t = 0; t < n; ++t) a = _mm512_fmadd_ps(_mm512_set1_ps(p[t]), values(t, d, dm), a);
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
      .packed_weights = true,
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
