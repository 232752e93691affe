// A small OpenAI-compatible server for the load generator's tests, built on src/http: lists one
// model at GET /v1/models and answers POST /v1/completions and /v1/chat/completions with an
// SSE stream of max_tokens content chunks, the first after `first_token_delay`, the next ones
// `token_delay` apart, then a usage chunk and [DONE]. With a tokenizer it reports
// usage.prompt_tokens as tandem's router counts them; every `fail_every`-th request (1-based)
// is answered 503 instead. Binds 127.0.0.1:0.
//
// Thread-safety: Start/Stop from the test thread; handlers run on the server's threads and
// streams are written from a TimedTaskQueue thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/timed_task_queue.h"
#include "http/http_server.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace tandem::bench::testing {

struct FakeServerOptions {
  absl::Duration first_token_delay = absl::Milliseconds(40);
  absl::Duration token_delay = absl::Milliseconds(10);
  int max_model_len = 4096;
  int fail_every = 0;  // 0: never
  const text::Tokenizer* tokenizer = nullptr;  // for usage.prompt_tokens; null: report 0
  const text::ChatTemplate* chat_template = nullptr;
};

class FakeOpenAiServer {
 public:
  explicit FakeOpenAiServer(FakeServerOptions options) : options_(options) {}
  ~FakeOpenAiServer() { Stop(); }

  absl::Status Start();
  // Stops serving and closes the port (later connections are refused).
  void Stop();
  // http://127.0.0.1:<port>, also after Stop().
  std::string url() const;
  int completions() const { return completions_.load(); }

 private:
  void HandleCompletion(bool chat, const http::HttpRequest& request, std::shared_ptr<http::HttpResponder> responder);
  int CountPrompt(bool chat, const std::string& body) const;

  FakeServerOptions options_;
  std::unique_ptr<http::HttpServer> server_;
  int port_ = 0;
  TimedTaskQueue queue_;
  std::atomic<int> requests_{0}, completions_{0};
};

}  // namespace tandem::bench::testing
