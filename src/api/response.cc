#include "api/response.h"

#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem::api {
namespace {

using nlohmann::json;

// Generated text is well-formed UTF-8 (the detokenizer sanitises it); `replace` keeps a
// stray byte from ever turning into an exception.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string Event(const json& j) { return StrCat("data: ", Dump(j), "\n\n"); }

bool IsChat(const ResponseMeta& meta) { return meta.endpoint == Endpoint::kChatCompletions; }

json Envelope(const ResponseMeta& meta, bool chunk) {
  const char* object = IsChat(meta) ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                    : "text_completion";
  return json{{"id", meta.id}, {"object", object}, {"created", meta.created},
              {"model", meta.model}};
}

json UsageJson(const Usage& usage) {
  return json{{"prompt_tokens", usage.prompt_tokens},
              {"completion_tokens", usage.completion_tokens},
              {"total_tokens", usage.total_tokens()},
              {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens}}}};
}

json FinishJson(const char* finish) { return finish ? json(finish) : json(nullptr); }

double ShownLogprob(float lp) { return lp >= -9999.0f ? static_cast<double>(lp) : -9999.0; }

json BytesJson(const std::string& s) {
  json bytes = json::array();
  for (unsigned char c : s) bytes.push_back(static_cast<int>(c));
  return bytes;
}

json LogprobsJson(Endpoint endpoint, const std::vector<LogprobEntry>* entries) {
  if (entries == nullptr) return nullptr;
  if (endpoint == Endpoint::kChatCompletions) {
    json content = json::array();
    for (const LogprobEntry& e : *entries) {
      json top = json::array();
      for (const auto& [token, lp] : e.top) {
        top.push_back({{"token", token}, {"logprob", ShownLogprob(lp)}, {"bytes", BytesJson(token)}});
      }
      content.push_back({{"token", e.token},
                         {"logprob", ShownLogprob(e.logprob)},
                         {"bytes", BytesJson(e.token)},
                         {"top_logprobs", std::move(top)}});
    }
    return json{{"content", std::move(content)}};
  }
  json tokens = json::array(), token_logprobs = json::array(), tops = json::array(), offsets = json::array();
  for (const LogprobEntry& e : *entries) {
    tokens.push_back(e.token);
    offsets.push_back(e.text_offset);
    if (e.unscored) {  // an echoed prompt's first token
      token_logprobs.push_back(nullptr);
      tops.push_back(nullptr);
      continue;
    }
    token_logprobs.push_back(ShownLogprob(e.logprob));
    json top = json::object();
    for (const auto& [token, lp] : e.top) top[token] = ShownLogprob(lp);  // a dict, as OpenAI's
    tops.push_back(std::move(top));
  }
  return json{{"tokens", std::move(tokens)},
              {"token_logprobs", std::move(token_logprobs)},
              {"top_logprobs", std::move(tops)},
              {"text_offset", std::move(offsets)}};
}

// vLLM's shape: [null, {"<id>": {"logprob", "rank", "decoded_token"}, ...}, ...].
json PromptLogprobsJson(const PromptLogprobsList& list) {
  json out = json::array();
  for (const auto& entry : list) {
    if (!entry.has_value()) {
      out.push_back(nullptr);
      continue;
    }
    json by_id = json::object();
    for (const RankedLogprob& c : *entry) {
      by_id[std::to_string(c.token_id)] = {{"logprob", ShownLogprob(c.logprob)},
                                           {"rank", c.rank > 0 ? json(c.rank) : json(nullptr)},
                                           {"decoded_token", c.decoded_token}};
    }
    out.push_back(std::move(by_id));
  }
  return out;
}

json ModelCardJson(const ModelCard& m) {
  json j = {{"id", m.id}, {"object", "model"}, {"created", m.created}, {"owned_by", "tandem"}};
  if (m.max_model_len > 0) j["max_model_len"] = m.max_model_len;
  return j;
}

}  // namespace

std::string_view ApiFinishReasonName(ApiFinishReason reason) {
  return reason == ApiFinishReason::kLength ? "length" : "stop";
}

ResponseMeta MakeResponseMeta(Endpoint endpoint, std::string_view request_id, std::string model,
                              int64_t created_unix_seconds) {
  ResponseMeta meta;
  meta.endpoint = endpoint;
  meta.id = StrCat(endpoint == Endpoint::kChatCompletions ? "chatcmpl-" : "cmpl-", request_id);
  meta.model = std::move(model);
  meta.created = created_unix_seconds;
  return meta;
}

