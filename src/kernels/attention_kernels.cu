#include <cuda_runtime.h>

#include <cmath>

#include "kernels/attention_kernels.h"
#include "kernels/kv_elem.cuh"

namespace tandem::kernels {
namespace {

constexpr int kThreads = 128;  // both kernels: 4 warps
constexpr int kWarps = kThreads / 32;
constexpr int kPrefillKeys = 32;  // keys per shared-memory tile (prefill)
constexpr int kPrefillVectors = 16;  // query vectors (row, head) per prefill tile, at least

__device__ __forceinline__ int64_t KeyOffset(const KvGeometry& g, int32_t block, int layer,
                                             int kv_head, int off) {
  return (static_cast<int64_t>(block) * g.num_layers + layer) * g.block_layer_elems() +
         static_cast<int64_t>(kv_head) * g.head_elems() + static_cast<int64_t>(off) * g.head_dim;
}

// Value offset = key offset + this.
__device__ __forceinline__ int64_t ValuePart(const KvGeometry& g) {
  return static_cast<int64_t>(g.num_kv_heads) * g.head_elems();
}

bool IsPow2(int x) { return x > 0 && (x & (x - 1)) == 0; }

// ---- decode ----------------------------------------------------------------------------
// Grid (kv_heads, rows, splits), kThreads threads. Dynamic shared memory: q [G][hd],
// probabilities [G][kDecodePartition], max [G], sum [G], partial acc [KG][G][hd].
template <typename T>
__global__ void DecodeAttentionKernel(AttentionArgs a, const int32_t* rows, int num_splits,
                                      float* ws, int64_t ws_rows) {
  const int kvh = blockIdx.x, split = blockIdx.z;
  const int64_t ri = blockIdx.y;
  const int row = rows[ri];
  const KvGeometry& geo = a.geo;
  const int hd = geo.head_dim, bs = geo.block_size, G = a.num_heads / geo.num_kv_heads;
  const int visible = a.positions[row] + 1;
  const int key_begin = split * kDecodePartition;
  if (key_begin >= visible) return;  // the reduce ignores splits past the row's keys
  const int n = min(visible - key_begin, kDecodePartition);
  const int KG = hd >= kThreads ? 1 : kThreads / hd;

  extern __shared__ float sm[];
  float* q_s = sm;
  float* p_s = q_s + G * hd;
  float* m_s = p_s + G * kDecodePartition;
  float* l_s = m_s + G;
  float* red_s = l_s + G;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  for (int idx = tid; idx < G * hd; idx += kThreads) {
    const int g = idx / hd, d = idx % hd;
    q_s[idx] = RoundTo<T>(a.q[row * a.q_stride + static_cast<int64_t>(kvh * G + g) * hd + d]);
  }
  __syncthreads();

  const T* cache = static_cast<const T*>(a.cache);
  const int32_t* bt = a.block_tables + a.seq_block_offset[a.row_seq[row]];

  // Scores: LPK lanes share one key (8 dims each, one 16-byte load), KPW keys per warp pass.
  const int LPK = hd / 8, KPW = 32 / LPK;
  const int sub = lane / LPK, part = lane % LPK;
  for (int kb = warp * KPW; kb < n; kb += kWarps * KPW) {
    const int j = kb + sub;
    const bool active = j < n;
    float kf[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) kf[e] = 0.0f;
    if (active) {
      const int key = key_begin + j;
      const T* kp = cache + KeyOffset(geo, bt[key / bs], a.layer, kvh, key % bs) + part * 8;
      const uint4 raw = *reinterpret_cast<const uint4*>(kp);
      const T* kv = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int e = 0; e < 8; ++e) kf[e] = ToFloat(kv[e]);
    }
    for (int g = 0; g < G; ++g) {
      const float* qg = q_s + g * hd + part * 8;
      float p = 0.0f;
#pragma unroll
      for (int e = 0; e < 8; ++e) p += qg[e] * kf[e];
      for (int o = LPK / 2; o > 0; o >>= 1) p += __shfl_xor_sync(0xffffffffu, p, o);
      if (active && part == 0) p_s[g * kDecodePartition + j] = p * a.scale;
    }
  }
  __syncthreads();

  // Softmax pieces per head: warp w takes heads w, w + 4, ...
  for (int g = warp; g < G; g += kWarps) {
    float* s = p_s + g * kDecodePartition;
    float m = -INFINITY;
    for (int j = lane; j < n; j += 32) m = fmaxf(m, s[j]);
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float l = 0.0f;
    for (int j = lane; j < n; j += 32) {
      const float e = __expf(s[j] - m);
      s[j] = e;
      l += e;
    }
    for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
    if (lane == 0) {
      m_s[g] = m;
      l_s[g] = l;
    }
  }
  __syncthreads();

