// AVX2 + FMA + F16C kernels: the baseline for x86-64 CPUs without AVX-512. Same recipe as
// cpu_kernels.h (8 float lanes per output element), integer partials through
// VPMADDUBSW/VPMADDWD, tiles of up to 2 activation rows x 4 weight rows.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

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
inline float RoundToHalf(float f) { return _cvtsh_ss(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }

// Sum of unsigned x signed bytes in groups of 4, as 8 int32 lanes (exact: no saturation for
// the value ranges used here).
inline __m256i DotU8S8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

inline __m256i UnpackNibbles(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), mask), _mm_and_si128(raw, mask));
}

struct Q4_1Format {
  using Block = BlockQ4_1;
  static constexpr bool kHasMin = true;
  static __m256i Prepare(const Block& b) { return UnpackNibbles(b.qs); }
  static __m256i Dot(__m256i w, __m256i x) { return DotU8S8(w, x); }
  static float Min(const Block& b) { return HalfToFloat(b.m); }
};

struct Q4_0Format {
  using Block = BlockQ4_0;
  static constexpr bool kHasMin = false;
  static __m256i Prepare(const Block& b) { return _mm256_sub_epi8(UnpackNibbles(b.qs), _mm256_set1_epi8(8)); }
  // Signed x signed: |w| times x with w's sign.
  static __m256i Dot(__m256i w, __m256i x) { return DotU8S8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)); }
  static float Min(const Block&) { return 0.0f; }
};

struct Q8_0Format {
  using Block = BlockQ8_0;
  static constexpr bool kHasMin = false;
  static __m256i Prepare(const Block& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)); }
  static __m256i Dot(__m256i w, __m256i x) { return DotU8S8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)); }
  static float Min(const Block&) { return 0.0f; }
};

template <typename F, int MR, int NR>
void Tile(const typename F::Block* const* w, const float* const* wd, const float* mins_t,
          const Q8Rows& x, int64_t m0, int nr, float* y, int64_t y_stride, int64_t n0) {
  const int64_t nb = x.cols / 32;
  __m256 acc[MR][NR];
  __m128 summs[MR];
  for (int m = 0; m < MR; ++m) {
    summs[m] = _mm_setzero_ps();
    for (int n = 0; n < NR; ++n) acc[m][n] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m256i wv[NR];
    for (int n = 0; n < NR; ++n) wv[n] = w[n] ? F::Prepare(w[n][b]) : _mm256_setzero_si256();
    for (int m = 0; m < MR; ++m) {
      const int64_t row = m0 + m;
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + row * x.cols + 32 * b));
      const float dx = x.d[row * nb + b];
      for (int n = 0; n < NR; ++n) {
        const __m256 d0d1 = _mm256_set1_ps(wd[n][b] * dx);
        acc[m][n] = _mm256_fmadd_ps(d0d1, _mm256_cvtepi32_ps(F::Dot(wv[n], xv)), acc[m][n]);
      }
      if constexpr (F::kHasMin) {
        summs[m] = _mm_fmadd_ps(_mm_loadu_ps(mins_t + 4 * b), _mm_set1_ps(x.s[row * nb + b]), summs[m]);
      }
    }
  }
  for (int m = 0; m < MR; ++m) {
    alignas(16) float sm[4];
    _mm_store_ps(sm, summs[m]);
    for (int n = 0; n < nr; ++n) {
      float out = simd::Sum8(acc[m][n]);
      if constexpr (F::kHasMin) out += sm[n];
      y[(m0 + m) * y_stride + n0 + n] = out;
    }
  }
}

template <typename F>
void QuantGemm(const uint8_t* w, int64_t w_row_bytes, int64_t n_begin, int64_t n_end,
               const Q8Rows& x, float* y, int64_t y_stride) {
  constexpr int kNR = 4;
  const int64_t nb = x.cols / 32;
  alignas(32) float scales[kNR][kMaxBlocks];
  alignas(32) float mins_t[kMaxBlocks * kNR];
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
    int64_t m = 0;
    for (; m + 2 <= x.rows; m += 2) Tile<F, 2, kNR>(rows, wd, mins_t, x, m, nr, y, y_stride, n);
    if (m < x.rows) Tile<F, 1, kNR>(rows, wd, mins_t, x, m, nr, y, y_stride, n);
  }
}

void QuantizeRowQ8(const float* x, int64_t cols, int8_t* q, float* d, float* s) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < cols / 32; ++b) {
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(x + 32 * b + 8 * k);
      amax = _mm256_max_ps(amax, _mm256_and_ps(v[k], abs_mask));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float max_abs = _mm_cvtss_f32(m4);
    const float scale = max_abs / 127.0f;
    const __m256 inv = _mm256_set1_ps(max_abs != 0 ? 127.0f / max_abs : 0.0f);
    __m256i qi[4];
    __m256i sum = _mm256_setzero_si256();
    for (int k = 0; k < 4; ++k) {
      qi[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      sum = _mm256_add_epi32(sum, qi[k]);
    }
    const __m256i p01 = _mm256_packs_epi32(qi[0], qi[1]);
    const __m256i p23 = _mm256_packs_epi32(qi[2], qi[3]);
    __m256i p = _mm256_packs_epi16(p01, p23);
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 32 * b), p);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s4 = _mm_hadd_epi32(s4, s4);
    s4 = _mm_hadd_epi32(s4, s4);
    d[b] = RoundToHalf((scale));
    s[b] = RoundToHalf((scale * static_cast<float>(_mm_cvtsi128_si32(s4))));
  }
}

