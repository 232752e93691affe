#include "engine/llama_model.h"

#include <cmath>

#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem {
namespace {

absl::StatusOr<const gguf::TensorInfo*> Need(const gguf::GgufFile& f, const std::string& name,
                                             std::vector<int64_t> dims) {
  const gguf::TensorInfo* t = f.FindTensor(name);
  if (t == nullptr) return absl::InvalidArgumentError(StrCat(f.path(), ": tensor ", name, " is missing"));
  if (t->dims != dims) {
    return absl::InvalidArgumentError(StrCat(f.path(), ": tensor ", name, " has shape [",
                                             fmt::format("{}", fmt::join(t->dims, ", ")), "], expected [",
                                             fmt::format("{}", fmt::join(dims, ", ")), "]"));
  }
  return t;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const gguf::GgufFile& file,
                                                             Backend& backend) {
  TANDEM_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::FromGguf(file));
  auto model = std::unique_ptr<LlamaModel>(new LlamaModel(backend, config));
  const ModelConfig& c = model->config_;
  const int64_t hidden = c.hidden_size, q_dim = int64_t{c.num_heads} * c.head_dim;
  const int64_t kv_dim = int64_t{c.num_kv_heads} * c.head_dim;

  auto matrix = [&](const std::string& name, std::vector<int64_t> dims,
                    std::unique_ptr<WeightMatrix>* out) -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(const gguf::TensorInfo* t, Need(file, name, std::move(dims)));
    TANDEM_ASSIGN_OR_RETURN(*out, backend.LoadMatrix(*t));
    model->weight_bytes_ += (*out)->resident_bytes();
    return absl::OkStatus();
  };
  auto vector = [&](const std::string& name, int64_t n,
                    std::unique_ptr<DeviceBuffer>* out) -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(const gguf::TensorInfo* t, Need(file, name, {n}));
    TANDEM_ASSIGN_OR_RETURN(*out, backend.LoadVector(*t));
    model->weight_bytes_ += n * 4;
    return absl::OkStatus();
  };

  auto optional_vector = [&](const std::string& name, int64_t n,
                             std::unique_ptr<DeviceBuffer>* out) -> absl::Status {
    return file.FindTensor(name) == nullptr ? absl::OkStatus() : vector(name, n, out);
  };

  TANDEM_RETURN_IF_ERROR(matrix("token_embd.weight", {hidden, c.vocab_size}, &model->token_embd_));
  TANDEM_RETURN_IF_ERROR(optional_vector("output.bias", c.vocab_size, &model->output_bias_));
  if (!c.tied_embeddings) {
    TANDEM_RETURN_IF_ERROR(matrix("output.weight", {hidden, c.vocab_size}, &model->output_));
  }
  TANDEM_RETURN_IF_ERROR(vector("output_norm.weight", hidden, &model->output_norm_));
  model->layers_.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    Layer& L = model->layers_[i];
    const std::string b = StrCat("blk.", i, ".");
    TANDEM_RETURN_IF_ERROR(vector(b + "attn_norm.weight", hidden, &L.attn_norm));
    TANDEM_RETURN_IF_ERROR(vector(b + "ffn_norm.weight", hidden, &L.ffn_norm));
    TANDEM_RETURN_IF_ERROR(matrix(b + "attn_q.weight", {hidden, q_dim}, &L.wq));
    TANDEM_RETURN_IF_ERROR(matrix(b + "attn_k.weight", {hidden, kv_dim}, &L.wk));
    TANDEM_RETURN_IF_ERROR(matrix(b + "attn_v.weight", {hidden, kv_dim}, &L.wv));
    TANDEM_RETURN_IF_ERROR(optional_vector(b + "attn_q.bias", q_dim, &L.bq));
    TANDEM_RETURN_IF_ERROR(optional_vector(b + "attn_k.bias", kv_dim, &L.bk));
    TANDEM_RETURN_IF_ERROR(optional_vector(b + "attn_v.bias", kv_dim, &L.bv));
    TANDEM_RETURN_IF_ERROR(matrix(b + "attn_output.weight", {q_dim, hidden}, &L.wo));
    TANDEM_RETURN_IF_ERROR(matrix(b + "ffn_gate.weight", {hidden, c.ffn_size}, &L.w_gate));
    TANDEM_RETURN_IF_ERROR(matrix(b + "ffn_up.weight", {hidden, c.ffn_size}, &L.w_up));
    TANDEM_RETURN_IF_ERROR(matrix(b + "ffn_down.weight", {c.ffn_size, hidden}, &L.w_down));
  }
  RopeConfig rope;
  rope.rotary_dim = c.rotary_dim;
  rope.neox = c.rope_neox;
  rope.theta = c.rope_theta;
  rope.freq_scale = c.rope_freq_scale;
  rope.freq_factors = c.rope_freq_factors;
  rope.max_positions = c.context_length;
  TANDEM_RETURN_IF_ERROR(backend.SetRope(rope));
  return model;
}

KvCacheLayout LlamaModel::kv_layout(int block_size) const {
  KvCacheLayout layout;
  layout.num_layers = config_.num_layers;
  layout.num_kv_heads = config_.num_kv_heads;
  layout.head_dim = config_.head_dim;
  layout.block_size = block_size;
  layout.dtype = DType::kF16;
  return layout;
}

