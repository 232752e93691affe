#include "rpc/convert.h"

#include <algorithm>

namespace tandem::rpc {

SamplingParams FromProto(const v1::SamplingParams& p, const SamplingParams& defaults) {
  SamplingParams s = defaults;
  if (p.has_temperature()) s.temperature = p.temperature();
  if (p.has_top_p()) s.top_p = p.top_p();
  if (p.has_top_k()) s.top_k = p.top_k();
  if (p.has_seed()) s.seed = p.seed();
  if (p.max_tokens() > 0) s.max_tokens = p.max_tokens();
  s.ignore_eos = p.ignore_eos();
  s.stop_token_ids.assign(p.stop_token_ids().begin(), p.stop_token_ids().end());
  s.logit_bias.assign(p.logit_bias().begin(), p.logit_bias().end());
  std::sort(s.logit_bias.begin(), s.logit_bias.end());  // map order is unspecified
  s.presence_penalty = p.presence_penalty();
  s.frequency_penalty = p.frequency_penalty();
  if (p.has_repetition_penalty()) s.repetition_penalty = p.repetition_penalty();
  s.min_p = p.min_p();
  s.output_in_prompt = p.output_in_prompt();
  s.priority = p.priority();
  if (p.has_logprobs()) s.logprobs = p.logprobs();
  if (p.has_prompt_logprobs()) s.prompt_logprobs = p.prompt_logprobs();
  if (p.has_speculative()) s.speculative = p.speculative();
  s.min_tokens = p.min_tokens();
  switch (p.response_format()) {
    case v1::RESPONSE_FORMAT_JSON_OBJECT: s.response_format = ResponseFormat::kJsonObject; break;
    case v1::RESPONSE_FORMAT_JSON_SCHEMA:
      s.response_format = ResponseFormat::kJsonSchema;
      s.json_schema = p.json_schema();
      break;
    default: s.response_format = ResponseFormat::kText;
  }
  return s;
}

v1::SamplingParams ToProto(const SamplingParams& s) {
  v1::SamplingParams p;
  p.set_temperature(s.temperature);
  p.set_top_p(s.top_p);
  p.set_top_k(s.top_k);
  if (s.seed) p.set_seed(*s.seed);
  p.set_max_tokens(s.max_tokens);
  p.set_ignore_eos(s.ignore_eos);
  for (int32_t t : s.stop_token_ids) p.add_stop_token_ids(t);
  for (const auto& [id, bias] : s.logit_bias) (*p.mutable_logit_bias())[id] = bias;
  p.set_presence_penalty(s.presence_penalty);
  p.set_frequency_penalty(s.frequency_penalty);
  if (s.repetition_penalty != 1.0f) p.set_repetition_penalty(s.repetition_penalty);
  p.set_min_p(s.min_p);
  p.set_output_in_prompt(s.output_in_prompt);
  p.set_priority(s.priority);
  if (s.logprobs >= 0) p.set_logprobs(s.logprobs);
  if (s.prompt_logprobs >= 0) p.set_prompt_logprobs(s.prompt_logprobs);
  if (!s.speculative) p.set_speculative(false);
  p.set_min_tokens(s.min_tokens);
  if (s.response_format == ResponseFormat::kJsonObject) p.set_response_format(v1::RESPONSE_FORMAT_JSON_OBJECT);
  if (s.response_format == ResponseFormat::kJsonSchema) {
    p.set_response_format(v1::RESPONSE_FORMAT_JSON_SCHEMA);
    p.set_json_schema(s.json_schema);
  }
  return p;
}

v1::TokenLogprob ToProto(const TokenLogprob& l) {
  v1::TokenLogprob p;
  p.set_logprob(l.logprob);
  p.set_rank(l.rank);
  for (const auto& [id, lp] : l.top) {
    p.add_top_ids(id);
    p.add_top_logprobs(lp);
  }
  return p;
}

TokenLogprob FromProto(const v1::TokenLogprob& p) {
  TokenLogprob l;
  l.logprob = p.logprob();
  l.rank = std::max(p.rank(), 0);
  const int n = std::min(p.top_ids_size(), p.top_logprobs_size());
  for (int i = 0; i < n; ++i) l.top.emplace_back(p.top_ids(i), p.top_logprobs(i));
  return l;
}

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kCancelled: return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kError: return v1::FINISH_REASON_ERROR;
    default: return v1::FINISH_REASON_UNSPECIFIED;
  }
}

FinishReason FromProto(v1::FinishReason r) {
  switch (r) {
    case v1::FINISH_REASON_STOP: return FinishReason::kStop;
    case v1::FINISH_REASON_LENGTH: return FinishReason::kLength;
    case v1::FINISH_REASON_CANCELLED: return FinishReason::kCancelled;
    case v1::FINISH_REASON_ERROR: return FinishReason::kError;
    default: return FinishReason::kNone;
  }
}

KvLayoutInfo FromProto(const v1::KvLayout& p) {
  KvLayoutInfo l;
  l.model_id = p.model_id();
  l.layout.num_layers = p.num_layers();
  l.layout.num_kv_heads = p.num_kv_heads();
  l.layout.head_dim = p.head_dim();
  l.layout.block_size = p.block_size();
  l.layout.dtype = p.dtype() == "f32" ? DType::kF32 : p.dtype() == "bf16" ? DType::kBF16 : DType::kF16;
  l.block_format = p.block_format();
  return l;
}

v1::KvLayout ToProto(const KvLayoutInfo& l) {
  v1::KvLayout p;
  p.set_model_id(l.model_id);
  p.set_num_layers(l.layout.num_layers);
  p.set_num_kv_heads(l.layout.num_kv_heads);
  p.set_head_dim(l.layout.head_dim);
  p.set_block_size(l.layout.block_size);
  p.set_dtype(l.layout.dtype == DType::kF32 ? "f32" : l.layout.dtype == DType::kBF16 ? "bf16" : "f16");
  p.set_block_format(l.block_format);
  return p;
}

KvEndpoint FromProto(const v1::KvEndpoint& p) {
  KvEndpoint e;
  e.worker_id = p.worker_id();
  e.epoch = p.epoch();
  e.address = p.address();
  e.layout = FromProto(p.layout());
  return e;
}

v1::KvEndpoint ToProto(const KvEndpoint& e, std::string_view transport) {
  v1::KvEndpoint p;
  p.set_worker_id(e.worker_id);
  p.set_epoch(e.epoch);
  p.set_transport(std::string(transport));
  p.set_address(e.address);
  *p.mutable_layout() = ToProto(e.layout);
  return p;
}

KvDestination FromProto(const v1::KvDestination& p) {
  KvDestination d;
  d.endpoint = FromProto(p.endpoint());
  d.lease_id = p.lease_id();
  d.blocks.assign(p.block_ids().begin(), p.block_ids().end());
  return d;
}

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), std::string(s.message()));
}

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(static_cast<int>(s.error_code())), s.error_message());
}

}  // namespace tandem::rpc
