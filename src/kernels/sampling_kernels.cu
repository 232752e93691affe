#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/sampling_kernels.h"

namespace tandem::kernels {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

__host__ __device__ uint64_t SplitMix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

__host__ __device__ double Uniform(uint64_t seed, uint64_t counter) {
  const uint64_t z = SplitMix64(seed ^ SplitMix64(counter));
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

// Order-preserving map of a float to an unsigned key (larger float, larger key).
__device__ __forceinline__ uint32_t OrderedKey(float x) {
  const uint32_t u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Fixed-order block reductions (the same tree on every run): warp xor-shuffles, then warp 0
// over the warp partials. Every thread gets the result.
__device__ float BlockSum(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x % 32 < kWarps ? scratch[threadIdx.x % 32] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ float BlockMax(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x % 32 < kWarps ? scratch[threadIdx.x % 32] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Largest (value, lowest index) pair.
__device__ void BlockArgMax(float* v, int64_t* i, float* sv, int64_t* si) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, *v, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, *i, o);
    if (ov > *v || (ov == *v && oi < *i)) {
      *v = ov;
      *i = oi;
    }
  }
  __syncthreads();
  if (threadIdx.x % 32 == 0) {
    sv[threadIdx.x / 32] = *v;
    si[threadIdx.x / 32] = *i;
  }
  __syncthreads();
  const int lane = threadIdx.x % 32;
  *v = lane < kWarps ? sv[lane] : -INFINITY;
  *i = lane < kWarps ? si[lane] : INT64_MAX;
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, *v, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, *i, o);
    if (ov > *v || (ov == *v && oi < *i)) {
      *v = ov;
      *i = oi;
    }
  }
}

// Exclusive prefix sum over threads in thread order; *total gets the sum.
__device__ float BlockExclusiveScan(float v, float* scratch, float* total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float inc = v;
  for (int o = 1; o < 32; o <<= 1) {
    const float n = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += n;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = inc;
  __syncthreads();
  if (warp == 0) {
    float w = lane < kWarps ? scratch[lane] : 0.0f;
    for (int o = 1; o < 32; o <<= 1) {
      const float n = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += n;
    }
    if (lane < kWarps) scratch[32 + lane] = w;  // inclusive scan of the warp totals
  }
  __syncthreads();
  *total = scratch[32 + kWarps - 1];
  return (warp > 0 ? scratch[32 + warp - 1] : 0.0f) + inc - v;
}

// Grid: one block per row, kThreads threads.
__global__ void SampleKernel(SampleArgs a) {
  __shared__ float scratch[64];
  __shared__ float sv[kWarps];
  __shared__ int64_t si[kWarps];
  __shared__ float pre[kThreads], mass[kThreads];
  __shared__ int owner;
  const int64_t r = blockIdx.x, V = a.vocab;
  const float* x = a.logits + r * a.stride;
  const float temp = a.temperature[r];
  const int top_k = a.top_k[r];
  const float top_p = a.top_p[r];

  if (!(temp > 0.0f) || top_k == 1) {
    float bv = -INFINITY;
    int64_t bi = INT64_MAX;
    for (int64_t i = threadIdx.x; i < V; i += kThreads) {
      if (x[i] > bv || (x[i] == bv && i < bi)) {
        bv = x[i];
        bi = i;
      }
    }
    BlockArgMax(&bv, &bi, sv, si);
    if (threadIdx.x == 0) a.out[r] = static_cast<int32_t>(bi == INT64_MAX ? 0 : bi);
    return;
  }
  const float inv_t = 1.0f / temp;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < V; i += kThreads) mx = fmaxf(mx, x[i] * inv_t);
  mx = BlockMax(mx, scratch);

  // Mass (or count) of the tokens whose key is >= t, in a fixed order.
  auto mass_at_least = [&](uint32_t t, bool count) {
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < V; i += kThreads) {
      const float y = x[i] * inv_t;
      if (OrderedKey(y) >= t) s += count ? 1.0f : __expf(y - mx);
    }
    return BlockSum(s, scratch);
  };
  // Largest t in [lo, 2^32) with f(t) >= target (f is non-increasing; f(lo) >= target).
  auto search = [&](uint32_t lo, float target, bool count) {
    uint64_t l = lo, h = 1ull << 32;
    while (h - l > 1) {
      const uint64_t mid = (l + h) / 2;
      if (mass_at_least(static_cast<uint32_t>(mid), count) >= target) {
        l = mid;
      } else {
        h = mid;
      }
    }
    return static_cast<uint32_t>(l);
  };

  uint32_t cut = 0;
  if (top_k > 0 && top_k < V) cut = search(0, static_cast<float>(top_k), /*count=*/true);
  if (top_p < 1.0f) {
    const float kept = mass_at_least(cut, /*count=*/false);
    cut = search(cut, top_p * kept, /*count=*/false);
  }

  // Draw: thread t owns ids [t * chunk, (t + 1) * chunk) and walks them in id order.
  const int64_t chunk = (V + kThreads - 1) / kThreads;
  const int64_t begin = threadIdx.x * chunk, end = begin + chunk < V ? begin + chunk : V;
  float mine = 0.0f;
  int my_last = -1;
  for (int64_t i = begin; i < end; ++i) {
    const float y = x[i] * inv_t;
    if (OrderedKey(y) >= cut) {
      mine += __expf(y - mx);
      my_last = static_cast<int>(i);
    }
  }
  float total;
  const float prefix = BlockExclusiveScan(mine, scratch, &total);
  pre[threadIdx.x] = prefix;
  mass[threadIdx.x] = mine;
  const float u = static_cast<float>(Uniform(a.seeds[r], a.counters[r]) * total);
  __syncthreads();
  // One thread picks the owner of u: the last thread with kept mass whose prefix is <= u.
  // (Prefixes are rounded sums, so ownership is decided from one array, never by each thread
  // comparing its own bounds, which could leave u to no thread or to two.) The max token is
  // always kept, so some thread has mass and a prefix of 0 before it.
  if (threadIdx.x == 0) {
    int o = -1;
    for (int t = 0; t < kThreads; ++t) {
      if (mass[t] > 0.0f && pre[t] <= u) o = t;
    }
    owner = o;
  }
  __syncthreads();
  if (static_cast<int>(threadIdx.x) == owner) {
    float rest = u - prefix;
    int pick = my_last;  // rounding left u past the end of this range: its last kept token
    for (int64_t i = begin; i < end; ++i) {
      const float y = x[i] * inv_t;
      if (OrderedKey(y) < cut) continue;
      rest -= __expf(y - mx);
      if (rest < 0.0f) {
        pick = static_cast<int>(i);
        break;
      }
    }
    a.out[r] = pick;
  }
  if (threadIdx.x == 0 && owner < 0) a.out[r] = 0;  // unreachable: the max token is kept
}

}  // namespace

double SampleUniform(uint64_t seed, uint64_t counter) { return Uniform(seed, counter); }

int LaunchSampleTokens(const SampleArgs& a, cudaStream_t stream) {
  if (a.rows <= 0) return 0;
  if (a.vocab <= 0 || a.vocab > INT32_MAX) return static_cast<int>(cudaErrorInvalidValue);
  SampleKernel<<<static_cast<unsigned>(a.rows), kThreads, 0, stream>>>(a);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace tandem::kernels
