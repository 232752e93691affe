// Device-side conversion between f32 and the KV cache's element types (internal to the
// kernels library).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace tandem::kernels {

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

// Rounds v to the element type T and back (queries are rounded as the keys are).
template <typename T>
__device__ __forceinline__ float RoundTo(float v) { return ToFloat(FromFloat<T>(v)); }

}  // namespace tandem::kernels
