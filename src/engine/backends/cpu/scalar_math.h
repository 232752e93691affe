// Scalar definitions of the arithmetic recipes every kernel table shares, so that the scalar
// table (and any scalar tail in a SIMD table) produces the same bits as the vector code.
#pragma once

#include <cmath>
#include <cstdint>

namespace tandem::cpu::recipe {

// exp(x): clamp, x = n ln2 + r (Cody-Waite split, fma), degree-6 polynomial by fma Horner,
// scaled by 2^n. Vector versions in simd_math.h perform exactly these operations.
inline float Exp(float x) {
  x = std::fmin(std::fmax(x, -87.33f), 88.72f);
  const float n = std::nearbyint(x * 1.44269504088896341f);
  float r = std::fma(-n, 0.693145751953125f, x);
  r = std::fma(-n, 1.428606765330187045e-06f, r);
  float p = 1.0f / 720;
  p = std::fma(p, r, 1.0f / 120);
  p = std::fma(p, r, 1.0f / 24);
  p = std::fma(p, r, 1.0f / 6);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  return std::ldexp(p, static_cast<int>(n));
}

inline float Silu(float g) { return g / (1.0f + Exp(-g)); }

// The fixed reduction of 8 lanes: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
inline float Sum8(const float* l) {
  const float a0 = l[4] + l[0], a1 = l[5] + l[1], a2 = l[6] + l[2], a3 = l[7] + l[3];
  const float b0 = a0 + a2, b1 = a1 + a3;
  return b0 + b1;
}
inline double Sum8(const double* l) {
  const double a0 = l[4] + l[0], a1 = l[5] + l[1], a2 = l[6] + l[2], a3 = l[7] + l[3];
  return (a0 + a2) + (a1 + a3);
}
// 16 lanes: first l[i] + l[i+8], then Sum8.
inline float Sum16(const float* l) {
  float h[8];
  for (int i = 0; i < 8; ++i) h[i] = l[i] + l[i + 8];
  return Sum8(h);
}

}  // namespace tandem::cpu::recipe
