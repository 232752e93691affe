#include "api/generation_input.h"

#include <algorithm>
#include <limits>

#include "common/strings.h"
#include "types/json_schema.h"
#include "nlohmann/json.hpp"

namespace tandem::api {
namespace {

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

ApiError OutOfRange(std::string_view param, std::string_view requirement, std::string_view got) {
  return ApiError::InvalidRequest(StrCat("'", param, "' must be ", requirement, ", got ", got),
                                  std::string(param), "invalid_value");
}

ApiError EmptyPrompt() {
  return ApiError::InvalidRequest("'prompt' must not be empty", "prompt", "invalid_value");
}

// A string as JSON writes it (quoted, escaped; ill-formed UTF-8 replaced), for messages.
std::string Quoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// --- the prompt ----------------------------------------------------------------------------

std::optional<ApiError> CheckRole(size_t index, text::ChatMessage* message) {
  const std::string param = StrCat("messages[", index, "].role");
  if (message->role == "developer") message->role = "system";
  if (message->role == "tool" || message->role == "function") {
    return ApiError::Unsupported(param, StrCat("role '", message->role, "' needs tool calling"));
  }
  if (message->role != "system" && message->role != "user" && message->role != "assistant") {
    return ApiError::InvalidRequest(
        StrCat("Invalid value for '", param, "': ", Quoted(message->role),
               ". Supported values are: 'system', 'developer', 'user' and 'assistant'."),
        param, "invalid_value");
  }
  return std::nullopt;
}

std::optional<ApiError> CheckMessages(const RequestLimits& limits,
                                      std::vector<text::ChatMessage>* messages) {
  if (messages->empty()) {
    return ApiError::InvalidRequest("'messages' must contain at least one message", "messages",
                                    "invalid_value");
  }
  if (messages->size() > limits.max_messages) {
    return OutOfRange("messages", StrCat("at most ", limits.max_messages, " messages"),
                      StrCat(messages->size()));
  }
  size_t total_bytes = 0;
  for (size_t i = 0; i < messages->size(); ++i) {
    if (auto e = CheckRole(i, &(*messages)[i])) return e;
    total_bytes += (*messages)[i].content.size();
    if (total_bytes > limits.max_prompt_bytes) {
      return OutOfRange("messages", StrCat("at most ", limits.max_prompt_bytes, " bytes of content"),
                        StrCat("more (at messages[", i, "])"));
    }
  }
  return std::nullopt;
}

std::optional<ApiError> CheckTokenIds(const std::vector<int64_t>& ids, const RequestLimits& limits,
                                      std::vector<int32_t>* out) {
  if (ids.empty()) return EmptyPrompt();
  if (ids.size() > limits.max_prompt_token_ids) {
    return OutOfRange("prompt", StrCat("at most ", limits.max_prompt_token_ids, " token ids"),
                      StrCat(ids.size()));
  }
  out->reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] > kInt32Max) {
      return OutOfRange("prompt", "token ids >= 0", StrCat(ids[i], " at index ", i));
    }
    out->push_back(static_cast<int32_t>(ids[i]));
  }
  return std::nullopt;
}

std::optional<ApiError> CheckPrompt(GenerationInput& in, const RequestLimits& limits,
                                    GenerationRequest* out) {
  switch (in.kind) {
    case PromptKind::kNone:
      return ApiError::InvalidRequest("'prompt' is required", "prompt", "missing_required_parameter");
    case PromptKind::kChat:
      out->endpoint = Endpoint::kChatCompletions;
      if (auto e = CheckMessages(limits, &in.messages)) return e;
      out->messages = std::move(in.messages);
      return std::nullopt;
    case PromptKind::kText:
      out->endpoint = Endpoint::kCompletions;
      if (in.prompt.empty()) return EmptyPrompt();
      if (in.prompt.size() > limits.max_prompt_bytes) {
        return OutOfRange("prompt", StrCat("at most ", limits.max_prompt_bytes, " bytes"),
                          StrCat(in.prompt.size(), " bytes"));
      }
      out->prompt = std::move(in.prompt);
      return std::nullopt;
    case PromptKind::kTokenIds:
      out->endpoint = Endpoint::kCompletions;
      return CheckTokenIds(in.prompt_token_ids, limits, &out->prompt_token_ids);
  }
  return std::nullopt;
}