std::string CompletionResponseJson(const ResponseMeta& meta, std::span<const ChoiceOutput> choices,
                                   const Usage& usage, const PromptLogprobsList* prompt_logprobs) {
  json body = Envelope(meta, /*chunk=*/false);
  const json prompt_json = prompt_logprobs != nullptr ? PromptLogprobsJson(*prompt_logprobs) : json();
  json list = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceOutput& c = choices[i];
    json choice = {{"index", i}};
    if (IsChat(meta)) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    } else {
      choice["text"] = c.text;
    }
    choice["logprobs"] = LogprobsJson(meta.endpoint, c.logprobs);
    choice["finish_reason"] = ApiFinishReasonName(c.finish);
    if (prompt_logprobs != nullptr && !IsChat(meta)) choice["prompt_logprobs"] = prompt_json;
    list.push_back(std::move(choice));
  }
  body["choices"] = std::move(list);
  body["usage"] = UsageJson(usage);
  if (prompt_logprobs != nullptr && IsChat(meta)) body["prompt_logprobs"] = prompt_json;
  return Dump(body);
}

std::string CompletionResponseJson(const ResponseMeta& meta, std::string_view text,
                                   ApiFinishReason finish, const Usage& usage,
                                   const std::vector<LogprobEntry>* logprobs) {
  const ChoiceOutput choice{text, finish, logprobs};
  return CompletionResponseJson(meta, std::span(&choice, 1), usage);
}

std::string StreamEncoder::Chunk(int32_t index, std::string_view text, bool with_role, const char* finish,
                                 const std::vector<LogprobEntry>* logprobs) const {
  json chunk = Envelope(meta_, /*chunk=*/true);
  json choice = {{"index", index}};
  if (IsChat(meta_)) {
    json delta = json::object();
    if (with_role) delta["role"] = "assistant";
    if (with_role || !text.empty()) delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = LogprobsJson(meta_.endpoint, logprobs);
  choice["finish_reason"] = FinishJson(finish);
  chunk["choices"] = json::array({std::move(choice)});
  if (include_usage_) chunk["usage"] = nullptr;  // as OpenAI: null until the usage chunk
  return Event(chunk);
}

std::string StreamEncoder::Begin(int32_t choices) const {
  if (!IsChat(meta_)) return std::string();
  std::string out;
  for (int32_t i = 0; i < choices; ++i) out += Chunk(i, "", /*with_role=*/true, nullptr);
  return out;
}

std::string StreamEncoder::Delta(std::string_view text, const std::vector<LogprobEntry>* logprobs,
                                 int32_t index) const {
  if (text.empty() && (logprobs == nullptr || logprobs->empty())) return std::string();
  return Chunk(index, text, /*with_role=*/false, nullptr, logprobs);
}

std::string StreamEncoder::Finish(int32_t index, ApiFinishReason finish) const {
  return Chunk(index, "", /*with_role=*/false, ApiFinishReasonName(finish).data());
}

std::string StreamEncoder::End(ApiFinishReason finish, const Usage& usage, int32_t index) const {
  std::string out = Finish(index, finish);
  if (include_usage_) {
    json chunk = Envelope(meta_, /*chunk=*/true);
    chunk["choices"] = json::array();
    chunk["usage"] = UsageJson(usage);
    out += Event(chunk);
  }
  out += kSseDone;
  return out;
}

std::string StreamEncoder::Fail(const ApiError& error) {
  return StrCat(error.ToSseEvent(), kSseDone);
}

std::string TokenizeResponseJson(std::span<const int32_t> tokens, int64_t max_model_len) {
  return Dump(json{{"count", tokens.size()},
                   {"max_model_len", max_model_len},
                   {"tokens", std::vector<int32_t>(tokens.begin(), tokens.end())}});
}

std::string DetokenizeResponseJson(std::string_view text) { return Dump(json{{"prompt", text}}); }

std::string ModelListJson(std::span<const ModelCard> models) {
  json data = json::array();
  for (const ModelCard& m : models) data.push_back(ModelCardJson(m));
  return Dump(json{{"object", "list"}, {"data", std::move(data)}});
}

std::string ModelJson(const ModelCard& model) { return Dump(ModelCardJson(model)); }

}  // namespace tandem::api
