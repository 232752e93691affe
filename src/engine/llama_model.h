// The llama-family transformer (RMSNorm, RoPE, grouped-query attention over the paged KV
// cache, SwiGLU, tied or separate output), written once over the Backend interface. Optional
// Q/K/V biases and an output bias (present in qwen2 files; llama.cpp loads them for llama too).
//
// Thread-safety: one thread at a time (the engine's step thread). The model keeps pointers into
// the GgufFile's mapping (CPU backend), so the file must outlive it.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "gguf/gguf_file.h"
#include "tandem/backend.h"
#include "tandem/forward_batch.h"

namespace tandem {

class LlamaModel {
 public:
  // Loads every weight through `backend` and configures its RoPE tables.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(const gguf::GgufFile& file,
                                                          Backend& backend);

  const ModelConfig& config() const { return config_; }
  int64_t weight_bytes() const { return weight_bytes_; }
  KvCacheLayout kv_layout(int block_size) const;

  // Runs `batch` (its K/V go into `cache`) and writes the logits of batch.logit_rows, one row
  // of vocab_size floats each, to `logits` (host memory).
  absl::Status Forward(const ForwardBatch& batch, KvCacheStorage& cache, float* logits);

 private:
  struct Layer {
    std::unique_ptr<DeviceBuffer> attn_norm, ffn_norm;
    std::unique_ptr<WeightMatrix> wq, wk, wv, wo, w_gate, w_up, w_down;
    std::unique_ptr<DeviceBuffer> bq, bk, bv;  // null when the file has none
  };
  struct Workspace {
    int64_t tokens = 0, logit_rows = 0;
    std::unique_ptr<DeviceBuffer> x, h, q, k, v, attn, delta, gate, up, act, selected, logits;
  };

  LlamaModel(Backend& backend, ModelConfig config) : backend_(backend), config_(std::move(config)) {}
  absl::Status EnsureWorkspace(int64_t tokens, int64_t logit_rows);

  Backend& backend_;
  ModelConfig config_;
  std::unique_ptr<WeightMatrix> token_embd_, output_;
  std::unique_ptr<DeviceBuffer> output_norm_, output_bias_;
  std::vector<Layer> layers_;
  Workspace ws_;
  int64_t weight_bytes_ = 0;
};

}  // namespace tandem