// --- sampling and output controls ---------------------------------------------------------

std::optional<ApiError> CheckSampling(const OptionsInput& in, GenerationOptions* out) {
  if (in.max_tokens.has_value()) {
    const int64_t n = *in.max_tokens;
    if (n < 1) return OutOfRange(in.max_tokens_param, "at least 1", StrCat(n));
    if (n > kInt32Max) return OutOfRange(in.max_tokens_param, StrCat("at most ", kInt32Max), StrCat(n));
    out->max_tokens = static_cast<int32_t>(n);
  }
  if (in.temperature.has_value()) {
    const double t = *in.temperature;
    if (!(t >= 0 && t <= 2)) return OutOfRange("temperature", "between 0 and 2", StrCat(t));
    out->temperature = static_cast<float>(t);
  }
  if (in.top_p.has_value()) {
    const double p = *in.top_p;
    if (!(p > 0 && p <= 1)) return OutOfRange("top_p", "in (0, 1]", StrCat(p));
    out->top_p = static_cast<float>(p);
  }
  if (in.top_k.has_value()) {
    const int64_t k = *in.top_k;
    if (k < -1) return OutOfRange("top_k", "-1 or 0 (off) or a positive integer", StrCat(k));
    out->top_k = static_cast<int32_t>(std::min<int64_t>(std::max<int64_t>(k, 0), kInt32Max));
  }
  out->seed = in.seed;
  out->ignore_eos = in.ignore_eos;
  return std::nullopt;
}

// Checks an optional number against [lo, hi] (`lo_open`: lo itself excluded) into *out.
std::optional<ApiError> CheckRange(const std::optional<double>& in, std::string_view param, double lo, double hi,
                                   bool lo_open, float* out) {
  if (!in.has_value()) return std::nullopt;
  const double v = *in;
  if (!((lo_open ? v > lo : v >= lo) && v <= hi)) {
    return OutOfRange(param, StrCat(lo_open ? "in (" : "between ", lo, lo_open ? ", " : " and ", hi,
                                    lo_open ? "]" : ""),
                      StrCat(v));
  }
  *out = static_cast<float>(v);
  return std::nullopt;
}

std::optional<ApiError> CheckResponseFormat(const OptionsInput& in, GenerationOptions* out) {
  const std::string& type = in.response_format;
  if (type.empty() || type == "text") return std::nullopt;
  if (type == "json_object") {
    out->response_format = ResponseFormat::kJsonObject;
    return std::nullopt;
  }
  if (type == "json_schema") {
    constexpr size_t kMaxSchemaBytes = 64 << 10;
    const char* param = "response_format.json_schema.schema";
    if (in.json_schema.empty()) return ApiError::InvalidRequest(StrCat("'", param, "' is required"), param, "invalid_value");
    if (in.json_schema.size() > kMaxSchemaBytes) {
      return OutOfRange(param, StrCat("at most ", kMaxSchemaBytes, " bytes of JSON"), StrCat(in.json_schema.size()));
    }
    if (auto schema = CompileJsonSchema(in.json_schema); !schema.ok()) {
      return ApiError::InvalidRequest(StrCat("'", param, "' cannot be enforced: ", schema.status().message()), param,
                                      "invalid_value");
    }
    out->response_format = ResponseFormat::kJsonSchema;
    out->json_schema = in.json_schema;
    return std::nullopt;
  }
  return ApiError::InvalidRequest(StrCat("'response_format.type' must be 'text', 'json_object' or 'json_schema', got '",
                                         type.substr(0, 64), "'"),
                                  "response_format.type", "invalid_value");
}

