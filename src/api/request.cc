#include "api/request.h"

#include <limits>

#include "api/json_fields.h"
#include "common/strings.h"

namespace tandem::api {
namespace {

using json_fields::Find;
using json_fields::Json;
using json_fields::ReadBool;
using json_fields::ReadInt64;
using json_fields::ReadNumber;
using json_fields::ReadString;
using json_fields::TypeError;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

ApiError OutOfRange(std::string_view param, std::string_view requirement, std::string_view got) {
  return ApiError::InvalidRequest(StrCat("'", param, "' must be ", requirement, ", got ", got),
                                  std::string(param), "invalid_value");
}

// --- sampling and output controls ---------------------------------------------------------

std::optional<ApiError> ReadMaxTokens(const Json& body, Endpoint endpoint,
                                      GenerationOptions* out) {
  const char* name = "max_tokens";
  const Json* v = Find(body, name);
  if (endpoint == Endpoint::kChatCompletions) {
    if (const Json* newer = Find(body, "max_completion_tokens")) {
      name = "max_completion_tokens";
      v = newer;
    }
  }
  if (v == nullptr) return std::nullopt;
  int64_t n = 0;
  TANDEM_API_RETURN_IF_ERROR(ReadInt64(*v, name, &n));
  if (n < 1) return OutOfRange(name, "at least 1", StrCat(n));
  if (n > kInt32Max) return OutOfRange(name, StrCat("at most ", kInt32Max), StrCat(n));
  out->max_tokens = static_cast<int32_t>(n);
  return std::nullopt;
}

std::optional<ApiError> ReadSampling(const Json& body, GenerationOptions* out) {
  if (const Json* v = Find(body, "temperature")) {
    double t = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadNumber(*v, "temperature", &t));
    if (t < 0 || t > 2) return OutOfRange("temperature", "between 0 and 2", v->dump());
    out->temperature = static_cast<float>(t);
  }
  if (const Json* v = Find(body, "top_p")) {
    double p = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadNumber(*v, "top_p", &p));
    if (!(p > 0 && p <= 1)) return OutOfRange("top_p", "in (0, 1]", v->dump());
    out->top_p = static_cast<float>(p);
  }
  if (const Json* v = Find(body, "top_k")) {
    int64_t k = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadInt64(*v, "top_k", &k));
    if (k < -1) return OutOfRange("top_k", "-1 or 0 (off) or a positive integer", StrCat(k));
    out->top_k = static_cast<int32_t>(std::min<int64_t>(std::max<int64_t>(k, 0), kInt32Max));
  }
  if (const Json* v = Find(body, "seed")) {
    uint64_t seed = 0;
    TANDEM_API_RETURN_IF_ERROR(json_fields::ReadSeed(*v, "seed", &seed));
    out->seed = seed;
  }
  if (const Json* v = Find(body, "ignore_eos")) {
    TANDEM_API_RETURN_IF_ERROR(ReadBool(*v, "ignore_eos", &out->ignore_eos));
  }
  return std::nullopt;
}

std::optional<ApiError> ReadStopString(const Json& v, std::string_view param,
                                       const RequestLimits& limits, std::vector<std::string>* out) {
  std::string s;
  TANDEM_API_RETURN_IF_ERROR(ReadString(v, param, &s));
  if (s.empty()) {
    return ApiError::InvalidRequest(StrCat("'", param, "' must not be an empty string"),
                                    std::string(param), "invalid_value");
  }
  if (s.size() > limits.max_stop_bytes) {
    return OutOfRange(param, StrCat("at most ", limits.max_stop_bytes, " bytes long"),
                      StrCat(s.size(), " bytes"));
  }
  out->push_back(std::move(s));
  return std::nullopt;
}

