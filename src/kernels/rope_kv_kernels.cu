#include <cuda_runtime.h>

#include "kernels/kv_elem.cuh"
#include "kernels/rope_kv_kernels.h"

namespace tandem::kernels {
namespace {

// Grid: one block per row. Threads stride over the (head, pair) rotations of q and k, then
// (after a barrier, since a K element may be rotated and stored by different threads) over the
// K/V elements to store at the row's slot.
template <typename T>
__global__ void RopeAndStoreKvKernel(RopeKvArgs a) {
  const int64_t r = blockIdx.x;
  const int hd = a.geo.head_dim, half = a.rotary_dim / 2, kh = a.geo.num_kv_heads;
  const int pos = a.positions[r];
  const float* cs = a.cos + static_cast<int64_t>(pos) * half;
  const float* sn = a.sin + static_cast<int64_t>(pos) * half;
  float* q = a.q + r * a.q_stride;
  float* k = a.k + r * a.k_stride;
  const int nq = a.num_heads * half;
  for (int idx = threadIdx.x; idx < nq + kh * half; idx += blockDim.x) {
    float* head = idx < nq ? q + (idx / half) * hd : k + ((idx - nq) / half) * hd;
    const int i = (idx < nq ? idx : idx - nq) % half;
    const int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half : 2 * i + 1;
    const float x0 = head[ia], x1 = head[ib];
    head[ia] = x0 * cs[i] - x1 * sn[i];
    head[ib] = x0 * sn[i] + x1 * cs[i];
  }
  __syncthreads();
  const int slot = a.slot_mapping[r];
  if (slot < 0) return;
  const int bs = a.geo.block_size;
  const int64_t blk = slot / bs;
  const int off = slot % bs;
  T* base = static_cast<T*>(a.cache) +
            (blk * a.geo.num_layers + a.layer) * a.geo.block_layer_elems();
  const float* v = a.v + r * a.v_stride;
  const int64_t v_part = static_cast<int64_t>(kh) * bs * hd;
  for (int idx = threadIdx.x; idx < kh * hd; idx += blockDim.x) {
    const int h = idx / hd, d = idx % hd;
    const int64_t at = static_cast<int64_t>(h) * bs * hd + static_cast<int64_t>(off) * hd + d;
    base[at] = FromFloat<T>(k[idx]);
    base[v_part + at] = FromFloat<T>(v[idx]);
  }
}

}  // namespace

int LaunchRopeAndStoreKv(const RopeKvArgs& a, cudaStream_t stream) {
  if (a.rows <= 0) return 0;
  if (a.geo.elem == KvElem::kBF16) {
    RopeAndStoreKvKernel<__nv_bfloat16><<<static_cast<unsigned>(a.rows), 128, 0, stream>>>(a);
  } else {
    RopeAndStoreKvKernel<__half><<<static_cast<unsigned>(a.rows), 128, 0, stream>>>(a);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace tandem::kernels
