// DequantizeRowRef against a plain re-implementation of each block format written here from the
// format definitions (ggml's ggml-common.h / ggml-quants.c layouts), QuantizeRowRef round trips
// with a stated error bound per format, and the error cases.
#include "gguf/quant.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::gguf {
namespace {

using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// Independent reference: element values straight from the format definitions. Nothing here
// calls tandem code; fp16/bf16 are decoded from the IEEE field definitions with ldexp.

float HalfToFloat(uint16_t h) {
  const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  double v;
  if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), -24);  // subnormal: mant * 2^-24
  } else if (exp == 31) {
    v = mant == 0 ? std::numeric_limits<double>::infinity()
                  : std::numeric_limits<double>::quiet_NaN();
  } else {
    v = std::ldexp(static_cast<double>(1024 + mant), exp - 25);  // 1.mant * 2^(exp-15)
  }
  return static_cast<float>((h & 0x8000) ? -v : v);
}

float Bf16ToFloat(uint16_t b) {
  const int exp = (b >> 7) & 0xff, mant = b & 0x7f;
  double v;
  if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), -133);  // mant * 2^-126 / 2^7
  } else if (exp == 255) {
    v = mant == 0 ? std::numeric_limits<double>::infinity()
                  : std::numeric_limits<double>::quiet_NaN();
  } else {
    v = std::ldexp(static_cast<double>(128 + mant), exp - 134);  // 1.mant * 2^(exp-127)
  }
  return static_cast<float>((b & 0x8000) ? -v : v);
}

uint16_t U16At(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// Q4_0, 18 bytes: half d, 16 bytes of nibbles; element i < 16 is the low nibble of byte i,
// element i >= 16 the high nibble of byte i - 16. x = d * (q - 8).
void RefQ4_0(const uint8_t* blk, float* y) {
  const float d = HalfToFloat(U16At(blk));
  const uint8_t* qs = blk + 2;
  for (int i = 0; i < 32; ++i) {
    const int q = i < 16 ? (qs[i] & 15) : (qs[i - 16] >> 4);
    y[i] = d * static_cast<float>(q - 8);
  }
}

// Q4_1, 20 bytes: half d, half m, nibbles as Q4_0. x = d * q + m.
void RefQ4_1(const uint8_t* blk, float* y) {
  const float d = HalfToFloat(U16At(blk)), m = HalfToFloat(U16At(blk + 2));
  const uint8_t* qs = blk + 4;
  for (int i = 0; i < 32; ++i) {
    const int q = i < 16 ? (qs[i] & 15) : (qs[i - 16] >> 4);
    y[i] = d * static_cast<float>(q) + m;
  }
}

// Q8_0, 34 bytes: half d, 32 signed bytes. x = d * q.
void RefQ8_0(const uint8_t* blk, float* y) {
  const float d = HalfToFloat(U16At(blk));
  for (int i = 0; i < 32; ++i) y[i] = d * static_cast<float>(static_cast<int8_t>(blk[2 + i]));
}

// Q4_K, 144 bytes: half d, half dmin, 12 bytes of eight 6-bit scales and eight 6-bit mins,
// 128 bytes of nibbles. Sub-block s (32 elements) uses scale sc[s], min m[s]:
//   bytes 0-3: sc[0..3] in bits 0-5, top 2 bits of sc[4..7] in bits 6-7
//   bytes 4-7: m[0..3] in bits 0-5, top 2 bits of m[4..7] in bits 6-7
//   bytes 8-11: low 4 bits of sc[4..7] in bits 0-3, low 4 bits of m[4..7] in bits 4-7
// Elements 64c..64c+31 are the low nibbles of qs[32c..32c+31], 64c+32.. the high nibbles.
// x = (d * sc) * q - (dmin * m).
void RefQ4_K(const uint8_t* blk, float* y) {
  const float d = HalfToFloat(U16At(blk)), dmin = HalfToFloat(U16At(blk + 2));
  const uint8_t* s = blk + 4;
  const uint8_t* qs = blk + 16;
  int sc[8], m[8];
  for (int k = 0; k < 4; ++k) {
    sc[k] = s[k] & 0x3f;
    m[k] = s[4 + k] & 0x3f;
    sc[4 + k] = (s[8 + k] & 0x0f) | ((s[k] >> 6) << 4);
    m[4 + k] = (s[8 + k] >> 4) | ((s[4 + k] >> 6) << 4);
  }
  for (int e = 0; e < 256; ++e) {
    const int sub = e / 32, chunk = e / 64, l = e % 32;
    const uint8_t byte = qs[32 * chunk + l];
    const int q = sub % 2 == 0 ? (byte & 15) : (byte >> 4);
    y[e] = (d * static_cast<float>(sc[sub])) * static_cast<float>(q) -
           dmin * static_cast<float>(m[sub]);
  }
}

// Q6_K, 210 bytes: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], half d.
// In each 128-element half h: element 32g + l (g = 0..3, l = 0..31) has its low 4 bits in
// ql[64h + l] (g = 0: low nibble, g = 2: high nibble) or ql[64h + 32 + l] (g = 1 low, g = 3
// high), its high 2 bits at bits 2g..2g+1 of qh[32h + l]. Scale index = element / 16.
// x = (d * scale) * (q - 32).
void RefQ6_K(const uint8_t* blk, float* y) {
  const uint8_t* ql = blk;
  const uint8_t* qh = blk + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(blk + 192);
  const float d = HalfToFloat(U16At(blk + 208));
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, g = (e % 128) / 32, l = e % 32;
    const uint8_t lbyte = ql[64 * h + 32 * (g % 2) + l];
    const int low = g < 2 ? (lbyte & 15) : (lbyte >> 4);
    const int high = (qh[32 * h + l] >> (2 * g)) & 3;
    const int q = (low | (high << 4)) - 32;
    y[e] = (d * static_cast<float>(scales[e / 16])) * static_cast<float>(q);
  }
}

