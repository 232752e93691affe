#include "api/request.h"

#include <charconv>
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

// --- sampling and output controls (values are judged by ValidateGenerationInput) ----------

std::optional<ApiError> ReadMaxTokens(const Json& body, Endpoint endpoint, OptionsInput* out) {
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
  out->max_tokens = n;
  out->max_tokens_param = name;
  return std::nullopt;
}

std::optional<ApiError> ReadOptionalNumber(const Json& body, const char* name, std::optional<double>* out) {
  if (const Json* v = Find(body, name)) {
    double d = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadNumber(*v, name, &d));
    *out = d;
  }
  return std::nullopt;
}

std::optional<ApiError> ReadSampling(const Json& body, OptionsInput* out) {
  TANDEM_API_RETURN_IF_ERROR(ReadOptionalNumber(body, "temperature", &out->temperature));
  TANDEM_API_RETURN_IF_ERROR(ReadOptionalNumber(body, "top_p", &out->top_p));
  if (const Json* v = Find(body, "top_k")) {
    int64_t k = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadInt64(*v, "top_k", &k));
    out->top_k = k;
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

// logit_bias: {"<token id>": bias, ...} (OpenAI's shape: keys are strings).
std::optional<ApiError> ReadLogitBias(const Json& body, OptionsInput* out) {
  const Json* v = Find(body, "logit_bias");
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) return TypeError("logit_bias", "an object mapping token ids to biases", *v);
  for (const auto& [key, value] : v->items()) {
    int64_t id = 0;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || end != key.data() + key.size() || key.empty()) {
      return ApiError::InvalidRequest(
          StrCat("'logit_bias' keys must be token ids (integers as strings), got \"", key.substr(0, 64), "\""),
          "logit_bias", "invalid_value");
    }
    double bias = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadNumber(value, StrCat("logit_bias.", key), &bias));
    out->logit_bias.emplace_back(id, bias);
  }
  return std::nullopt;
}

// Chat: "logprobs": true, with "top_logprobs": k alternatives (0 when absent). Completions:
// "logprobs": k (0 still asks for the chosen tokens' log-probabilities).
std::optional<ApiError> ReadLogprobs(const Json& body, Endpoint endpoint, OptionsInput* out) {
  const Json* v = Find(body, "logprobs");
  if (const Json* echo = Find(body, "echo")) {
    TANDEM_API_RETURN_IF_ERROR(ReadBool(*echo, "echo", &out->echo));
    if (out->echo && endpoint == Endpoint::kChatCompletions) return ApiError::Unsupported("echo", "in chat completions");
  }
  if (endpoint == Endpoint::kCompletions) {
    if (v == nullptr || *v == false) return std::nullopt;
    int64_t k = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadInt64(*v, "logprobs", &k));
    out->logprobs = k;
    return std::nullopt;
  }
  bool on = false;
  if (v != nullptr) TANDEM_API_RETURN_IF_ERROR(ReadBool(*v, "logprobs", &on));
  int64_t k = 0;
  const Json* top = Find(body, "top_logprobs");
  if (top != nullptr) {
    TANDEM_API_RETURN_IF_ERROR(ReadInt64(*top, "top_logprobs", &k));
    if (!on && k != 0) {
      return ApiError::InvalidRequest("'top_logprobs' needs 'logprobs' to be true", "top_logprobs",
                                      "invalid_value");
    }
  }
  if (on) {
    out->logprobs = k;
    out->logprobs_param = "top_logprobs";
  }
  return std::nullopt;
}

// vLLM's prompt_logprobs, both endpoints: k (range judged by ValidateGenerationInput), or null: off.
std::optional<ApiError> ReadPromptLogprobs(const Json& body, OptionsInput* out) {
  const Json* v = Find(body, "prompt_logprobs");
  if (v == nullptr || v->is_null()) return std::nullopt;
  int64_t k = 0;
  TANDEM_API_RETURN_IF_ERROR(ReadInt64(*v, "prompt_logprobs", &k));
  out->prompt_logprobs = k;
  return std::nullopt;
}

