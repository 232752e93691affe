// Row-wise and element-wise kernels of the llama forward pass on f32 activations: RMSNorm
// (optionally fused with the residual add), SwiGLU, bias add, embedding lookup from a bf16 table,
// gathering logit rows, and f32 -> bf16 conversion of GEMM inputs.
#pragma once

#include <cstdint>

#include "kernels/kernel_types.h"

struct __nv_bfloat16;

namespace tandem::kernels {

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, for `rows` rows of `cols` floats.
// Strides are in elements. One block of 256 threads per row.
int LaunchRmsNorm(const float* x, int64_t x_stride, const float* weight, float eps, float* out,
                  int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream);

// residual[r] += delta[r]; out[r] = rmsnorm(residual[r]) * weight. In place on `residual`.
int LaunchAddRmsNorm(float* residual, int64_t res_stride, const float* delta,
                     int64_t delta_stride, const float* weight, float eps, float* out,
                     int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream);

// out = silu(gate) * up, element-wise over rows x cols (each with its own row stride).
int LaunchSwiGlu(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                 float* out, int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream);

// x[r] += bias for rows x cols (bias: cols floats on the device).
int LaunchAddBias(float* x, int64_t x_stride, const float* bias, int64_t rows, int64_t cols,
                  cudaStream_t stream);

// out[i] = table[tokens[i]] (bf16 -> f32), rows x cols; tokens on the device. Tokens outside
// [0, vocab) produce a zero row (the backend validates them before; this keeps memory safe).
int LaunchEmbed(const __nv_bfloat16* table, int64_t vocab, const int32_t* tokens, float* out,
                int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream);

// out[j] = x[rows_idx[j]] for j < n (f32 rows of cols); rows_idx on the device.
int LaunchGatherRows(const float* x, int64_t x_stride, const int32_t* rows_idx, float* out,
                     int64_t out_stride, int64_t n, int64_t cols, cudaStream_t stream);

// dst (dense, rows x cols bf16) = src (f32, row stride src_stride), round to nearest even.
int LaunchF32ToBf16(const float* src, int64_t src_stride, __nv_bfloat16* dst, int64_t rows,
                    int64_t cols, cudaStream_t stream);

// dst[i] = bf16(scale * u), u uniform in [-1, 1) from a counter hash of (seed, i): random
// weights made on the device (benchmarks).
int LaunchFillRandomBf16(__nv_bfloat16* dst, int64_t n, uint64_t seed, float scale,
                         cudaStream_t stream);

}  // namespace tandem::kernels
