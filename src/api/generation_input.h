// One generation request as every front door reads it, and the one validation it passes.
//
// The HTTP door (OpenAI JSON bodies, api/request.h) and the gRPC door (v1.GenerateRequest)
// each decode their wire format into a GenerationInput: the fields as the client sent them,
// type-checked but not yet judged. ValidateGenerationInput then applies every rule once, with
// the same ApiError (status, message, param) whichever door the request came through:
//  * chat: at least one message, at most RequestLimits::max_messages, roles system, developer
//    (rendered as system, OpenAI's newer name for it), user and assistant; tool and function
//    are rejected as unsupported; message contents together at most max_prompt_bytes;
//  * a text prompt: non-empty, at most max_prompt_bytes; token ids: non-empty, at most
//    max_prompt_token_ids, each in [0, 2^31);
//  * max_tokens >= 1 (and < 2^31) when given; temperature in [0, 2]; top_p in (0, 1];
//    top_k -1 or 0 (off) or positive; at most max_stop_strings non-empty stop strings of at
//    most max_stop_bytes each; at most max_stop_token_ids stop token ids, each >= 0;
//    presence_penalty and frequency_penalty in [-2, 2]; repetition_penalty in (0, 10];
//    min_p in [0, 1]; at most max_logit_bias logit_bias entries, ids >= 0, biases in
//    [-100, 100]; priority any 32-bit integer; min_tokens in [0, max_tokens] (max_tokens when
//    given; the resolved one is checked by the front door); n in [1, max_choices]; best_of
//    (completions) in [n, max_choices], n when absent, and not above n with stream (the best
//    choices are known only at the end, as OpenAI rules); logprobs and prompt_logprobs in
//    [0, kMaxLogprobs], prompt_logprobs not with stream (vLLM's rule); response_format type "text",
//    "json_object" or "json_schema" with a schema of at most 64 KiB that CompileJsonSchema
//    accepts (types/json_schema.h; its error names the keyword).
// What needs the model (the vocabulary, the context length, the served model's name) is
// checked after tokenization by the router's front door (router/front_door.h) with
// ResolveMaxTokens and CheckTokenIdsInVocab (api/request.h).
//
// Thread-safety: plain values and a pure function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api/api_error.h"
#include "text/chat_template.h"
#include "types/sampling_params.h"

