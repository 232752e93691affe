#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/elementwise_kernels.h"

namespace tandem::kernels {
namespace {

constexpr int kNormThreads = 256;

// Sum of `v` over the block (blockDim.x a multiple of 32, <= 1024); every thread gets it.
__device__ float BlockSum(float v, float* scratch /* [32] */) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = lane < warps ? scratch[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Grid: one block per row. The residual add (when delta != nullptr) is written back before
// normalising, as the CPU backend does.
__global__ void RmsNormKernel(float* x, int64_t x_stride, const float* delta, int64_t d_stride,
                              const float* w, float eps, float* out, int64_t out_stride,
                              int64_t cols) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float* xr = x + r * x_stride;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = xr[c];
    if (delta != nullptr) {
      v += delta[r * d_stride + c];
      xr[c] = v;
    }
    ss += v * v;
  }
  ss = BlockSum(ss, scratch);
  const float inv = rsqrtf(ss / static_cast<float>(cols) + eps);
  float* o = out + r * out_stride;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = xr[c] * inv * w[c];
}

__global__ void SwiGluKernel(const float* g, int64_t gs, const float* u, int64_t us, float* o,
                             int64_t os, int64_t cols) {
  const int64_t r = blockIdx.y;
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols;
       c += int64_t{gridDim.x} * blockDim.x) {
    const float gv = g[r * gs + c];
    o[r * os + c] = gv / (1.0f + expf(-gv)) * u[r * us + c];
  }
}

__global__ void AddBiasKernel(float* x, int64_t xs, const float* bias, int64_t cols) {
  const int64_t r = blockIdx.y;
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols;
       c += int64_t{gridDim.x} * blockDim.x) {
    x[r * xs + c] += bias[c];
  }
}

__global__ void EmbedKernel(const __nv_bfloat16* table, int64_t vocab, const int32_t* tokens,
                            float* out, int64_t os, int64_t cols) {
  const int64_t r = blockIdx.y;
  const int32_t tok = tokens[r];
  const bool valid = tok >= 0 && tok < vocab;
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols;
       c += int64_t{gridDim.x} * blockDim.x) {
    out[r * os + c] = valid ? __bfloat162float(table[tok * cols + c]) : 0.0f;
  }
}

__global__ void GatherRowsKernel(const float* x, int64_t xs, const int32_t* idx, float* out,
                                 int64_t os, int64_t cols) {
  const int64_t j = blockIdx.y;
  const int64_t src = idx[j];
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols;
       c += int64_t{gridDim.x} * blockDim.x) {
    out[j * os + c] = x[src * xs + c];
  }
}

__global__ void F32ToBf16Kernel(const float* src, int64_t ss, __nv_bfloat16* dst, int64_t cols) {
  const int64_t r = blockIdx.y;
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols;
       c += int64_t{gridDim.x} * blockDim.x) {
    dst[r * cols + c] = __float2bfloat16_rn(src[r * ss + c]);
  }
}

__global__ void FillRandomBf16Kernel(__nv_bfloat16* dst, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    uint64_t z = seed + static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    dst[i] = __float2bfloat16_rn(scale * (2.0f * u - 1.0f));
  }
}

// Grid for the element-wise kernels: y = rows (<= 65535 per launch), x = column chunks.
dim3 RowGrid(int64_t rows, int64_t cols, int threads) {
  const int64_t x = (cols + threads - 1) / threads;
  return dim3(static_cast<unsigned>(x < 64 ? x : 64), static_cast<unsigned>(rows));
}

constexpr int64_t kMaxGridY = 65535;

int LastError() { return static_cast<int>(cudaGetLastError()); }

}  // namespace

int LaunchRmsNorm(const float* x, int64_t x_stride, const float* weight, float eps, float* out,
                  int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0) return 0;
  // x is not written when delta is null; the kernel takes a mutable pointer for the fused form.
  RmsNormKernel<<<static_cast<unsigned>(rows), kNormThreads, 0, stream>>>(
      const_cast<float*>(x), x_stride, nullptr, 0, weight, eps, out, out_stride, cols);
  return LastError();
}