struct Format {
  GgmlType type;
  int block_size;
  int block_bytes;
  void (*ref)(const uint8_t*, float*);
  std::vector<int> half_offsets;  // where the fp16 scales sit in a block
};

const std::vector<Format>& QuantFormats() {
  static const std::vector<Format> formats = {
      {GgmlType::kQ4_0, 32, 18, RefQ4_0, {0}},     {GgmlType::kQ4_1, 32, 20, RefQ4_1, {0, 2}},
      {GgmlType::kQ8_0, 32, 34, RefQ8_0, {0}},     {GgmlType::kQ4_K, 256, 144, RefQ4_K, {0, 2}},
      {GgmlType::kQ6_K, 256, 210, RefQ6_K, {208}},
  };
  return formats;
}

// A sane fp16 scale: random sign, magnitude in [2^-10, 8), or occasionally 0 / subnormal.
uint16_t RandomScale(std::mt19937& rng) {
  const uint32_t r = rng();
  if (r % 50 == 0) return 0;
  if (r % 50 == 1) return static_cast<uint16_t>(1 + (rng() & 0x3ff));  // subnormal
  const uint16_t exp = static_cast<uint16_t>(5 + rng() % 13);          // 2^-10 .. 2^2
  return static_cast<uint16_t>(((rng() & 1) << 15) | (exp << 10) | (rng() & 0x3ff));
}

std::vector<uint8_t> RandomBlocks(const Format& f, int n_blocks, std::mt19937& rng) {
  std::vector<uint8_t> b(static_cast<size_t>(f.block_bytes) * n_blocks);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  for (int i = 0; i < n_blocks; ++i) {
    for (int off : f.half_offsets) {
      const uint16_t h = RandomScale(rng);
      std::memcpy(b.data() + static_cast<size_t>(i) * f.block_bytes + off, &h, 2);
    }
  }
  return b;
}

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// ---------------------------------------------------------------------------------------------