// 16 lanes as two registers (elements i..i+7 and i+8..i+15), tail zero-padded.
float DotF32(const float* a, const float* b, int64_t n) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    lo = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), lo);
    hi = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), hi);
  }
  if (i < n) {
    alignas(32) float ta[16] = {}, tb[16] = {};
    for (int64_t j = i; j < n; ++j) {
      ta[j - i] = a[j];
      tb[j - i] = b[j];
    }
    lo = _mm256_fmadd_ps(_mm256_load_ps(ta), _mm256_load_ps(tb), lo);
    hi = _mm256_fmadd_ps(_mm256_load_ps(ta + 8), _mm256_load_ps(tb + 8), hi);
  }
  return simd::Sum8(_mm256_add_ps(lo, hi));
}

void GemmF32(const float* w, int64_t w_stride, int64_t w_rows, const float* x, int64_t x_stride,
             int64_t x_rows, int64_t cols, float* y, int64_t y_stride) {
  for (int64_t m = 0; m < x_rows; ++m) {
    for (int64_t n = 0; n < w_rows; ++n) y[m * y_stride + n] = DotF32(w + n * w_stride, x + m * x_stride, cols);
  }
}

void F16ToF32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = Fp16ToFp32(src[i]);
}

void F32ToF16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) dst[i] = Fp32ToFp16(src[i]);
}

void RmsNorm(const float* x, const float* w, float eps, float* out, int64_t n) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();  // lanes 0-3 and 4-7
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 sq = _mm256_mul_ps(v, v);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
  }
  alignas(32) double l[8];
  _mm256_store_pd(l, lo);
  _mm256_store_pd(l + 4, hi);
  for (; i < n; ++i) l[i % 8] += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(recipe::Sum8(l) / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  const __m256 vs = _mm256_set1_ps(scale);
  for (i = 0; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(w + i)));
  }
  for (; i < n; ++i) out[i] = (x[i] * scale) * w[i];
}

void SwiGlu(const float* g, const float* u, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 vg = _mm256_loadu_ps(g + i);
    const __m256 silu = _mm256_div_ps(vg, _mm256_add_ps(one, simd::Exp(_mm256_sub_ps(_mm256_setzero_ps(), vg))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
  }
  for (; i < n; ++i) out[i] = recipe::Silu(g[i]) * u[i];
}

inline __m256 LoadHalves8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

template <int NB>
void AttnScoresN(const float* q, const uint16_t* const* k, int64_t k_stride, int head_dim, float* scores) {
  __m256 lo[NB], hi[NB];
  for (int b = 0; b < NB; ++b) lo[b] = hi[b] = _mm256_setzero_ps();
  for (int d = 0; d < head_dim; ++d) {
    const __m256 qd = _mm256_set1_ps(q[d]);
    for (int b = 0; b < NB; ++b) {
      lo[b] = _mm256_fmadd_ps(qd, LoadHalves8(k[b] + d * k_stride), lo[b]);
      hi[b] = _mm256_fmadd_ps(qd, LoadHalves8(k[b] + d * k_stride + 8), hi[b]);
    }
  }
  for (int b = 0; b < NB; ++b) {
    _mm256_storeu_ps(scores + b * kAttendBlockKeys, lo[b]);
    _mm256_storeu_ps(scores + b * kAttendBlockKeys + 8, hi[b]);
  }
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
  float max = -INFINITY;
  for (int i = 0; i < n; ++i) {
    x[i] *= scale;
    max = std::fmax(max, x[i]);
  }
  double l[8] = {};
  int i = 0;
  const __m256 vmax = _mm256_set1_ps(max);
  for (; i + 8 <= n; i += 8) {
    const __m256 e = simd::Exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
    _mm256_storeu_ps(x + i, e);
    for (int j = 0; j < 8; ++j) l[j] += x[i + j];
  }
  for (; i < n; ++i) {
    x[i] = recipe::Exp(x[i] - max);
    l[i % 8] += x[i];
  }
  const float inv = static_cast<float>(1.0 / recipe::Sum8(l));
  const __m256 vinv = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_ps(x + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) x[i] = RoundToHalf((x[i] * inv));
}

void AttnAccumulate(const float* p, const uint16_t* v, int n, int head_dim, float* acc) {
  int d = 0;
  for (; d + 8 <= head_dim; d += 8) {
    __m256 a = _mm256_loadu_ps(acc + d);
    for (int t = 0; t < n; ++t) a = _mm256_fmadd_ps(_mm256_set1_ps(p[t]), LoadHalves8(v + t * head_dim + d), a);
    _mm256_storeu_ps(acc + d, a);
  }
  for (; d < head_dim; ++d) {
    float a = acc[d];
    for (int t = 0; t < n; ++t) a = std::fma(p[t], HalfToFloat(v[t * head_dim + d]), a);
    acc[d] = a;
  }
}

}  // namespace

const KernelTable& Avx2Kernels() {
  static const KernelTable table = {
      .isa = Isa::kAvx2,
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
