// The host-side plan of one forward pass on the CUDA backend: which sequence each row belongs
// to, the block tables concatenated, which rows take the decode attention kernel (sequences
// with one query row) and which the prefill kernel (tiles of consecutive rows), and the bounds
// the kernels rely on. Validating here is what keeps the kernels' memory accesses in range:
// every row belongs to one sequence, and every key a row can see has a block in its table.
//
// Pure CPU code (no CUDA), unit-tested without a GPU.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "tandem/forward_batch.h"

namespace tandem::cuda {

struct BatchPlan {
  std::vector<int32_t> row_seq;           // [rows] sequence index of each row
  std::vector<int32_t> seq_block_offset;  // [sequences] start of its table in block_tables
  std::vector<int32_t> block_tables;      // every sequence's block table, concatenated
  std::vector<int32_t> decode_rows;       // rows of sequences with query_len == 1
  int max_decode_keys = 0;                // max positions[r] + 1 over decode_rows
  int32_t max_block_id = -1;              // over the block tables and slot_mapping
};

// Checks `batch` and builds its plan. block_size: tokens per KV block; max_positions: the RoPE
// table's length.
absl::StatusOr<BatchPlan> PlanBatch(const ForwardBatch& batch, int block_size, int max_positions);

// (first_row, row_count) pairs covering the rows of every sequence with query_len > 1, at most
// rows_per_tile rows each, never crossing a sequence.
std::vector<int32_t> PrefillTiles(const ForwardBatch& batch, int rows_per_tile);

}  // namespace tandem::cuda
