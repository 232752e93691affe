#include "synth/synthetic_model.h"

#include <algorithm>
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

// ChatML with Qwen2's default system message when the conversation has none.
constexpr const char* kQwen2Template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Llama 3's header/eot template; BOS text before the first message.
constexpr const char* kLlama3Template =
    "{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

// Llama 2's [INST] template with its <<SYS>> block in the first user turn.
constexpr const char* kLlama2Template =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

// DeepSeek-R1's form: BOS, the last system message, then <｜User｜>/<｜Assistant｜> turns, each answer
// without its reasoning (the text before </think>) and closed by <｜end▁of▁sentence｜>.
// A macro, not a function: the names are pasted into string literals at compile time.
#define TANDEM_DS(name) "<\uFF5C" name "\uFF5C>"
constexpr const char* kDeepSeekTemplate =
    "{% set ns = namespace(system='') %}{% for message in messages %}{% if message['role'] == 'system' %}"
    "{% set ns.system = message['content'] %}{% endif %}{% endfor %}{{ bos_token }}{{ ns.system }}"
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '" TANDEM_DS("User") "' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '" TANDEM_DS("Assistant") "' + content + '" TANDEM_DS("end\u2581of\u2581sentence") "' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '" TANDEM_DS("Assistant") "' }}{% endif %}";

// What distinguishes one synthetic architecture from another (see the header).
struct ArchTraits {
  std::string_view name;
  const char* gguf_arch;
  const char* pre;  // nullptr: a SentencePiece ("llama") vocabulary
  std::vector<std::string> specials;
  bool specials_first;
  const char *bos, *eos, *pad, *unk;  // special token texts; unk may be null
  bool add_bos;
  const char* chat_template;
  bool biases;  // Q/K/V and output biases
  bool untied;  // an output.weight of its own, whatever the spec says
};

const std::vector<ArchTraits>& AllArchTraits() {
  static const std::vector<ArchTraits> traits = {
      {"llama", "llama", "smollm", {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}, true, "<|im_start|>",
       "<|im_end|>", "<|im_end|>", "<|endoftext|>", false, kChatMlTemplate, false, false},
      {"llama3", "llama", "llama-bpe",
       {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}, false,
       "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", nullptr, true, kLlama3Template, false, true},
      {"qwen2", "qwen2", "qwen2", {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}, false, "<|endoftext|>",
       "<|im_end|>", "<|endoftext|>", nullptr, false, kQwen2Template, true, true},
      {"deepseek-r1-qwen", "qwen2", "deepseek-r1-qwen",
       {TANDEM_DS("end\u2581of\u2581sentence"), TANDEM_DS("begin\u2581of\u2581sentence"), TANDEM_DS("User"),
        TANDEM_DS("Assistant")},
       false, TANDEM_DS("begin\u2581of\u2581sentence"), TANDEM_DS("end\u2581of\u2581sentence"),
       TANDEM_DS("end\u2581of\u2581sentence"), nullptr, true, kDeepSeekTemplate, true, true},
      {"llama-spm", "llama", nullptr, {"<unk>", "<s>", "</s>"}, true, "<s>", "</s>", "</s>", "<unk>", true,
       kLlama2Template, false, false},
  };
  return traits;
}
#undef TANDEM_DS  // only for the literals above

