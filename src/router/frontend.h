// The router's two front doors over one FrontDoor (router/front_door.h): everything that turns
// a client's request into token ids and the tokens back into a client's response. Text never
// reaches a worker.
//   Frontend         the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions,
//                    /v1/models, with SSE streaming); http_frontend.cc
//   GenerateService  the public gRPC Generate API; grpc_frontend.cc
// Each door only decodes its wire format into an api::GenerationInput and encodes the
// completion back (a CompletionEncoder); validation, tokenization, limits, metrics and
// cancellation are the FrontDoor's and the Completion's, once.
//
// Thread-safe: handlers run on HTTP and gRPC threads. The Frontend owns the FrontDoor; the
// GenerateService borrows it from the Frontend, which must outlive it.
#pragma once

#include <memory>
#include <string>

#include "http/http_server.h"
#include "router/front_door.h"
#include "tandem/v1/generate.grpc.pb.h"

namespace boost::asio {
class thread_pool;
}  // namespace boost::asio

namespace tandem::router {

class Frontend {
 public:
  // `timer` runs the flows' delayed retries; everything borrowed must outlive the frontend.
  // Request bodies are parsed, validated and tokenized on `admit_threads` threads of the
  // frontend's own, never on the HTTP I/O threads (a 1 MiB prompt takes ~0.1 s to tokenize:
  // /healthz and streams must not wait behind it).
  Frontend(FrontendOptions options, const text::Tokenizer* tokenizer, text::ChatTemplate chat_template,
           WorkerRegistry* registry, TimedTaskQueue* timer, RouterMetrics* metrics, int admit_threads = 2);
  ~Frontend();  // waits for the admissions in progress

  void RegisterHttp(http::HttpServer& server);
  FrontDoor* door() { return &door_; }

 private:
  // On an admit thread: parse, validate, tokenize and start (or refuse).
  void HandleCompletion(api::Endpoint endpoint, const std::string& body,
                        std::shared_ptr<http::HttpResponder> responder);
  void HandleModels(std::shared_ptr<http::HttpResponder> responder);
  void HandleTokenize(const std::string& body, std::shared_ptr<http::HttpResponder> responder);
  void HandleDetokenize(const std::string& body, std::shared_ptr<http::HttpResponder> responder);
  void HandleModel(const http::HttpRequest& req, std::shared_ptr<http::HttpResponder> responder);
  // Answers a request refused before it started.
  void Refuse(http::HttpResponder& responder, const std::string& route, const api::ApiError& error);

  FrontDoor door_;
  RouterMetrics* metrics_;
  std::unique_ptr<boost::asio::thread_pool> admit_pool_;  // last: joined first
};

// The public gRPC Generate service, over the Frontend's FrontDoor.
class GenerateService final : public v1::TandemGenerate::CallbackService {
 public:
  explicit GenerateService(Frontend* frontend) : door_(frontend->door()) {}
  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                           const v1::GenerateRequest* req) override;

 private:
  FrontDoor* door_;
};

}  // namespace tandem::router
