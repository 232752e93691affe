// Writes GGUF files with random weights and a small vocabulary: the tiny models
// most tests run on, and larger named shapes for benchmarks. Deterministic for a given spec
// (seeded). Architectures (`arch`), each with the metadata, special tokens, pre-tokenizer and
// chat template of the model family it stands for:
//   llama   SmolLM2-style: ChatML, the "smollm" pre-tokenizer, specials first, no BOS added
//   llama3  Llama-3-style: the "llama-bpe" pre-tokenizer, BOS added, <|start_header_id|> chat
//           template printing bos_token, <|eot_id|> as EOS, specials after the merges
//   llama-spm  Llama-2-style: a SentencePiece vocabulary (scores, <0xXX> byte fallback, "▁"
//           for spaces), BOS added, the [INST]/<<SYS>> chat template
//   qwen2   Qwen2-style: general.architecture qwen2 (Q/K/V biases, NEOX RoPE, untied output
//           with an output bias), the "qwen2" pre-tokenizer, ChatML with a default system
//           prompt, specials after the merges
//   deepseek-r1-qwen  a DeepSeek-R1 Qwen distill: qwen2 weights, the "deepseek-r1-qwen"
//           pre-tokenizer, BOS added, the <｜User｜>/<｜Assistant｜> chat template
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "gguf/ggml_type.h"

namespace tandem::synth {

struct SyntheticModelSpec {
  std::string name = "tiny";
  std::string arch = "llama";  // llama, llama3, llama-spm, qwen2 or deepseek-r1-qwen (see above)
  int num_layers = 2;
  int hidden_size = 64;
  int ffn_size = 128;
  int num_heads = 4;
  int num_kv_heads = 2;
  int context_length = 1024;
  float rope_theta = 10000.0f;
  float rms_eps = 1e-5f;
  gguf::GgmlType weight_type = gguf::GgmlType::kQ4_1;  // attention and FFN matrices
  gguf::GgmlType embedding_type = gguf::GgmlType::kQ8_0;
  bool tied_embeddings = true;
  int extra_merges = 64;  // BPE merges on top of the 256 byte tokens (vocab grows with them)
  uint64_t seed = 1;

  // Named shapes: "tiny" (2 layers, 64 wide), "small" (4 layers, 256 wide),
  // "smollm2-135m" (the bundled model's shape), "llama3-8b" (32 layers, 4096 wide, GQA 32/8).
  static absl::StatusOr<SyntheticModelSpec> Named(std::string_view name);
};

// The architectures WriteSyntheticModel knows, comma-separated.
std::string SyntheticArchNames();

// Writes the model to `path` (atomically). Returns the vocabulary size.
absl::StatusOr<int> WriteSyntheticModel(const SyntheticModelSpec& spec, const std::string& path);

}  // namespace tandem::synth