// response_format: {"type": "text" | "json_object" | "json_schema", "json_schema": {"name": ...,
// "schema": {...}, "strict": ...}}; null is absent. The type and the schema are judged by
// ValidateGenerationInput, as the gRPC door's.
std::optional<ApiError> ReadResponseFormat(const Json& body, OptionsInput* out) {
  const Json* v = Find(body, "response_format");
  if (v == nullptr || v->is_null()) return std::nullopt;
  if (!v->is_object()) return TypeError("response_format", "an object", *v);
  const Json* type = Find(*v, "type");
  if (type == nullptr) {
    return ApiError::InvalidRequest("'response_format' needs a 'type'", "response_format.type", "invalid_value");
  }
  TANDEM_API_RETURN_IF_ERROR(ReadString(*type, "response_format.type", &out->response_format));
  if (out->response_format != "json_schema") return std::nullopt;
  const Json* spec = Find(*v, "json_schema");
  if (spec == nullptr || !spec->is_object()) {
    return ApiError::InvalidRequest("'response_format.json_schema' must be an object with the 'schema'",
                                    "response_format.json_schema", "invalid_value");
  }
  if (const Json* schema = Find(*spec, "schema"); schema != nullptr && !schema->is_null()) {
    out->json_schema = schema->dump();
  }
  return std::nullopt;
}

std::optional<ApiError> ReadModifiers(const Json& body, OptionsInput* out) {
  TANDEM_API_RETURN_IF_ERROR(ReadOptionalNumber(body, "presence_penalty", &out->presence_penalty));
  TANDEM_API_RETURN_IF_ERROR(ReadOptionalNumber(body, "frequency_penalty", &out->frequency_penalty));
  TANDEM_API_RETURN_IF_ERROR(ReadOptionalNumber(body, "repetition_penalty", &out->repetition_penalty));
  TANDEM_API_RETURN_IF_ERROR(ReadOptionalNumber(body, "min_p", &out->min_p));
  TANDEM_API_RETURN_IF_ERROR(ReadLogitBias(body, out));
  TANDEM_API_RETURN_IF_ERROR(ReadResponseFormat(body, out));
  if (const Json* v = Find(body, "priority")) {
    int64_t p = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadInt64(*v, "priority", &p));
    out->priority = p;
  }
  if (const Json* v = Find(body, "speculative"); v != nullptr && !v->is_null()) {
    TANDEM_API_RETURN_IF_ERROR(ReadBool(*v, "speculative", &out->speculative));
  }
  if (const Json* v = Find(body, "min_tokens"); v != nullptr && !v->is_null()) {
    int64_t n = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadInt64(*v, "min_tokens", &n));
    out->min_tokens = n;
  }
  return std::nullopt;
}

std::optional<ApiError> ReadStops(const Json& body, OptionsInput* out) {
  if (const Json* v = Find(body, "stop")) {
    if (v->is_string()) {
      out->stop.push_back(v->get<std::string>());
      out->stop_is_list = false;
    } else if (v->is_array()) {
      out->stop.resize(v->size());
      for (size_t i = 0; i < v->size(); ++i) {
        TANDEM_API_RETURN_IF_ERROR(ReadString((*v)[i], StrCat("stop[", i, "]"), &out->stop[i]));
      }
    } else {
      return TypeError("stop", "a string or an array of strings", *v);
    }
  }
  if (const Json* v = Find(body, "stop_token_ids")) {
    if (!v->is_array()) return TypeError("stop_token_ids", "an array of integers", *v);
    out->stop_token_ids.resize(v->size());
    for (size_t i = 0; i < v->size(); ++i) {
      TANDEM_API_RETURN_IF_ERROR(
          ReadInt64((*v)[i], StrCat("stop_token_ids[", i, "]"), &out->stop_token_ids[i]));
    }
  }
  return std::nullopt;
}