absl::Status LlamaModel::EnsureWorkspace(int64_t tokens, int64_t logit_rows) {
  const ModelConfig& c = config_;
  if (tokens > ws_.tokens) {
    const int64_t n = std::max<int64_t>(tokens, 16);
    const int64_t q_dim = int64_t{c.num_heads} * c.head_dim, kv_dim = int64_t{c.num_kv_heads} * c.head_dim;
    TANDEM_ASSIGN_OR_RETURN(ws_.x, backend_.Allocate(DType::kF32, n, c.hidden_size));
    TANDEM_ASSIGN_OR_RETURN(ws_.h, backend_.Allocate(DType::kF32, n, c.hidden_size));
    TANDEM_ASSIGN_OR_RETURN(ws_.delta, backend_.Allocate(DType::kF32, n, c.hidden_size));
    TANDEM_ASSIGN_OR_RETURN(ws_.q, backend_.Allocate(DType::kF32, n, q_dim));
    TANDEM_ASSIGN_OR_RETURN(ws_.k, backend_.Allocate(DType::kF32, n, kv_dim));
    TANDEM_ASSIGN_OR_RETURN(ws_.v, backend_.Allocate(DType::kF32, n, kv_dim));
    TANDEM_ASSIGN_OR_RETURN(ws_.attn, backend_.Allocate(DType::kF32, n, q_dim));
    TANDEM_ASSIGN_OR_RETURN(ws_.gate, backend_.Allocate(DType::kF32, n, c.ffn_size));
    TANDEM_ASSIGN_OR_RETURN(ws_.up, backend_.Allocate(DType::kF32, n, c.ffn_size));
    TANDEM_ASSIGN_OR_RETURN(ws_.act, backend_.Allocate(DType::kF32, n, c.ffn_size));
    ws_.tokens = n;
  }
  if (logit_rows > ws_.logit_rows) {
    const int64_t n = std::max<int64_t>(logit_rows, 4);
    TANDEM_ASSIGN_OR_RETURN(ws_.selected, backend_.Allocate(DType::kF32, n, c.hidden_size));
    TANDEM_ASSIGN_OR_RETURN(ws_.logits, backend_.Allocate(DType::kF32, n, c.vocab_size));
    ws_.logit_rows = n;
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::Forward(const ForwardBatch& batch, KvCacheStorage& cache, float* logits) {
  const ModelConfig& c = config_;
  const int64_t n = batch.num_tokens();
  if (n == 0) return absl::OkStatus();
  TANDEM_RETURN_IF_ERROR(EnsureWorkspace(n, static_cast<int64_t>(batch.logit_rows.size())));
  TANDEM_RETURN_IF_ERROR(backend_.BeginForward(batch));
  Backend& B = backend_;
  const Tensor x = ws_.x->tensor().Rows(0, n), h = ws_.h->tensor().Rows(0, n);
  const Tensor delta = ws_.delta->tensor().Rows(0, n);
  const Tensor q = ws_.q->tensor().Rows(0, n), k = ws_.k->tensor().Rows(0, n);
  const Tensor v = ws_.v->tensor().Rows(0, n), attn = ws_.attn->tensor().Rows(0, n);
  const Tensor gate = ws_.gate->tensor().Rows(0, n), up = ws_.up->tensor().Rows(0, n);
  const Tensor act = ws_.act->tensor().Rows(0, n);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

  B.Embed(*token_embd_, x);
  for (int i = 0; i < c.num_layers; ++i) {
    const Layer& L = layers_[i];
    if (i == 0) {
      B.RmsNorm(x, *L.attn_norm, c.rms_eps, h);
    } else {
      B.AddRmsNorm(x, delta, *L.attn_norm, c.rms_eps, h);  // x += previous layer's FFN output
    }
    const WeightMatrix* qkv[] = {L.wq.get(), L.wk.get(), L.wv.get()};
    const Tensor qkv_out[] = {q, k, v};
    B.MatMul(h, qkv, qkv_out);
    if (L.bq) B.AddBias(q, *L.bq);
    if (L.bk) B.AddBias(k, *L.bk);
    if (L.bv) B.AddBias(v, *L.bv);
    B.RopeAndStoreKv(q, k, v, cache, i);
    B.Attention(q, cache, i, c.num_heads, scale, attn);
    const WeightMatrix* wo[] = {L.wo.get()};
    const Tensor wo_out[] = {delta};
    B.MatMul(attn, wo, wo_out);
    B.AddRmsNorm(x, delta, *L.ffn_norm, c.rms_eps, h);  // x += attention output
    const WeightMatrix* gu[] = {L.w_gate.get(), L.w_up.get()};
    const Tensor gu_out[] = {gate, up};
    B.MatMul(h, gu, gu_out);
    B.SwiGlu(gate, up, act);
    const WeightMatrix* down[] = {L.w_down.get()};
    const Tensor down_out[] = {delta};
    B.MatMul(act, down, down_out);
  }
  const int64_t rows = static_cast<int64_t>(batch.logit_rows.size());
  if (rows == 0) return absl::OkStatus();
  B.AddRmsNorm(x, delta, *output_norm_, c.rms_eps, h);
  const Tensor selected = ws_.selected->tensor().Rows(0, rows);
  const Tensor out = ws_.logits->tensor().Rows(0, rows);
  B.GatherLogitRows(h, selected);
  const WeightMatrix* head[] = {output_ ? output_.get() : token_embd_.get()};
  const Tensor head_out[] = {out};
  B.MatMul(selected, head, head_out);
  if (output_bias_) B.AddBias(out, *output_bias_);
  return B.ReadFloat(out, logits);
}

}  // namespace tandem