  // Weighted values: thread (kg, d) sums keys kg, kg + KG, ... for every head of the group.
  const int kg = hd >= kThreads ? 0 : tid / hd;
  if (kg < KG) {
    for (int d = hd >= kThreads ? tid : tid % hd; d < hd; d += kThreads) {
      float acc[kMaxGroup];
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) acc[g] = 0.0f;
      for (int j = kg; j < n; j += KG) {
        const int key = key_begin + j;
        const float v =
            ToFloat(cache[KeyOffset(geo, bt[key / bs], a.layer, kvh, key % bs) + ValuePart(geo) + d]);
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g) {
          if (g < G) acc[g] += p_s[g * kDecodePartition + j] * v;
        }
      }
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g < G) red_s[(kg * G + g) * hd + d] = acc[g];
      }
      if (hd < kThreads) break;  // one d per thread when several key groups share the block
    }
  }
  __syncthreads();

  const int S = num_splits;
  for (int idx = tid; idx < G * hd; idx += kThreads) {
    const int g = idx / hd, d = idx % hd;
    float o = 0.0f;
    for (int k = 0; k < KG; ++k) o += red_s[(k * G + g) * hd + d];
    const int head = kvh * G + g;
    if (S == 1) {
      a.out[row * a.out_stride + static_cast<int64_t>(head) * hd + d] = o / l_s[g];
    } else {
      const int64_t slot = (ri * a.num_heads + head) * S + split;
      ws[slot * hd + d] = o;
      if (d == 0) {
        float* ml = ws + ws_rows * a.num_heads * S * hd;
        ml[slot * 2] = m_s[g];
        ml[slot * 2 + 1] = l_s[g];
      }
    }
  }
}

// Grid (num_heads, rows), head_dim threads: merges a row's splits (log-sum-exp rescaling).
__global__ void DecodeReduceKernel(AttentionArgs a, const int32_t* rows, int num_splits,
                                   const float* ws, int64_t ws_rows) {
  const int head = blockIdx.x, d = threadIdx.x, hd = a.geo.head_dim;
  const int64_t ri = blockIdx.y;
  const int row = rows[ri];
  const int visible = a.positions[row] + 1;
  const int ns = (visible + kDecodePartition - 1) / kDecodePartition;
  const int64_t base = (ri * a.num_heads + head) * num_splits;
  const float* ml = ws + ws_rows * a.num_heads * num_splits * hd;
  float m = -INFINITY;
  for (int z = 0; z < ns; ++z) m = fmaxf(m, ml[(base + z) * 2]);
  float l = 0.0f, o = 0.0f;
  for (int z = 0; z < ns; ++z) {
    const float w = __expf(ml[(base + z) * 2] - m);
    l += ml[(base + z) * 2 + 1] * w;
    o += ws[(base + z) * hd + d] * w;
  }
  a.out[row * a.out_stride + static_cast<int64_t>(head) * hd + d] = o / l;
}

