// Everything that turns a client's request into token ids and the tokens back into a client's
// response: the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions,
// /v1/models, with SSE streaming) and the public gRPC Generate API. Text never reaches a worker.
//
// Thread-safe: handlers run on HTTP and gRPC threads; the tokenizer and template are immutable.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "api/request.h"
#include "http/http_server.h"
#include "router/request_flow.h"
#include "router/router_metrics.h"
#include "router/worker_registry.h"
#include "tandem/v1/generate.grpc.pb.h"
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
  FlowOptions flow;
};

class Frontend {
 public:
  // `timer` runs the flows' delayed retries; everything borrowed must outlive the frontend.
  Frontend(FrontendOptions options, const text::Tokenizer* tokenizer, text::ChatTemplate chat_template,
           WorkerRegistry* registry, TimedTaskQueue* timer, RouterMetrics* metrics);

  void RegisterHttp(http::HttpServer& server);
  std::string NewRequestId();
  // Whether an Authorization header value (or gRPC "authorization" metadata) is acceptable.
  bool Authorized(std::string_view authorization) const;

  const FrontendOptions& options() const { return options_; }
  const text::Tokenizer& tokenizer() const { return *tokenizer_; }
  const text::ChatTemplate& chat_template() const { return template_; }
  WorkerRegistry* registry() const { return registry_; }
  TimedTaskQueue* timer() const { return timer_; }
  RouterMetrics* metrics() const { return metrics_; }

 private:
  void HandleCompletion(api::Endpoint endpoint, const http::HttpRequest& req,
                        std::shared_ptr<http::HttpResponder> responder);
  void HandleModels(std::shared_ptr<http::HttpResponder> responder);

  const FrontendOptions options_;
  const text::Tokenizer* tokenizer_;
  const text::ChatTemplate template_;
  WorkerRegistry* registry_;
  TimedTaskQueue* timer_;
  RouterMetrics* metrics_;
  std::atomic<uint64_t> next_id_{0};
  const uint64_t id_salt_;
};

// The public gRPC Generate service, over the same frontend.
class GenerateService final : public v1::TandemGenerate::CallbackService {
 public:
  explicit GenerateService(Frontend* frontend) : frontend_(frontend) {}
  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                           const v1::GenerateRequest* req) override;

 private:
  Frontend* frontend_;
};

}  // namespace tandem::router