TEST(QuantTest, BlockStructsMatchTheFileLayout) {
  EXPECT_EQ(offsetof(BlockQ4_1, m), 2u);
  EXPECT_EQ(offsetof(BlockQ4_1, qs), 4u);
  EXPECT_EQ(offsetof(BlockQ4_K, scales), 4u);
  EXPECT_EQ(offsetof(BlockQ4_K, qs), 16u);
  EXPECT_EQ(offsetof(BlockQ6_K, qh), 128u);
  EXPECT_EQ(offsetof(BlockQ6_K, scales), 192u);
  EXPECT_EQ(offsetof(BlockQ6_K, d), 208u);
  for (const Format& f : QuantFormats()) {
    EXPECT_EQ(Traits(f.type).block_size, f.block_size) << TypeName(f.type);
    EXPECT_EQ(Traits(f.type).block_bytes, f.block_bytes) << TypeName(f.type);
  }
}

TEST(QuantTest, DequantizeMatchesIndependentReference) {
  std::mt19937 rng(20240611);
  for (const Format& f : QuantFormats()) {
    SCOPED_TRACE(std::string(TypeName(f.type)));
    for (int trial = 0; trial < 20; ++trial) {
      const int n_blocks = 1 + trial % 7;
      const auto blocks = RandomBlocks(f, n_blocks, rng);
      const int64_t n = static_cast<int64_t>(n_blocks) * f.block_size;
      // One sentinel float past the row: the dequantizer must write exactly n values.
      std::vector<float> got(n + 1, -12345.0f), want(n);
      ASSERT_TRUE(DequantizeRowRef(f.type, blocks.data(), got.data(), n).ok());
      EXPECT_EQ(got[n], -12345.0f) << "wrote past the row";
      for (int b = 0; b < n_blocks; ++b) {
        f.ref(blocks.data() + static_cast<size_t>(b) * f.block_bytes,
              want.data() + b * f.block_size);
      }
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(Bits(got[i]), Bits(want[i]))
            << "trial " << trial << " element " << i << ": " << got[i] << " vs " << want[i];
      }
    }
  }
}

// GGUF allows general.alignment = 1, so tensor data (and rows inside it) can start at any
// address: the reference code must not assume the block structs' alignment.
TEST(QuantTest, BlocksAtOddAddresses) {
  std::mt19937 rng(17);
  std::vector<Format> formats = QuantFormats();
  formats.push_back({GgmlType::kF16, 1, 2, nullptr, {}});
  formats.push_back({GgmlType::kBF16, 1, 2, nullptr, {}});
  for (const Format& f : formats) {
    SCOPED_TRACE(std::string(TypeName(f.type)));
    const int n_blocks = f.block_size == 1 ? 64 : 3;
    const int64_t n = static_cast<int64_t>(n_blocks) * f.block_size;
    const auto blocks =
        f.block_size == 1 ? std::vector<uint8_t>(2 * n, 0x3c) : RandomBlocks(f, n_blocks, rng);
    std::vector<uint8_t> odd(blocks.size() + 1);
    std::memcpy(odd.data() + 1, blocks.data(), blocks.size());
    std::vector<float> want(n), got(n);
    ASSERT_TRUE(DequantizeRowRef(f.type, blocks.data(), want.data(), n).ok());
    ASSERT_TRUE(DequantizeRowRef(f.type, odd.data() + 1, got.data(), n).ok());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(Bits(got[i]), Bits(want[i])) << i;
    // And the quantizers write to odd addresses the same bytes.
    std::vector<uint8_t> q(blocks.size()), q_odd(blocks.size() + 1);
    ASSERT_TRUE(QuantizeRowRef(f.type, want.data(), q.data(), n).ok());
    ASSERT_TRUE(QuantizeRowRef(f.type, want.data(), q_odd.data() + 1, n).ok());
    EXPECT_EQ(std::vector<uint8_t>(q_odd.begin() + 1, q_odd.end()), q);
  }
}

