// The single-process inference engine: a model on one backend, a paged KV cache, the
// Sarathi-Serve scheduler and the sampler. Callers add requests (token ids), call Step() in a
// loop, and receive each request's new tokens and its finish.
//
// Thread-safety: not thread-safe; one thread owns the engine and drives Step() (the worker
// wraps it with a request queue). Requests are identified by caller-chosen unique ids.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/block_manager.h"
#include "engine/json_grammar.h"
#include "engine/llama_model.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "engine/speculative.h"
#include "gguf/gguf_file.h"
#include "tandem/backend.h"

namespace tandem {

struct EngineOptions {
  int block_size = 16;
  // KV cache size: num_kv_blocks if > 0, else as many blocks as fit in kv_cache_bytes.
  int64_t num_kv_blocks = 0;
  int64_t kv_cache_bytes = 512LL << 20;
  int max_model_len = 0;           // 0: the model's context length
  bool enable_prefix_cache = true;
  SchedulerOptions scheduler;
  std::vector<int32_t> eog_token_ids;  // end-of-generation tokens (from the tokenizer)
  // Each token's bytes (the tokenizer's pieces, empty for control tokens), for JSON mode
  // (SamplingParams::response_format). Empty: requests asking for JSON are refused.
  std::vector<std::string> token_pieces;
  // Speculative decoding (engine/speculative.h): off unless num_draft_tokens > 0; a request can
  // opt out (SamplingParams::speculative). Outputs are the same with and without it.
  SpeculativeOptions speculative;
};

struct GenerateRequest {
  std::string id;
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int priority = 0;
  // Disaggregated prefill: keep the request's KV blocks when it finishes (until
  // ReleaseHeldKv) so that they can be sent to a decode worker, and report progress after
  // every iteration that computes its tokens (RequestOutput::num_computed) so that finished
  // blocks can be sent while the next chunk computes.
  bool hold_kv = false;
  bool report_progress = false;
  // Random draws the sampler skips first: the request was sampled elsewhere up to here (a
  // request resumed on another worker), so seeded sampling goes on with the same stream.
  int32_t rng_draws = 0;
};

// What one request produced in one Step().
struct RequestOutput {
  std::string id;
  std::vector<int32_t> new_tokens;
  FinishReason finish = FinishReason::kNone;  // kNone while it goes on
  int32_t prompt_tokens = 0;
  int32_t generated_tokens = 0;
  int32_t cached_prompt_tokens = 0;  // served from the prefix cache
  int32_t num_computed = 0;          // tokens whose KV is complete (with report_progress)
  int32_t rng_draws = 0;             // random draws used so far (to continue elsewhere)
  std::vector<TokenLogprob> logprobs;  // one per new token, when the request asked for them
  // sampling.prompt_logprobs: prompt tokens 1 .. prompt_tokens-1's, with the first sampled token.
  std::vector<TokenLogprob> prompt_logprobs;
};

// The load a worker reports to the router.
struct EngineLoad {
  int64_t queued_prefill_tokens = 0;  // prompt tokens not yet computed (waiting and running)
  int32_t running = 0;
  int32_t waiting = 0;
  int64_t free_blocks = 0;            // allocatable now (free plus evictable cached)
  int64_t reserved_blocks = 0;        // held outside sequences: leases and held KV
  int64_t total_blocks = 0;
};

// Totals since the engine started (for metrics and tests).
struct EngineCounters {
  int64_t steps = 0;
  int64_t prefill_tokens = 0;     // prompt (and recomputed) tokens run through the model
  int64_t decode_tokens = 0;     // tokens decode iterations produced (draft tokens only if kept)
  int64_t generated_tokens = 0;
  int64_t preemptions = 0;
  int64_t prefix_hit_tokens = 0;  // prompt tokens served from the prefix cache
  int64_t finished = 0;
  int64_t cancelled = 0;
  int64_t draft_tokens = 0;           // speculative tokens run through the model
  int64_t accepted_draft_tokens = 0;  // of those, the ones the sampler picked (kept)
};

struct StepStats {
  int32_t num_tokens = 0;
  int32_t num_decode_tokens = 0;
  int32_t num_prefill_tokens = 0;
  int32_t num_sequences = 0;
  int32_t num_preempted = 0;
  IterationShape shape;  // what the iteration computed (DescribeIteration)
  double seconds = 0;
};

class Engine {
 public:
  // Takes ownership of the backend and keeps `file` (which must outlive the engine) for the
  // weights' memory.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const gguf::GgufFile& file,
                                                        std::unique_ptr<Backend> backend,
                                                        const EngineOptions& options);

  // Validates and queues a request. InvalidArgument for bad input (empty prompt, token ids
  // outside the vocabulary, prompt + max_tokens beyond max_model_len, bad sampling values),
  // AlreadyExists for a duplicate id, ResourceExhausted if the prompt could never fit the KV
  // cache.
  absl::Status Add(GenerateRequest request);
  // Cancels a queued or running request; its blocks are freed at once and the next Step()
  // reports it finished with kCancelled. Unknown ids are ignored (returns false).
  bool Cancel(const std::string& id);

