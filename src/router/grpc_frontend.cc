// The public gRPC door: v1.GenerateRequest in, a stream of v1.GenerateResponse out.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "router/frontend.h"
#include "rpc/convert.h"
#include "rpc/server_stream_pump.h"

namespace tandem::router {
namespace {

constexpr const char* kRoute = "grpc:Generate";

using GenerateStream = rpc::ServerStreamPump<v1::GenerateResponse>;

// The request as the HTTP API would have received it: a `prompt` is a completion's text, `chat`
// a chat completion's messages, `token_ids` a completion's token-id prompt; an unset
// max_tokens (0 in proto3) is an absent one; stop strings are always a list.
api::GenerationInput InputFromProto(const v1::GenerateRequest& req) {
  api::GenerationInput in;
  switch (req.input_case()) {
    case v1::GenerateRequest::kPrompt:
      in.kind = api::PromptKind::kText;
      in.prompt = req.prompt();
      break;
    case v1::GenerateRequest::kChat:
      in.kind = api::PromptKind::kChat;
      for (const v1::ChatMessage& m : req.chat().messages()) in.messages.push_back({m.role(), m.content()});
      break;
    case v1::GenerateRequest::kTokenIds:
      in.kind = api::PromptKind::kTokenIds;
      in.prompt_token_ids.assign(req.token_ids().ids().begin(), req.token_ids().ids().end());
      break;
    default:
      break;  // kNone: "'prompt' is required"
  }
  api::OptionsInput& o = in.options;
  o.model = req.model();
  const v1::SamplingParams& sp = req.sampling();
  if (sp.max_tokens() != 0) o.max_tokens = sp.max_tokens();
  if (sp.has_temperature()) o.temperature = sp.temperature();
  if (sp.has_top_p()) o.top_p = sp.top_p();
  if (sp.has_top_k()) o.top_k = sp.top_k();
  if (sp.has_seed()) o.seed = sp.seed();
  o.stop.assign(sp.stop().begin(), sp.stop().end());
  o.stop_token_ids.assign(sp.stop_token_ids().begin(), sp.stop_token_ids().end());
  o.ignore_eos = sp.ignore_eos();
  for (const auto& [id, bias] : sp.logit_bias()) o.logit_bias.emplace_back(id, bias);
  std::sort(o.logit_bias.begin(), o.logit_bias.end());  // map order is unspecified
  if (sp.presence_penalty() != 0) o.presence_penalty = sp.presence_penalty();
  if (sp.frequency_penalty() != 0) o.frequency_penalty = sp.frequency_penalty();
  if (sp.has_repetition_penalty()) o.repetition_penalty = sp.repetition_penalty();
  if (sp.min_p() != 0) o.min_p = sp.min_p();
  if (sp.priority() != 0) o.priority = sp.priority();
  if (sp.min_tokens() != 0) o.min_tokens = sp.min_tokens();
  if (sp.has_logprobs()) o.logprobs = sp.logprobs();
  if (sp.has_prompt_logprobs()) o.prompt_logprobs = sp.prompt_logprobs();
  if (sp.has_speculative()) o.speculative = sp.speculative();
  switch (sp.response_format()) {
    case v1::RESPONSE_FORMAT_TEXT: break;
    case v1::RESPONSE_FORMAT_JSON_OBJECT: o.response_format = "json_object"; break;
    case v1::RESPONSE_FORMAT_JSON_SCHEMA:
      o.response_format = "json_schema";
      o.json_schema = sp.json_schema();
      break;
    default: o.response_format = absl::StrCat("ResponseFormat(", static_cast<int>(sp.response_format()), ")");
  }
  if (req.n() != 0) o.n = req.n();
  return in;
}

// Writes a completion as GenerateResponse messages: text with the tokens behind it, then one
// with the finish reason and usage. With n > 1, every message names its choice (`index`), each
// choice but the last to end gets a message with its finish reason, and the last message has
// the last one's and the usage of all.
class GrpcEncoder final : public CompletionEncoder {
 public:
  GrpcEncoder(std::shared_ptr<GenerateStream> stream, std::string request_id)
      : stream_(std::move(stream)), request_id_(std::move(request_id)) {}

