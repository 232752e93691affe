// The host-side description of one forward pass: a flat list of tokens from several
// sequences (prefill chunks and decodes mixed, Sarathi-Serve style) with what each
// sequence's attention needs. Built by the scheduler, read by the model and the backend.
#pragma once

#include <cstdint>
#include <vector>

namespace tandem {

struct ForwardSequence {
  int32_t query_start = 0;   // first row of this sequence in the flat token list
  int32_t query_len = 0;     // rows it contributes this step
  int32_t context_len = 0;   // tokens in its KV after this step (cached + this step's)
  std::vector<int32_t> block_table;  // KV block ids, in position order
};

struct ForwardBatch {
  std::vector<int32_t> tokens;        // one per row
  std::vector<int32_t> positions;     // absolute position of each row in its sequence
  std::vector<int32_t> slot_mapping;  // KV slot (block * block_size + offset) per row
  std::vector<ForwardSequence> sequences;
  std::vector<int32_t> logit_rows;    // rows whose logits are wanted, in output order

  int32_t num_tokens() const { return static_cast<int32_t>(tokens.size()); }
  void Clear() {
    tokens.clear();
    positions.clear();
    slot_mapping.clear();
    sequences.clear();
    logit_rows.clear();
  }
};

}  // namespace tandem