  // Runs one iteration. Returns every request that produced tokens or finished.
  absl::StatusOr<std::vector<RequestOutput>> Step();
  bool HasWork() const { return !sequences_.empty() || !pending_outputs_.empty(); }

  // Adds a request whose prompt KV is already in `blocks` (filled by a prefill worker; the
  // engine takes ownership of the blocks, which must come from AllocateKvBlocks) and whose first
  // generated token is `first_token`. Decoding continues from there; `rng_draws` random draws
  // are skipped so that seeded sampling continues where the prefill worker left off.
  absl::Status AddPrefilled(GenerateRequest request, std::vector<int32_t> blocks, int32_t first_token,
                            int32_t rng_draws);

  // Blocks for `num_tokens` tokens outside any sequence (a decode worker's lease).
  // ResourceExhausted when fewer than that plus `headroom_blocks` are free.
  absl::StatusOr<std::vector<int32_t>> AllocateKvBlocks(int32_t num_tokens, int64_t headroom_blocks = 0);
  void FreeKvBlocks(std::span<const int32_t> blocks);

  // The block table of a running request, or of a finished hold_kv request until
  // ReleaseHeldKv. Empty when the request is unknown.
  std::vector<int32_t> BlockTable(const std::string& id) const;
  // Frees a finished hold_kv request's blocks. False if there are none.
  bool ReleaseHeldKv(const std::string& id);

  EngineLoad Load() const;
  KvCacheStorage& kv_cache() { return *cache_; }
  int block_size() const { return options_.block_size; }

  // Runs a teacher-forced pass over `tokens` (one sequence, outside the scheduler) and returns
  // the logits at positions first_row.. (all by default): tokens.size() - first_row rows of
  // vocab_size. For tests and tools (`tandem perplexity`).
  absl::StatusOr<std::vector<float>> ScoreTokens(const std::vector<int32_t>& tokens,
                                                 int chunk_size = 512, int first_row = 0);

  const ModelConfig& model_config() const { return model_->config(); }
  const BlockManager& block_manager() const { return *blocks_; }
  const Scheduler& scheduler() const { return *scheduler_; }
  const StepStats& last_step() const { return last_step_; }
  const EngineCounters& counters() const { return counters_; }
  int max_model_len() const { return max_model_len_; }
  int64_t weight_bytes() const { return model_->weight_bytes(); }
  Backend& backend() { return *backend_; }
  size_t num_requests() const { return sequences_.size(); }

 private:
  Engine() = default;
  absl::Status Validate(const GenerateRequest& request) const;
  absl::Status ValidateRngDraws(int64_t draws) const;
  void Finish(Sequence* seq, FinishReason reason, RequestOutput* out);
  bool ShouldStop(const Sequence& seq, int32_t token) const;
  // Fills batch_ with the plan's chunks: tokens, positions, KV slots, the rows that sample.
  void BuildBatch(const SchedulerOutput& plan);
  // Speculative decoding: gives each decoding sequence its draft for this iteration.
  void ProposeDrafts();
  // Samples a chunk's tokens from its rows (one, plus one per draft token while they match),
  // keeps the draft tokens' KV that matched, and finishes the sequence if a token ends it.
  void SampleChunk(Sequence* seq, const float* rows, RequestOutput* out);
  // Samples `seq`'s next token from its row of logits (modifiers, then the sampler).
  int32_t Sample(Sequence* seq, std::span<const float> row, RequestOutput* out);
  // JSON mode: brings the sequence's recogniser up to its tokens and masks `logits` to the
  // tokens the grammar allows (end-of-generation only, should it allow none).
  void ConstrainJson(Sequence* seq, std::span<float> logits);

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvCacheStorage> cache_;
  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  EngineOptions options_;
  int max_model_len_ = 0;
  uint64_t next_arrival_ = 0;
  std::unordered_map<std::string, std::unique_ptr<Sequence>> sequences_;
  std::vector<RequestOutput> pending_outputs_;  // cancellations reported by the next Step()
  std::unordered_map<std::string, std::vector<int32_t>> held_kv_;  // finished hold_kv requests
  int64_t reserved_blocks_ = 0;  // allocated through AllocateKvBlocks and not yet adopted/freed
  std::vector<bool> is_eog_;
  std::unique_ptr<const JsonTokenMask> json_mask_;  // null without token_pieces
  std::unique_ptr<const DraftProposer> proposer_;    // null: no speculative decoding
  ForwardBatch batch_;
  std::vector<int32_t> prompt_rows_;  // per chunk of the batch: its rows of prompt log-probabilities
  std::vector<float> logits_;
  std::vector<float> modified_logits_;  // one row with a request's logit modifiers applied
  std::vector<std::pair<float, int32_t>> sample_scratch_;
  StepStats last_step_;
  EngineCounters counters_;
};

}  // namespace tandem
