#include "synth/synthetic_model.h"

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "common/status_macros.h"
#include "common/strings.h"
#include "gguf/gguf_writer.h"
#include "gguf/quant.h"
#include "text/byte_level.h"

namespace tandem::synth {
namespace {

using gguf::GgmlType;

constexpr const char* kChatMlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Common English pieces, merged in this order (byte strings; ' ' becomes the GPT-2 space mark).
constexpr const char* kMerges[][2] = {
    {" ", "t"}, {" ", "a"}, {"h", "e"}, {"i", "n"}, {"r", "e"}, {"o", "n"}, {" t", "he"}, {"e", "r"},
    {" ", "s"}, {"a", "t"}, {" ", "w"}, {" ", "o"}, {"e", "n"}, {" ", "c"}, {"i", "t"}, {"i", "s"},
    {"a", "n"}, {"o", "r"}, {"e", "s"}, {" ", "b"}, {"e", "d"}, {" ", "f"}, {"in", "g"}, {" ", "p"},
    {"o", "u"}, {" a", "n"}, {"a", "l"}, {"a", "r"}, {" t", "o"}, {" ", "m"}, {" o", "f"}, {" ", "in"},
    {" ", "d"}, {" ", "h"}, {" an", "d"}, {"i", "c"}, {"a", "s"}, {"l", "e"}, {" t", "h"}, {"i", "on"},
    {"o", "m"}, {"l", "l"}, {"en", "t"}, {" ", "n"}, {" ", "l"}, {"s", "t"}, {" ", "re"}, {"v", "e"},
    {" ", "e"}, {"r", "o"}, {"l", "y"}, {" b", "e"}, {" ", "g"}, {" ", "T"}, {"c", "t"}, {" ", "S"},
    {"i", "d"}, {"o", "t"}, {" ", "I"}, {"u", "t"}, {"e", "t"}, {" ", "A"}, {" i", "s"}, {" ", "on"},
    {"i", "m"}, {"a", "m"}, {"o", "w"}, {"a", "y"}, {"a", "d"}, {"s", "e"}, {" th", "at"}, {" ", "C"},
};

std::string Alphabet(std::string_view bytes) { return text::ByteLevelEncode(bytes); }

// Rows of `cols` values drawn from N(0, std), encoded as `type`.
absl::StatusOr<std::vector<uint8_t>> RandomMatrix(std::mt19937_64& rng, int64_t rows, int64_t cols,
                                                  float std, float mean, GgmlType type) {
  std::normal_distribution<float> dist(mean, std);
  std::vector<float> row(cols);
  const int64_t row_bytes = gguf::RowBytes(type, cols);
  std::vector<uint8_t> out(static_cast<size_t>(rows * row_bytes));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = dist(rng);
    TANDEM_RETURN_IF_ERROR(gguf::QuantizeRowRef(type, row.data(), out.data() + r * row_bytes, cols));
  }
  return out;
}

absl::Status CheckBlocks(const SyntheticModelSpec& s, GgmlType type, int64_t cols, std::string_view what) {
  const auto& t = gguf::Traits(type);
  if (!t.supported) return absl::InvalidArgumentError(StrCat(what, ": unsupported type ", t.name));
  if (cols % t.block_size != 0) {
    return absl::InvalidArgumentError(StrCat(what, " rows of ", cols, " are not a multiple of the ", t.name,
                                             " block size ", t.block_size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SyntheticModelSpec> SyntheticModelSpec::Named(std::string_view name) {
  SyntheticModelSpec s;
  s.name = std::string(name);
  if (name == "tiny") return s;
  if (name == "small") {
    s.num_layers = 4;
    s.hidden_size = 256;
    s.ffn_size = 512;
    s.num_heads = 8;
    s.num_kv_heads = 4;
    return s;
  }
  if (name == "smollm2-135m") {
    s.num_layers = 30;
    s.hidden_size = 576;
    s.ffn_size = 1536;
    s.num_heads = 9;
    s.num_kv_heads = 3;
    s.context_length = 8192;
    s.rope_theta = 100000.0f;
    return s;
  }
  if (name == "llama3-8b") {
    s.num_layers = 32;
    s.hidden_size = 4096;
    s.ffn_size = 14336;
    s.num_heads = 32;
    s.num_kv_heads = 8;
    s.context_length = 8192;
    s.rope_theta = 500000.0f;
    s.tied_embeddings = false;
    return s;
  }
  return absl::InvalidArgumentError(
      StrCat("unknown model shape '", name, "' (known: tiny, small, smollm2-135m, llama3-8b)"));
}

namespace {

// The byte-level BPE vocabulary: specials, the 256 bytes, then up to `extra_merges` merges.
struct Vocabulary {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
};

Vocabulary BuildVocabulary(int extra_merges) {
  Vocabulary v;
  v.tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  v.types = {3, 3, 3};
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(Alphabet(std::string(1, static_cast<char>(b))));
    v.types.push_back(1);
  }
  std::set<std::string> known(v.tokens.begin(), v.tokens.end());
  const int n_merges = std::min<int>(extra_merges, sizeof(kMerges) / sizeof(kMerges[0]));
  for (int i = 0; i < n_merges; ++i) {
    const std::string a = Alphabet(kMerges[i][0]), b = Alphabet(kMerges[i][1]);
    if (!known.contains(a) || !known.contains(b) || known.contains(a + b)) continue;
    v.merges.push_back(a + " " + b);
    v.tokens.push_back(a + b);
    v.types.push_back(1);
    known.insert(a + b);
  }
  return v;
}

void WriteMetadata(const SyntheticModelSpec& s, const Vocabulary& v, gguf::GgufWriter& w) {
  w.SetString("general.architecture", "llama");
  w.SetString("general.name", StrCat("tandem synthetic ", s.name));
  w.SetUint32("llama.block_count", s.num_layers);
  w.SetUint32("llama.context_length", s.context_length);
  w.SetUint32("llama.embedding_length", s.hidden_size);
  w.SetUint32("llama.feed_forward_length", s.ffn_size);
  w.SetUint32("llama.attention.head_count", s.num_heads);
  w.SetUint32("llama.attention.head_count_kv", s.num_kv_heads);
  w.SetFloat32("llama.rope.freq_base", s.rope_theta);
  w.SetFloat32("llama.attention.layer_norm_rms_epsilon", s.rms_eps);
  w.SetUint32("llama.rope.dimension_count", s.hidden_size / s.num_heads);
  w.SetUint32("llama.vocab_size", static_cast<uint32_t>(v.tokens.size()));
  w.SetString("tokenizer.ggml.model", "gpt2");
  w.SetString("tokenizer.ggml.pre", "smollm");
  w.SetStringArray("tokenizer.ggml.tokens", v.tokens);
  w.SetInt32Array("tokenizer.ggml.token_type", v.types);
  w.SetStringArray("tokenizer.ggml.merges", v.merges);
  w.SetUint32("tokenizer.ggml.bos_token_id", 1);
  w.SetUint32("tokenizer.ggml.eos_token_id", 2);
  w.SetUint32("tokenizer.ggml.unknown_token_id", 0);
  w.SetUint32("tokenizer.ggml.padding_token_id", 2);
  w.SetBool("tokenizer.ggml.add_bos_token", false);
  w.SetString("tokenizer.chat_template", kChatMlTemplate);
}

// Random weights for every tensor of the llama graph, seeded by the spec.
absl::Status AddRandomTensors(const SyntheticModelSpec& s, int vocab, gguf::GgufWriter& w) {
  std::mt19937_64 rng(s.seed);
  const int64_t hd = s.hidden_size / s.num_heads;
  const int64_t q_dim = s.hidden_size, kv_dim = hd * s.num_kv_heads;
  const float in_std = 1.0f / std::sqrt(static_cast<float>(s.hidden_size));
  const float ffn_std = 1.0f / std::sqrt(static_cast<float>(s.ffn_size));
  auto add = [&](const std::string& name, int64_t rows, int64_t cols, float std, float mean,
                 GgmlType type) -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(auto data, RandomMatrix(rng, rows, cols, std, mean, type));
    std::vector<int64_t> dims = rows == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{cols, rows};
    w.AddTensor(name, dims, type, std::move(data));
    return absl::OkStatus();
  };
  TANDEM_RETURN_IF_ERROR(add("token_embd.weight", vocab, s.hidden_size, 1.0f, 0.0f, s.embedding_type));
  TANDEM_RETURN_IF_ERROR(add("output_norm.weight", 1, s.hidden_size, 0.05f, 1.0f, GgmlType::kF32));
  if (!s.tied_embeddings) {
    TANDEM_RETURN_IF_ERROR(add("output.weight", vocab, s.hidden_size, in_std, 0.0f, s.embedding_type));
  }
  for (int i = 0; i < s.num_layers; ++i) {
    const std::string b = StrCat("blk.", i, ".");
    TANDEM_RETURN_IF_ERROR(add(b + "attn_norm.weight", 1, s.hidden_size, 0.05f, 1.0f, GgmlType::kF32));
    TANDEM_RETURN_IF_ERROR(add(b + "ffn_norm.weight", 1, s.hidden_size, 0.05f, 1.0f, GgmlType::kF32));
    TANDEM_RETURN_IF_ERROR(add(b + "attn_q.weight", q_dim, s.hidden_size, in_std, 0.0f, s.weight_type));
    TANDEM_RETURN_IF_ERROR(add(b + "attn_k.weight", kv_dim, s.hidden_size, in_std, 0.0f, s.weight_type));
    TANDEM_RETURN_IF_ERROR(add(b + "attn_v.weight", kv_dim, s.hidden_size, in_std, 0.0f, s.weight_type));
    TANDEM_RETURN_IF_ERROR(add(b + "attn_output.weight", s.hidden_size, q_dim, in_std, 0.0f, s.weight_type));
    TANDEM_RETURN_IF_ERROR(add(b + "ffn_gate.weight", s.ffn_size, s.hidden_size, in_std, 0.0f, s.weight_type));
    TANDEM_RETURN_IF_ERROR(add(b + "ffn_up.weight", s.ffn_size, s.hidden_size, in_std, 0.0f, s.weight_type));
    TANDEM_RETURN_IF_ERROR(add(b + "ffn_down.weight", s.hidden_size, s.ffn_size, ffn_std, 0.0f, s.weight_type));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> WriteSyntheticModel(const SyntheticModelSpec& s, const std::string& path) {
  if (s.num_layers <= 0 || s.hidden_size <= 0 || s.ffn_size <= 0 || s.num_heads <= 0 ||
      s.num_kv_heads <= 0 || s.hidden_size % s.num_heads != 0 || s.num_heads % s.num_kv_heads != 0 ||
      (s.hidden_size / s.num_heads) % 2 != 0) {
    return absl::InvalidArgumentError("inconsistent model shape");
  }
  TANDEM_RETURN_IF_ERROR(CheckBlocks(s, s.weight_type, s.hidden_size, "attention/FFN weight"));
  TANDEM_RETURN_IF_ERROR(CheckBlocks(s, s.weight_type, s.ffn_size, "FFN down weight"));
  TANDEM_RETURN_IF_ERROR(CheckBlocks(s, s.embedding_type, s.hidden_size, "embedding"));

  const Vocabulary v = BuildVocabulary(s.extra_merges);
  const int vocab = static_cast<int>(v.tokens.size());
  gguf::GgufWriter w;
  WriteMetadata(s, v, w);
  TANDEM_RETURN_IF_ERROR(AddRandomTensors(s, vocab, w));
  TANDEM_RETURN_IF_ERROR(w.WriteFile(path));
  return vocab;
}

}  // namespace tandem::synth