std::optional<ApiError> ReadStops(const Json& body, const RequestLimits& limits,
                                  GenerationOptions* out) {
  if (const Json* v = Find(body, "stop")) {
    if (v->is_string()) {
      TANDEM_API_RETURN_IF_ERROR(ReadStopString(*v, "stop", limits, &out->stop));
    } else if (v->is_array()) {
      if (v->size() > limits.max_stop_strings) {
        return OutOfRange("stop", StrCat("at most ", limits.max_stop_strings, " strings"),
                          StrCat(v->size()));
      }
      for (size_t i = 0; i < v->size(); ++i) {
        TANDEM_API_RETURN_IF_ERROR(
            ReadStopString((*v)[i], StrCat("stop[", i, "]"), limits, &out->stop));
      }
    } else {
      return TypeError("stop", "a string or an array of strings", *v);
    }
  }
  if (const Json* v = Find(body, "stop_token_ids")) {
    if (!v->is_array()) return TypeError("stop_token_ids", "an array of integers", *v);
    if (v->size() > limits.max_stop_token_ids) {
      return OutOfRange("stop_token_ids", StrCat("at most ", limits.max_stop_token_ids, " ids"),
                        StrCat(v->size()));
    }
    for (size_t i = 0; i < v->size(); ++i) {
      const std::string param = StrCat("stop_token_ids[", i, "]");
      int64_t id = 0;
      TANDEM_API_RETURN_IF_ERROR(ReadInt64((*v)[i], param, &id));
      if (id < 0 || id > kInt32Max) return OutOfRange(param, "a token id (>= 0)", StrCat(id));
      out->stop_token_ids.push_back(static_cast<int32_t>(id));
    }
  }
  return std::nullopt;
}

std::optional<ApiError> ReadStreaming(const Json& body, GenerationOptions* out) {
  if (const Json* v = Find(body, "stream")) {
    TANDEM_API_RETURN_IF_ERROR(ReadBool(*v, "stream", &out->stream));
  }
  if (const Json* v = Find(body, "stream_options")) {
    if (!v->is_object()) return TypeError("stream_options", "an object", *v);
    if (!out->stream) {
      return ApiError::InvalidRequest("'stream_options' is only allowed when 'stream' is true",
                                      "stream_options", "invalid_value");
    }
    if (const Json* u = Find(*v, "include_usage")) {
      TANDEM_API_RETURN_IF_ERROR(ReadBool(*u, "stream_options.include_usage",
                                          &out->include_usage));
    }
  }
  return std::nullopt;
}

// --- fields tandem does not implement ------------------------------------------------------

// True when `v` asks for nothing: false, 0, "", [] or {}.
bool IsOff(const Json& v) {
  if (v.is_boolean()) return !v.get<bool>();
  if (v.is_number()) return v.get<double>() == 0;
  if (v.is_string()) return v.get_ref<const std::string&>().empty();
  if (v.is_array() || v.is_object()) return v.empty();
  return false;
}

std::optional<ApiError> RejectUnsupported(const Json& body) {
  const Json* v = nullptr;
  if ((v = Find(body, "n"))) {
    int64_t n = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadInt64(*v, "n", &n));
    if (n != 1) {
      return ApiError::InvalidRequest(
          StrCat("'n' must be 1: this server returns one choice per request (got ", n,
                 "); send separate requests for more"),
          "n", "unsupported_parameter");
    }
  }
  if ((v = Find(body, "best_of"))) {
    int64_t b = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadInt64(*v, "best_of", &b));
    if (b != 1) return ApiError::Unsupported("best_of", "it must be 1");
  }
  // logprobs: false (chat) or absent. In completions an integer, where 0 still asks for
  // the chosen tokens' log probabilities, so only false/null are "off".
  if ((v = Find(body, "logprobs")) && *v != false) return ApiError::Unsupported("logprobs");
  // Fields whose only accepted values are "off".
  for (const char* name : {"top_logprobs", "echo", "suffix", "tools", "functions",
                           "logit_bias", "min_tokens"}) {
    if ((v = Find(body, name)) && !IsOff(*v)) return ApiError::Unsupported(name);
  }
  if ((v = Find(body, "tool_choice")) && *v != "none" && *v != "auto") {
    return ApiError::Unsupported("tool_choice");
  }
  if ((v = Find(body, "function_call")) && *v != "none" && *v != "auto") {
    return ApiError::Unsupported("function_call");
  }
  if ((v = Find(body, "response_format"))) {
    if (!v->is_object()) return TypeError("response_format", "an object", *v);
    const Json* type = Find(*v, "type");
    if (type != nullptr && *type != "text") {
      return ApiError::Unsupported("response_format",
                                   StrCat("only type 'text' is, got ", type->dump()));
    }
  }
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    if ((v = Find(body, name))) {
      double d = 0;
      TANDEM_API_RETURN_IF_ERROR(ReadNumber(*v, name, &d));
      if (d != 0) return ApiError::Unsupported(name, "only 0 is accepted");
    }
  }
  if ((v = Find(body, "repetition_penalty"))) {
    double d = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadNumber(*v, "repetition_penalty", &d));
    if (d != 1) return ApiError::Unsupported("repetition_penalty", "only 1 is accepted");
  }
  return std::nullopt;
}

