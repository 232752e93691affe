// The OpenAI request bodies (api/request.h): every input is read as a /v1/chat/completions body
// and as a /v1/completions body, with the router's default limits and with small ones, then
// through what the front door does next with a valid request (ResolveMaxTokens,
// CheckTokenIdsInVocab, the engine's SamplingParams::Validate), and as /tokenize and
// /detokenize bodies; an invalid one is rendered as the JSON error body and the SSE error
// event the client would get.
//
// Checked: a client error is a 400 or a 413 whose JSON body renders; a request the API accepts
// converts to sampling parameters the engine accepts (the two validations agree).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "api/request.h"
#include "fuzz_support.h"

namespace {

using namespace tandem::api;

constexpr int32_t kVocab = 49152;          // SmolLM2's
constexpr int64_t kContextLength = 2048;

void CheckError(const ApiError& e) {
  FUZZ_CHECK(e.http_status == 400 || e.http_status == 413);
  FUZZ_CHECK(!e.message.empty());
  FUZZ_CHECK(!e.ToJson().empty());
  FUZZ_CHECK(!e.ToSseEvent().empty());
  FUZZ_CHECK(!e.ToStatus().ok());
}

// The front door's steps after parsing, with a prompt of `prompt_tokens` tokens.
void AfterParsing(const GenerationRequest& request, int64_t prompt_tokens) {
  const GenerationOptions& o = request.options;
  FUZZ_CHECK(o.temperature >= 0.0f && o.temperature <= 2.0f);
  FUZZ_CHECK(o.top_p > 0.0f && o.top_p <= 1.0f);
  FUZZ_CHECK(o.top_k >= 0);
  FUZZ_CHECK(!o.max_tokens.has_value() || *o.max_tokens >= 1);
  if (request.endpoint == Endpoint::kChatCompletions) {
    FUZZ_CHECK(!request.messages.empty());
  } else {
    FUZZ_CHECK(request.prompt.empty() != request.prompt_token_ids.empty());
  }
  if (auto e = CheckTokenIdsInVocab(request.prompt_token_ids, kVocab, "prompt")) CheckError(*e);
  if (auto e = CheckTokenIdsInVocab(o.stop_token_ids, kVocab, "stop_token_ids")) {
    CheckError(*e);
    return;
  }
  std::vector<int32_t> biased;
  for (const auto& [id, bias] : o.logit_bias) biased.push_back(id);
  if (auto e = CheckTokenIdsInVocab(biased, kVocab, "logit_bias")) {
    CheckError(*e);
    return;
  }
  for (int64_t default_max : {int64_t{0}, int64_t{256}}) {
    ApiErrorOr<int32_t> max_tokens =
        ResolveMaxTokens(request.endpoint, prompt_tokens, o.max_tokens, default_max, kContextLength);
    if (!max_tokens.ok()) {
      CheckError(max_tokens.error());
      continue;
    }
    FUZZ_CHECK(*max_tokens >= 1 && prompt_tokens + *max_tokens <= kContextLength);
    FUZZ_CHECK(o.ToSamplingParams(*max_tokens).Validate(kVocab).ok());
  }
}

void Run(std::string_view body, const RequestLimits& limits) {
  ApiErrorOr<GenerationRequest> chat = ParseChatCompletionRequest(body, limits);
  if (chat.ok()) {
    FUZZ_CHECK(chat->endpoint == Endpoint::kChatCompletions);
    size_t bytes = 0;
    for (const auto& m : chat->messages) bytes += m.content.size();
    AfterParsing(*chat, static_cast<int64_t>(bytes / 4));
  } else {
    CheckError(chat.error());
  }
  ApiErrorOr<GenerationRequest> completion = ParseCompletionRequest(body, limits);
  if (completion.ok()) {
    FUZZ_CHECK(completion->endpoint == Endpoint::kCompletions);
    const size_t tokens = completion->prompt_token_ids.empty() ? completion->prompt.size() / 4
                                                                : completion->prompt_token_ids.size();
    AfterParsing(*completion, static_cast<int64_t>(tokens));
  } else {
    CheckError(completion.error());
  }
  // POST /tokenize and /detokenize bodies.
  ApiErrorOr<GenerationRequest> tokenize = ParseTokenizeRequest(body, limits);
  if (!tokenize.ok()) CheckError(tokenize.error());
  ApiErrorOr<std::vector<int32_t>> detokenize = ParseDetokenizeRequest(body, limits);
  if (detokenize.ok()) {
    FUZZ_CHECK(detokenize->size() <= limits.max_prompt_token_ids);
    for (int32_t id : *detokenize) FUZZ_CHECK(id >= 0);
  } else {
    CheckError(detokenize.error());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::QuietLogs();
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  Run(body, RequestLimits{});
  RequestLimits small;
  small.max_body_bytes = 2048;
  small.max_json_depth = 4;
  small.max_prompt_bytes = 64;
  small.max_messages = 3;
  small.max_prompt_token_ids = 8;
  small.max_stop_strings = 2;
  small.max_stop_bytes = 4;
  small.max_stop_token_ids = 2;
  Run(body, small);
  return 0;
}
