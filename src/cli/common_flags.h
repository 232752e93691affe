// Flags shared by the commands that run the engine, and how they become EngineOptions.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cli/flags.h"
#include "engine/engine.h"
#include "gguf/gguf_file.h"
#include "text/tokenizer.h"
#include "tandem/backend.h"

namespace tandem::cli {

struct EngineFlags {
  std::string model;  // empty: the bundled model, fetched if missing
  int threads = 0;
  int64_t kv_cache_mb = 256;
  int block_size = 16;
  std::string token_budget = "512";  // a count, or "auto" (MakeEngine picks it by budget_itl_ms)
  double budget_itl_ms = 100;
  int max_num_seqs = 64;
  int max_model_len = 0;
  bool prefix_cache = true;
  std::string isa;  // empty: best available
  std::string device = "cpu";  // cpu or cuda
  int cuda_device = 0;
  bool cuda_graphs = false;
  int speculative_ngram = 0;      // draft tokens per step by prompt lookup; 0 = off
  int speculative_max_batch = 4;  // speculate only while at most this many sequences decode
  double speculative_draft_cost = 0.25;  // a draft token's cost in decode iterations (0: fixed length)

  void Register(FlagSet& flags);
  // InvalidArgument for a --token-budget that is neither a count >= 1 nor auto.
  absl::Status Check() const;
  // --token-budget auto becomes 512 here; MakeEngine measures the real one.
  EngineOptions ToEngineOptions() const;
};

// The model path: --model, or the bundled model (fetched with progress when missing).
absl::StatusOr<std::string> ResolveModelPath(const std::string& model_flag);

// The backend the flags ask for: the CPU one, or the CUDA one (--device cuda; an error in a
// build without CUDA).
absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const EngineFlags& flags);

// The engine the flags describe over `file` (its backend from MakeBackend), ending requests at
// `eog_token_ids`; `token_pieces` (each token's bytes) enable JSON mode (EngineOptions).
absl::StatusOr<std::unique_ptr<Engine>> MakeEngine(const EngineFlags& flags, const gguf::GgufFile& file,
                                                   std::vector<int32_t> eog_token_ids,
                                                   std::vector<std::string> token_pieces = {});
// MakeEngine with the tokenizer's end-of-generation tokens and pieces.
absl::StatusOr<std::unique_ptr<Engine>> MakeEngineFor(const EngineFlags& flags, const gguf::GgufFile& file,
                                                      const text::Tokenizer& tokenizer);

}  // namespace tandem::cli