std::optional<ApiError> ReadOptions(const Json& body, Endpoint endpoint,
                                    const RequestLimits& limits, GenerationOptions* out) {
  if (const Json* v = Find(body, "model")) {
    TANDEM_API_RETURN_IF_ERROR(ReadString(*v, "model", &out->model));
  }
  TANDEM_API_RETURN_IF_ERROR(RejectUnsupported(body));
  TANDEM_API_RETURN_IF_ERROR(ReadMaxTokens(body, endpoint, out));
  TANDEM_API_RETURN_IF_ERROR(ReadSampling(body, out));
  TANDEM_API_RETURN_IF_ERROR(ReadStops(body, limits, out));
  TANDEM_API_RETURN_IF_ERROR(ReadStreaming(body, out));
  return std::nullopt;
}

// --- chat messages -------------------------------------------------------------------------

std::optional<ApiError> ReadContent(const Json& message, const std::string& prefix,
                                    bool is_assistant, std::string* out) {
  const std::string param = prefix + ".content";
  const Json* content = Find(message, "content");
  if (content == nullptr) {
    if (is_assistant) return std::nullopt;  // e.g. a prefilled empty turn
    return ApiError::InvalidRequest(StrCat("'", param, "' is required"), param,
                                    "missing_required_parameter");
  }
  if (content->is_string()) {
    *out = content->get_ref<const std::string&>();
    return std::nullopt;
  }
  if (!content->is_array()) {
    return TypeError(param, "a string or an array of content parts", *content);
  }
  for (size_t j = 0; j < content->size(); ++j) {
    const Json& part = (*content)[j];
    const std::string part_param = StrCat(param, "[", j, "]");
    if (!part.is_object()) return TypeError(part_param, "an object", part);
    const Json* type = Find(part, "type");
    if (type == nullptr || !type->is_string()) {
      return ApiError::InvalidRequest(StrCat("'", part_param, ".type' must be \"text\""),
                                      part_param + ".type", "invalid_value");
    }
    if (*type != "text") {
      return ApiError::Unsupported(part_param + ".type",
                                   StrCat("content parts of type ", type->dump(),
                                          " are not; only \"text\" is"));
    }
    const Json* text = Find(part, "text");
    if (text == nullptr) {
      return ApiError::InvalidRequest(StrCat("'", part_param, ".text' is required"),
                                      part_param + ".text", "missing_required_parameter");
    }
    std::string piece;
    TANDEM_API_RETURN_IF_ERROR(ReadString(*text, part_param + ".text", &piece));
    if (j > 0) out->push_back('\n');
    *out += piece;
  }
  return std::nullopt;
}

