// Attention of query rows over the paged KV cache (GQA: query head h reads KV head
// h / (num_heads / num_kv_heads)). Row r sees keys [0, positions[r]] of its sequence (causal,
// as the CPU backend). Queries are rounded to the cache's element type before the dot
// products (as the CPU backend does); softmax and accumulation are f32.
//
//  * Decode (one query row per sequence): one block per (KV head, row, context split); each
//    split of kDecodePartition keys writes an unnormalised partial (acc, max, sum) and a second
//    kernel merges the splits. When every row fits in one split the first kernel writes the
//    output directly (no reduce).
//  * Prefill (chunked: rows of a chunk attend to earlier chunks' cached keys and to the chunk's
//    own, which RopeAndStoreKv wrote first): one block per (KV head, tile of consecutive rows of
//    one sequence); keys stream through shared memory 32 at a time with an online softmax.
#pragma once

#include <cstdint>

#include "kernels/kernel_types.h"

namespace tandem::kernels {

constexpr int kDecodePartition = 256;  // keys per decode split
constexpr int kMaxHeadDim = 256;       // head_dim must be a multiple of 8 and <= this
constexpr int kMaxGroup = 16;          // num_heads / num_kv_heads must be <= this (decode)

struct AttentionArgs {
  const float* q = nullptr;  // [rows][num_heads * head_dim]
  int64_t q_stride = 0;
  float* out = nullptr;      // [rows][num_heads * head_dim]
  int64_t out_stride = 0;
  int num_heads = 0;
  float scale = 1.0f;
  const void* cache = nullptr;
  KvGeometry geo;
  int layer = 0;
  const int32_t* positions = nullptr;         // [rows] device
  const int32_t* row_seq = nullptr;           // [rows] device: sequence index of each row
  const int32_t* seq_block_offset = nullptr;  // [num_seqs] device: start in block_tables
  const int32_t* block_tables = nullptr;      // device, concatenated per sequence
};

// Floats of workspace LaunchDecodeAttention needs for n_rows rows whose visible keys are at
// most max_keys (0 when no split reduce is needed).
int64_t DecodeAttentionWorkspaceFloats(int64_t n_rows, int num_heads, int head_dim, int max_keys);

// rows: device list of n_rows row indices to compute. max_keys: an upper bound on
// positions[r] + 1 over those rows (sets the grid; splits past a row's keys exit at once).
int LaunchDecodeAttention(const AttentionArgs& a, const int32_t* rows, int64_t n_rows,
                          int max_keys, float* workspace, int64_t workspace_floats,
                          cudaStream_t stream);

// Rows per prefill tile for a GQA group size (tiles hold rows_per_tile * group query vectors).
int PrefillRowsPerTile(int group);

// tiles: device array of n_tiles (first_row, row_count) pairs, row_count <= PrefillRowsPerTile;
// the rows of a tile are consecutive rows of one sequence.
int LaunchPrefillAttention(const AttentionArgs& a, const int32_t* tiles, int64_t n_tiles,
                           cudaStream_t stream);

}  // namespace tandem::kernels