// logprobs, echo and prompt_logprobs. Echo with logprobs k and prompt_logprobs j together: the
// engine computes max(k, j) alternatives per prompt token, and each view shows its own k or j.
std::optional<ApiError> CheckLogprobs(const OptionsInput& in, GenerationOptions* out) {
  out->echo = in.echo;
  if (in.logprobs.has_value()) {
    const int64_t k = *in.logprobs;
    if (k < 0 || k > kMaxLogprobs) return OutOfRange(in.logprobs_param, StrCat("between 0 and ", kMaxLogprobs), StrCat(k));
    out->logprobs = static_cast<int32_t>(k);
    if (in.echo) out->prompt_logprobs = out->logprobs;  // the echoed prompt's tokens are scored too
  }
  if (in.prompt_logprobs.has_value()) {
    const int64_t k = *in.prompt_logprobs;
    if (k < 0 || k > kMaxLogprobs) return OutOfRange("prompt_logprobs", StrCat("between 0 and ", kMaxLogprobs), StrCat(k));
    // As vLLM: the list comes in whole answers only. (Echo with logprobs streams the prompt's
    // entries in the first chunk; that is OpenAI's logprobs object, not this list.)
    if (in.stream) {
      return ApiError::InvalidRequest("'prompt_logprobs' is not available with \"stream\": true; send it "
                                      "without streaming",
                                      "prompt_logprobs", "invalid_value");
    }
    out->requested_prompt_logprobs = static_cast<int32_t>(k);
    out->prompt_logprobs = std::max(out->prompt_logprobs, out->requested_prompt_logprobs);
  }
  return std::nullopt;
}

std::optional<ApiError> CheckModifiers(const OptionsInput& in, const RequestLimits& limits,
                                       GenerationOptions* out) {
  if (auto e = CheckRange(in.presence_penalty, "presence_penalty", -2, 2, false, &out->presence_penalty)) return e;
  if (auto e = CheckRange(in.frequency_penalty, "frequency_penalty", -2, 2, false, &out->frequency_penalty)) {
    return e;
  }
  if (auto e = CheckRange(in.repetition_penalty, "repetition_penalty", 0, 10, true, &out->repetition_penalty)) {
    return e;
  }
  if (auto e = CheckRange(in.min_p, "min_p", 0, 1, false, &out->min_p)) return e;
  if (in.logit_bias.size() > limits.max_logit_bias) {
    return OutOfRange("logit_bias", StrCat("at most ", limits.max_logit_bias, " entries"),
                      StrCat(in.logit_bias.size()));
  }
  for (const auto& [id, bias] : in.logit_bias) {
    if (id < 0 || id > kInt32Max) return OutOfRange("logit_bias", "keyed by token ids (>= 0)", StrCat(id));
    if (!(bias >= -100 && bias <= 100)) {
      return OutOfRange("logit_bias", "biases between -100 and 100", StrCat(bias, " for token ", id));
    }
    out->logit_bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(bias));
  }
  if (auto e = CheckLogprobs(in, out)) return e;
  if (in.priority.has_value()) {
    const int64_t p = *in.priority;
    if (p < std::numeric_limits<int32_t>::min() || p > kInt32Max) {
      return OutOfRange("priority", "a 32-bit integer", StrCat(p));
    }
    out->priority = static_cast<int32_t>(p);
  }
  out->speculative = in.speculative;
  if (in.min_tokens.has_value()) {
    const int64_t n = *in.min_tokens;
    if (n < 0 || n > kInt32Max) return OutOfRange("min_tokens", "a count >= 0", StrCat(n));
    if (out->max_tokens.has_value() && n > *out->max_tokens) {
      return OutOfRange("min_tokens", StrCat("at most max_tokens (", *out->max_tokens, ")"), StrCat(n));
    }
    out->min_tokens = static_cast<int32_t>(n);
  }
  return CheckResponseFormat(in, out);
}

