#include "router/front_door.h"

#include <random>
#include <utility>

#include "api/request.h"
#include "fmt/format.h"

namespace tandem::router {

FrontDoor::FrontDoor(FrontendOptions options, const text::Tokenizer* tokenizer, text::ChatTemplate chat_template,
                     WorkerRegistry* registry, TimedTaskQueue* timer, RouterMetrics* metrics)
    : options_(std::move(options)),
      tokenizer_(tokenizer),
      template_(std::move(chat_template)),
      registry_(registry),
      timer_(timer),
      metrics_(metrics),
      id_salt_(std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32)) {}

std::string FrontDoor::NewRequestId() {
  // A per-process random salt and a 64-bit counter: ids never repeat within a router, and the
  // routers serving the same workers (whose engines key requests by id) differ unless their
  // 64-bit salts collide and their counters meet.
  return fmt::format("{:016x}{:06x}", id_salt_, next_id_.fetch_add(1));
}

bool FrontDoor::Authorized(std::string_view authorization) const {
  if (options_.api_key.empty()) return true;
  constexpr std::string_view kBearer = "Bearer ";
  if (!authorization.starts_with(kBearer)) return false;
  const std::string_view key = authorization.substr(kBearer.size());
  // Constant-time comparison: the time taken says nothing about how much of the key matched.
  if (key.size() != options_.api_key.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < key.size(); ++i) diff |= static_cast<unsigned char>(key[i] ^ options_.api_key[i]);
  return diff == 0;
}

api::ApiErrorOr<std::vector<int32_t>> FrontDoor::Tokenize(const api::GenerationRequest& request) const {
  if (request.endpoint == api::Endpoint::kChatCompletions) {
    // Special tokens only where the template wrote them: a user's "<|im_start|>" is plain text.
    const text::RenderedChat chat = template_.Render(request.messages, /*add_generation_prompt=*/true);
    return tokenizer_->EncodeChat(chat.text, chat.markup);
  }
  if (!request.prompt_token_ids.empty()) {
    if (auto e = api::CheckTokenIdsInVocab(request.prompt_token_ids, tokenizer_->vocab_size(), "prompt")) {
      return *std::move(e);
    }
    return request.prompt_token_ids;
  }
  return tokenizer_->Encode(request.prompt, /*add_special=*/true, /*parse_special=*/false);
}

api::ApiErrorOr<std::string> FrontDoor::Detokenize(std::span<const int32_t> ids) const {
  if (auto e = api::CheckTokenIdsInVocab(ids, tokenizer_->vocab_size(), "tokens")) return *std::move(e);
  return tokenizer_->Decode(ids, /*render_special=*/false);
}

api::ApiErrorOr<AdmittedRequest> FrontDoor::Admit(api::GenerationInput input, std::string request_id) const {
  api::ApiErrorOr<api::GenerationRequest> request = api::ValidateGenerationInput(std::move(input), options_.limits);
  if (!request.ok()) return request.error();
  const api::GenerationOptions& options = request->options;
  if (!options.model.empty() && options.model != options_.served_model) {
    return api::ApiError::ModelNotFound(options.model, {options_.served_model});
  }
  api::ApiErrorOr<std::vector<int32_t>> prompt = Tokenize(*request);
  if (!prompt.ok()) return prompt.error();
  if (auto e = api::CheckTokenIdsInVocab(options.stop_token_ids, tokenizer_->vocab_size(), "stop_token_ids")) {
    return *std::move(e);
  }
  std::vector<int32_t> biased;
  for (const auto& [id, bias] : options.logit_bias) biased.push_back(id);
  if (auto e = api::CheckTokenIdsInVocab(biased, tokenizer_->vocab_size(), "logit_bias")) return *std::move(e);
  api::ApiErrorOr<int32_t> max_tokens =
      api::ResolveMaxTokens(request->endpoint, static_cast<int64_t>(prompt->size()), options.max_tokens,
                            options_.default_max_tokens, options_.context_length);
  if (!max_tokens.ok()) return max_tokens.error();
  if (options.min_tokens > *max_tokens) {
    return api::ApiError::InvalidRequest(fmt::format("'min_tokens' ({}) must be at most the {} tokens this request "
                                                     "can generate", options.min_tokens, *max_tokens),
                                         "min_tokens", "invalid_value");
  }
  api::AssemblerOptions assembly = api::AssemblerOptions::From(options, static_cast<int32_t>(prompt->size()), *max_tokens);
  if (options.echo) {
    assembly.echo = request->prompt_token_ids.empty() ? request->prompt
                                                      : tokenizer_->Decode(*prompt, /*render_special=*/false);
  }
  AdmittedRequest admitted;
  for (int32_t i = 0; i < options.best_of; ++i) {
    auto assembler = api::ResponseAssembler::Create(*tokenizer_, assembly);
    if (!assembler.ok()) return api::ApiError::FromStatus(assembler.status(), request_id);
    admitted.assemblers.push_back(*std::move(assembler));
  }
  admitted.id = std::move(request_id);
  admitted.endpoint = request->endpoint;
  admitted.options = std::move(request->options);
  admitted.prompt = *std::move(prompt);
  admitted.max_tokens = *max_tokens;
  return admitted;
}