TEST(QuantTest, EveryHalfAndBf16Decodes) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> f16(65536), bf16(65536);
  ASSERT_TRUE(DequantizeRowRef(GgmlType::kF16, all.data(), f16.data(), 65536).ok());
  ASSERT_TRUE(DequantizeRowRef(GgmlType::kBF16, all.data(), bf16.data(), 65536).ok());
  for (uint32_t i = 0; i < 65536; ++i) {
    const float want16 = HalfToFloat(all[i]), wantbf = Bf16ToFloat(all[i]);
    if (std::isnan(want16)) {
      EXPECT_TRUE(std::isnan(f16[i])) << i;
    } else {
      ASSERT_EQ(Bits(f16[i]), Bits(want16)) << "half bits " << i;
    }
    if (std::isnan(wantbf)) {
      EXPECT_TRUE(std::isnan(bf16[i])) << i;
    } else {
      ASSERT_EQ(Bits(bf16[i]), Bits(wantbf)) << "bf16 bits " << i;
    }
  }
}

TEST(QuantTest, F32IsACopy) {
  const std::vector<float> x = {1.0f, -0.0f, std::numeric_limits<float>::infinity(), 1e-40f, 3.5f};
  std::vector<float> y(5);
  ASSERT_TRUE(DequantizeRowRef(GgmlType::kF32, x.data(), y.data(), 5).ok());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Bits(y[i]), Bits(x[i]));
  std::vector<float> q(5);
  ASSERT_TRUE(QuantizeRowRef(GgmlType::kF32, x.data(), q.data(), 5).ok());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Bits(q[i]), Bits(x[i]));
}

// ---------------------------------------------------------------------------------------------
// Round trips. Test rows: several distributions, block by block at very different scales.

std::vector<std::vector<float>> TestRows(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<std::vector<float>> rows;
  auto make = [&](auto gen) {
    std::vector<float> r(n);
    for (int64_t i = 0; i < n; ++i) r[i] = gen(i);
    rows.push_back(std::move(r));
  };
  make([&](int64_t) { return normal(rng); });
  make([&](int64_t) { return uni(rng) * 1e-3f; });
  make([&](int64_t) { return 100.0f * uni(rng); });
  make([&](int64_t) { return 1.0f + 0.5f * (uni(rng) + 1.0f); });  // all positive, offset
  make([&](int64_t) { return -3.0f + 0.25f * uni(rng); });         // all negative
  make([&](int64_t i) { return i % 37 == 5 ? 50.0f : 0.1f * normal(rng); });  // outliers
  make([&](int64_t i) { return i % 37 == 5 ? -50.0f : 0.1f * normal(rng); });
  make([&](int64_t) { return 0.0f; });
  make([&](int64_t) { return 0.75f; });
  make([&](int64_t) { return -2.0f; });
  // Each group of 32 at its own scale: 10^-3 .. 10^2.
  make([&](int64_t i) {
    return normal(rng) * std::pow(10.0f, static_cast<float>((i / 32) % 6) - 3.0f);
  });
  // Sparse: mostly zeros.
  make([&](int64_t i) { return i % 11 == 0 ? normal(rng) : 0.0f; });
  return rows;
}

constexpr double kHalfEps = 1.0 / 2048;  // fp16 relative rounding, 2^-11

// Largest error of storing v as fp16: half an ulp, 2^-11 relative for normal values and 2^-25
// absolute in the subnormal range (tiny scales of rows of ~1e-3 land there).
double HalfErr(double v) { return std::max(std::fabs(v) * kHalfEps, std::ldexp(1.0, -25)); }

struct RoundTrip {
  std::vector<uint8_t> q;
  std::vector<float> y;
};

RoundTrip Quantize(GgmlType type, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  RoundTrip rt;
  const size_t bytes = static_cast<size_t>(RowBytes(type, n));
  rt.q.assign(bytes + 8, 0xAB);  // sentinel bytes after the row
  rt.y.resize(n);
  EXPECT_TRUE(QuantizeRowRef(type, x.data(), rt.q.data(), n).ok());
  for (size_t i = bytes; i < rt.q.size(); ++i) EXPECT_EQ(rt.q[i], 0xAB) << "wrote past the row";
  EXPECT_TRUE(DequantizeRowRef(type, rt.q.data(), rt.y.data(), n).ok());
  return rt;
}

