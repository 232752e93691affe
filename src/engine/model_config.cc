#include "engine/model_config.h"

#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem {
namespace {

absl::StatusOr<int> PositiveInt(const gguf::GgufFile& f, const std::string& key) {
  TANDEM_ASSIGN_OR_RETURN(uint64_t v, f.GetUint(key));
  if (v == 0 || v > (1u << 24)) {
    return absl::InvalidArgumentError(StrCat(f.path(), ": ", key, " = ", v, " is out of range"));
  }
  return static_cast<int>(v);
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfig::FromGguf(const gguf::GgufFile& f) {
  ModelConfig c;
  TANDEM_ASSIGN_OR_RETURN(auto arch, f.GetString("general.architecture"));
  c.architecture = std::string(arch);
  if (c.architecture != "llama" && c.architecture != "qwen2") {
    return absl::UnimplementedError(StrCat(f.path(), ": architecture '", c.architecture,
                                           "' is not supported (tandem runs 'llama' and 'qwen2')"));
  }
  c.rope_neox = c.architecture == "qwen2";
  if (auto name = f.GetString("general.name"); name.ok()) c.name = std::string(*name);
  const std::string p = c.architecture + ".";
  TANDEM_ASSIGN_OR_RETURN(c.num_layers, PositiveInt(f, p + "block_count"));
  TANDEM_ASSIGN_OR_RETURN(c.hidden_size, PositiveInt(f, p + "embedding_length"));
  TANDEM_ASSIGN_OR_RETURN(c.ffn_size, PositiveInt(f, p + "feed_forward_length"));
  TANDEM_ASSIGN_OR_RETURN(c.num_heads, PositiveInt(f, p + "attention.head_count"));
  c.num_kv_heads = c.num_heads;
  if (f.Find(p + "attention.head_count_kv")) {
    TANDEM_ASSIGN_OR_RETURN(c.num_kv_heads, PositiveInt(f, p + "attention.head_count_kv"));
  }
  TANDEM_ASSIGN_OR_RETURN(c.context_length, PositiveInt(f, p + "context_length"));
  c.head_dim = c.hidden_size / c.num_heads;
  if (f.Find(p + "attention.key_length")) {
    TANDEM_ASSIGN_OR_RETURN(c.head_dim, PositiveInt(f, p + "attention.key_length"));
    TANDEM_ASSIGN_OR_RETURN(int vlen, PositiveInt(f, p + "attention.value_length"));
    if (vlen != c.head_dim) return absl::UnimplementedError("key_length != value_length is not supported");
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(StrCat(f.path(), ": ", c.num_heads, " heads are not a multiple of ",
                                             c.num_kv_heads, " KV heads"));
  }
  c.rotary_dim = c.head_dim;
  if (f.Find(p + "rope.dimension_count")) {
    TANDEM_ASSIGN_OR_RETURN(c.rotary_dim, PositiveInt(f, p + "rope.dimension_count"));
  }
  if (c.rotary_dim > c.head_dim || c.rotary_dim % 2 != 0) {
    return absl::InvalidArgumentError(StrCat(f.path(), ": rope.dimension_count ", c.rotary_dim, " is invalid"));
  }
  TANDEM_ASSIGN_OR_RETURN(double eps, f.GetFloatOr(p + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rms_eps = static_cast<float>(eps);
  TANDEM_ASSIGN_OR_RETURN(double theta, f.GetFloatOr(p + "rope.freq_base", 10000.0));
  c.rope_theta = static_cast<float>(theta);
  if (const gguf::Value* st = f.Find(p + "rope.scaling.type")) {
    const std::string type(st->s);
    if (type == "linear") {
      TANDEM_ASSIGN_OR_RETURN(double factor, f.GetFloat(p + "rope.scaling.factor"));
      if (factor <= 0) return absl::InvalidArgumentError("rope.scaling.factor must be positive");
      c.rope_freq_scale = static_cast<float>(1.0 / factor);
    } else if (type != "none") {
      return absl::UnimplementedError(StrCat(f.path(), ": RoPE scaling '", type, "' is not supported"));
    }
  }
  if (const gguf::TensorInfo* t = f.FindTensor("rope_freqs.weight")) {
    if (t->type != gguf::GgmlType::kF32 || t->num_elements != c.rotary_dim / 2) {
      return absl::InvalidArgumentError("rope_freqs.weight must hold rotary_dim/2 f32 values");
    }
    const float* data = reinterpret_cast<const float*>(t->data);
    c.rope_freq_factors.assign(data, data + t->num_elements);
  }
  const gguf::TensorInfo* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr) return absl::InvalidArgumentError(StrCat(f.path(), ": token_embd.weight is missing"));
  if (embd->dims.size() != 2 || embd->dims[0] != c.hidden_size) {
    return absl::InvalidArgumentError(StrCat(f.path(), ": token_embd.weight has the wrong shape"));
  }
  c.vocab_size = static_cast<int>(embd->dims[1]);
  c.tied_embeddings = f.FindTensor("output.weight") == nullptr;
  return c;
}

std::string ModelConfig::Summary() const {
  return StrCat(architecture, " '", name, "': ", num_layers, " layers, hidden ", hidden_size, ", ffn ",
                ffn_size, ", heads ", num_heads, "/", num_kv_heads, " (head_dim ", head_dim, "), vocab ",
                vocab_size, ", context ", context_length, tied_embeddings ? ", tied output" : "");
}

}  // namespace tandem
