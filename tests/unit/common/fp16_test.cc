#include "common/fp16.h"

#include <immintrin.h>

#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace tandem {
namespace {

// The portable conversions must agree bit for bit with the hardware (F16C) ones, which the
// SIMD kernels use: a model's weights would otherwise dequantize differently per code path.
__attribute__((target("f16c"))) uint16_t HwToHalf(float f) { return _cvtss_sh(f, 0); }
__attribute__((target("f16c"))) float HwFromHalf(uint16_t h) { return _cvtsh_ss(h); }

bool HasF16c() { return __builtin_cpu_supports("f16c"); }

TEST(Fp16Test, EveryHalfDecodesLikeHardware) {
  if (!HasF16c()) GTEST_SKIP() << "CPU lacks F16C";
  for (uint32_t h = 0; h < 65536; ++h) {
    const float want = HwFromHalf(static_cast<uint16_t>(h));
    const float got = Fp16ToFp32(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(Fp32ToBits(want), Fp32ToBits(got)) << "half bits " << h;
    }
  }
}

TEST(Fp16Test, EncodesLikeHardwareIncludingSubnormalsAndOverflow) {
  if (!HasF16c()) GTEST_SKIP() << "CPU lacks F16C";
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2'000'000; ++i) {
    const float f = Fp32FromBits(bits(rng));
    if (std::isnan(f)) continue;
    ASSERT_EQ(HwToHalf(f), Fp32ToFp16(f)) << "float bits " << Fp32ToBits(f);
  }
  // Every half value's exact float, and the midpoints between neighbours (ties to even).
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const float a = Fp16ToFp32(static_cast<uint16_t>(h));
    const float b = Fp16ToFp32(static_cast<uint16_t>(h + 1));
    ASSERT_EQ(HwToHalf(a), Fp32ToFp16(a));
    ASSERT_EQ(HwToHalf(-a), Fp32ToFp16(-a));
    const float mid = (a + b) / 2;
    ASSERT_EQ(HwToHalf(mid), Fp32ToFp16(mid)) << "midpoint after " << h;
  }
}

TEST(Bf16Test, RoundsToNearestEvenAndKeepsNan) {
  EXPECT_EQ(Fp32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFp32(0x3f80), 1.0f);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even -> 1.0.
  EXPECT_EQ(Fp32ToBf16(1.0f + 1.0f / 256), 0x3f80);
  EXPECT_EQ(Fp32ToBf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_TRUE(std::isnan(Bf16ToFp32(Fp32ToBf16(std::nanf("")))));
}

}  // namespace
}  // namespace tandem