int LaunchAddRmsNorm(float* residual, int64_t res_stride, const float* delta,
                     int64_t delta_stride, const float* weight, float eps, float* out,
                     int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0) return 0;
  RmsNormKernel<<<static_cast<unsigned>(rows), kNormThreads, 0, stream>>>(
      residual, res_stride, delta, delta_stride, weight, eps, out, out_stride, cols);
  return LastError();
}

int LaunchSwiGlu(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                 float* out, int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream) {
  for (int64_t r0 = 0; r0 < rows; r0 += kMaxGridY) {
    const int64_t n = rows - r0 < kMaxGridY ? rows - r0 : kMaxGridY;
    SwiGluKernel<<<RowGrid(n, cols, 256), 256, 0, stream>>>(
        gate + r0 * gate_stride, gate_stride, up + r0 * up_stride, up_stride,
        out + r0 * out_stride, out_stride, cols);
  }
  return LastError();
}

int LaunchAddBias(float* x, int64_t x_stride, const float* bias, int64_t rows, int64_t cols,
                  cudaStream_t stream) {
  for (int64_t r0 = 0; r0 < rows; r0 += kMaxGridY) {
    const int64_t n = rows - r0 < kMaxGridY ? rows - r0 : kMaxGridY;
    AddBiasKernel<<<RowGrid(n, cols, 256), 256, 0, stream>>>(x + r0 * x_stride, x_stride, bias, cols);
  }
  return LastError();
}

int LaunchEmbed(const __nv_bfloat16* table, int64_t vocab, const int32_t* tokens, float* out,
                int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream) {
  for (int64_t r0 = 0; r0 < rows; r0 += kMaxGridY) {
    const int64_t n = rows - r0 < kMaxGridY ? rows - r0 : kMaxGridY;
    EmbedKernel<<<RowGrid(n, cols, 256), 256, 0, stream>>>(table, vocab, tokens + r0,
                                                           out + r0 * out_stride, out_stride, cols);
  }
  return LastError();
}

int LaunchGatherRows(const float* x, int64_t x_stride, const int32_t* rows_idx, float* out,
                     int64_t out_stride, int64_t n, int64_t cols, cudaStream_t stream) {
  for (int64_t r0 = 0; r0 < n; r0 += kMaxGridY) {
    const int64_t m = n - r0 < kMaxGridY ? n - r0 : kMaxGridY;
    GatherRowsKernel<<<RowGrid(m, cols, 256), 256, 0, stream>>>(
        x, x_stride, rows_idx + r0, out + r0 * out_stride, out_stride, cols);
  }
  return LastError();
}

int LaunchF32ToBf16(const float* src, int64_t src_stride, __nv_bfloat16* dst, int64_t rows,
                    int64_t cols, cudaStream_t stream) {
  for (int64_t r0 = 0; r0 < rows; r0 += kMaxGridY) {
    const int64_t n = rows - r0 < kMaxGridY ? rows - r0 : kMaxGridY;
    F32ToBf16Kernel<<<RowGrid(n, cols, 256), 256, 0, stream>>>(src + r0 * src_stride, src_stride,
                                                               dst + r0 * cols, cols);
  }
  return LastError();
}

int LaunchFillRandomBf16(__nv_bfloat16* dst, int64_t n, uint64_t seed, float scale,
                         cudaStream_t stream) {
  if (n <= 0) return 0;
  const int64_t blocks = (n + 255) / 256;
  FillRandomBf16Kernel<<<static_cast<unsigned>(blocks < 4096 ? blocks : 4096), 256, 0, stream>>>(
      dst, n, seed, scale);
  return LastError();
}

}  // namespace tandem::kernels