std::optional<ApiError> ReadStreaming(const Json& body, OptionsInput* out) {
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
  // Fields whose only accepted values are "off".
  for (const char* name : {"suffix", "tools", "functions"}) {
    if ((v = Find(body, name)) && !IsOff(*v)) return ApiError::Unsupported(name);
  }
  if ((v = Find(body, "tool_choice")) && *v != "none" && *v != "auto") {
    return ApiError::Unsupported("tool_choice");
  }
  if ((v = Find(body, "function_call")) && *v != "none" && *v != "auto") {
    return ApiError::Unsupported("function_call");
  }
  return std::nullopt;
}


// "n" (both endpoints) and "best_of" (completions; OpenAI's chat API has none). null: absent.
std::optional<ApiError> ReadChoices(const Json& body, Endpoint endpoint, OptionsInput* out) {
  if (const Json* v = Find(body, "n"); v != nullptr && !v->is_null()) {
    int64_t n = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadInt64(*v, "n", &n));
    out->n = n;
  }
  if (const Json* v = Find(body, "best_of"); v != nullptr && !v->is_null()) {
    int64_t b = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadInt64(*v, "best_of", &b));
    if (endpoint == Endpoint::kChatCompletions && b != 1) {
      return ApiError::Unsupported("best_of", "in chat completions (use n)");
    }
    if (endpoint == Endpoint::kCompletions) out->best_of = b;
  }
  return std::nullopt;
}

std::optional<ApiError> ReadOptions(const Json& body, Endpoint endpoint, OptionsInput* out) {
  if (const Json* v = Find(body, "model")) {
    TANDEM_API_RETURN_IF_ERROR(ReadString(*v, "model", &out->model));
  }
  TANDEM_API_RETURN_IF_ERROR(RejectUnsupported(body));
  TANDEM_API_RETURN_IF_ERROR(ReadMaxTokens(body, endpoint, out));
  TANDEM_API_RETURN_IF_ERROR(ReadSampling(body, out));
  TANDEM_API_RETURN_IF_ERROR(ReadModifiers(body, out));
  TANDEM_API_RETURN_IF_ERROR(ReadLogprobs(body, endpoint, out));
  TANDEM_API_RETURN_IF_ERROR(ReadPromptLogprobs(body, out));
  TANDEM_API_RETURN_IF_ERROR(ReadStops(body, out));
  TANDEM_API_RETURN_IF_ERROR(ReadStreaming(body, out));
  TANDEM_API_RETURN_IF_ERROR(ReadChoices(body, endpoint, out));
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
  if (const Json* calls = Find(message, "tool_calls"); calls != nullptr && !IsOff(*calls)) {
    return ApiError::Unsupported(prefix + ".tool_calls");
  }
  return ReadContent(message, prefix, out->role == "assistant", &out->content);
}

std::optional<ApiError> ReadMessages(const Json& body, std::vector<text::ChatMessage>* out) {
  const Json* messages = Find(body, "messages");
  if (messages == nullptr) {
    return ApiError::InvalidRequest("'messages' is required", "messages",
                                    "missing_required_parameter");
  }
  if (!messages->is_array()) return TypeError("messages", "an array", *messages);
  out->resize(messages->size());
  for (size_t i = 0; i < messages->size(); ++i) {
    TANDEM_API_RETURN_IF_ERROR(ReadMessage((*messages)[i], i, &(*out)[i]));
  }
  return std::nullopt;
}

// --- completion prompts --------------------------------------------------------------------

std::optional<ApiError> ReadTokenIds(const Json& ids, std::vector<int64_t>* out) {
  out->resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    TANDEM_API_RETURN_IF_ERROR(ReadInt64(ids[i], StrCat("prompt[", i, "]"), &(*out)[i]));
  }
  return std::nullopt;
}

std::optional<ApiError> ReadPrompt(const Json& body, GenerationInput* out) {
  const Json* prompt = Find(body, "prompt");
  if (prompt == nullptr) return std::nullopt;  // kNone: "'prompt' is required"
  const Json* single = prompt;
  if (prompt->is_array() && !prompt->empty()) {
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
    out->kind = PromptKind::kText;
    out->prompt = single->get_ref<const std::string&>();
    return std::nullopt;
  }
  if (!single->is_array()) {
    return TypeError("prompt", "a string, an array of one string or an array of token ids",
                     *single);
  }
  out->kind = PromptKind::kTokenIds;  // [] too: "'prompt' must not be empty"
  return ReadTokenIds(*single, &out->prompt_token_ids);
}

}  // namespace

