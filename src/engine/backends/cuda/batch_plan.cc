#include "engine/backends/cuda/batch_plan.h"

#include <algorithm>

#include "common/strings.h"

namespace tandem::cuda {

absl::StatusOr<BatchPlan> PlanBatch(const ForwardBatch& batch, int block_size, int max_positions) {
  const int64_t n = batch.num_tokens();
  if (static_cast<int64_t>(batch.positions.size()) != n ||
      static_cast<int64_t>(batch.slot_mapping.size()) != n) {
    return absl::InvalidArgumentError("batch tokens, positions and slot_mapping differ in length");
  }
  if (block_size <= 0) return absl::FailedPreconditionError("no KV block size set");
  BatchPlan plan;
  plan.row_seq.assign(n, -1);
  for (int64_t r = 0; r < n; ++r) {
    const int32_t p = batch.positions[r];
    if (p < 0 || p >= max_positions) {
      return absl::OutOfRangeError(
          StrCat("position ", p, " is beyond the model's context of ", max_positions));
    }
    if (batch.slot_mapping[r] < 0) return absl::InvalidArgumentError("negative KV slot");
    plan.max_block_id = std::max(plan.max_block_id, batch.slot_mapping[r] / block_size);
  }
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const ForwardSequence& seq = batch.sequences[s];
    // A sequence with no rows this step is allowed (and ignored), as the CPU backend does.
    if (seq.query_len < 0 || seq.query_start < 0 || int64_t{seq.query_start} + seq.query_len > n) {
      return absl::InvalidArgumentError(StrCat("sequence ", s, " has rows outside the batch"));
    }
    plan.seq_block_offset.push_back(static_cast<int32_t>(plan.block_tables.size()));
    const int64_t capacity = static_cast<int64_t>(seq.block_table.size()) * block_size;
    for (int32_t r = seq.query_start; r < seq.query_start + seq.query_len; ++r) {
      if (plan.row_seq[r] != -1) return absl::InvalidArgumentError(StrCat("row ", r, " is in two sequences"));
      plan.row_seq[r] = static_cast<int32_t>(s);
      if (batch.positions[r] >= capacity) {
        return absl::InvalidArgumentError(
            StrCat("sequence ", s, " row ", r, " at position ", batch.positions[r],
                   " has no KV block (table of ", seq.block_table.size(), " blocks)"));
      }
      if (seq.query_len == 1) {
        plan.decode_rows.push_back(r);
        plan.max_decode_keys = std::max(plan.max_decode_keys, batch.positions[r] + 1);
      }
    }
    for (int32_t b : seq.block_table) {
      if (b < 0) return absl::InvalidArgumentError(StrCat("sequence ", s, " has a negative block id"));
      plan.max_block_id = std::max(plan.max_block_id, b);
    }
    plan.block_tables.insert(plan.block_tables.end(), seq.block_table.begin(), seq.block_table.end());
  }
  for (int64_t r = 0; r < n; ++r) {
    if (plan.row_seq[r] == -1) return absl::InvalidArgumentError(StrCat("row ", r, " is in no sequence"));
  }
  for (int32_t r : batch.logit_rows) {
    if (r < 0 || r >= n) return absl::InvalidArgumentError(StrCat("logit row ", r, " is outside the batch"));
  }
  return plan;
}

std::vector<int32_t> PrefillTiles(const ForwardBatch& batch, int rows_per_tile) {
  std::vector<int32_t> tiles;
  for (const ForwardSequence& seq : batch.sequences) {
    if (seq.query_len <= 1) continue;
    for (int32_t r = 0; r < seq.query_len; r += rows_per_tile) {
      tiles.push_back(seq.query_start + r);
      tiles.push_back(std::min(rows_per_tile, seq.query_len - r));
    }
  }
  return tiles;
}

}  // namespace tandem::cuda
