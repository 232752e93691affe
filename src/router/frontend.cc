#include "router/frontend.h"

#include <chrono>
#include <deque>
#include <random>

#include "api/response.h"
#include "api/response_assembler.h"
#include "common/logging.h"
#include "common/strings.h"
#include "rpc/convert.h"

namespace tandem::router {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Latency bookkeeping shared by the HTTP and gRPC observers.
struct TokenClock {
  Clock::time_point start = Clock::now();
  Clock::time_point last;
  bool seen_first = false;
  void OnTokens(RouterMetrics* m, size_t n) {
    const auto now = Clock::now();
    if (!seen_first) {
      seen_first = true;
      m->ttft->Observe(Seconds(now - start));
    } else {
      m->itl->Observe(Seconds(now - last));
    }
    // Tokens that arrive together were generated together: their gaps are not observable.
    last = now;
    (void)n;
  }
};

// Streams (or collects) one HTTP completion. Every method takes `mu`; writes to the responder
// are thread-safe and ignored once the client is gone.
class HttpCompletion : public RequestObserver {
 public:
  HttpCompletion(std::shared_ptr<http::HttpResponder> responder, std::unique_ptr<api::ResponseAssembler> assembler,
                 api::ResponseMeta meta, const api::GenerationOptions& options, std::string route,
                 std::string request_id, RouterMetrics* metrics)
      : responder_(std::move(responder)),
        assembler_(std::move(assembler)),
        encoder_(meta, options.include_usage),
        meta_(std::move(meta)),
        stream_(options.stream),
        route_(std::move(route)),
        request_id_(std::move(request_id)),
        metrics_(metrics) {}

  void SetFlow(std::shared_ptr<RequestFlow> flow) {
    bool cancel;
    {
      std::lock_guard<std::mutex> lock(mu_);
      flow_ = flow;
      cancel = cancel_pending_;
    }
    if (cancel) flow->Cancel();
  }

  void OnTokens(std::span<const int32_t> tokens) override {
    bool stop_early = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (done_) return;
      clock_.OnTokens(metrics_, tokens.size());
      const api::AssembledDelta delta = assembler_->Push(tokens);
      Emit(delta.text);
      if (delta.finished) {
        Complete();
        stop_early = true;  // a stop string, stop token or max_tokens: the workers can stop
      }
    }
    if (stop_early) CancelFlow();
  }

  void OnFinished(FinishReason reason, const RequestUsage& usage) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;
    cached_prompt_tokens_ = usage.cached_prompt_tokens;
    const api::AssembledDelta delta = assembler_->Finish(reason);
    Emit(delta.text);
    Complete();
  }

  void OnFailed(const absl::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;
    done_ = true;
    const api::ApiError error = api::ApiError::FromStatus(status, request_id_);
    GetLogger("router")->warn("request {} failed: {}", request_id_, status);
    metrics_->requests->With({route_, std::to_string(error.http_status)}).Increment();
    metrics_->inflight->Decrement();
    if (stream_ && started_) {
      (void)responder_->Write(api::StreamEncoder::Fail(error));  // the error event and [DONE]
      (void)responder_->End();
    } else {
      http::HttpHeaders headers;
      if (error.retry_after_seconds > 0) headers.Set("Retry-After", std::to_string(error.retry_after_seconds));
      (void)responder_->Reply(error.http_status, std::string(api::kJsonContentType), error.ToJson(), headers);
    }
  }

  // The client went away.
  void ClientClosed() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (done_) return;
      done_ = true;
      metrics_->requests->With({route_, "499"}).Increment();
      metrics_->inflight->Decrement();
      metrics_->cancelled->Increment();
    }
    CancelFlow();
  }

 private:
  void CancelFlow() {
    std::shared_ptr<RequestFlow> flow;
    {
      std::lock_guard<std::mutex> lock(mu_);
      flow = flow_;
      if (!flow) cancel_pending_ = true;
    }
    if (flow) flow->Cancel();
  }

  void StartStreamIfNeeded() {
    if (!stream_ || started_) return;
    started_ = true;
    http::HttpHeaders headers;
    headers.Set("Cache-Control", "no-cache");
    headers.Set("X-Accel-Buffering", "no");
    (void)responder_->StartStream(200, std::string(api::kSseContentType), headers);
    const std::string begin = encoder_.Begin();
    if (!begin.empty()) (void)responder_->Write(begin);
  }

  void Emit(const std::string& text) {
    if (!stream_) return;  // the assembler keeps the whole text
    StartStreamIfNeeded();
    if (!text.empty()) (void)responder_->Write(encoder_.Delta(text));
  }

  void Complete() {
    done_ = true;
    const api::Usage usage = assembler_->usage();
    const api::ApiFinishReason finish = assembler_->finish_reason().value_or(api::ApiFinishReason::kStop);
    if (stream_) {
      StartStreamIfNeeded();
      (void)responder_->Write(encoder_.End(finish, usage));  // finish, usage and [DONE]
      (void)responder_->End();
    } else {
      (void)responder_->Reply(200, std::string(api::kJsonContentType),
                              api::CompletionResponseJson(meta_, assembler_->text(), finish, usage));
    }
    metrics_->requests->With({route_, "200"}).Increment();
    metrics_->inflight->Decrement();
    metrics_->e2e->Observe(Seconds(Clock::now() - clock_.start));
    metrics_->generated_tokens->Observe(usage.completion_tokens);
  }

  std::mutex mu_;
  std::shared_ptr<http::HttpResponder> responder_;
  std::unique_ptr<api::ResponseAssembler> assembler_;
  const api::StreamEncoder encoder_;
  const api::ResponseMeta meta_;
  const bool stream_;
  const std::string route_;
  const std::string request_id_;
  RouterMetrics* metrics_;
  TokenClock clock_;
  bool started_ = false;
  bool done_ = false;
  bool cancel_pending_ = false;
  int32_t cached_prompt_tokens_ = 0;
  std::shared_ptr<RequestFlow> flow_;
};

