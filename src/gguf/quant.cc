#include "gguf/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/strings.h"
#include "common/fp16.h"

namespace tandem::gguf {
namespace {

// Rows may start at any address (GGUF allows general.alignment = 1), so blocks and halves are
// copied in and out with memcpy instead of being accessed through misaligned pointers.
template <typename Block>
Block LoadBlock(const void* src, int64_t i) {
  Block b;
  std::memcpy(&b, static_cast<const uint8_t*>(src) + i * sizeof(Block), sizeof b);
  return b;
}

template <typename Block>
void StoreBlock(void* dst, int64_t i, const Block& b) {
  std::memcpy(static_cast<uint8_t*>(dst) + i * sizeof(Block), &b, sizeof b);
}

uint16_t LoadU16(const void* src, int64_t i) {
  uint16_t v;
  std::memcpy(&v, static_cast<const uint8_t*>(src) + 2 * i, 2);
  return v;
}

void StoreU16(void* dst, int64_t i, uint16_t v) {
  std::memcpy(static_cast<uint8_t*>(dst) + 2 * i, &v, 2);
}

void DequantQ4_0(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = LoadBlock<BlockQ4_0>(src, i);
    const float d = Fp16ToFp32(b.d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * ((b.qs[j] & 0x0f) - 8);
      y[j + kQK / 2] = d * ((b.qs[j] >> 4) - 8);
    }
  }
}

void DequantQ4_1(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = LoadBlock<BlockQ4_1>(src, i);
    const float d = Fp16ToFp32(b.d), m = Fp16ToFp32(b.m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * (b.qs[j] & 0x0f) + m;
      y[j + kQK / 2] = d * (b.qs[j] >> 4) + m;
    }
  }
}

void DequantQ8_0(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = LoadBlock<BlockQ8_0>(src, i);
    const float d = Fp16ToFp32(b.d);
    for (int j = 0; j < kQK; ++j) y[j] = d * b.qs[j];
  }
}

void DequantQ4_K(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = LoadBlock<BlockQ4_K>(src, i);
    const float d = Fp16ToFp32(b.d), dmin = Fp16ToFp32(b.dmin);
    const uint8_t* q = b.qs;
    for (int j = 0; j < 8; j += 2, q += 32) {
      int sc0, m0, sc1, m1;
      Q4KScaleMin(b.scales, j, &sc0, &m0);
      Q4KScaleMin(b.scales, j + 1, &sc1, &m1);
      for (int l = 0; l < 32; ++l) *y++ = d * sc0 * (q[l] & 0x0f) - dmin * m0;
      for (int l = 0; l < 32; ++l) *y++ = d * sc1 * (q[l] >> 4) - dmin * m1;
    }
  }
}

// Element e (0..255) of a Q6_K super-block, as its unsigned 6-bit value.
int Q6KValue(const BlockQ6_K& b, int e) {
  const int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
  const uint8_t* ql = b.ql + half * 64;
  const uint8_t qh = b.qh[half * 32 + l];
  const int low = quarter == 0 ? ql[l] & 0x0f
                : quarter == 1 ? ql[l + 32] & 0x0f
                : quarter == 2 ? ql[l] >> 4
                               : ql[l + 32] >> 4;
  return low | (((qh >> (2 * quarter)) & 3) << 4);
}

void DequantQ6_K(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = LoadBlock<BlockQ6_K>(src, i);
    const float d = Fp16ToFp32(b.d);
    for (int e = 0; e < kQK_K; ++e) *y++ = d * b.scales[e / 16] * (Q6KValue(b, e) - 32);
  }
}

void QuantQ8_0(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    BlockQ8_0 b;
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b.d = Fp32ToFp16(d);
    for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(std::lround(x[j] * id));
    StoreBlock(dst, i, b);
  }
}

void QuantQ4_0(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    BlockQ4_0 b;
    float amax = 0, max = 0;  // max: the value with the largest magnitude, signed
    for (int j = 0; j < kQK; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b.d = Fp32ToFp16(d);
    auto q = [&](float v) { return static_cast<uint8_t>(std::min(15, static_cast<int>(v * id + 8.5f))); };
    for (int j = 0; j < kQK / 2; ++j) b.qs[j] = q(x[j]) | (q(x[j + kQK / 2]) << 4);
    StoreBlock(dst, i, b);
  }
}

void QuantQ4_1(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    BlockQ4_1 b;
    float lo = x[0], hi = x[0];
    for (int j = 1; j < kQK; ++j) {
      lo = std::min(lo, x[j]);
      hi = std::max(hi, x[j]);
    }
    const float d = (hi - lo) / 15.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b.d = Fp32ToFp16(d);
    b.m = Fp32ToFp16(lo);
    auto q = [&](float v) {
      return static_cast<uint8_t>(std::clamp(static_cast<int>((v - lo) * id + 0.5f), 0, 15));
    };
    for (int j = 0; j < kQK / 2; ++j) b.qs[j] = q(x[j]) | (q(x[j + kQK / 2]) << 4);
    StoreBlock(dst, i, b);
  }
}

