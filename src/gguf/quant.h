// Block layouts of the quantized GGUF types tandem computes with, and plain scalar reference
// conversions. The references follow the format definitions literally; SIMD kernels elsewhere
// are tested against them.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gguf/ggml_type.h"

namespace tandem::gguf {

constexpr int kQK = 32;    // block size of the legacy formats
constexpr int kQK_K = 256;  // super-block size of the K formats

// x = d * (q - 8), q in 0..15; element j in the low nibble of qs[j], j+16 in the high one.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
// x = d * q + m, q in 0..15, same nibble order as Q4_0.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
// x = d * q, q in -128..127.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
// Eight sub-blocks of 32: x = d * sc[j] * q - dmin * m[j]; 6-bit sc/m packed in `scales`.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};
// Sixteen sub-blocks of 16: x = d * scales[i] * (q - 32), q 6-bit split in ql (4) and qh (2).
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ6_K) == 210);

// Scale and min of Q4_K sub-block j (0..7), 6-bit each.
inline void Q4KScaleMin(const uint8_t* scales, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4);
    *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// Reference dequantization of `n` elements (a multiple of the block size). Fails for types
// tandem does not compute with.
absl::Status DequantizeRowRef(GgmlType type, const void* src, float* dst, int64_t n);

// Reference quantization of `n` elements, used to write test models. Supported: every type
// DequantizeRowRef supports. K-format quantizers are simple (not error-optimal).
absl::Status QuantizeRowRef(GgmlType type, const float* src, void* dst, int64_t n);

}  // namespace tandem::gguf
