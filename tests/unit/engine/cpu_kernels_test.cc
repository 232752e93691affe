// Every SIMD kernel table must produce exactly the scalar table's bits (that is what makes
// greedy outputs identical on every x86 CPU tandem runs on), and the scalar table must agree with
// plain double-precision math on dequantized values.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/fp16.h"
#include "engine/backends/cpu/cpu_kernels.h"
#include "engine/backends/cpu/weight_packing.h"
#include "gguf/quant.h"
#include "gtest/gtest.h"

namespace tandem::cpu {
namespace {

using gguf::GgmlType;

std::vector<Isa> SimdIsas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (IsaSupported(isa)) out.push_back(isa);
  }
  return out;
}

std::vector<float> RandomFloats(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  // A few outliers, as real activations have.
  for (size_t i = 0; i < n; i += 97) v[i] *= 20.0f;
  return v;
}

bool BitEqual(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

struct Quantized {
  std::vector<int8_t> q;
  std::vector<float> d, s;
  Q8Rows rows(int64_t m, int64_t k) const { return {q.data(), d.data(), s.data(), m, k}; }
};

Quantized Quantize(const KernelTable& t, const std::vector<float>& x, int64_t m, int64_t k) {
  Quantized out;
  out.q.resize(m * k);
  out.d.resize(m * k / 32);
  out.s.resize(m * k / 32);
  for (int64_t r = 0; r < m; ++r) {
    t.quantize_row_q8(x.data() + r * k, k, out.q.data() + r * k, out.d.data() + r * k / 32, out.s.data() + r * k / 32);
  }
  return out;
}

std::vector<uint8_t> QuantizeWeights(GgmlType type, const std::vector<float>& w, int64_t n, int64_t k) {
  const int64_t row_bytes = gguf::RowBytes(type, k);
  std::vector<uint8_t> out(n * row_bytes);
  for (int64_t r = 0; r < n; ++r) {
    EXPECT_TRUE(gguf::QuantizeRowRef(type, w.data() + r * k, out.data() + r * row_bytes, k).ok());
  }
  return out;
}

QuantGemmFn GemmFor(const KernelTable& t, GgmlType type) {
  return type == GgmlType::kQ4_0 ? t.gemm_q4_0 : type == GgmlType::kQ4_1 ? t.gemm_q4_1 : t.gemm_q8_0;
}

// The weights as table `t` reads them: packed (weight_packing.h) where it asks for that.
std::vector<uint8_t> WeightsFor(const KernelTable& t, GgmlType type, const std::vector<uint8_t>& wq, int64_t n,
                                int64_t k) {
  if (!t.packed_weights) return wq;
  std::vector<uint8_t> packed(PackedBytes(type, n, k), 0xAA);
  PackWeightGroups(type, wq.data(), n, k, packed.data(), 0, (n + kPackRows - 1) / kPackRows);
  return packed;
}

TEST(CpuKernelsTest, ActivationQuantizationIsIdenticalOnEveryIsaAndFollowsTheFormat) {
  std::mt19937 rng(1);
  const int64_t k = 32 * 37;
  auto x = RandomFloats(rng, k, 3.0f);
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero block
  const Quantized ref = Quantize(ScalarKernels(), x, 1, k);
  for (int64_t b = 0; b < k / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    EXPECT_EQ(ref.d[b], Fp16ToFp32(Fp32ToFp16(amax / 127.0f)));
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      EXPECT_LE(std::abs(ref.q[b * 32 + j]), 127);
      EXPECT_NEAR(ref.q[b * 32 + j] * amax / 127.0f, x[b * 32 + j], amax / 127.0f * 0.5f + 1e-6f);
      sum += ref.q[b * 32 + j];
    }
    EXPECT_EQ(ref.s[b], Fp16ToFp32(Fp32ToFp16(amax / 127.0f * sum)));
  }
  for (Isa isa : SimdIsas()) {
    const Quantized got = Quantize(SelectKernels(isa), x, 1, k);
    EXPECT_EQ(got.q, ref.q) << IsaName(isa);
    for (size_t i = 0; i < ref.d.size(); ++i) {
      EXPECT_TRUE(BitEqual(got.d[i], ref.d[i])) << IsaName(isa);
      EXPECT_TRUE(BitEqual(got.s[i], ref.s[i])) << IsaName(isa);
    }
  }
}

class QuantGemmTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(QuantGemmTest, SimdEqualsScalarBitForBitAndScalarMatchesExactMath) {
  const GgmlType type = GetParam();
  std::mt19937 rng(7);
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 13, 64}, {3, 8, 96}, {5, 7, 576}, {17, 9, 1536},
                         {4, 4, 32}, {9, 16, 160}}) {
    const auto x = RandomFloats(rng, m * k);
    const auto w = RandomFloats(rng, n * k, 0.05f);
    const auto wq = QuantizeWeights(type, w, n, k);
    const int64_t row_bytes = gguf::RowBytes(type, k);
    const Quantized xq = Quantize(ScalarKernels(), x, m, k);
    std::vector<float> ref(m * n);
    GemmFor(ScalarKernels(), type)(wq.data(), row_bytes, 0, n, xq.rows(m, k), ref.data(), n);
    // Scalar against double-precision math on the dequantized operands.
    std::vector<float> wd(k);
    for (int64_t j = 0; j < n; ++j) {
      ASSERT_TRUE(gguf::DequantizeRowRef(type, wq.data() + j * row_bytes, wd.data(), k).ok());
      for (int64_t i = 0; i < m; ++i) {
        double exact = 0, mag = 0;
        for (int64_t e = 0; e < k; ++e) {
          const double xv = static_cast<double>(xq.q[i * k + e]) * xq.d[i * k / 32 + e / 32];
          exact += xv * wd[e];
          mag += std::fabs(xv * wd[e]);
        }
        // The Q4_1 min term uses s = fp16(d * sum q): allow for that rounding (2^-11 relative).
        double min_term = 0;
        if (type == GgmlType::kQ4_1) {
          const auto* blocks = reinterpret_cast<const gguf::BlockQ4_1*>(wq.data() + j * row_bytes);
          for (int64_t b = 0; b < k / 32; ++b) min_term += std::fabs(Fp16ToFp32(blocks[b].m) * xq.s[i * k / 32 + b]);
        }
        EXPECT_NEAR(ref[i * n + j], exact, 1e-5 * mag + min_term / 1024 + 1e-5) << "m=" << m << " n=" << n << " k=" << k;
      }
    }
    for (Isa isa : SimdIsas()) {
      std::vector<float> got(m * n, -1.0f);
      // Split the weight rows like two threads would, to cover partial tiles.
      const int64_t split = n / 2 + 1;
      const KernelTable& t = SelectKernels(isa);
      const auto wt = WeightsFor(t, type, wq, n, k);
      GemmFor(t, type)(wt.data(), row_bytes, 0, split, xq.rows(m, k), got.data(), n);
      GemmFor(t, type)(wt.data(), row_bytes, split, n, xq.rows(m, k), got.data(), n);
      for (int64_t i = 0; i < m * n; ++i) {
        ASSERT_TRUE(BitEqual(got[i], ref[i])) << IsaName(isa) << " element " << i << ": " << got[i] << " vs " << ref[i];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantGemmTest,
                         ::testing::Values(GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ8_0),
                         [](const auto& info) { return std::string(gguf::TypeName(info.param)); });

TEST_P(QuantGemmTest, PackingKeepsEveryRowAndPadsTheLastGroupWithZeros) {
  const GgmlType type = GetParam();
  std::mt19937 rng(11);
  const int64_t n = 10, k = 96, row_bytes = gguf::RowBytes(type, k);  // 10 rows: the last group has 2
  const auto wq = QuantizeWeights(type, RandomFloats(rng, n * k, 0.05f), n, k);
  ASSERT_EQ(PackedBytes(type, n, k), 12 * row_bytes);
  std::vector<uint8_t> packed(PackedBytes(type, n, k), 0xAA);
  // Two ranges of groups, as two threads pack them.
  PackWeightGroups(type, wq.data(), n, k, packed.data(), 0, 1);
  PackWeightGroups(type, wq.data(), n, k, packed.data(), 1, 3);
  EXPECT_NE(std::vector<uint8_t>(packed.begin(), packed.begin() + 4 * row_bytes),
            std::vector<uint8_t>(wq.begin(), wq.begin() + 4 * row_bytes));  // really re-laid out
  std::vector<uint8_t> row(row_bytes);
  for (int64_t r = 0; r < n; ++r) {
    UnpackRow(type, packed.data(), r, k, row.data());
    EXPECT_EQ(row, std::vector<uint8_t>(wq.begin() + r * row_bytes, wq.begin() + (r + 1) * row_bytes)) << "row " << r;
  }
  for (int64_t r = n; r < 12; ++r) {
    UnpackRow(type, packed.data(), r, k, row.data());
    EXPECT_EQ(row, std::vector<uint8_t>(row_bytes, 0)) << "padding row " << r;
  }
}

TEST(CpuKernelsTest, OneRowOfAGemmEqualsTheSameRowComputedAlone) {
  // Batch invariance: row 5 of a 12-row product is bit-identical to a 1-row product.
  std::mt19937 rng(3);
  const int64_t m = 12, n = 24, k = 576;
  const auto x = RandomFloats(rng, m * k);
  const auto wq = QuantizeWeights(GgmlType::kQ4_1, RandomFloats(rng, n * k, 0.05f), n, k);
  const int64_t rb = gguf::RowBytes(GgmlType::kQ4_1, k);
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa)) continue;
    const KernelTable& t = SelectKernels(isa);
    const Quantized all = Quantize(t, x, m, k);
    std::vector<float> batched(m * n), alone(n);
    const auto wt = WeightsFor(t, GgmlType::kQ4_1, wq, n, k);
    t.gemm_q4_1(wt.data(), rb, 0, n, all.rows(m, k), batched.data(), n);
    const std::vector<float> row5(x.begin() + 5 * k, x.begin() + 6 * k);
    const Quantized one = Quantize(t, row5, 1, k);
    t.gemm_q4_1(wt.data(), rb, 0, n, one.rows(1, k), alone.data(), n);
    for (int64_t j = 0; j < n; ++j) ASSERT_TRUE(BitEqual(batched[5 * n + j], alone[j])) << IsaName(isa);
  }
}

