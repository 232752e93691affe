// Hyper-parameters of a llama-family model, read from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gguf/gguf_file.h"
#include "types/model_info.h"  // ModelIdentity

namespace tandem {

struct ModelConfig {
  std::string architecture;  // GGUF general.architecture
  std::string name;          // general.name (informational)
  int num_layers = 0;
  int hidden_size = 0;
  int ffn_size = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int context_length = 0;
  int rotary_dim = 0;
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / linear scaling factor
  std::vector<float> rope_freq_factors;  // from rope_freqs.weight when present
  bool tied_embeddings = false;          // no output.weight: token_embd doubles as output
  bool rope_neox = false;                // NEOX RoPE pairing (qwen2)

  // Reads and validates the configuration. Architectures: `llama` and `qwen2` (llama with
  // Q/K/V biases, NEOX RoPE and an optional output bias, as llama.cpp runs it); others, and
  // features tandem does not implement (e.g. YaRN scaling), are clear errors.
  static absl::StatusOr<ModelConfig> FromGguf(const gguf::GgufFile& file);

  // fp16 KV bytes per token: layers x 2 x kv_heads x head_dim x 2.
  int64_t kv_bytes_per_token() const {
    return 2LL * num_layers * num_kv_heads * head_dim * 2;
  }
  std::string Summary() const;
};

}  // namespace tandem