// ---- prefill ---------------------------------------------------------------------------
// Grid (kv_heads, tiles), kThreads threads. A tile is up to R consecutive rows of one sequence
// times the G heads of this KV head: NV = R * G query vectors, vector v = (row v / G, head
// kvh * G + v % G). Dynamic shared memory: q [NV][hd], k [32][hd + 1] (padded: the score loop
// reads a column across keys), v [32][hd], p [NV][32], m, l, alpha [NV], acc [NV][hd].
template <typename T>
__global__ void PrefillAttentionKernel(AttentionArgs a, const int32_t* tiles, int max_vectors) {
  const int kvh = blockIdx.x;
  const int first = tiles[2 * blockIdx.y], count = tiles[2 * blockIdx.y + 1];
  const KvGeometry& geo = a.geo;
  const int hd = geo.head_dim, bs = geo.block_size, G = a.num_heads / geo.num_kv_heads;
  const int nv = count * G, NV = max_vectors, TK = kPrefillKeys;

  extern __shared__ float sm[];
  float* q_s = sm;
  float* k_s = q_s + NV * hd;
  float* v_s = k_s + TK * (hd + 1);
  float* p_s = v_s + TK * hd;
  float* m_s = p_s + NV * TK;
  float* l_s = m_s + NV;
  float* al_s = l_s + NV;
  float* acc_s = al_s + NV;

  const int tid = threadIdx.x;
  for (int idx = tid; idx < nv * hd; idx += kThreads) {
    const int v = idx / hd, d = idx % hd;
    const int64_t r = first + v / G;
    q_s[idx] = RoundTo<T>(a.q[r * a.q_stride + static_cast<int64_t>(kvh * G + v % G) * hd + d]);
    acc_s[idx] = 0.0f;
  }
  for (int v = tid; v < nv; v += kThreads) {
    m_s[v] = -INFINITY;
    l_s[v] = 0.0f;
  }
  int max_key = 0;
  for (int r = 0; r < count; ++r) max_key = max(max_key, a.positions[first + r] + 1);

  const T* cache = static_cast<const T*>(a.cache);
  const int32_t* bt = a.block_tables + a.seq_block_offset[a.row_seq[first]];
  for (int key0 = 0; key0 < max_key; key0 += TK) {
    __syncthreads();  // q/acc initialised; the previous tile's k/v/p no longer read
    for (int idx = tid; idx < TK * hd; idx += kThreads) {
      const int j = idx / hd, d = idx % hd, key = key0 + j;
      float kv = 0.0f, vv = 0.0f;
      if (key < max_key) {
        const int64_t at = KeyOffset(geo, bt[key / bs], a.layer, kvh, key % bs) + d;
        kv = ToFloat(cache[at]);
        vv = ToFloat(cache[at + ValuePart(geo)]);
      }
      k_s[j * (hd + 1) + d] = kv;
      v_s[j * hd + d] = vv;
    }
    __syncthreads();
    for (int idx = tid; idx < nv * TK; idx += kThreads) {
      const int v = idx / TK, j = idx % TK, key = key0 + j;
      float s = -INFINITY;
      if (key <= a.positions[first + v / G]) {
        const float* qv = q_s + v * hd;
        const float* kj = k_s + j * (hd + 1);
        float dot = 0.0f;
        for (int d = 0; d < hd; ++d) dot += qv[d] * kj[d];
        s = dot * a.scale;
      }
      p_s[idx] = s;
    }
    __syncthreads();
    for (int v = tid; v < nv; v += kThreads) {
      float* s = p_s + v * TK;
      float mx = -INFINITY;
      for (int j = 0; j < TK; ++j) mx = fmaxf(mx, s[j]);
      const float m_old = m_s[v], m_new = fmaxf(m_old, mx);
      if (m_new == -INFINITY) {  // no visible key yet for this row (cannot happen: key 0 is)
        al_s[v] = 1.0f;
        for (int j = 0; j < TK; ++j) s[j] = 0.0f;
        continue;
      }
      const float alpha = __expf(m_old - m_new);  // 0 when m_old is -inf
      float sum = 0.0f;
      for (int j = 0; j < TK; ++j) {
        const float e = __expf(s[j] - m_new);  // 0 for masked keys
        s[j] = e;
        sum += e;
      }
      m_s[v] = m_new;
      l_s[v] = l_s[v] * alpha + sum;
      al_s[v] = alpha;
    }
    __syncthreads();
    for (int idx = tid; idx < nv * hd; idx += kThreads) {
      const int v = idx / hd, d = idx % hd;
      const float* p = p_s + v * TK;
      float acc = acc_s[idx] * al_s[v];
      for (int j = 0; j < TK; ++j) acc += p[j] * v_s[j * hd + d];
      acc_s[idx] = acc;
    }
  }
  __syncthreads();
  for (int idx = tid; idx < nv * hd; idx += kThreads) {
    const int v = idx / hd, d = idx % hd;
    const int64_t r = first + v / G;
    a.out[r * a.out_stride + static_cast<int64_t>(kvh * G + v % G) * hd + d] = acc_s[idx] / l_s[v];
  }
}

// Raises a kernel's dynamic shared-memory limit when it needs more than the default 48 KB.
// Done once per kernel and size (so that a launch being captured into a CUDA graph, after an
// eager warm-up launch, makes no attribute call). Per process, not per device: a process
// driving several devices should warm up each.
template <auto kKernel>
cudaError_t AllowSharedMemory(size_t bytes) {
  static size_t allowed = 48 * 1024;  // one per kernel (kKernel is the kernel's address)
  if (bytes <= allowed) return cudaSuccess;
  const cudaError_t e = cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(bytes));
  if (e == cudaSuccess) allowed = bytes;
  return e;
}

bool ValidGeometry(const AttentionArgs& a) {
  const KvGeometry& g = a.geo;
  if (g.num_kv_heads <= 0 || a.num_heads % g.num_kv_heads != 0) return false;
  if (g.head_dim % 8 != 0 || g.head_dim > kMaxHeadDim || !IsPow2(g.head_dim / 8)) return false;
  return g.block_size > 0;
}

size_t DecodeSharedBytes(int G, int hd) {
  const int KG = hd >= kThreads ? 1 : kThreads / hd;
  return sizeof(float) * (static_cast<size_t>(G) * hd + static_cast<size_t>(G) * kDecodePartition +
                          2 * G + static_cast<size_t>(KG) * G * hd);
}