std::optional<ApiError> ReadMessage(const Json& message, size_t index,
                                    text::ChatMessage* out) {
  const std::string prefix = StrCat("messages[", index, "]");
  if (!message.is_object()) return TypeError(prefix, "an object", message);
  const Json* role = Find(message, "role");
  if (role == nullptr) {
    return ApiError::InvalidRequest(StrCat("'", prefix, ".role' is required"), prefix + ".role",
                                    "missing_required_parameter");
  }
  TANDEM_API_RETURN_IF_ERROR(ReadString(*role, prefix + ".role", &out->role));
  if (out->role == "developer") out->role = "system";
  if (out->role == "tool" || out->role == "function") {
    return ApiError::Unsupported(prefix + ".role",
                                 StrCat("role '", out->role, "' needs tool calling"));
  }
  if (out->role != "system" && out->role != "user" && out->role != "assistant") {
    return ApiError::InvalidRequest(
        StrCat("Invalid value for '", prefix, ".role': ", role->dump(),
               ". Supported values are: 'system', 'developer', 'user' and 'assistant'."),
        prefix + ".role", "invalid_value");
  }
  const bool is_assistant = out->role == "assistant";
  if (const Json* calls = Find(message, "tool_calls"); calls != nullptr && !IsOff(*calls)) {
    return ApiError::Unsupported(prefix + ".tool_calls");
  }
  return ReadContent(message, prefix, is_assistant, &out->content);
}

std::optional<ApiError> ReadMessages(const Json& body, const RequestLimits& limits,
                                     std::vector<text::ChatMessage>* out) {
  const Json* messages = Find(body, "messages");
  if (messages == nullptr) {
    return ApiError::InvalidRequest("'messages' is required", "messages",
                                    "missing_required_parameter");
  }
  if (!messages->is_array()) return TypeError("messages", "an array", *messages);
  if (messages->empty()) {
    return ApiError::InvalidRequest("'messages' must contain at least one message", "messages",
                                    "invalid_value");
  }
  if (messages->size() > limits.max_messages) {
    return OutOfRange("messages", StrCat("at most ", limits.max_messages, " messages"),
                      StrCat(messages->size()));
  }
  size_t total_bytes = 0;
  out->resize(messages->size());
  for (size_t i = 0; i < messages->size(); ++i) {
    TANDEM_API_RETURN_IF_ERROR(ReadMessage((*messages)[i], i, &(*out)[i]));
    total_bytes += (*out)[i].content.size();
    if (total_bytes > limits.max_prompt_bytes) {
      return OutOfRange("messages",
                        StrCat("at most ", limits.max_prompt_bytes, " bytes of content"),
                        StrCat("more (at messages[", i, "])"));
    }
  }
  return std::nullopt;
}

// --- completion prompts --------------------------------------------------------------------

std::optional<ApiError> ReadTokenIds(const Json& ids, const RequestLimits& limits,
                                     std::vector<int32_t>* out) {
  if (ids.size() > limits.max_prompt_token_ids) {
    return OutOfRange("prompt", StrCat("at most ", limits.max_prompt_token_ids, " token ids"),
                      StrCat(ids.size()));
  }
  out->reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    int64_t id = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadInt64(ids[i], StrCat("prompt[", i, "]"), &id));
    if (id < 0 || id > kInt32Max) {
      return OutOfRange("prompt", "token ids >= 0", StrCat(id, " at index ", i));
    }
    out->push_back(static_cast<int32_t>(id));
  }
  return std::nullopt;
}

std::optional<ApiError> ReadPrompt(const Json& body, const RequestLimits& limits,
                                   CompletionRequest* out) {
  const Json* prompt = Find(body, "prompt");
  if (prompt == nullptr) {
    return ApiError::InvalidRequest("'prompt' is required", "prompt",
                                    "missing_required_parameter");
  }
  const Json* single = prompt;
  if (prompt->is_array()) {
    if (prompt->empty()) {
      return ApiError::InvalidRequest("'prompt' must not be empty", "prompt", "invalid_value");
    }
    const Json& first = (*prompt)[0];
    if (first.is_string() || first.is_array()) {  // a batch: ["text", ...] or [[ids], ...]
      if (prompt->size() != 1) {
        return ApiError::Unsupported(
            "prompt", StrCat("batches of ", prompt->size(),
                             " prompts are not; send one prompt per request"));
      }
      single = &first;
    }
  }
  if (single->is_string()) {
    out->prompt = single->get_ref<const std::string&>();
    if (out->prompt.empty()) {
      return ApiError::InvalidRequest("'prompt' must not be empty", "prompt", "invalid_value");
    }
    if (out->prompt.size() > limits.max_prompt_bytes) {
      return OutOfRange("prompt", StrCat("at most ", limits.max_prompt_bytes, " bytes"),
                        StrCat(out->prompt.size(), " bytes"));
    }
    return std::nullopt;
  }
  if (!single->is_array()) {
    return TypeError("prompt", "a string, an array of one string or an array of token ids",
                     *single);
  }
  if (single->empty()) {
    return ApiError::InvalidRequest("'prompt' must not be empty", "prompt", "invalid_value");
  }
  return ReadTokenIds(*single, limits, &out->prompt_token_ids);
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
  return p;
}