// Checks |x - y| <= bound(block, element) for every element; reports the worst violation.
template <typename Bound>
void ExpectWithin(const std::vector<float>& x, const std::vector<float>& y, int block, Bound bound,
                  const std::string& what) {
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_FALSE(std::isnan(y[i])) << what << " element " << i;
    const double err = std::fabs(static_cast<double>(x[i]) - y[i]);
    const double b = bound(i / block * block, i);
    ASSERT_LE(err, b) << what << " element " << i << ": x=" << x[i] << " y=" << y[i];
  }
}

double AbsMax(const std::vector<float>& x, size_t from, size_t count) {
  double m = 0;
  for (size_t i = from; i < from + count; ++i)
    m = std::max(m, std::fabs(static_cast<double>(x[i])));
  return m;
}

// Q8_0: d = amax/127, q = round(x/d): |err| <= d/2 from rounding, plus |q| <= 127 times the
// fp16 rounding of d.
TEST(QuantRoundTripTest, Q8_0) {
  std::mt19937 rng(1);
  int row_id = 0;
  for (const auto& x : TestRows(32 * 16, rng)) {
    const auto rt = Quantize(GgmlType::kQ8_0, x);
    ExpectWithin(
        x, rt.y, 32,
        [&](size_t b0, size_t) {
          const double amax = AbsMax(x, b0, 32);
          return amax / 127 / 2 + 127 * HalfErr(amax / 127) + 1e-7 * amax;
        },
        "Q8_0 row " + std::to_string(row_id++));
  }
}

// Q4_0: d = max/-8 where max is the signed value of largest magnitude; q = x/d + 8 in 0..15.
// |err| <= |d|/2, except values on the other side of zero beyond 7.5|d|, which clamp to q = 15
// (x = 7d): |err| <= |d|. Plus 8 times the fp16 rounding of d.
TEST(QuantRoundTripTest, Q4_0) {
  std::mt19937 rng(2);
  int row_id = 0;
  for (const auto& x : TestRows(32 * 16, rng)) {
    const auto rt = Quantize(GgmlType::kQ4_0, x);
    ExpectWithin(
        x, rt.y, 32,
        [&](size_t b0, size_t i) {
          double max = 0;
          for (size_t k = b0; k < b0 + 32; ++k) {
            if (std::fabs(x[k]) > std::fabs(max)) max = x[k];
          }
          const double d = std::fabs(max) / 8;
          const bool clamped = x[i] * max < 0 && std::fabs(x[i]) > 7.5 * d;
          return (clamped ? d : d / 2) + 8 * HalfErr(d) + 1e-7 * std::fabs(max);
        },
        "Q4_0 row " + std::to_string(row_id++));
  }
}

// Q4_1: d = (max - min)/15, m = min: |err| <= d/2, plus 15 times the fp16 rounding of d and
// the fp16 rounding of m.
TEST(QuantRoundTripTest, Q4_1) {
  std::mt19937 rng(3);
  int row_id = 0;
  for (const auto& x : TestRows(32 * 16, rng)) {
    const auto rt = Quantize(GgmlType::kQ4_1, x);
    ExpectWithin(
        x, rt.y, 32,
        [&](size_t b0, size_t) {
          const auto [lo, hi] = std::minmax_element(x.begin() + b0, x.begin() + b0 + 32);
          const double d = (static_cast<double>(*hi) - *lo) / 15;
          const double amax = AbsMax(x, b0, 32);
          return d / 2 + 15 * HalfErr(d) + HalfErr(*lo) + 1e-6 * amax;
        },
        "Q4_1 row " + std::to_string(row_id++));
  }
}