template <typename T>
int LaunchDecodeT(const AttentionArgs& a, const int32_t* rows, int64_t n_rows, int splits,
                  float* ws, cudaStream_t stream) {
  const int G = a.num_heads / a.geo.num_kv_heads;
  const size_t smem = DecodeSharedBytes(G, a.geo.head_dim);
  if (cudaError_t e = AllowSharedMemory<DecodeAttentionKernel<T>>(smem); e != cudaSuccess) {
    return static_cast<int>(e);
  }
  for (int64_t r0 = 0; r0 < n_rows; r0 += 65535) {
    const int64_t n = n_rows - r0 < 65535 ? n_rows - r0 : 65535;
    // Workspace slots are indexed by the row's place in this launch; each chunk has its own.
    float* chunk_ws = splits > 1 ? ws + r0 * a.num_heads * splits * (a.geo.head_dim + 2) : nullptr;
    DecodeAttentionKernel<T><<<dim3(a.geo.num_kv_heads, static_cast<unsigned>(n), splits),
                               kThreads, smem, stream>>>(a, rows + r0, splits, chunk_ws, n);
    if (splits > 1) {
      DecodeReduceKernel<<<dim3(a.num_heads, static_cast<unsigned>(n)), a.geo.head_dim, 0,
                           stream>>>(a, rows + r0, splits, chunk_ws, n);
    }
  }
  return static_cast<int>(cudaGetLastError());
}

size_t PrefillSharedBytes(int NV, int hd) {
  const size_t TK = kPrefillKeys;
  return sizeof(float) * (static_cast<size_t>(NV) * hd + TK * (hd + 1) + TK * hd + NV * TK +
                          3 * static_cast<size_t>(NV) + static_cast<size_t>(NV) * hd);
}

}  // namespace

int64_t DecodeAttentionWorkspaceFloats(int64_t n_rows, int num_heads, int head_dim, int max_keys) {
  const int64_t splits = (max_keys + kDecodePartition - 1) / kDecodePartition;
  if (splits <= 1) return 0;
  return n_rows * num_heads * splits * (head_dim + 2);
}

int LaunchDecodeAttention(const AttentionArgs& a, const int32_t* rows, int64_t n_rows,
                          int max_keys, float* workspace, int64_t workspace_floats,
                          cudaStream_t stream) {
  if (!ValidGeometry(a) || a.num_heads / a.geo.num_kv_heads > kMaxGroup) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (n_rows <= 0 || max_keys <= 0) return 0;
  const int splits = (max_keys + kDecodePartition - 1) / kDecodePartition;
  if (splits > 1 && (workspace == nullptr ||
                     workspace_floats < DecodeAttentionWorkspaceFloats(n_rows, a.num_heads,
                                                                       a.geo.head_dim, max_keys))) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (a.geo.elem == KvElem::kBF16) {
    return LaunchDecodeT<__nv_bfloat16>(a, rows, n_rows, splits, workspace, stream);
  }
  return LaunchDecodeT<__half>(a, rows, n_rows, splits, workspace, stream);
}

int PrefillRowsPerTile(int group) {
  return group >= kPrefillVectors ? 1 : kPrefillVectors / group;
}

int LaunchPrefillAttention(const AttentionArgs& a, const int32_t* tiles, int64_t n_tiles,
                           cudaStream_t stream) {
  if (!ValidGeometry(a)) return static_cast<int>(cudaErrorInvalidValue);
  if (n_tiles <= 0) return 0;
  const int G = a.num_heads / a.geo.num_kv_heads;
  const int NV = PrefillRowsPerTile(G) * G;
  const size_t smem = PrefillSharedBytes(NV, a.geo.head_dim);
  for (int64_t t0 = 0; t0 < n_tiles; t0 += 65535) {
    const int64_t n = n_tiles - t0 < 65535 ? n_tiles - t0 : 65535;
    const dim3 grid(a.geo.num_kv_heads, static_cast<unsigned>(n));
    if (a.geo.elem == KvElem::kBF16) {
      if (cudaError_t e = AllowSharedMemory<PrefillAttentionKernel<__nv_bfloat16>>(smem); e != cudaSuccess) {
        return static_cast<int>(e);
      }
      PrefillAttentionKernel<__nv_bfloat16><<<grid, kThreads, smem, stream>>>(a, tiles + 2 * t0, NV);
    } else {
      if (cudaError_t e = AllowSharedMemory<PrefillAttentionKernel<__half>>(smem); e != cudaSuccess) {
        return static_cast<int>(e);
      }
      PrefillAttentionKernel<__half><<<grid, kThreads, smem, stream>>>(a, tiles + 2 * t0, NV);
    }
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace tandem::kernels