const ArchTraits* FindArch(std::string_view name) {
  for (const ArchTraits& t : AllArchTraits()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

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

// Digit pieces for every vocabulary but plain llama's (llama3, llama-spm, qwen2, deepseek-r1-qwen),
// so that their pre-tokenizers' different digit splits (up to three digits together, or each
// alone) change the tokens.
constexpr const char* kDigitMerges[][2] = {
    {"1", "2"}, {"12", "3"}, {"2", "0"}, {"20", "2"}, {"4", "5"}, {"9", "9"}, {"3", "1"}, {"1", "9"},
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

// The byte-level BPE vocabulary: the 256 bytes, up to `extra_merges` merges, and the
// architecture's special tokens (before or after the rest).
struct Vocabulary {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
  std::vector<float> scores;  // SentencePiece only

  uint32_t Id(const char* text) const {
    return static_cast<uint32_t>(std::find(tokens.begin(), tokens.end(), text) - tokens.begin());
  }
};

// SentencePiece's space mark, U+2581.
constexpr const char* kSpmSpace = "\xe2\x96\x81";

// A SentencePiece vocabulary: <unk> <s> </s>, the 256 byte-fallback tokens <0xXX>, then the
// merged pieces (score -rank, "▁" for spaces) and the single characters they are made of
// (lower scores), as Llama 2's vocabulary is laid out.
Vocabulary BuildSpmVocabulary(const ArchTraits& arch, int extra_merges) {
  Vocabulary v;
  auto add = [&](const std::string& text, int32_t type, float score) {
    v.tokens.push_back(text);
    v.types.push_back(type);
    v.scores.push_back(score);
  };
  auto spm = [](std::string_view s) {
    std::string out;
    for (char c : s) out += c == ' ' ? std::string(kSpmSpace) : std::string(1, c);
    return out;
  };
  add(arch.specials[0], 2, 0.0f);
  for (size_t i = 1; i < arch.specials.size(); ++i) add(arch.specials[i], 3, 0.0f);
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), 6, 0.0f);
  std::set<std::string> known;
  const int n_merges = std::min<int>(extra_merges, sizeof(kMerges) / sizeof(kMerges[0]));
  for (int i = 0; i < n_merges; ++i) {
    const std::string piece = spm(kMerges[i][0]) + spm(kMerges[i][1]);
    if (known.insert(piece).second) add(piece, 1, -static_cast<float>(i));
  }
  for (size_t i = 0; i < sizeof(kDigitMerges) / sizeof(kDigitMerges[0]); ++i) {
    const std::string piece = std::string(kDigitMerges[i][0]) + kDigitMerges[i][1];
    if (known.insert(piece).second) add(piece, 1, -100.0f - static_cast<float>(i));
  }
  std::string chars = " ";
  for (char c = '!'; c <= '~'; ++c) chars.push_back(c);
  for (size_t i = 0; i < chars.size(); ++i) {
    const std::string piece = spm(std::string(1, chars[i]));
    if (known.insert(piece).second) add(piece, 1, -1000.0f - static_cast<float>(i));
  }
  return v;
}

Vocabulary BuildVocabulary(const ArchTraits& arch, int extra_merges) {
  if (arch.pre == nullptr) return BuildSpmVocabulary(arch, extra_merges);
  Vocabulary v;
  auto add_specials = [&] {
    for (const std::string& s : arch.specials) {
      v.tokens.push_back(s);
      v.types.push_back(3);
    }
  };
  if (arch.specials_first) add_specials();
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
  if (arch.name != "llama") {
    for (const auto& m : kDigitMerges) {
      const std::string a = Alphabet(m[0]), b = Alphabet(m[1]);
      if (!known.contains(a) || !known.contains(b) || known.contains(a + b)) continue;
      v.merges.push_back(a + " " + b);
      v.tokens.push_back(a + b);
      v.types.push_back(1);
      known.insert(a + b);
    }
  }
  if (!arch.specials_first) add_specials();
  return v;
}

void WriteMetadata(const SyntheticModelSpec& s, const ArchTraits& arch, const Vocabulary& v,
                   gguf::GgufWriter& w) {
  const std::string p = StrCat(arch.gguf_arch, ".");
  w.SetString("general.architecture", arch.gguf_arch);
  const std::string suffix = arch.name == "llama" ? "" : StrCat(" ", arch.name);
  w.SetString("general.name", StrCat("tandem synthetic ", s.name, suffix));
  w.SetUint32(p + "block_count", s.num_layers);
  w.SetUint32(p + "context_length", s.context_length);
  w.SetUint32(p + "embedding_length", s.hidden_size);
  w.SetUint32(p + "feed_forward_length", s.ffn_size);
  w.SetUint32(p + "attention.head_count", s.num_heads);
  w.SetUint32(p + "attention.head_count_kv", s.num_kv_heads);
  w.SetFloat32(p + "rope.freq_base", s.rope_theta);
  w.SetFloat32(p + "attention.layer_norm_rms_epsilon", s.rms_eps);
  w.SetUint32(p + "rope.dimension_count", s.hidden_size / s.num_heads);
  w.SetUint32(p + "vocab_size", static_cast<uint32_t>(v.tokens.size()));
  if (arch.pre == nullptr) {
    w.SetString("tokenizer.ggml.model", "llama");
    w.SetStringArray("tokenizer.ggml.tokens", v.tokens);
    w.SetFloat32Array("tokenizer.ggml.scores", v.scores);
    w.SetInt32Array("tokenizer.ggml.token_type", v.types);
  } else {
    w.SetString("tokenizer.ggml.model", "gpt2");
    w.SetString("tokenizer.ggml.pre", arch.pre);
    w.SetStringArray("tokenizer.ggml.tokens", v.tokens);
    w.SetInt32Array("tokenizer.ggml.token_type", v.types);
    w.SetStringArray("tokenizer.ggml.merges", v.merges);
  }
  w.SetUint32("tokenizer.ggml.bos_token_id", v.Id(arch.bos));
  w.SetUint32("tokenizer.ggml.eos_token_id", v.Id(arch.eos));
  if (arch.unk != nullptr) w.SetUint32("tokenizer.ggml.unknown_token_id", v.Id(arch.unk));
  w.SetUint32("tokenizer.ggml.padding_token_id", v.Id(arch.pad));
  w.SetBool("tokenizer.ggml.add_bos_token", arch.add_bos);
  w.SetString("tokenizer.chat_template", arch.chat_template);
}

// Random weights for every tensor of the llama graph, seeded by the spec.
absl::Status AddRandomTensors(const SyntheticModelSpec& s, const ArchTraits& arch, int vocab,
                              gguf::GgufWriter& w) {
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
  if (!s.tied_embeddings || arch.untied) {
    TANDEM_RETURN_IF_ERROR(add("output.weight", vocab, s.hidden_size, in_std, 0.0f, s.embedding_type));
  }
  if (arch.biases) TANDEM_RETURN_IF_ERROR(add("output.bias", 1, vocab, 0.1f, 0.0f, GgmlType::kF32));
  for (int i = 0; i < s.num_layers; ++i) {
    const std::string b = StrCat("blk.", i, ".");
    TANDEM_RETURN_IF_ERROR(add(b + "attn_norm.weight", 1, s.hidden_size, 0.05f, 1.0f, GgmlType::kF32));
    TANDEM_RETURN_IF_ERROR(add(b + "ffn_norm.weight", 1, s.hidden_size, 0.05f, 1.0f, GgmlType::kF32));
    TANDEM_RETURN_IF_ERROR(add(b + "attn_q.weight", q_dim, s.hidden_size, in_std, 0.0f, s.weight_type));
    TANDEM_RETURN_IF_ERROR(add(b + "attn_k.weight", kv_dim, s.hidden_size, in_std, 0.0f, s.weight_type));
    TANDEM_RETURN_IF_ERROR(add(b + "attn_v.weight", kv_dim, s.hidden_size, in_std, 0.0f, s.weight_type));
    if (arch.biases) {
      TANDEM_RETURN_IF_ERROR(add(b + "attn_q.bias", 1, q_dim, 0.5f, 0.0f, GgmlType::kF32));
      TANDEM_RETURN_IF_ERROR(add(b + "attn_k.bias", 1, kv_dim, 0.5f, 0.0f, GgmlType::kF32));
      TANDEM_RETURN_IF_ERROR(add(b + "attn_v.bias", 1, kv_dim, 0.5f, 0.0f, GgmlType::kF32));
    }
    TANDEM_RETURN_IF_ERROR(add(b + "attn_output.weight", s.hidden_size, q_dim, in_std, 0.0f, s.weight_type));
    TANDEM_RETURN_IF_ERROR(add(b + "ffn_gate.weight", s.ffn_size, s.hidden_size, in_std, 0.0f, s.weight_type));
    TANDEM_RETURN_IF_ERROR(add(b + "ffn_up.weight", s.ffn_size, s.hidden_size, in_std, 0.0f, s.weight_type));
    TANDEM_RETURN_IF_ERROR(add(b + "ffn_down.weight", s.hidden_size, s.ffn_size, ffn_std, 0.0f, s.weight_type));
  }
  return absl::OkStatus();
}

}  // namespace

