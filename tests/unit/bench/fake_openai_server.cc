#include "unit/bench/fake_openai_server.h"

#include <vector>

#include "absl/time/clock.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem::bench::testing {
namespace {

using Json = nlohmann::json;

std::string Event(const Json& j) { return StrCat("data: ", j.dump(), "\n\n"); }

Json Chunk(bool chat, const std::string& text) {
  Json choice = {{"index", 0}, {"finish_reason", nullptr}};
  if (chat) {
    choice["delta"] = {{"content", text}};
  } else {
    choice["text"] = text;
  }
  return Json{{"id", "fake"}, {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"choices", Json::array({choice})}, {"usage", nullptr}};
}

}  // namespace

absl::Status FakeOpenAiServer::Start() {
  http::HttpServerOptions o;
  o.address = "127.0.0.1";
  o.port = 0;
  auto server = http::HttpServer::Create(o);
  if (!server.ok()) return server.status();
  server_ = std::move(*server);
  const int max_len = options_.max_model_len;
  server_->Handle("GET", "/v1/models", [max_len](const http::HttpRequest&, std::shared_ptr<http::HttpResponder> r) {
    const Json list = {{"object", "list"},
                       {"data", Json::array({{{"id", "fake-model"}, {"object", "model"}, {"max_model_len", max_len}}})}};
    (void)r->Reply(200, "application/json", list.dump());
  });
  for (bool chat : {false, true}) {
    server_->Handle("POST", chat ? "/v1/chat/completions" : "/v1/completions",
                    [this, chat](const http::HttpRequest& req, std::shared_ptr<http::HttpResponder> r) {
                      HandleCompletion(chat, req, std::move(r));
                    });
  }
  if (absl::Status s = server_->Start(); !s.ok()) return s;
  port_ = server_->port();
  return absl::OkStatus();
}

void FakeOpenAiServer::Stop() {
  if (server_) server_->Stop(absl::ZeroDuration());
  queue_.Stop();    // runs the writes still queued (they fail: the exchanges are over)
  server_.reset();  // closes the listening socket: the port refuses connections from now on
}

std::string FakeOpenAiServer::url() const { return StrCat("http://127.0.0.1:", port_); }

int FakeOpenAiServer::CountPrompt(bool chat, const std::string& body) const {
  const text::Tokenizer* tok = options_.tokenizer;
  if (tok == nullptr) return 0;
  const Json j = Json::parse(body, nullptr, false);
  if (!chat) return static_cast<int>(tok->Encode(j.value("prompt", ""), true, false).size());
  std::vector<text::ChatMessage> messages;
  for (const Json& m : j["messages"]) messages.push_back({m.value("role", ""), m.value("content", "")});
  return static_cast<int>(tok->Encode(options_.chat_template->Apply(messages, true), false, true).size());
}

void FakeOpenAiServer::HandleCompletion(bool chat, const http::HttpRequest& request,
                                        std::shared_ptr<http::HttpResponder> responder) {
  const int n = ++requests_;
  if (options_.fail_every > 0 && n % options_.fail_every == 0) {
    (void)responder->Reply(503, "application/json", R"({"error": {"message": "overloaded"}})");
    return;
  }
  const Json body = Json::parse(request.body, nullptr, false);
  const int max_tokens = body.is_object() ? body.value("max_tokens", 16) : 16;
  const int prompt_tokens = CountPrompt(chat, request.body);
  (void)responder->StartStream(200, "text/event-stream");
  if (chat) {  // as OpenAI: a role-only delta first (no content: not the first token)
    (void)responder->Write(Event(Json{{"choices", Json::array({{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}}})}}));
  }
  absl::Time at = absl::Now() + options_.first_token_delay;
  for (int i = 0; i < max_tokens; ++i, at += options_.token_delay) {
    queue_.Post([responder, chat] { (void)responder->Write(Event(Chunk(chat, " tok"))); }, at);
  }
  queue_.Post(
      [this, responder, chat, max_tokens, prompt_tokens] {
        const Json usage = {{"prompt_tokens", prompt_tokens},
                            {"completion_tokens", max_tokens},
                            {"total_tokens", prompt_tokens + max_tokens}};
        (void)responder->Write(Event(Json{{"id", "fake"}, {"choices", Json::array()}, {"usage", usage}}));
        (void)responder->Write("data: [DONE]\n\n");
        (void)responder->End();
        ++completions_;
      },
      at);
}

}  // namespace tandem::bench::testing
