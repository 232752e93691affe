// The engine's state for one request: its tokens (prompt, then generated), how many of them
// have their KV in the cache, its block table and its sampling state.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/block_manager.h"
#include "engine/json_grammar.h"
#include "engine/sampling.h"
#include "engine/speculative.h"
#include "types/finish_reason.h"

namespace tandem {

struct Sequence {
  Sequence(std::string id_, std::vector<int32_t> prompt, SamplingParams params, int priority_,
           uint64_t arrival_, uint64_t seed)
      : id(std::move(id_)),
        tokens(std::move(prompt)),
        prompt_len(static_cast<int32_t>(tokens.size())),
        sampling(std::move(params)),
        rng(seed),
        priority(priority_),
        arrival(arrival_) {}

  std::string id;
  std::vector<int32_t> tokens;  // prompt followed by generated tokens
  int32_t prompt_len;
  int32_t num_computed = 0;     // leading tokens whose KV is in the cache
  std::vector<int32_t> block_table;
  std::vector<BlockHash> block_hashes;  // hashes of the leading full blocks, computed lazily
  int32_t num_registered_blocks = 0;    // leading blocks registered in the prefix cache
  SamplingParams sampling;
  SamplerRng rng;
  TokenHistory history;  // what the penalties count (filled when they are on)
  std::shared_ptr<const JsonSchema> schema;  // json_schema: what `json` follows
  JsonRecognizer json;   // JSON mode: the output read so far (up to json_consumed)
  size_t json_consumed = 0;  // tokens the recogniser has read; 0: not started
  int priority;       // lower runs first
  uint64_t arrival;   // admission order, for FCFS within a priority
  bool running = false;
  FinishReason finish = FinishReason::kNone;
  int num_preemptions = 0;
  bool hold_kv = false;          // keep the blocks after finishing (disaggregated prefill)
  bool report_progress = false;  // report num_computed after every iteration
  int32_t num_prefix_hit_tokens = 0;  // tokens served from the prefix cache at admission
  // sampling.prompt_logprobs: the prompt index whose log-probability comes next (token 0 has
  // none), and those computed but not reported yet (they go out with the first sampled token).
  int32_t prompt_logprobs_next = 1;
  std::vector<TokenLogprob> prompt_logprobs;
  // Speculative decoding: tokens proposed to follow `tokens`, run after its last one this
  // iteration (only while decoding; trimmed to what the scheduler fit).
  std::vector<int32_t> draft;
  DraftRecord drafts;  // how its drafts fared (sets how long the next is)

  int32_t num_generated() const { return static_cast<int32_t>(tokens.size()) - prompt_len; }
  int32_t num_uncomputed() const { return static_cast<int32_t>(tokens.size()) - num_computed; }
  bool finished() const { return finish != FinishReason::kNone; }
};

}  // namespace tandem