std::shared_ptr<Completion> FrontDoor::Start(AdmittedRequest admitted, std::unique_ptr<CompletionEncoder> encoder,
                                             std::string route) {
  metrics_->inflight->Increment();
  metrics_->prompt_tokens->Observe(static_cast<double>(admitted.prompt.size()));
  const api::GenerationOptions& options = admitted.options;
  auto completion = std::make_shared<Completion>(admitted.id, std::move(route), std::move(admitted.assemblers),
                                                 options.n, options.logprobs >= 0, std::move(encoder), metrics_);
  RouterRequest request;
  request.id = admitted.id;
  request.sampling = options.ToSamplingParams(admitted.max_tokens);
  // best_of ranks the choices by their tokens' log-probabilities, asked for or not.
  if (options.best_of > options.n && request.sampling.logprobs < 0) request.sampling.logprobs = 0;
  request.prompt = std::move(admitted.prompt);
  request.deadline = absl::Now() + options_.request_timeout;
  if (request.sampling.prompt_logprobs >= 0) {
    completion->ExpectPromptLogprobs(request.prompt, /*echoed=*/options.echo && options.logprobs >= 0);
  }
  if (completion->generated_choices() > 1) {
    std::weak_ptr<Completion> weak = completion;
    completion->SetStarter([this, first = request, weak](int32_t choice) {
      if (std::shared_ptr<Completion> c = weak.lock()) StartChoice(first, choice, c);
    });
  }
  std::shared_ptr<RequestFlow> flow =
      RequestFlow::Start(std::move(request), options_.flow, registry_, timer_, completion->Observer(0));
  completion->SetCancel(0, [flow] { flow->Cancel(); });
  return completion;
}

void FrontDoor::StartChoice(const RouterRequest& first, int32_t choice, const std::shared_ptr<Completion>& completion) {
  RouterRequest request = first;
  request.id = fmt::format("{}-{}", first.id, choice);
  request.sampling.prompt_logprobs = -1;  // choice 0's serve every choice (and keep the prefix cache usable)
  if (request.sampling.seed.has_value()) request.sampling.seed = *request.sampling.seed + static_cast<uint64_t>(choice);
  // The request was admitted with its first choice (the client may hold a 200 and tokens): a
  // later choice that finds no KV room waits for it up to the request's deadline, not the
  // admission timeout, since a 429 now would fail an answer already under way. The room comes:
  // the choices ahead of it finish within their max_tokens.
  FlowOptions flow_options = options_.flow;
  flow_options.admission_timeout = absl::InfiniteDuration();
  std::shared_ptr<RequestFlow> flow =
      RequestFlow::Start(std::move(request), flow_options, registry_, timer_, completion->Observer(choice));
  completion->SetCancel(choice, [flow] { flow->Cancel(); });
}

void FrontDoor::Refused(std::string_view route, const api::ApiError& error) {
  metrics_->requests->With({std::string(route), std::to_string(error.http_status)}).Increment();
}

}  // namespace tandem::router