namespace tandem::api {

// Size limits on one request. The defaults allow any prompt that fits the contexts tandem
// serves (1 MiB of text is more than 200k tokens of English) while bounding the work a single
// request can cause.
struct RequestLimits {
  size_t max_body_bytes = 16u << 20;       // HTTP: 413 above (token-id prompts are ~7 bytes/token)
  int max_json_depth = 64;                 // HTTP: nesting of arrays/objects in the body
  size_t max_prompt_bytes = 1u << 20;      // prompt text, or all message contents together
  size_t max_messages = 4096;
  size_t max_prompt_token_ids = 1u << 20;  // length of a prompt given as token ids
  size_t max_stop_strings = 4;             // OpenAI's limit ("up to 4 sequences")
  size_t max_stop_bytes = 256;             // each stop string, in UTF-8 bytes
  size_t max_stop_token_ids = 256;
  size_t max_logit_bias = 1024;            // entries of logit_bias
  // Choices one request may generate (n, and best_of for completions): each is a sequence of
  // its own on the workers, so this bounds the work and KV one request can claim.
  int max_choices = 16;
};

// Which API's rules and wording apply: chat (messages, rendered with the chat template) or
// completions (a text or token-id prompt).
enum class Endpoint { kChatCompletions, kCompletions };

// How the prompt was given.
enum class PromptKind {
  kNone,      // not given (an error: "'prompt' is required")
  kChat,      // messages
  kText,      // text, tokenized as is
  kTokenIds,  // already tokenized
};

// The sampling and output controls as sent, before validation (absent: not given).
struct OptionsInput {
  std::string model;                  // empty: the served model
  std::optional<int64_t> max_tokens;
  std::string max_tokens_param = "max_tokens";  // the field it came from, for error messages
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int64_t> top_k;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stop_is_list = true;           // false: one string sent as "stop": "..." (named "stop")
  std::vector<int64_t> stop_token_ids;
  bool ignore_eos = false;
  std::vector<std::pair<int64_t, double>> logit_bias;  // token id, bias
  std::optional<double> presence_penalty;
  std::optional<double> frequency_penalty;
  std::optional<double> repetition_penalty;
  std::optional<double> min_p;
  std::optional<int64_t> priority;
  std::optional<int64_t> min_tokens;
  bool speculative = true;            // tandem extension: false = never decoded speculatively
  std::string response_format;        // response_format.type as sent; empty: absent
  std::string json_schema;            // json_schema: the schema as JSON text; empty: not given
  bool echo = false;                  // completions: show the prompt before the answer
  std::optional<int64_t> logprobs;    // alternatives per token (chat: top_logprobs); absent: off
  std::string logprobs_param = "logprobs";  // the field k came from, for error messages
  // vLLM's prompt_logprobs (HTTP's field, gRPC's sampling.prompt_logprobs); absent or null: off
  std::optional<int64_t> prompt_logprobs;
  std::optional<int64_t> n;           // choices returned
  std::optional<int64_t> best_of;     // completions: choices generated, the best n returned
  bool stream = false;                // HTTP only: SSE instead of one JSON body
  bool include_usage = false;         // HTTP only: stream_options.include_usage
};

struct GenerationInput {
  PromptKind kind = PromptKind::kNone;
  std::vector<text::ChatMessage> messages;  // kChat, roles as sent
  std::string prompt;                       // kText
  std::vector<int64_t> prompt_token_ids;    // kTokenIds
  OptionsInput options;
};

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
  std::vector<std::pair<int32_t, float>> logit_bias;  // ids >= 0 (vocab checked separately)
  float presence_penalty = 0.0f;        // [-2, 2]
  float frequency_penalty = 0.0f;       // [-2, 2]
  float repetition_penalty = 1.0f;      // (0, 10], vLLM extension
  float min_p = 0.0f;                   // [0, 1], vLLM extension
  int32_t priority = 0;                 // vLLM extension: lower runs first
  int32_t min_tokens = 0;               // vLLM extension: >= 0; at most max_tokens (front door)
  bool speculative = true;              // tandem extension: false = never decoded speculatively
  ResponseFormat response_format = ResponseFormat::kText;  // "text", "json_object" or "json_schema"
  std::string json_schema;              // json_schema: the schema (compiled once to check it)
  int32_t logprobs = -1;                // -1: off; else alternatives per token, [0, kMaxLogprobs]
  bool echo = false;                    // completions: the prompt's text leads the answer
  // -1: off; else alternatives per prompt token the engine computes: the larger k of completions'
  // echo with logprobs and of vLLM's prompt_logprobs (each view shows its own k of them).
  int32_t prompt_logprobs = -1;
  // -1: not asked; else vLLM's prompt_logprobs as sent: the answer carries the prompt's list with
  // this many alternatives per token (HTTP: "prompt_logprobs"; gRPC: GenerateResponse's).
  int32_t requested_prompt_logprobs = -1;
  int32_t n = 1;                        // choices returned, [1, max_choices]
  int32_t best_of = 1;                  // choices generated, [n, max_choices]; > n: not streamed
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage

  // The engine's parameters for this request with `max_tokens` resolved.
  SamplingParams ToSamplingParams(int32_t max_tokens) const;
};

// A validated request.
struct GenerationRequest {
  Endpoint endpoint = Endpoint::kChatCompletions;
  GenerationOptions options;
  std::vector<text::ChatMessage> messages;  // chat: non-empty; roles normalised (developer->system)
  // Completions: exactly one is non-empty, the prompt text or the prompt as token ids.
  std::string prompt;
  std::vector<int32_t> prompt_token_ids;
};

ApiErrorOr<GenerationRequest> ValidateGenerationInput(GenerationInput input, const RequestLimits& limits);

}  // namespace tandem::api