std::string SyntheticArchNames() {
  std::string names;
  for (const ArchTraits& t : AllArchTraits()) names += StrCat(names.empty() ? "" : ", ", t.name);
  return names;
}

absl::StatusOr<int> WriteSyntheticModel(const SyntheticModelSpec& s, const std::string& path) {
  if (s.num_layers <= 0 || s.hidden_size <= 0 || s.ffn_size <= 0 || s.num_heads <= 0 ||
      s.num_kv_heads <= 0 || s.hidden_size % s.num_heads != 0 || s.num_heads % s.num_kv_heads != 0 ||
      (s.hidden_size / s.num_heads) % 2 != 0) {
    return absl::InvalidArgumentError("inconsistent model shape");
  }
  TANDEM_RETURN_IF_ERROR(CheckBlocks(s, s.weight_type, s.hidden_size, "attention/FFN weight"));
  TANDEM_RETURN_IF_ERROR(CheckBlocks(s, s.weight_type, s.ffn_size, "FFN down weight"));
  TANDEM_RETURN_IF_ERROR(CheckBlocks(s, s.embedding_type, s.hidden_size, "embedding"));

  const ArchTraits* arch = FindArch(s.arch);
  if (arch == nullptr) {
    return absl::InvalidArgumentError(
        StrCat("unknown architecture '", s.arch, "' (known: ", SyntheticArchNames(), ")"));
  }
  const Vocabulary v = BuildVocabulary(*arch, s.extra_merges);
  const int vocab = static_cast<int>(v.tokens.size());
  gguf::GgufWriter w;
  WriteMetadata(s, *arch, v, w);
  TANDEM_RETURN_IF_ERROR(AddRandomTensors(s, *arch, vocab, w));
  TANDEM_RETURN_IF_ERROR(w.WriteFile(path));
  return vocab;
}

}  // namespace tandem::synth
