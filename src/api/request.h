// Reading of OpenAI-compatible request bodies:
//   POST /v1/chat/completions  -> GenerationInput with messages
//   POST /v1/completions       -> GenerationInput with a text or token-id prompt
// The readers check JSON shape and types only (and the fields of the HTTP API alone: stream,
// stream_options and what tandem does not implement); the rules on values are
// ValidateGenerationInput's (api/generation_input.h), shared with the gRPC door.
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
//  * `logit_bias` is an object keyed by token ids written as strings ({"50256": -100});
//    `presence_penalty`, `frequency_penalty`, vLLM's `repetition_penalty`, `min_p` and
//    `priority` are read as numbers (ranges: ValidateGenerationInput).
//  * Log-probabilities: chat `logprobs: true` with `top_logprobs` alternatives (0 if absent;
//    `top_logprobs` > 0 without `logprobs` is a 400); completions `logprobs: k` (0 still asks
//    for the chosen tokens'). k at most kMaxLogprobs (20).
//  * `echo` (completions): the prompt's text before the answer; with `logprobs: k`, the prompt's
//    tokens lead the log-probabilities too (the first with null, as OpenAI's legacy API and
//    vLLM show it), each given the tokens before it: what lm-evaluation-harness's
//    loglikelihood tasks read.
//  * vLLM's `prompt_logprobs: k` (both endpoints; null: off; k at most kMaxLogprobs): the prompt's
//    tokens scored in vLLM's shape (api/response.h: completions per choice, chat at the top
//    level). Not with `"stream": true` (a 400, as vLLM; echo with logprobs does stream). With
//    echo and `logprobs: j` too, the engine computes max(j, k) alternatives and each view shows
//    its own j or k.
//  * `response_format`: {"type": "text" | "json_object" | "json_schema", "json_schema":
//    {"schema": ...}} (the type and schema judged by ValidateGenerationInput).
//  * `suffix`, `tools`, `tool_choice` other than none/auto and `functions` are rejected as
//    unsupported, naming the field, rather than silently ignored.
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
#include "api/generation_input.h"

namespace tandem::api {

// The body as sent (shape and types checked; `limits` bound the body's size and nesting).
ApiErrorOr<GenerationInput> ReadChatCompletionBody(std::string_view body, const RequestLimits& limits = {});
ApiErrorOr<GenerationInput> ReadCompletionBody(std::string_view body, const RequestLimits& limits = {});

// Read and validated (ValidateGenerationInput).
ApiErrorOr<GenerationRequest> ParseChatCompletionRequest(std::string_view body,
                                                         const RequestLimits& limits = {});
ApiErrorOr<GenerationRequest> ParseCompletionRequest(std::string_view body,
                                                     const RequestLimits& limits = {});

// POST /tokenize (vLLM's route): {"prompt": text or token ids} read as a completion's prompt,
// or {"messages": [...]} rendered with the chat template as a chat completion's. Other fields
// are ignored. POST /detokenize: {"tokens": [ids]} (ids checked against the vocabulary by the
// caller).
ApiErrorOr<GenerationRequest> ParseTokenizeRequest(std::string_view body, const RequestLimits& limits = {});
ApiErrorOr<std::vector<int32_t>> ParseDetokenizeRequest(std::string_view body, const RequestLimits& limits = {});

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