std::optional<ApiError> CheckStops(const OptionsInput& in, const RequestLimits& limits,
                                   GenerationOptions* out) {
  if (in.stop.size() > limits.max_stop_strings) {
    return OutOfRange("stop", StrCat("at most ", limits.max_stop_strings, " strings"),
                      StrCat(in.stop.size()));
  }
  for (size_t i = 0; i < in.stop.size(); ++i) {
    const std::string param = in.stop_is_list ? StrCat("stop[", i, "]") : std::string("stop");
    const std::string& s = in.stop[i];
    if (s.empty()) {
      return ApiError::InvalidRequest(StrCat("'", param, "' must not be an empty string"), param,
                                      "invalid_value");
    }
    if (s.size() > limits.max_stop_bytes) {
      return OutOfRange(param, StrCat("at most ", limits.max_stop_bytes, " bytes long"),
                        StrCat(s.size(), " bytes"));
    }
  }
  out->stop = in.stop;
  if (in.stop_token_ids.size() > limits.max_stop_token_ids) {
    return OutOfRange("stop_token_ids", StrCat("at most ", limits.max_stop_token_ids, " ids"),
                      StrCat(in.stop_token_ids.size()));
  }
  for (size_t i = 0; i < in.stop_token_ids.size(); ++i) {
    const int64_t id = in.stop_token_ids[i];
    if (id < 0 || id > kInt32Max) {
      return OutOfRange(StrCat("stop_token_ids[", i, "]"), "a token id (>= 0)", StrCat(id));
    }
    out->stop_token_ids.push_back(static_cast<int32_t>(id));
  }
  return std::nullopt;
}

std::optional<ApiError> CheckChoices(const OptionsInput& in, const RequestLimits& limits, GenerationOptions* out) {
  const int64_t max = limits.max_choices;
  const int64_t n = in.n.value_or(1);
  if (n < 1 || n > max) return OutOfRange("n", StrCat("between 1 and ", max), StrCat(n));
  const int64_t best_of = in.best_of.value_or(n);
  if (best_of < n || best_of > max) {
    return OutOfRange("best_of", StrCat("between n (", n, ") and ", max), StrCat(best_of));
  }
  if (best_of > n && in.stream) {
    return ApiError::InvalidRequest("'best_of' above 'n' cannot be streamed: the best choices are known only "
                                    "when all are done",
                                    "best_of", "invalid_value");
  }
  out->n = static_cast<int32_t>(n);
  out->best_of = static_cast<int32_t>(best_of);
  return std::nullopt;
}

}  // namespace

SamplingParams GenerationOptions::ToSamplingParams(int32_t resolved_max_tokens) const {
  SamplingParams p;
  p.temperature = temperature;
  p.top_p = top_p;
  p.top_k = top_k;
  p.seed = seed;
  p.max_tokens = resolved_max_tokens;
  p.ignore_eos = ignore_eos;
  p.stop_token_ids = stop_token_ids;
  p.logit_bias = logit_bias;
  p.presence_penalty = presence_penalty;
  p.frequency_penalty = frequency_penalty;
  p.repetition_penalty = repetition_penalty;
  p.min_p = min_p;
  p.priority = priority;
  p.logprobs = logprobs;
  p.prompt_logprobs = prompt_logprobs;
  p.min_tokens = min_tokens;
  p.speculative = speculative;
  p.response_format = response_format;
  p.json_schema = json_schema;
  return p;
}

ApiErrorOr<GenerationRequest> ValidateGenerationInput(GenerationInput input, const RequestLimits& limits) {
  GenerationRequest out;
  if (auto e = CheckPrompt(input, limits, &out)) return *std::move(e);
  out.options.model = std::move(input.options.model);
  if (auto e = CheckSampling(input.options, &out.options)) return *std::move(e);
  if (auto e = CheckStops(input.options, limits, &out.options)) return *std::move(e);
  if (auto e = CheckModifiers(input.options, limits, &out.options)) return *std::move(e);
  if (auto e = CheckChoices(input.options, limits, &out.options)) return *std::move(e);
  out.options.stream = input.options.stream;
  out.options.include_usage = input.options.include_usage;
  return out;
}

}  // namespace tandem::api