void ReplyError(http::HttpResponder& r, const api::ApiError& e, RouterMetrics* m, const std::string& route) {
  m->requests->With({route, std::to_string(e.http_status)}).Increment();
  (void)r.Reply(e.http_status, std::string(api::kJsonContentType), e.ToJson());
}

}  // namespace

Frontend::Frontend(FrontendOptions options, const text::Tokenizer* tokenizer, text::ChatTemplate chat_template,
                   WorkerRegistry* registry, TimedTaskQueue* timer, RouterMetrics* metrics)
    : options_(std::move(options)),
      tokenizer_(tokenizer),
      template_(std::move(chat_template)),
      registry_(registry),
      timer_(timer),
      metrics_(metrics),
      id_salt_(std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32)) {}

std::string Frontend::NewRequestId() {
  return fmt::format("{:08x}{:06x}", static_cast<uint32_t>(id_salt_), next_id_.fetch_add(1) & 0xffffff);
}

bool Frontend::Authorized(std::string_view authorization) const {
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

void Frontend::RegisterHttp(http::HttpServer& server) {
  // Every /v1 route checks the API key first (the ops endpoints stay open for probes).
  auto guarded = [this](std::string route, auto handler) {
    return [this, route = std::move(route), handler = std::move(handler)](const http::HttpRequest& req,
                                                                          std::shared_ptr<http::HttpResponder> r) {
      if (!Authorized(req.headers.Get("Authorization").value_or(""))) {
        ReplyError(*r, api::ApiError::InvalidApiKey(), metrics_, route);
        return;
      }
      handler(req, std::move(r));
    };
  };
  server.Handle("POST", "/v1/chat/completions",
                guarded("/v1/chat/completions", [this](const http::HttpRequest& req, auto responder) {
                  HandleCompletion(api::Endpoint::kChatCompletions, req, std::move(responder));
                }));
  server.Handle("POST", "/v1/completions",
                guarded("/v1/completions", [this](const http::HttpRequest& req, auto responder) {
                  HandleCompletion(api::Endpoint::kCompletions, req, std::move(responder));
                }));
  server.Handle("GET", "/v1/models", guarded("/v1/models", [this](const http::HttpRequest&, auto responder) {
                  HandleModels(std::move(responder));
                }));
  server.HandlePrefix("GET", "/v1/models/", guarded("/v1/models", [this](const http::HttpRequest& req, auto responder) {
    const std::string id = req.path.substr(std::string("/v1/models/").size());
    if (id != options_.served_model) {
      ReplyError(*responder, api::ApiError::ModelNotFound(id, {options_.served_model}), metrics_, "/v1/models");
      return;
    }
    const api::ModelCard card{options_.served_model, options_.created_unix_seconds, options_.context_length};
    metrics_->requests->With({"/v1/models", "200"}).Increment();
    (void)responder->Reply(200, std::string(api::kJsonContentType), api::ModelJson(card));
  }));
  // Any other /v1 route: an OpenAI-style 404.
  for (const char* method : {"GET", "POST", "PUT", "DELETE", "PATCH"}) {
    server.HandlePrefix(method, "/v1/", [this](const http::HttpRequest& req, auto responder) {
      ReplyError(*responder, api::ApiError::UnknownRoute(req.method, req.path), metrics_, "other");
    });
  }
}

void Frontend::HandleModels(std::shared_ptr<http::HttpResponder> responder) {
  const api::ModelCard card{options_.served_model, options_.created_unix_seconds, options_.context_length};
  metrics_->requests->With({"/v1/models", "200"}).Increment();
  (void)responder->Reply(200, std::string(api::kJsonContentType), api::ModelListJson(std::span(&card, 1)));
}

void Frontend::HandleCompletion(api::Endpoint endpoint, const http::HttpRequest& req,
                                std::shared_ptr<http::HttpResponder> responder) {
  const std::string route = endpoint == api::Endpoint::kChatCompletions ? "/v1/chat/completions" : "/v1/completions";
  const std::string request_id = NewRequestId();
  api::GenerationOptions options;
  std::vector<int32_t> prompt;
  if (endpoint == api::Endpoint::kChatCompletions) {
    auto parsed = api::ParseChatCompletionRequest(req.body);
    if (!parsed.ok()) return ReplyError(*responder, parsed.error(), metrics_, route);
    options = parsed->options;
    prompt = tokenizer_->Encode(template_.Apply(parsed->messages, /*add_generation_prompt=*/true),
                                /*add_special=*/false, /*parse_special=*/true);
  } else {
    auto parsed = api::ParseCompletionRequest(req.body);
    if (!parsed.ok()) return ReplyError(*responder, parsed.error(), metrics_, route);
    options = parsed->options;
    if (!parsed->prompt_token_ids.empty()) {
      if (auto e = api::CheckTokenIdsInVocab(parsed->prompt_token_ids, tokenizer_->vocab_size(), "prompt")) {
        return ReplyError(*responder, *e, metrics_, route);
      }
      prompt = parsed->prompt_token_ids;
    } else {
      prompt = tokenizer_->Encode(parsed->prompt, /*add_special=*/true, /*parse_special=*/false);
    }
  }
  if (!options.model.empty() && options.model != options_.served_model) {
    return ReplyError(*responder, api::ApiError::ModelNotFound(options.model, {options_.served_model}), metrics_,
                      route);
  }
  if (prompt.empty()) {
    return ReplyError(*responder, api::ApiError::InvalidRequest("the prompt is empty", "prompt"), metrics_, route);
  }
  if (auto e = api::CheckTokenIdsInVocab(options.stop_token_ids, tokenizer_->vocab_size(), "stop_token_ids")) {
    return ReplyError(*responder, *e, metrics_, route);
  }
  auto max_tokens = api::ResolveMaxTokens(endpoint, static_cast<int64_t>(prompt.size()), options.max_tokens,
                                          options_.default_max_tokens, options_.context_length);
  if (!max_tokens.ok()) return ReplyError(*responder, max_tokens.error(), metrics_, route);
  auto assembler = api::ResponseAssembler::Create(
      *tokenizer_, api::AssemblerOptions::From(options, static_cast<int32_t>(prompt.size()), *max_tokens));
  if (!assembler.ok()) {
    return ReplyError(*responder, api::ApiError::FromStatus(assembler.status(), request_id), metrics_, route);
  }
  metrics_->inflight->Increment();
  metrics_->prompt_tokens->Observe(static_cast<double>(prompt.size()));
  auto completion = std::make_shared<HttpCompletion>(
      responder, std::move(*assembler),
      api::MakeResponseMeta(endpoint, request_id, options_.served_model, absl::ToUnixSeconds(absl::Now())), options,
      route, request_id, metrics_);
  RouterRequest request;
  request.id = request_id;
  request.prompt = std::move(prompt);
  request.sampling = options.ToSamplingParams(*max_tokens);
  request.deadline = absl::Now() + options_.request_timeout;
  responder->OnClose([completion] { completion->ClientClosed(); });
  auto flow = RequestFlow::Start(std::move(request), options_.flow, registry_, timer_, completion);
  completion->SetFlow(flow);
}

// --- public gRPC ------------------------------------------------------------------------------

namespace {

class GenerateStream : public grpc::ServerWriteReactor<v1::GenerateResponse>, public RequestObserver {
 public:
  GenerateStream(std::string request_id, std::unique_ptr<api::ResponseAssembler> assembler, RouterMetrics* metrics)
      : request_id_(std::move(request_id)), assembler_(std::move(assembler)), metrics_(metrics) {}

  // RequestObserver (gRPC client threads).
  void OnTokens(std::span<const int32_t> tokens) override {
    bool stop_early = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      clock_.OnTokens(metrics_, tokens.size());
      const api::AssembledDelta delta = assembler_->Push(tokens);
      Queue(delta.text, tokens);
      if (delta.finished) {
        End(grpc::Status::OK);
        stop_early = true;
      }
    }
    if (stop_early) CancelFlow();
  }
  void OnFinished(FinishReason reason, const RequestUsage& usage) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    cached_ = usage.cached_prompt_tokens;
    Queue(assembler_->Finish(reason).text, {});
    End(grpc::Status::OK);
  }
  void OnFailed(const absl::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    queue_.clear();
    End(rpc::ToGrpc(status));
  }

  void SetFlow(std::shared_ptr<RequestFlow> flow) {
    std::lock_guard<std::mutex> lock(mu_);
    flow_ = std::move(flow);
  }

  // ServerWriteReactor (gRPC server threads).
  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!queue_.empty()) queue_.pop_front();
    if (!ok) queue_.clear();
    Pump();
  }
  void OnCancel() override { CancelFlow(); }
  void OnDone() override {
    std::shared_ptr<RequestFlow> flow;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;  // the call is over: nothing may be written or finished any more
      flow = std::move(flow_);
    }
    if (flow) flow->Cancel();
    self_.reset();  // may delete this
  }

  void HoldSelf(std::shared_ptr<GenerateStream> self) { self_ = std::move(self); }

 private:
  void CancelFlow() {
    std::shared_ptr<RequestFlow> flow;
    {
      std::lock_guard<std::mutex> lock(mu_);
      flow = flow_;
    }
    if (flow) flow->Cancel();
  }
  void Queue(const std::string& text, std::span<const int32_t> tokens) {
    if (text.empty() && tokens.empty()) return;
    v1::GenerateResponse msg;
    msg.set_request_id(request_id_);
    msg.set_text(text);
    msg.mutable_token_ids()->Add(tokens.begin(), tokens.end());
    queue_.push_back(std::move(msg));
    Pump();
  }
  void End(const grpc::Status& status) {
    finished_ = true;
    status_ = status;
    if (status.ok()) {
      v1::GenerateResponse last;
      last.set_request_id(request_id_);
      const auto reason = assembler_->finish_reason().value_or(api::ApiFinishReason::kStop);
      last.set_finish_reason(reason == api::ApiFinishReason::kLength ? v1::FINISH_REASON_LENGTH
                                                                      : v1::FINISH_REASON_STOP);
      const api::Usage usage = assembler_->usage();
      last.mutable_usage()->set_prompt_tokens(usage.prompt_tokens);
      last.mutable_usage()->set_completion_tokens(usage.completion_tokens);
      last.mutable_usage()->set_cached_prompt_tokens(cached_);
      queue_.push_back(std::move(last));
      metrics_->e2e->Observe(Seconds(Clock::now() - clock_.start));
      metrics_->generated_tokens->Observe(usage.completion_tokens);
    }
    metrics_->requests->With({"grpc:Generate", status.ok() ? "200" : std::to_string(status.error_code())}).Increment();
    metrics_->inflight->Decrement();
    Pump();
  }
  // Writes the next queued message or finishes. Called with mu_ held.
  void Pump() {
    if (writing_ || done_) return;
    if (!queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
    } else if (finished_ && !finish_called_) {
      finish_called_ = true;
      Finish(status_);
    }
  }

  std::mutex mu_;
  const std::string request_id_;
  std::unique_ptr<api::ResponseAssembler> assembler_;
  RouterMetrics* metrics_;
  TokenClock clock_;
  std::deque<v1::GenerateResponse> queue_;
  bool writing_ = false, finished_ = false, finish_called_ = false, done_ = false;
  grpc::Status status_;
  int32_t cached_ = 0;
  std::shared_ptr<RequestFlow> flow_;
  std::shared_ptr<GenerateStream> self_;
};

