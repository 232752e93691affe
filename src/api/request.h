// Parsing and validation of OpenAI-compatible request bodies:
//   POST /v1/chat/completions  -> ChatCompletionRequest
//   POST /v1/completions       -> CompletionRequest
// Everything a client can get wrong is an ApiError (400 invalid_request_error naming the
// field in `param`, 413 for an oversized body); nothing here throws or aborts. Unknown fields
// are ignored, as OpenAI and vLLM do.
//
// Decisions (where OpenAI and vLLM leave room):
//  * `model` may be absent: empty means the server's default model (vLLM does the same).
//  * `top_k`: absent, null, -1 and 0 all mean "off" (vLLM >= 0.8 treats 0 as off too);
//    other negative values are rejected.
//  * `max_completion_tokens` wins over `max_tokens` when both are given (vLLM). Chat only.
//  * Chat `content`: a string, or a list of {"type": "text", "text": ...} parts joined with
//    "\n" (vLLM's joining); null only for assistant messages (read as "").
//  * Roles: system, developer (rendered as "system", OpenAI's newer name for it), user,
//    assistant. "tool"/"function" are rejected as unsupported (no tool calling).
//  * `n` and `best_of` must be 1; `logprobs`, `top_logprobs` > 0, `echo`, `suffix`, `tools`,
//    `tool_choice` other than none/auto, `functions`, `response_format` other than text,
//    `logit_bias`, non-zero `presence_penalty`/`frequency_penalty`, and vLLM's
//    `repetition_penalty` != 1 and `min_tokens` > 0 are rejected as unsupported, naming the
//    field, rather than silently ignored.
//  * `stream_options` is only accepted with "stream": true (as OpenAI).
//  * Integer fields accept JSON integers and floats with no fraction (10.0), as pydantic
//    does for vLLM; strings and booleans are type errors.
//
// Thread-safety: pure functions of their arguments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "api/api_error.h"
#include "types/sampling_params.h"
#include "text/chat_template.h"

namespace tandem::api {

// Size limits on one request, checked before anything is tokenized. The defaults allow any
// prompt that fits the contexts tandem serves (1 MiB of text is more than 200k tokens of
// English) while bounding the work a single request can cause.
struct RequestLimits {
  size_t max_body_bytes = 16u << 20;       // 413 above (token-id prompts are ~7 bytes/token)
  int max_json_depth = 64;                 // nesting of arrays/objects in the body
  size_t max_prompt_bytes = 1u << 20;      // prompt text, or all message contents together
  size_t max_messages = 4096;
  size_t max_prompt_token_ids = 1u << 20;  // length of a prompt given as token ids
  size_t max_stop_strings = 4;             // OpenAI's limit ("up to 4 sequences")
  size_t max_stop_bytes = 256;             // each stop string, in UTF-8 bytes
  size_t max_stop_token_ids = 256;
};

enum class Endpoint { kChatCompletions, kCompletions };

// What both endpoints share, validated.
struct GenerationOptions {
  std::string model;                  // empty: not given
  std::optional<int32_t> max_tokens;  // >= 1 when given; ResolveMaxTokens() fills the default
  float temperature = 1.0f;           // [0, 2]; 0 is greedy
  float top_p = 1.0f;                 // (0, 1]
  int32_t top_k = 0;                  // 0: off
  std::optional<uint64_t> seed;       // negative JSON seeds wrap to their two's complement
  std::vector<std::string> stop;      // non-empty strings, at most RequestLimits' count
  std::vector<int32_t> stop_token_ids;  // vLLM extension; >= 0 (vocab checked separately)
  bool ignore_eos = false;              // vLLM extension
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage

  // The engine's parameters for this request with `max_tokens` resolved.
  SamplingParams ToSamplingParams(int32_t max_tokens) const;
};

struct ChatCompletionRequest {
  GenerationOptions options;
  std::vector<text::ChatMessage> messages;  // non-empty; roles normalised (developer->system)
};

struct CompletionRequest {
  GenerationOptions options;
  // Exactly one is non-empty: the prompt text, or the prompt as token ids.
  std::string prompt;
  std::vector<int32_t> prompt_token_ids;
};

ApiErrorOr<ChatCompletionRequest> ParseChatCompletionRequest(std::string_view body,
                                                             const RequestLimits& limits = {});
ApiErrorOr<CompletionRequest> ParseCompletionRequest(std::string_view body,
                                                     const RequestLimits& limits = {});

// After tokenization: checks the prompt against the model's context and returns the number
// of tokens to generate. `requested` is the client's max_tokens; when absent it is
// `default_max_tokens` (<= 0: the rest of the context), capped at what the context leaves.
// Errors (400, code "context_length_exceeded", param "messages" or "prompt"): an empty
// tokenized prompt, a prompt that leaves no room for one token, or prompt + requested
// max_tokens beyond `context_length`.
ApiErrorOr<int32_t> ResolveMaxTokens(Endpoint endpoint, int64_t prompt_tokens,
                                     std::optional<int32_t> requested, int64_t default_max_tokens,
                                     int64_t context_length);

// Token ids a client sent (a token-id prompt, stop_token_ids) must lie in the vocabulary.
// Returns the 400 to send (naming `param`), or nullopt when all are in [0, vocab_size).
std::optional<ApiError> CheckTokenIdsInVocab(std::span<const int32_t> ids, int32_t vocab_size,
                                             std::string_view param);

}  // namespace tandem::api
