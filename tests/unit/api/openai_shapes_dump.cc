// Writes tandem's response bodies (whole, streamed and errors) to a JSON file for
// openai_shapes_test.py, which serves them to the official `openai` client.
//
// Usage: api_openai_shapes_dump OUT.json
#include <fstream>
#include <iostream>

#include "api/api_error.h"
#include "api/request.h"
#include "api/response.h"
#include "nlohmann/json.hpp"

namespace tandem::api {
namespace {

using nlohmann::json;

json ErrorCase(const ApiError& e) {
  return json{{"status", e.http_status}, {"body", e.ToJson()},
              {"retry_after", e.retry_after_seconds}};
}

json Dump() {
  const int64_t created = 1700000000;
  const ResponseMeta chat = MakeResponseMeta(Endpoint::kChatCompletions, "abc123", "smollm2",
                                             created);
  const ResponseMeta cmpl = MakeResponseMeta(Endpoint::kCompletions, "abc124", "smollm2", created);
  json out;
  out["chat_completion"] =
      CompletionResponseJson(chat, "Hello \xf0\x9f\x98\x80!\n", ApiFinishReason::kStop, {20, 6});
  out["completion"] = CompletionResponseJson(cmpl, " upon a time", ApiFinishReason::kLength,
                                             {4, 16});
  for (bool usage : {false, true}) {
    const StreamEncoder enc(chat, usage);
    out[usage ? "chat_stream_usage" : "chat_stream"] =
        enc.Begin() + enc.Delta("Hel") + enc.Delta("lo \xf0\x9f\x98\x80") +
        enc.End(ApiFinishReason::kStop, {20, 4});
    const StreamEncoder cenc(cmpl, usage);
    out[usage ? "completion_stream_usage" : "completion_stream"] =
        cenc.Begin() + cenc.Delta(" upon") + cenc.Delta(" a time") +
        cenc.End(ApiFinishReason::kLength, {4, 3});
  }
  // Log-probabilities: a token that is half of a UTF-8 character, one below -9999 (shown as -9999).
  const std::vector<LogprobEntry> lps = {{"Hel", -0.25f, {{"Hel", -0.25f}, {"Hi", -1.5f}}, 0},
                                         {"\xf0\x9f", -1e30f, {{"lo", -0.5f}, {"\xf0\x9f", -1e30f}}, 3}};
  out["chat_completion_logprobs"] =
      CompletionResponseJson(chat, "Hello", ApiFinishReason::kStop, {20, 2, 16}, &lps);
  out["completion_logprobs"] = CompletionResponseJson(cmpl, "Hello", ApiFinishReason::kStop, {4, 2}, &lps);
  const std::vector<LogprobEntry> first(lps.begin(), lps.begin() + 1), second(lps.begin() + 1, lps.end());
  const StreamEncoder lenc(chat, true);
  out["chat_stream_logprobs"] = lenc.Begin() + lenc.Delta("Hel", &first) + lenc.Delta("", &second) +
                                lenc.End(ApiFinishReason::kStop, {20, 2, 16});
  // Several choices (n = 2): whole, and streamed with the choices' chunks interleaved.
  const std::vector<ChoiceOutput> two = {{"Hi", ApiFinishReason::kStop, nullptr},
                                         {"Hello there", ApiFinishReason::kLength, nullptr}};
  out["chat_completion_n2"] = CompletionResponseJson(chat, two, {20, 5});
  out["completion_n2"] = CompletionResponseJson(cmpl, two, {4, 5});
  const StreamEncoder nenc(chat, true);
  out["chat_stream_n2"] = nenc.Begin(2) + nenc.Delta("Hel", nullptr, 1) + nenc.Delta("Hi", nullptr, 0) +
                          nenc.Finish(0, ApiFinishReason::kStop) + nenc.Delta("lo there", nullptr, 1) +
                          nenc.End(ApiFinishReason::kLength, {20, 5}, 1);
  const StreamEncoder enc(chat, false);
  out["chat_stream_error"] =
      enc.Begin() + enc.Delta("Hel") + StreamEncoder::Fail(ApiError::Internal("abc123"));

  const std::vector<ModelCard> models = {{"smollm2", created, 8192}};
  out["models"] = ModelListJson(models);

  auto bad = ParseChatCompletionRequest(
      R"({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}],
          "max_tokens": "10"})");
  out["error_400"] = ErrorCase(bad.error());
  out["error_400_context"] =
      ErrorCase(ResolveMaxTokens(Endpoint::kChatCompletions, 8000, 1000, 0, 8192).error());
  out["error_401"] = ErrorCase(ApiError::InvalidApiKey());
  out["error_404_model"] = ErrorCase(ApiError::ModelNotFound("gpt-4o", {"smollm2"}));
  out["error_429"] = ErrorCase(ApiError::Overloaded(2));
  out["error_503"] = ErrorCase(ApiError::Unavailable(2));
  out["error_500"] = ErrorCase(ApiError::Internal("abc125"));
  return out;
}

}  // namespace
}  // namespace tandem::api

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " OUT.json\n";
    return 2;
  }
  std::ofstream out(argv[1], std::ios::binary);
  out << tandem::api::Dump().dump(2);
  return out.good() ? 0 : 1;
}