// Q4_K: each sub-block j of 32 spans [lo_j, hi_j] (widened to hold 0), step_j = (hi_j-lo_j)/15;
// the super-block stores d = max step / 63 and dmin = max(-lo) / 63 in fp16 and 6-bit
// multiples of them. Rounding x to the 6-bit step costs at most step_j/2 + d/4; when the 6-bit
// step or min rounds the other way, values at the ends clamp to q = 0 or 15, costing at most
// 15 * (d/2) + dmin/2 (and a sub-block whose step rounds to 0 is within that too). Plus fp16
// rounding of d and dmin, multiplied by up to 63.
TEST(QuantRoundTripTest, Q4_K) {
  std::mt19937 rng(4);
  int row_id = 0;
  for (const auto& x : TestRows(256 * 4, rng)) {
    const auto rt = Quantize(GgmlType::kQ4_K, x);
    ExpectWithin(
        x, rt.y, 256,
        [&](size_t b0, size_t i) {
          double max_step = 0, max_min = 0;
          for (int j = 0; j < 8; ++j) {
            double lo = 0, hi = 0;
            for (size_t k = b0 + 32 * j; k < b0 + 32 * j + 32; ++k) {
              lo = std::min<double>(lo, x[k]);
              hi = std::max<double>(hi, x[k]);
            }
            max_step = std::max(max_step, (hi - lo) / 15);
            max_min = std::max(max_min, -lo);
          }
          const size_t s0 = b0 + (i - b0) / 32 * 32;
          double lo = 0, hi = 0;
          for (size_t k = s0; k < s0 + 32; ++k) {
            lo = std::min<double>(lo, x[k]);
            hi = std::max<double>(hi, x[k]);
          }
          const double step = (hi - lo) / 15, d = max_step / 63, dmin = max_min / 63;
          const double fp16 = 15 * 63 * HalfErr(d) + 63 * HalfErr(dmin);
          return std::max(step / 2 + d / 4, 7.5 * d + dmin / 2) + fp16 + 1e-6 * AbsMax(x, b0, 256);
        },
        "Q4_K row " + std::to_string(row_id++));
  }
}

// Q6_K: sub-block s of 16 has scale_s = amax_s/31 stored as an int8 multiple of the fp16
// d = max scale / 127; q = x/step in -32..31. Rounding costs step/2 <= scale_s/2 + d/4; values
// clamping at q = 31 because the 8-bit scale rounded down cost at most 31 * d/2. Plus fp16
// rounding of d times up to 127 * 32.
TEST(QuantRoundTripTest, Q6_K) {
  std::mt19937 rng(5);
  int row_id = 0;
  for (const auto& x : TestRows(256 * 4, rng)) {
    const auto rt = Quantize(GgmlType::kQ6_K, x);
    ExpectWithin(
        x, rt.y, 256,
        [&](size_t b0, size_t i) {
          const double amax = AbsMax(x, b0, 256);
          const double d = amax / 31 / 127;
          const double scale = AbsMax(x, b0 + (i - b0) / 16 * 16, 16) / 31;
          return std::max(scale / 2 + d / 4, 15.5 * d) + 32 * 127 * HalfErr(d) + 1e-6 * amax;
        },
        "Q6_K row " + std::to_string(row_id++));
  }
}

TEST(QuantRoundTripTest, F16AndBf16RoundToNearest) {
  std::mt19937 rng(6);
  for (const auto& x : TestRows(512, rng)) {
    const auto h = Quantize(GgmlType::kF16, x);
    ExpectWithin(
        x, h.y, 1,
        [&](size_t, size_t i) {
          return std::fabs(x[i]) * kHalfEps + std::ldexp(1.0, -25);  // half ULP; subnormal step
        },
        "F16");
    const auto b = Quantize(GgmlType::kBF16, x);
    ExpectWithin(
        x, b.y, 1, [&](size_t, size_t i) { return std::fabs(x[i]) / 256; }, "BF16");
  }
  // Values that are exactly representable come back exactly; ties go to even.
  const std::vector<float> exact = {
      0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, std::ldexp(1.0f, -24), std::ldexp(1.0f, -14)};
  const auto h = Quantize(GgmlType::kF16, exact);
  for (size_t i = 0; i < exact.size(); ++i) EXPECT_EQ(Bits(h.y[i]), Bits(exact[i])) << exact[i];
  const std::vector<float> ties = {1.0f + std::ldexp(1.0f, -11), 1.0f + 3 * std::ldexp(1.0f, -11)};
  const auto t = Quantize(GgmlType::kF16, ties);
  EXPECT_EQ(t.y[0], 1.0f);
  EXPECT_EQ(t.y[1], 1.0f + std::ldexp(1.0f, -9));
  const auto big = Quantize(GgmlType::kF16, {70000.0f, -1e10f});
  EXPECT_EQ(big.y[0], std::numeric_limits<float>::infinity());
  EXPECT_EQ(big.y[1], -std::numeric_limits<float>::infinity());
}

