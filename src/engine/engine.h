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
#include "engine/llama_model.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
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
};

struct GenerateRequest {
  std::string id;
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int priority = 0;
};

// What one request produced in one Step().
struct RequestOutput {
  std::string id;
  std::vector<int32_t> new_tokens;
  FinishReason finish = FinishReason::kNone;  // kNone while it goes on
  int32_t prompt_tokens = 0;
  int32_t generated_tokens = 0;
  int32_t cached_prompt_tokens = 0;  // served from the prefix cache
};

// Totals since the engine started (for metrics and tests).
struct EngineCounters {
  int64_t steps = 0;
  int64_t prefill_tokens = 0;     // prompt (and recomputed) tokens run through the model
  int64_t decode_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t preemptions = 0;
  int64_t prefix_hit_tokens = 0;  // prompt tokens served from the prefix cache
  int64_t finished = 0;
  int64_t cancelled = 0;
};

struct StepStats {
  int32_t num_tokens = 0;
  int32_t num_decode_tokens = 0;
  int32_t num_prefill_tokens = 0;
  int32_t num_sequences = 0;
  int32_t num_preempted = 0;
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

  // Runs a teacher-forced pass over `tokens` (one sequence, outside the scheduler) and returns
  // the logits at every position: tokens.size() rows of vocab_size. For tests and tools.
  absl::StatusOr<std::vector<float>> ScoreTokens(const std::vector<int32_t>& tokens,
                                                 int chunk_size = 512);

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
  void Finish(Sequence* seq, FinishReason reason, RequestOutput* out);
  bool ShouldStop(const Sequence& seq, int32_t token) const;

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
  std::vector<bool> is_eog_;
  ForwardBatch batch_;
  std::vector<float> logits_;
  std::vector<std::pair<float, int32_t>> sample_scratch_;
  StepStats last_step_;
  EngineCounters counters_;
};

}  // namespace tandem
