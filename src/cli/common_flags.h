// Flags shared by the commands that run the engine, and how they become EngineOptions.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cli/flags.h"
#include "engine/engine.h"
#include "gguf/gguf_file.h"
#include "tandem/backend.h"

namespace tandem::cli {

struct EngineFlags {
  std::string model;  // empty: the bundled model, fetched if missing
  int threads = 0;
  int64_t kv_cache_mb = 256;
  int block_size = 16;
  int token_budget = 512;
  int max_num_seqs = 64;
  int max_model_len = 0;
  bool prefix_cache = true;
  std::string isa;  // empty: best available

  void Register(FlagSet& flags);
  EngineOptions ToEngineOptions() const;
};

// The model path: --model, or the bundled model (fetched with progress when missing).
absl::StatusOr<std::string> ResolveModelPath(const std::string& model_flag);

// A CPU backend as the flags ask for.
absl::StatusOr<std::unique_ptr<Backend>> MakeCpuBackend(const EngineFlags& flags);

}  // namespace tandem::cli
