// The OpenAI-compatible HTTP door: JSON bodies in (api/request.h), SSE or one JSON body out.
#include <algorithm>
#include <optional>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "api/request.h"
#include "api/response.h"
#include "api/response_assembler.h"
#include "router/frontend.h"

namespace tandem::router {
namespace {

constexpr const char* kChatRoute = "/v1/chat/completions";
constexpr const char* kCompletionsRoute = "/v1/completions";
constexpr const char* kModelsRoute = "/v1/models";
constexpr const char* kTokenizeRoute = "/tokenize";  // vLLM's routes, outside /v1
constexpr const char* kDetokenizeRoute = "/detokenize";

// Writes a completion as OpenAI does: server-sent events when the client asked to stream, else
// one chat.completion / text_completion body. Writes to a responder are thread-safe and
// ignored once the client is gone. Borrows the tokenizer (the FrontDoor's, which outlives it).
class HttpEncoder final : public CompletionEncoder {
 public:
  HttpEncoder(std::shared_ptr<http::HttpResponder> responder, api::ResponseMeta meta,
              const api::GenerationOptions& options, const text::Tokenizer& tokenizer)
      : responder_(std::move(responder)),
        encoder_(std::move(meta), options.include_usage),
        tokenizer_(tokenizer),
        stream_(options.stream),
        logprobs_(options.logprobs >= 0),
        echo_logprobs_(options.echo ? options.logprobs : -1),
        prompt_logprobs_(options.requested_prompt_logprobs),
        returned_(options.n),
        all_logprobs_(static_cast<size_t>(std::max(1, options.best_of))) {}

  // The engine scored the prompt for echo with logprobs, for vLLM's prompt_logprobs, or both (then
  // with the larger k: each view keeps its own).
  void PromptLogprobs(int32_t choice, std::span<const int32_t> prompt, std::span<const TokenLogprob> raw,
                      const std::vector<api::LogprobEntry>& shown) override {
    if (echo_logprobs_ >= 0) {  // the prompt's entries lead the choice's (streamed: in its first chunk)
      std::vector<api::LogprobEntry>& to = all_logprobs_[choice];
      for (api::LogprobEntry e : shown) {
        if (e.top.size() > static_cast<size_t>(echo_logprobs_)) e.top.resize(static_cast<size_t>(echo_logprobs_));
        to.push_back(std::move(e));
      }
    }
    // The same prompt for every choice: choice 0's flow scored it once for all.
    if (prompt_logprobs_ >= 0 && !prompt_list_.has_value()) {
      prompt_list_ = api::DescribeRankedPromptLogprobs(tokenizer_, prompt, raw, prompt_logprobs_);
    }
  }

  void Delta(int32_t choice, std::string_view text, std::span<const int32_t>, std::span<const TokenLogprob>,
             const std::vector<api::LogprobEntry>& shown) override {
    if (!stream_) {  // the assembler keeps the whole text; the log-probabilities are kept here
      std::vector<api::LogprobEntry>& all = all_logprobs_[choice];
      all.insert(all.end(), shown.begin(), shown.end());
      return;
    }
    StartStream();
    std::vector<api::LogprobEntry>& prompt = all_logprobs_[choice];  // streamed: only the prompt's, once
    if (!prompt.empty()) {
      prompt.insert(prompt.end(), shown.begin(), shown.end());
      const std::string chunk = encoder_.Delta(text, logprobs_ ? &prompt : nullptr, choice);
      prompt.clear();
      if (!chunk.empty()) (void)responder_->Write(chunk);
      return;
    }
    const std::string chunk = encoder_.Delta(text, logprobs_ ? &shown : nullptr, choice);
    if (!chunk.empty()) (void)responder_->Write(chunk);
  }

  void ChoiceEnd(int32_t choice, api::ApiFinishReason finish) override {
    if (!stream_) return;
    StartStream();
    (void)responder_->Write(encoder_.Finish(choice, finish));
  }

  void End(const CompletionEnd& end) override {
    if (!stream_) {
      std::vector<api::ChoiceOutput> choices;
      for (const ChoiceResult& c : end.choices) {
        choices.push_back({c.text, c.finish, logprobs_ ? &all_logprobs_[c.choice] : nullptr});
      }
      // Set when asked for (a choice's first tokens bring it, or the request fails).
      const api::PromptLogprobsList* prompt = prompt_list_.has_value() ? &*prompt_list_ : nullptr;
      (void)responder_->Reply(200, std::string(api::kJsonContentType),
                              api::CompletionResponseJson(encoder_.meta(), choices, end.usage, prompt));
      return;
    }
    StartStream();
    // The last choice's finish, the usage and [DONE].
    (void)responder_->Write(encoder_.End(end.last_finish, end.usage, end.last));
    (void)responder_->End();
  }