ApiErrorOr<ChatCompletionRequest> ParseChatCompletionRequest(std::string_view body,
                                                             const RequestLimits& limits) {
  ApiErrorOr<Json> json = json_fields::ParseBody(body, limits.max_body_bytes,
                                                 limits.max_json_depth);
  if (!json.ok()) return json.error();
  ChatCompletionRequest req;
  TANDEM_API_RETURN_IF_ERROR(ReadMessages(*json, limits, &req.messages));
  TANDEM_API_RETURN_IF_ERROR(
      ReadOptions(*json, Endpoint::kChatCompletions, limits, &req.options));
  return req;
}

ApiErrorOr<CompletionRequest> ParseCompletionRequest(std::string_view body,
                                                     const RequestLimits& limits) {
  ApiErrorOr<Json> json = json_fields::ParseBody(body, limits.max_body_bytes,
                                                 limits.max_json_depth);
  if (!json.ok()) return json.error();
  CompletionRequest req;
  TANDEM_API_RETURN_IF_ERROR(ReadPrompt(*json, limits, &req));
  TANDEM_API_RETURN_IF_ERROR(ReadOptions(*json, Endpoint::kCompletions, limits, &req.options));
  return req;
}

ApiErrorOr<int32_t> ResolveMaxTokens(Endpoint endpoint, int64_t prompt_tokens,
                                     std::optional<int32_t> requested, int64_t default_max_tokens,
                                     int64_t context_length) {
  const bool chat = endpoint == Endpoint::kChatCompletions;
  const char* param = chat ? "messages" : "prompt";
  const char* what = chat ? "messages" : "prompt";
  if (prompt_tokens <= 0) {
    return ApiError::InvalidRequest(StrCat("The ", what, " tokenized to no tokens."), param,
                                    "invalid_value");
  }
  if (prompt_tokens >= context_length) {
    return ApiError::InvalidRequest(
        StrCat("This model's maximum context length is ", context_length,
               " tokens. However, your ", what, " resulted in ", prompt_tokens,
               " tokens, which leaves no room for the completion. Please reduce the length of "
               "the ",
               what, "."),
        param, "context_length_exceeded");
  }
  const int64_t room = context_length - prompt_tokens;
  if (requested.has_value()) {
    if (*requested > room) {
      return ApiError::InvalidRequest(
          StrCat("This model's maximum context length is ", context_length,
                 " tokens. However, you requested ", prompt_tokens + *requested, " tokens (",
                 prompt_tokens, " in the ", what, ", ", *requested,
                 " in the completion). Please reduce the length of the ", what,
                 " or completion."),
          param, "context_length_exceeded");
    }
    return *requested;
  }
  const int64_t n = default_max_tokens > 0 ? std::min(default_max_tokens, room) : room;
  return static_cast<int32_t>(std::min<int64_t>(n, kInt32Max));
}

std::optional<ApiError> CheckTokenIdsInVocab(std::span<const int32_t> ids, int32_t vocab_size,
                                             std::string_view param) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return ApiError::InvalidRequest(
          StrCat("'", param, "' contains token id ", ids[i], " at index ", i,
                 ", outside the model's vocabulary of ", vocab_size, " tokens"),
          std::string(param), "invalid_value");
    }
  }
  return std::nullopt;
}

}  // namespace tandem::api