TEST(CpuKernelsTest, FloatGemmNormSwigluAndConversionsMatchScalar) {
  std::mt19937 rng(11);
  const KernelTable& s = ScalarKernels();
  for (int64_t k : {int64_t{16}, int64_t{37}, int64_t{576}, int64_t{1000}}) {
    const int64_t m = 5, n = 6;
    const auto x = RandomFloats(rng, m * k), w = RandomFloats(rng, n * k, 0.1f);
    std::vector<float> ref(m * n);
    s.gemm_f32(w.data(), k, n, x.data(), k, m, k, ref.data(), n);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double exact = 0, mag = 0;
        for (int64_t e = 0; e < k; ++e) {
          exact += static_cast<double>(x[i * k + e]) * w[j * k + e];
          mag += std::fabs(static_cast<double>(x[i * k + e]) * w[j * k + e]);
        }
        EXPECT_NEAR(ref[i * n + j], exact, 1e-5 * mag + 1e-6);
      }
    }
    const auto norm_w = RandomFloats(rng, k, 0.2f);
    std::vector<float> ref_norm(k), ref_act(k);
    s.rms_norm(x.data(), norm_w.data(), 1e-5f, ref_norm.data(), k);
    s.swiglu(x.data(), x.data() + k, ref_act.data(), k);
    double ss = 0;
    for (int64_t e = 0; e < k; ++e) ss += static_cast<double>(x[e]) * x[e];
    const double inv = 1.0 / std::sqrt(ss / k + 1e-5);
    for (int64_t e = 0; e < k; ++e) {
      EXPECT_NEAR(ref_norm[e], x[e] * inv * norm_w[e], 1e-5 * std::fabs(x[e] * inv * norm_w[e]) + 1e-7);
      const double g = x[e], silu = g / (1 + std::exp(-g));
      EXPECT_NEAR(ref_act[e], silu * x[k + e], 2e-6 * std::fabs(silu * x[k + e]) + 1e-7);
    }
    for (Isa isa : SimdIsas()) {
      const KernelTable& t = SelectKernels(isa);
      std::vector<float> got(m * n), norm(k), act(k);
      t.gemm_f32(w.data(), k, n, x.data(), k, m, k, got.data(), n);
      t.rms_norm(x.data(), norm_w.data(), 1e-5f, norm.data(), k);
      t.swiglu(x.data(), x.data() + k, act.data(), k);
      for (size_t i = 0; i < got.size(); ++i) ASSERT_TRUE(BitEqual(got[i], ref[i])) << IsaName(isa) << " gemm " << k;
      for (int64_t e = 0; e < k; ++e) {
        ASSERT_TRUE(BitEqual(norm[e], ref_norm[e])) << IsaName(isa) << " rms_norm " << k;
        ASSERT_TRUE(BitEqual(act[e], ref_act[e])) << IsaName(isa) << " swiglu " << k << " at " << e;
      }
      std::vector<uint16_t> h(k), h_ref(k);
      std::vector<float> back(k), back_ref(k);
      s.f32_to_f16(x.data(), h_ref.data(), k);
      t.f32_to_f16(x.data(), h.data(), k);
      EXPECT_EQ(h, h_ref) << IsaName(isa);
      s.f16_to_f32(h.data(), back_ref.data(), k);
      t.f16_to_f32(h.data(), back.data(), k);
      for (int64_t e = 0; e < k; ++e) ASSERT_TRUE(BitEqual(back[e], back_ref[e]));
    }
  }
}