  void Delta(int32_t choice, std::string_view text, std::span<const int32_t> tokens,
             std::span<const TokenLogprob> raw, const std::vector<api::LogprobEntry>&) override {
    if (text.empty() && tokens.empty()) return;
    v1::GenerateResponse msg;
    msg.set_request_id(request_id_);
    msg.set_index(choice);
    msg.set_text(std::string(text));
    msg.mutable_token_ids()->Add(tokens.begin(), tokens.end());
    for (const TokenLogprob& l : raw) *msg.add_logprobs() = rpc::ToProto(l);
    stream_->Write(std::move(msg));
  }

  // A message of its own, before the choice's first text.
  void PromptLogprobs(int32_t choice, std::span<const int32_t> prompt, std::span<const TokenLogprob> raw,
                      const std::vector<api::LogprobEntry>&) override {
    v1::GenerateResponse msg;
    msg.set_request_id(request_id_);
    msg.set_index(choice);
    msg.mutable_prompt_token_ids()->Add(prompt.begin(), prompt.end());
    for (const TokenLogprob& l : raw) *msg.add_prompt_logprobs() = rpc::ToProto(l);
    stream_->Write(std::move(msg));
  }

  void ChoiceEnd(int32_t choice, api::ApiFinishReason finish) override {
    v1::GenerateResponse msg;
    msg.set_request_id(request_id_);
    msg.set_index(choice);
    msg.set_finish_reason(ToProto(finish));
    stream_->Write(std::move(msg));
  }

  void End(const CompletionEnd& end) override {
    v1::GenerateResponse last;
    last.set_request_id(request_id_);
    last.set_index(end.last);
    last.set_finish_reason(ToProto(end.last_finish));
    last.mutable_usage()->set_prompt_tokens(end.usage.prompt_tokens);
    last.mutable_usage()->set_completion_tokens(end.usage.completion_tokens);
    last.mutable_usage()->set_cached_prompt_tokens(end.cached_prompt_tokens);
    stream_->Write(std::move(last));
    stream_->Finish(grpc::Status::OK);
  }

  void Fail(const absl::Status& status, const api::ApiError&) override { stream_->Finish(rpc::ToGrpc(status)); }

 private:
  static v1::FinishReason ToProto(api::ApiFinishReason finish) {
    return finish == api::ApiFinishReason::kLength ? v1::FINISH_REASON_LENGTH : v1::FINISH_REASON_STOP;
  }

  const std::shared_ptr<GenerateStream> stream_;
  const std::string request_id_;
};

std::string AuthorizationOf(grpc::CallbackServerContext* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

}  // namespace

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerateService::Generate(grpc::CallbackServerContext* ctx,
                                                                          const v1::GenerateRequest* req) {
  auto stream = GenerateStream::Create();
  auto refuse = [&](const api::ApiError& error) {
    door_->Refused(kRoute, error);
    stream->Finish(rpc::ToGrpc(error.ToStatus()));  // the HTTP door's error, as a gRPC status
    return stream->reactor();
  };
  if (!door_->Authorized(AuthorizationOf(ctx))) return refuse(api::ApiError::InvalidApiKey());
  // The id is always the router's: a client's id could collide with another request's.
  std::string id = door_->NewRequestId();
  if (!req->request_id().empty()) {
    GetLogger("router")->info("request={} client_request_id={}", id, req->request_id().substr(0, 128));
  }
  api::ApiErrorOr<AdmittedRequest> admitted = door_->Admit(InputFromProto(*req), std::move(id));
  if (!admitted.ok()) return refuse(admitted.error());
  auto encoder = std::make_unique<GrpcEncoder>(stream, admitted->id);
  std::shared_ptr<Completion> completion = door_->Start(*std::move(admitted), std::move(encoder), kRoute);
  stream->OnCancel([completion] { completion->Close(); });
  stream->OnDone([completion] { completion->Close(); });
  return stream->reactor();
}

}  // namespace tandem::router