TEST(QuantRoundTripTest, ZeroRowsStayZeroAndFinite) {
  for (GgmlType t : {GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ8_0, GgmlType::kQ4_K,
                     GgmlType::kQ6_K, GgmlType::kF16, GgmlType::kBF16}) {
    const auto rt = Quantize(t, std::vector<float>(512, 0.0f));
    for (float v : rt.y) ASSERT_EQ(v, 0.0f) << TypeName(t);
  }
}

TEST(QuantRoundTripTest, QuantizedBlocksAreStable) {
  // Quantizing a dequantized row again reproduces it: a model written by the test-model tool
  // and converted back and forth does not drift.
  std::mt19937 rng(7);
  for (GgmlType t : {GgmlType::kQ4_1, GgmlType::kQ8_0, GgmlType::kF16, GgmlType::kBF16}) {
    for (const auto& x : TestRows(256, rng)) {
      const auto once = Quantize(t, x);
      const auto twice = Quantize(t, once.y);
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_NEAR(twice.y[i], once.y[i], 1e-6 * (1 + std::fabs(once.y[i])))
            << TypeName(t) << " element " << i;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Errors.

TEST(QuantErrorTest, RowNotAMultipleOfTheBlock) {
  std::vector<uint8_t> buf(4096);
  std::vector<float> f(1024);
  const std::vector<std::pair<GgmlType, int64_t>> cases = {
      {GgmlType::kQ4_0, 33}, {GgmlType::kQ4_1, 16},  {GgmlType::kQ8_0, 31},
      {GgmlType::kQ4_K, 32}, {GgmlType::kQ6_K, 300}, {GgmlType::kQ4_K, 257}};
  for (const auto& [type, n] : cases) {
    SCOPED_TRACE(std::string(TypeName(type)) + " n=" + std::to_string(n));
    const auto d = DequantizeRowRef(type, buf.data(), f.data(), n);
    EXPECT_EQ(d.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(d.message()), HasSubstr(std::string(TypeName(type))));
    EXPECT_THAT(std::string(d.message()), HasSubstr(std::to_string(n)));
    const auto q = QuantizeRowRef(type, f.data(), buf.data(), n);
    EXPECT_EQ(q.code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(QuantErrorTest, UnsupportedTypesAreUnimplemented) {
  std::vector<uint8_t> buf(4096);
  std::vector<float> f(1024);
  for (GgmlType t : {GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ8_1, GgmlType::kQ2_K,
                     GgmlType::kQ3_K, GgmlType::kQ5_K, GgmlType::kQ8_K}) {
    const auto d = DequantizeRowRef(t, buf.data(), f.data(), 256);
    EXPECT_EQ(d.code(), absl::StatusCode::kUnimplemented) << TypeName(t);
    EXPECT_THAT(std::string(d.message()), HasSubstr(std::string(TypeName(t))));
    const auto q = QuantizeRowRef(t, f.data(), buf.data(), 256);
    EXPECT_EQ(q.code(), absl::StatusCode::kUnimplemented) << TypeName(t);
    EXPECT_THAT(std::string(q.message()), HasSubstr(std::string(TypeName(t))));
  }
}

TEST(QuantErrorTest, EmptyRowIsFine) {
  float sentinel = 42.0f;
  EXPECT_TRUE(DequantizeRowRef(GgmlType::kQ4_K, nullptr, &sentinel, 0).ok());
  EXPECT_EQ(sentinel, 42.0f);
  EXPECT_TRUE(QuantizeRowRef(GgmlType::kQ8_0, &sentinel, nullptr, 0).ok());
}

}  // namespace
}  // namespace tandem::gguf
