// Response bodies of the OpenAI-compatible API: whole responses, server-sent-event streams
// and the model list. Shapes follow OpenAI's API reference and are checked against the
// `openai` Python package's models (tests/unit/api/openai_shapes_test.py).
//
//   chat.completion        {id: "chatcmpl-<request id>", object, created, model,
//                           choices: [{index: i, message: {role: "assistant", content},
//                                      logprobs, finish_reason}], usage}; logprobs null
//                          unless asked for, else {content: [{token, logprob, bytes,
//                          top_logprobs}]} (completions: {tokens, token_logprobs,
//                          top_logprobs, text_offset}), in stream chunks too
//   text_completion        the same with id "cmpl-<request id>" and choices[0].text
//   prompt_logprobs        vLLM's extension, when asked for (whole answers only): completions
//                          put it on every choice, chat at the top level (as vLLM's protocol):
//                          [null, {"<token id>": {logprob, rank, decoded_token}, ...}, ...]
//   streams                "data: <chunk>\n\n" per event: a chat stream opens with a delta
//                          {role: "assistant", content: ""}; text deltas follow; the last
//                          chunk has an empty delta (or text "") and the finish_reason; with
//                          stream_options.include_usage every chunk has "usage": null and a
//                          final chunk with "choices": [] carries the usage; "data: [DONE]\n\n"
//                          ends the stream. A failure after the stream started is sent as
//                          "data: {\"error\": {...}}\n\n" followed by [DONE].
//                          With n > 1 choices, every choice chunk names its "index"; the
//                          choices' chunks interleave as they are generated (as vLLM's), and
//                          each choice's finish chunk comes when that choice ends.
//
// Thread-safety: the free functions are pure; a StreamEncoder is thread-compatible (one
// owner). Everything returned is owned by the caller.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/api_error.h"
#include "api/request.h"

namespace tandem::api {

inline constexpr std::string_view kJsonContentType = "application/json";
inline constexpr std::string_view kSseContentType = "text/event-stream";

// How a choice ended, as the API names it: "stop" (end-of-generation token, stop token or
// stop string) or "length" (max_tokens or the end of the context).
enum class ApiFinishReason { kStop, kLength };
std::string_view ApiFinishReasonName(ApiFinishReason reason);

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  // Prompt tokens served from a prefix cache (usage.prompt_tokens_details.cached_tokens): under
  // disaggregation the prefill worker's hits, where the prompt was computed.
  int32_t cached_tokens = 0;
  int32_t total_tokens() const { return prompt_tokens + completion_tokens; }
};

// What every object of one response shares.
struct ResponseMeta {
  Endpoint endpoint = Endpoint::kChatCompletions;
  std::string id;       // "chatcmpl-<request id>" or "cmpl-<request id>"
  std::string model;    // the served model's id
  int64_t created = 0;  // Unix time in seconds (the caller's clock)
};
ResponseMeta MakeResponseMeta(Endpoint endpoint, std::string_view request_id, std::string model,
                              int64_t created_unix_seconds);

// One generated token's log-probabilities as the API shows them. `token` is the token's text
// as generated (special tokens by name; it may hold part of a UTF-8 character, which the
// "bytes" arrays carry exactly); `text_offset` is where it starts in the choice's text
// (completions' text_offset). Log-probabilities below -9999 (and -inf) are shown as -9999.0,
// as vLLM does, since JSON has no infinity.
struct LogprobEntry {
  std::string token;
  float logprob = 0.0f;
  std::vector<std::pair<std::string, float>> top;
  int64_t text_offset = 0;
  bool unscored = false;  // an echoed prompt's first token: no log-probability (null)
};

// One candidate of a prompt token's entry in vLLM's prompt_logprobs, shown as
// "<token_id>": {"logprob", "rank", "decoded_token"}. Log-probabilities are clamped at -9999 as
// LogprobEntry's are.
struct RankedLogprob {
  int32_t token_id = 0;
  float logprob = 0.0f;
  int32_t rank = 0;           // 1 = most likely; 0 = not known (shown as null, which vLLM allows)
  std::string decoded_token;  // the token's text, special tokens by name (as LogprobEntry::token)
};
// vLLM's prompt_logprobs: one entry per prompt token. The first is nullopt (null: nothing predicts
// it); each later one holds the prompt token itself and the k most likely tokens at that place.
using PromptLogprobsList = std::vector<std::optional<std::vector<RankedLogprob>>>;

// One choice of a whole answer. `logprobs`: null when not asked for, else every token's (chat:
// {content: [...]}; completions: {tokens, token_logprobs, top_logprobs, text_offset}).
struct ChoiceOutput {
  std::string_view text;
  ApiFinishReason finish = ApiFinishReason::kStop;
  const std::vector<LogprobEntry>* logprobs = nullptr;
};

// A whole (non-streaming) chat.completion or text_completion body, by meta.endpoint, with
// the choices at indices 0, 1, ... in the order given. `prompt_logprobs` (not null: asked for)
// is the prompt's list, the same for every choice.
std::string CompletionResponseJson(const ResponseMeta& meta, std::span<const ChoiceOutput> choices,
                                   const Usage& usage, const PromptLogprobsList* prompt_logprobs = nullptr);
// The same with one choice.
std::string CompletionResponseJson(const ResponseMeta& meta, std::string_view text,
                                   ApiFinishReason finish, const Usage& usage,
                                   const std::vector<LogprobEntry>* logprobs = nullptr);

// Turns one request's output into server-sent events.
class StreamEncoder {
 public:
  StreamEncoder(ResponseMeta meta, bool include_usage)
      : meta_(std::move(meta)), include_usage_(include_usage) {}

  // The opening events: a chat role chunk per choice (indices 0 .. choices-1); "" for
  // completions (nothing to send yet).
  std::string Begin(int32_t choices = 1) const;
  // A chunk of choice `index` carrying `text` (and its tokens' `logprobs` when asked for); ""
  // when both are empty.
  std::string Delta(std::string_view text, const std::vector<LogprobEntry>* logprobs = nullptr,
                    int32_t index = 0) const;
  // The finish_reason chunk of choice `index` (one whose siblings are still running).
  std::string Finish(int32_t index, ApiFinishReason finish) const;
  // The last choice's finish_reason chunk, the usage chunk when include_usage (usage of all
  // choices together), and [DONE].
  std::string End(ApiFinishReason finish, const Usage& usage, int32_t index = 0) const;
  // For a failure after Begin(): the error event and [DONE].
  static std::string Fail(const ApiError& error);

  const ResponseMeta& meta() const { return meta_; }

 private:
  std::string Chunk(int32_t index, std::string_view text, bool with_role, const char* finish,
                    const std::vector<LogprobEntry>* logprobs = nullptr) const;

  ResponseMeta meta_;
  bool include_usage_;
};

inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// GET /v1/models and GET /v1/models/{id}.
struct ModelCard {
  std::string id;
  int64_t created = 0;        // Unix seconds (when the server loaded it)
  int64_t max_model_len = 0;  // > 0: also reported as vLLM's "max_model_len"
};
// POST /tokenize's answer (vLLM's shape): {"count", "max_model_len", "tokens"}; /detokenize's:
// {"prompt": text}.
std::string TokenizeResponseJson(std::span<const int32_t> tokens, int64_t max_model_len);
std::string DetokenizeResponseJson(std::string_view text);

std::string ModelListJson(std::span<const ModelCard> models);
std::string ModelJson(const ModelCard& model);

}  // namespace tandem::api