void QuantQ4_K(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    BlockQ4_K b;
    float scale[8], min[8];  // x ~= scale * q - min, with min >= 0
    for (int j = 0; j < 8; ++j) {
      float lo = 0, hi = 0;  // include 0 so that min >= 0 and scale >= 0
      for (int l = 0; l < 32; ++l) {
        lo = std::min(lo, x[32 * j + l]);
        hi = std::max(hi, x[32 * j + l]);
      }
      scale[j] = (hi - lo) / 15.0f;
      min[j] = -lo;
    }
    const float max_scale = *std::max_element(scale, scale + 8);
    const float max_min = *std::max_element(min, min + 8);
    const float d = max_scale / 63.0f, dmin = max_min / 63.0f;
    b.d = Fp32ToFp16(d);
    b.dmin = Fp32ToFp16(dmin);
    int sc[8], m[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = d > 0 ? std::clamp(static_cast<int>(std::lround(scale[j] / d)), 0, 63) : 0;
      m[j] = dmin > 0 ? std::clamp(static_cast<int>(std::lround(min[j] / dmin)), 0, 63) : 0;
    }
    for (int k = 0; k < 4; ++k) {
      b.scales[k] = static_cast<uint8_t>((sc[k] & 63) | ((sc[k + 4] >> 4) << 6));
      b.scales[k + 4] = static_cast<uint8_t>((m[k] & 63) | ((m[k + 4] >> 4) << 6));
      b.scales[k + 8] = static_cast<uint8_t>((sc[k + 4] & 0x0f) | ((m[k + 4] & 0x0f) << 4));
    }
    const float dd = Fp16ToFp32(b.d), ddmin = Fp16ToFp32(b.dmin);
    uint8_t q[kQK_K];
    for (int j = 0; j < 8; ++j) {
      const float s = dd * sc[j], mm = ddmin * m[j];
      for (int l = 0; l < 32; ++l) {
        const float v = s > 0 ? (x[32 * j + l] + mm) / s : 0.0f;
        q[32 * j + l] = static_cast<uint8_t>(std::clamp(static_cast<int>(std::lround(v)), 0, 15));
      }
    }
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        b.qs[32 * c + l] = q[64 * c + l] | (q[64 * c + 32 + l] << 4);
      }
    }
    StoreBlock(dst, i, b);
  }
}

void QuantQ6_K(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    BlockQ6_K b;
    float scale[16];
    for (int s = 0; s < 16; ++s) {
      float amax = 0;
      for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * s + l]));
      scale[s] = amax / 31.0f;
    }
    const float max_scale = *std::max_element(scale, scale + 16);
    const float d = max_scale / 127.0f;
    b.d = Fp32ToFp16(d);
    const float dd = Fp16ToFp32(b.d);
    int q[kQK_K];
    for (int s = 0; s < 16; ++s) {
      const int sc = dd > 0 ? std::clamp(static_cast<int>(std::lround(scale[s] / dd)), -128, 127) : 0;
      b.scales[s] = static_cast<int8_t>(sc);
      const float step = dd * sc;
      for (int l = 0; l < 16; ++l) {
        const int v = step != 0 ? static_cast<int>(std::lround(x[16 * s + l] / step)) : 0;
        q[16 * s + l] = std::clamp(v, -32, 31) + 32;
      }
    }
    for (int half = 0; half < 2; ++half) {
      const int* qq = q + 128 * half;
      uint8_t* ql = b.ql + 64 * half;
      uint8_t* qh = b.qh + 32 * half;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((qq[l] & 0x0f) | ((qq[l + 64] & 0x0f) << 4));
        ql[l + 32] = static_cast<uint8_t>((qq[l + 32] & 0x0f) | ((qq[l + 96] & 0x0f) << 4));
        qh[l] = static_cast<uint8_t>((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) |
                                     ((qq[l + 64] >> 4) << 4) | ((qq[l + 96] >> 4) << 6));
      }
    }
    StoreBlock(dst, i, b);
  }
}

absl::Status CheckLength(GgmlType type, int64_t n) {
  const TypeTraits& t = Traits(type);
  if (!t.supported) return absl::UnimplementedError(StrCat("tensor type ", t.name, " is not supported"));
  if (n % t.block_size != 0) {
    return absl::InvalidArgumentError(
        StrCat(n, " elements is not a multiple of the ", t.name, " block size ", t.block_size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status DequantizeRowRef(GgmlType type, const void* src, float* dst, int64_t n) {
  if (auto s = CheckLength(type, n); !s.ok()) return s;
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      break;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Fp16ToFp32(LoadU16(src, i));
      break;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFp32(LoadU16(src, i));
      break;
    case GgmlType::kQ4_0: DequantQ4_0(src, dst, n / kQK); break;
    case GgmlType::kQ4_1: DequantQ4_1(src, dst, n / kQK); break;
    case GgmlType::kQ8_0: DequantQ8_0(src, dst, n / kQK); break;
    case GgmlType::kQ4_K: DequantQ4_K(src, dst, n / kQK_K); break;
    case GgmlType::kQ6_K: DequantQ6_K(src, dst, n / kQK_K); break;
    default:
      return absl::UnimplementedError(StrCat("no dequantizer for ", TypeName(type)));
  }
  return absl::OkStatus();
}

absl::Status QuantizeRowRef(GgmlType type, const float* src, void* dst, int64_t n) {
  if (auto s = CheckLength(type, n); !s.ok()) return s;
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      break;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) StoreU16(dst, i, Fp32ToFp16(src[i]));
      break;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) StoreU16(dst, i, Fp32ToBf16(src[i]));
      break;
    case GgmlType::kQ4_0: QuantQ4_0(src, dst, n / kQK); break;
    case GgmlType::kQ4_1: QuantQ4_1(src, dst, n / kQK); break;
    case GgmlType::kQ8_0: QuantQ8_0(src, dst, n / kQK); break;
    case GgmlType::kQ4_K: QuantQ4_K(src, dst, n / kQK_K); break;
    case GgmlType::kQ6_K: QuantQ6_K(src, dst, n / kQK_K); break;
    default:
      return absl::UnimplementedError(StrCat("no quantizer for ", TypeName(type)));
  }
  return absl::OkStatus();
}

}  // namespace tandem::gguf