  void Fail(const absl::Status&, const api::ApiError& error) override {
    if (stream_ && started_) {
      (void)responder_->Write(api::StreamEncoder::Fail(error));  // the error event and [DONE]
      (void)responder_->End();
      return;
    }
    http::HttpHeaders headers;
    if (error.retry_after_seconds > 0) headers.Set("Retry-After", std::to_string(error.retry_after_seconds));
    (void)responder_->Reply(error.http_status, std::string(api::kJsonContentType), error.ToJson(), headers);
  }

 private:
  void StartStream() {
    if (started_) return;
    started_ = true;
    http::HttpHeaders headers;
    headers.Set("Cache-Control", "no-cache");
    headers.Set("X-Accel-Buffering", "no");
    (void)responder_->StartStream(200, std::string(api::kSseContentType), headers);
    const std::string begin = encoder_.Begin(returned_);
    if (!begin.empty()) (void)responder_->Write(begin);
  }

  const std::shared_ptr<http::HttpResponder> responder_;
  const api::StreamEncoder encoder_;
  const text::Tokenizer& tokenizer_;
  const bool stream_;
  const bool logprobs_;          // asked for: "logprobs" is an object, else null
  const int32_t echo_logprobs_;  // echo with logprobs: alternatives per echoed token; -1: no echo entries
  const int32_t prompt_logprobs_;  // vLLM's prompt_logprobs (never streamed); -1: not asked
  const int32_t returned_;
  std::vector<std::vector<api::LogprobEntry>> all_logprobs_;  // non-streaming answers, per generated choice
  std::optional<api::PromptLogprobsList> prompt_list_;        // once scored
  bool started_ = false;
};

}  // namespace

Frontend::Frontend(FrontendOptions options, const text::Tokenizer* tokenizer, text::ChatTemplate chat_template,
                   WorkerRegistry* registry, TimedTaskQueue* timer, RouterMetrics* metrics, int admit_threads)
    : door_(std::move(options), tokenizer, std::move(chat_template), registry, timer, metrics),
      metrics_(metrics),
      admit_pool_(std::make_unique<boost::asio::thread_pool>(std::max(1, admit_threads))) {}

Frontend::~Frontend() { admit_pool_->join(); }

void Frontend::Refuse(http::HttpResponder& responder, const std::string& route, const api::ApiError& error) {
  door_.Refused(route, error);
  (void)responder.Reply(error.http_status, std::string(api::kJsonContentType), error.ToJson());
}

void Frontend::RegisterHttp(http::HttpServer& server) {
  // Every /v1 route checks the API key first (the ops endpoints stay open for probes).
  auto guarded = [this](std::string route, auto handler) {
    return [this, route = std::move(route), handler = std::move(handler)](const http::HttpRequest& req,
                                                                          std::shared_ptr<http::HttpResponder> r) {
      if (!door_.Authorized(req.headers.Get("Authorization").value_or(""))) {
        Refuse(*r, route, api::ApiError::InvalidApiKey());
        return;
      }
      handler(req, std::move(r));
    };
  };
  // Completions leave the I/O thread at once (the body is copied; a client gone before its turn
  // is noticed by the completion's OnClose, which then runs at once).
  for (auto [route, endpoint] : {std::pair{kChatRoute, api::Endpoint::kChatCompletions},
                                 std::pair{kCompletionsRoute, api::Endpoint::kCompletions}}) {
    server.Handle("POST", route, guarded(route, [this, endpoint](const http::HttpRequest& req, auto responder) {
                    boost::asio::post(*admit_pool_, [this, endpoint, body = req.body, responder] {
                      HandleCompletion(endpoint, body, responder);
                    });
                  }));
  }
  server.Handle("GET", kModelsRoute, guarded(kModelsRoute, [this](const http::HttpRequest&, auto responder) {
                  HandleModels(std::move(responder));
                }));
  server.HandlePrefix("GET", "/v1/models/", guarded(kModelsRoute, [this](const http::HttpRequest& req, auto responder) {
                        HandleModel(req, std::move(responder));
                      }));
  server.Handle("POST", kTokenizeRoute, guarded(kTokenizeRoute, [this](const http::HttpRequest& req, auto r) {
                  // Tokenizing up to a MiB of text leaves the I/O thread, as completions do.
                  boost::asio::post(*admit_pool_, [this, body = req.body, r] { HandleTokenize(body, r); });
                }));
  server.Handle("POST", kDetokenizeRoute, guarded(kDetokenizeRoute, [this](const http::HttpRequest& req, auto r) {
                  // Up to a MiB of token ids: off the I/O thread too.
                  boost::asio::post(*admit_pool_, [this, body = req.body, r] { HandleDetokenize(body, r); });
                }));
  // Any other /v1 route: an OpenAI-style 404.
  for (const char* method : {"GET", "POST", "PUT", "DELETE", "PATCH"}) {
    server.HandlePrefix(method, "/v1/", [this](const http::HttpRequest& req, auto responder) {
      Refuse(*responder, "other", api::ApiError::UnknownRoute(req.method, req.path));
    });
  }
}

void Frontend::HandleModels(std::shared_ptr<http::HttpResponder> responder) {
  const FrontendOptions& o = door_.options();
  const api::ModelCard card{o.served_model, o.created_unix_seconds, o.context_length};
  metrics_->requests->With({kModelsRoute, "200"}).Increment();
  (void)responder->Reply(200, std::string(api::kJsonContentType), api::ModelListJson(std::span(&card, 1)));
}

void Frontend::HandleModel(const http::HttpRequest& req, std::shared_ptr<http::HttpResponder> responder) {
  const FrontendOptions& o = door_.options();
  const std::string id = req.path.substr(std::string("/v1/models/").size());
  if (id != o.served_model) return Refuse(*responder, kModelsRoute, api::ApiError::ModelNotFound(id, {o.served_model}));
  const api::ModelCard card{o.served_model, o.created_unix_seconds, o.context_length};
  metrics_->requests->With({kModelsRoute, "200"}).Increment();
  (void)responder->Reply(200, std::string(api::kJsonContentType), api::ModelJson(card));
}

void Frontend::HandleTokenize(const std::string& body, std::shared_ptr<http::HttpResponder> responder) {
  api::ApiErrorOr<api::GenerationRequest> request = api::ParseTokenizeRequest(body, door_.options().limits);
  if (!request.ok()) return Refuse(*responder, kTokenizeRoute, request.error());
  api::ApiErrorOr<std::vector<int32_t>> ids = door_.Tokenize(*request);
  if (!ids.ok()) return Refuse(*responder, kTokenizeRoute, ids.error());
  metrics_->requests->With({kTokenizeRoute, "200"}).Increment();
  (void)responder->Reply(200, std::string(api::kJsonContentType),
                         api::TokenizeResponseJson(*ids, door_.options().context_length));
}

void Frontend::HandleDetokenize(const std::string& body, std::shared_ptr<http::HttpResponder> responder) {
  api::ApiErrorOr<std::vector<int32_t>> ids = api::ParseDetokenizeRequest(body, door_.options().limits);
  if (!ids.ok()) return Refuse(*responder, kDetokenizeRoute, ids.error());
  api::ApiErrorOr<std::string> text = door_.Detokenize(*ids);
  if (!text.ok()) return Refuse(*responder, kDetokenizeRoute, text.error());
  metrics_->requests->With({kDetokenizeRoute, "200"}).Increment();
  (void)responder->Reply(200, std::string(api::kJsonContentType), api::DetokenizeResponseJson(*text));
}

void Frontend::HandleCompletion(api::Endpoint endpoint, const std::string& body,
                                std::shared_ptr<http::HttpResponder> responder) {
  if (responder->closed()) return;  // the client left while the request waited its turn
  const bool chat = endpoint == api::Endpoint::kChatCompletions;
  const std::string route = chat ? kChatRoute : kCompletionsRoute;
  const api::RequestLimits& limits = door_.options().limits;
  api::ApiErrorOr<api::GenerationInput> input =
      chat ? api::ReadChatCompletionBody(body, limits) : api::ReadCompletionBody(body, limits);
  if (!input.ok()) return Refuse(*responder, route, input.error());
  api::ApiErrorOr<AdmittedRequest> admitted = door_.Admit(*std::move(input), door_.NewRequestId());
  if (!admitted.ok()) return Refuse(*responder, route, admitted.error());
  auto encoder = std::make_unique<HttpEncoder>(
      responder,
      api::MakeResponseMeta(endpoint, admitted->id, door_.options().served_model, absl::ToUnixSeconds(absl::Now())),
      admitted->options, door_.tokenizer());
  std::shared_ptr<Completion> completion = door_.Start(*std::move(admitted), std::move(encoder), route);
  // Runs when the exchange is over: after the answer, or at once when the client disconnects.
  responder->OnClose([completion] { completion->Close(); });
}

}  // namespace tandem::router