ApiErrorOr<GenerationInput> ReadChatCompletionBody(std::string_view body, const RequestLimits& limits) {
  ApiErrorOr<Json> json = json_fields::ParseBody(body, limits.max_body_bytes, limits.max_json_depth);
  if (!json.ok()) return json.error();
  GenerationInput in;
  in.kind = PromptKind::kChat;
  TANDEM_API_RETURN_IF_ERROR(ReadMessages(*json, &in.messages));
  TANDEM_API_RETURN_IF_ERROR(ReadOptions(*json, Endpoint::kChatCompletions, &in.options));
  return in;
}

ApiErrorOr<GenerationInput> ReadCompletionBody(std::string_view body, const RequestLimits& limits) {
  ApiErrorOr<Json> json = json_fields::ParseBody(body, limits.max_body_bytes, limits.max_json_depth);
  if (!json.ok()) return json.error();
  GenerationInput in;
  TANDEM_API_RETURN_IF_ERROR(ReadPrompt(*json, &in));
  TANDEM_API_RETURN_IF_ERROR(ReadOptions(*json, Endpoint::kCompletions, &in.options));
  return in;
}

ApiErrorOr<GenerationRequest> ParseChatCompletionRequest(std::string_view body, const RequestLimits& limits) {
  ApiErrorOr<GenerationInput> in = ReadChatCompletionBody(body, limits);
  if (!in.ok()) return in.error();
  return ValidateGenerationInput(*std::move(in), limits);
}

ApiErrorOr<GenerationRequest> ParseCompletionRequest(std::string_view body, const RequestLimits& limits) {
  ApiErrorOr<GenerationInput> in = ReadCompletionBody(body, limits);
  if (!in.ok()) return in.error();
  return ValidateGenerationInput(*std::move(in), limits);
}

ApiErrorOr<GenerationRequest> ParseTokenizeRequest(std::string_view body, const RequestLimits& limits) {
  ApiErrorOr<Json> json = json_fields::ParseBody(body, limits.max_body_bytes, limits.max_json_depth);
  if (!json.ok()) return json.error();
  GenerationInput in;
  if (Find(*json, "messages") != nullptr) {
    in.kind = PromptKind::kChat;
    TANDEM_API_RETURN_IF_ERROR(ReadMessages(*json, &in.messages));
  } else {
    TANDEM_API_RETURN_IF_ERROR(ReadPrompt(*json, &in));
  }
  return ValidateGenerationInput(std::move(in), limits);
}

ApiErrorOr<std::vector<int32_t>> ParseDetokenizeRequest(std::string_view body, const RequestLimits& limits) {
  ApiErrorOr<Json> json = json_fields::ParseBody(body, limits.max_body_bytes, limits.max_json_depth);
  if (!json.ok()) return json.error();
  const Json* tokens = Find(*json, "tokens");
  if (tokens == nullptr) {
    return ApiError::InvalidRequest("'tokens' is required", "tokens", "missing_required_parameter");
  }
  if (!tokens->is_array()) return TypeError("tokens", "an array of token ids", *tokens);
  if (tokens->size() > limits.max_prompt_token_ids) {
    return ApiError::InvalidRequest(StrCat("'tokens' must hold at most ", limits.max_prompt_token_ids, " ids"),
                                    "tokens", "invalid_value");
  }
  std::vector<int32_t> ids;
  ids.reserve(tokens->size());
  for (size_t i = 0; i < tokens->size(); ++i) {
    int64_t id = 0;
    TANDEM_API_RETURN_IF_ERROR(ReadInt64((*tokens)[i], StrCat("tokens[", i, "]"), &id));
    if (id < 0 || id > kInt32Max) {
      return ApiError::InvalidRequest(StrCat("'tokens[", i, "]' must be a token id (>= 0), got ", id), "tokens",
                                      "invalid_value");
    }
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
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