class FailedStream : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  explicit FailedStream(grpc::Status s) { Finish(s); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerateService::Generate(grpc::CallbackServerContext* ctx,
                                                                          const v1::GenerateRequest* req) {
  const FrontendOptions& fo = frontend_->options();
  const text::Tokenizer& tok = frontend_->tokenizer();
  {
    const auto& md = ctx->client_metadata();
    auto it = md.find("authorization");
    const std::string value = it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
    if (!frontend_->Authorized(value)) {
      return new FailedStream(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                           "missing or wrong API key: send metadata 'authorization: Bearer <key>'"));
    }
  }
  auto invalid = [](const std::string& m) {
    return new FailedStream(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, m));
  };
  if (!req->model().empty() && req->model() != fo.served_model) {
    return new FailedStream(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                         StrCat("model '", req->model(), "' is not served (this router serves '",
                                                fo.served_model, "')")));
  }
  std::vector<int32_t> prompt;
  switch (req->input_case()) {
    case v1::GenerateRequest::kPrompt:
      prompt = tok.Encode(req->prompt(), /*add_special=*/true, /*parse_special=*/false);
      break;
    case v1::GenerateRequest::kChat: {
      std::vector<text::ChatMessage> messages;
      for (const auto& m : req->chat().messages()) {
        if (m.role() != "system" && m.role() != "user" && m.role() != "assistant") {
          return invalid(StrCat("unknown role '", m.role(), "'"));
        }
        messages.push_back({m.role(), m.content()});
      }
      if (messages.empty()) return invalid("chat has no messages");
      prompt = tok.Encode(frontend_->chat_template().Apply(messages, true), false, true);
      break;
    }
    case v1::GenerateRequest::kTokenIds:
      for (int32_t t : req->token_ids().ids()) {
        if (t < 0 || t >= tok.vocab_size()) return invalid(StrCat("token id ", t, " is outside the vocabulary"));
      }
      prompt.assign(req->token_ids().ids().begin(), req->token_ids().ids().end());
      break;
    default:
      return invalid("no prompt: set prompt, chat or token_ids");
  }
  if (prompt.empty()) return invalid("the prompt is empty");
  const v1::SamplingParams& sp = req->sampling();
  if (sp.stop_size() > 4) return invalid("at most 4 stop strings");
  for (const auto& s : sp.stop()) {
    if (s.empty()) return invalid("stop strings must not be empty");
  }
  const int64_t room = fo.context_length - static_cast<int64_t>(prompt.size());
  if (room < 1) {
    return invalid(StrCat("the prompt (", prompt.size(), " tokens) leaves no room in the context of ",
                          fo.context_length, " tokens"));
  }
  int32_t max_tokens = sp.max_tokens() > 0 ? sp.max_tokens()
                       : fo.default_max_tokens > 0 ? std::min<int64_t>(fo.default_max_tokens, room)
                                                    : static_cast<int32_t>(room);
  if (max_tokens > room) {
    return invalid(StrCat("prompt (", prompt.size(), " tokens) + max_tokens (", max_tokens,
                          ") exceeds the context length of ", fo.context_length));
  }
  SamplingParams sampling = rpc::FromProto(sp);
  sampling.max_tokens = max_tokens;
  if (absl::Status s = sampling.Validate(tok.vocab_size()); !s.ok()) return invalid(std::string(s.message()));
  api::AssemblerOptions ao;
  ao.prompt_tokens = static_cast<int32_t>(prompt.size());
  ao.max_tokens = max_tokens;
  ao.stop.assign(sp.stop().begin(), sp.stop().end());
  ao.stop_token_ids = sampling.stop_token_ids;
  ao.ignore_eos = sampling.ignore_eos;
  auto assembler = api::ResponseAssembler::Create(tok, ao);
  if (!assembler.ok()) return invalid(std::string(assembler.status().message()));
  const std::string id = req->request_id().empty() ? frontend_->NewRequestId() : req->request_id();
  frontend_->metrics()->inflight->Increment();
  frontend_->metrics()->prompt_tokens->Observe(static_cast<double>(prompt.size()));
  auto stream = std::make_shared<GenerateStream>(id, std::move(*assembler), frontend_->metrics());
  stream->HoldSelf(stream);
  RouterRequest request;
  request.id = id;
  request.prompt = std::move(prompt);
  request.sampling = sampling;
  request.deadline = absl::Now() + fo.request_timeout;
  stream->SetFlow(RequestFlow::Start(std::move(request), fo.flow, frontend_->registry(), frontend_->timer(), stream));
  return stream.get();
}

}  // namespace tandem::router