std::vector<uint16_t> Halves(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = Fp32ToFp16(v[i]);
  return out;
}

TEST(CpuKernelsTest, AttentionPiecesMatchScalarAndSoftmaxIsNormalised) {
  std::mt19937 rng(5);
  const int hd = 72;             // not a multiple of 16: the SIMD value product's tail
  const int64_t stride = 24;     // keys read in place from a block of 24 (columns 16..23 unused)
  const auto q = RandomFloats(rng, hd);
  const auto kt = Halves(RandomFloats(rng, kMaxScoreBlocks * hd * stride)), v = Halves(RandomFloats(rng, 16 * hd));
  const uint16_t* blocks[kMaxScoreBlocks];
  for (int b = 0; b < kMaxScoreBlocks; ++b) blocks[b] = kt.data() + b * hd * stride;
  const KernelTable& s = ScalarKernels();
  float ref_scores[kMaxScoreBlocks * kAttendBlockKeys];
  s.attn_scores(q.data(), blocks, kMaxScoreBlocks, stride, hd, ref_scores);
  for (int b = 0; b < kMaxScoreBlocks; ++b) {
    for (int t = 0; t < kAttendBlockKeys; ++t) {
      double exact = 0;
      for (int d = 0; d < hd; ++d) exact += static_cast<double>(q[d]) * Fp16ToFp32(blocks[b][d * stride + t]);
      EXPECT_NEAR(ref_scores[b * kAttendBlockKeys + t], exact, 1e-4);
    }
  }
  for (int n : {1, 7, 16, 33, 300}) {
    auto p_ref = RandomFloats(rng, n, 4.0f);
    auto p_in = p_ref;
    s.softmax_fp16(p_ref.data(), n, 0.125f);
    double sum = 0;
    for (float p : p_ref) {
      EXPECT_GE(p, 0.0f);
      sum += p;
    }
    EXPECT_NEAR(sum, 1.0, 2e-3) << n;  // each probability is rounded to fp16
    for (Isa isa : SimdIsas()) {
      auto p = p_in;
      SelectKernels(isa).softmax_fp16(p.data(), n, 0.125f);
      for (int i = 0; i < n; ++i) ASSERT_TRUE(BitEqual(p[i], p_ref[i])) << IsaName(isa) << " n=" << n << " i=" << i;
    }
  }
  std::vector<float> acc_ref(hd, 0.5f);
  const auto p = RandomFloats(rng, 16);
  s.attn_accumulate(p.data(), v.data(), 11, hd, acc_ref.data());
  for (int d = 0; d < hd; ++d) {
    double exact = 0.5;
    for (int t = 0; t < 11; ++t) exact += static_cast<double>(p[t]) * Fp16ToFp32(v[t * hd + d]);
    EXPECT_NEAR(acc_ref[d], exact, 1e-3);
  }
  for (Isa isa : SimdIsas()) {
    const KernelTable& t = SelectKernels(isa);
    // Any number of blocks at once gives each block the bits it gets alone.
    for (int nb = 1; nb <= kMaxScoreBlocks; ++nb) {
      for (int first = 0; first + nb <= kMaxScoreBlocks; ++first) {
        float scores[kMaxScoreBlocks * kAttendBlockKeys];
        t.attn_scores(q.data(), blocks + first, nb, stride, hd, scores);
        for (int i = 0; i < nb * kAttendBlockKeys; ++i) {
          ASSERT_TRUE(BitEqual(scores[i], ref_scores[first * kAttendBlockKeys + i])) << IsaName(isa) << " nb=" << nb;
        }
      }
    }
    std::vector<float> acc(hd, 0.5f);
    t.attn_accumulate(p.data(), v.data(), 11, hd, acc.data());
    for (int d = 0; d < hd; ++d) ASSERT_TRUE(BitEqual(acc[d], acc_ref[d])) << IsaName(isa);
  }
}

TEST(CpuKernelsTest, IsaSelectionHonoursTheOverride) {
  EXPECT_TRUE(IsaSupported(Isa::kScalar));
  EXPECT_EQ(BestIsa(Isa::kScalar), Isa::kScalar);
  EXPECT_TRUE(IsaSupported(BestIsa()));
  EXPECT_TRUE(IsaSupported(BestIsa(Isa::kAvx2)));
  EXPECT_LE(static_cast<int>(BestIsa(Isa::kAvx2)), static_cast<int>(Isa::kAvx2));
}

}  // namespace
}  // namespace tandem::cpu
