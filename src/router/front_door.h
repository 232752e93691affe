// The one way into generation, whichever door a request uses (the OpenAI-compatible HTTP API
// or the public gRPC Generate API): so that the same request gets the same answer through
// both, tokens, finish reason and usage, and for bad input the same error (ApiError: the
// HTTP status, or the gRPC code ApiError::ToStatus maps it to, with the same message).
//
// A door decodes its wire format into an api::GenerationInput and calls Admit, which runs,
// in order: the one validation (api::ValidateGenerationInput: roles, prompt and stop limits,
// sampling ranges), the served model's name, tokenization (the chat template for messages),
// the vocabulary (token-id prompts, stop_token_ids), the context (api::ResolveMaxTokens:
// prompt size, max_tokens or the configured default) and the response assembler. Start then
// runs the request flow, whose output reaches the door's CompletionEncoder through one
// Completion (router/completion.h).
//
// Thread-safety: thread-safe (the tokenizer and template are immutable). Ownership: the
// tokenizer, registry, timer and metrics are borrowed and must outlive the front door.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "api/api_error.h"
#include "api/generation_input.h"
#include "api/response_assembler.h"
#include "common/timed_task_queue.h"
#include "router/completion.h"
#include "types/sampling_params.h"
#include "router/request_flow.h"
#include "router/router_metrics.h"
#include "router/worker_registry.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace tandem::router {

struct FrontendOptions {
  std::string served_model;         // the model id clients name
  int32_t context_length = 0;
  int32_t default_max_tokens = 0;   // 0: whatever the context leaves
  int64_t created_unix_seconds = 0;
  absl::Duration request_timeout = absl::Minutes(10);
  // Non-empty: /v1/* (HTTP) and Generate (gRPC) need "Authorization: Bearer <api_key>".
  std::string api_key;
  api::RequestLimits limits;
  FlowOptions flow;
};

// A request that passed every check, ready to start.
struct AdmittedRequest {
  std::string id;
  api::Endpoint endpoint = api::Endpoint::kChatCompletions;
  api::GenerationOptions options;
  std::vector<int32_t> prompt;
  int32_t max_tokens = 0;  // resolved
  // One per generated choice (options.best_of of them).
  std::vector<std::unique_ptr<api::ResponseAssembler>> assemblers;
};

class FrontDoor {
 public:
  FrontDoor(FrontendOptions options, const text::Tokenizer* tokenizer, text::ChatTemplate chat_template,
            WorkerRegistry* registry, TimedTaskQueue* timer, RouterMetrics* metrics);

  const FrontendOptions& options() const { return options_; }
  const text::Tokenizer& tokenizer() const { return *tokenizer_; }
  std::string NewRequestId();
  // Whether an Authorization header value (or gRPC "authorization" metadata) is acceptable.
  bool Authorized(std::string_view authorization) const;

  // Every check a request passes before it runs (see the file comment), or the first failure.
  api::ApiErrorOr<AdmittedRequest> Admit(api::GenerationInput input, std::string request_id) const;
  // Runs an admitted request; `encoder` gets its output. The door must call Close() on the
  // returned completion when its call is over (answer delivered, or client gone). Choices
  // beyond the first (n, best_of) are flows of their own, with ids "<id>-<choice>" and, when a
  // seed was given, seed + choice (as vLLM seeds them); they start once the first has its first
  // token, to find the prompt in the prefix cache.
  std::shared_ptr<Completion> Start(AdmittedRequest request, std::unique_ptr<CompletionEncoder> encoder,
                                    std::string route);
  // The prompt's token ids, as Admit would run them (POST /tokenize).
  api::ApiErrorOr<std::vector<int32_t>> Tokenize(const api::GenerationRequest& request) const;
  // Token ids back to text (POST /detokenize); ids outside the vocabulary are a 400.
  api::ApiErrorOr<std::string> Detokenize(std::span<const int32_t> ids) const;
  // Counts a request refused before it started (metrics by route and HTTP status).
  void Refused(std::string_view route, const api::ApiError& error);

 private:
  // Starts generated choice `choice` of a request whose choice 0 is `first`.
  void StartChoice(const RouterRequest& first, int32_t choice, const std::shared_ptr<Completion>& completion);

  const FrontendOptions options_;
  const text::Tokenizer* tokenizer_;
  const text::ChatTemplate template_;
  WorkerRegistry* registry_;
  TimedTaskQueue* timer_;
  RouterMetrics* metrics_;
  std::atomic<uint64_t> next_id_{0};
  const uint64_t id_salt_;
};

}  // namespace tandem::router
