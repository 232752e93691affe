// Response bodies and SSE framing as a client parses them.
#include "api/response.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::api {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

// Splits an SSE stream into its events' data, checking the framing on the way: every event
// is exactly one "data: ...\n\n".
std::vector<std::string> SseData(std::string_view stream) {
  std::vector<std::string> out;
  while (!stream.empty()) {
    EXPECT_EQ(stream.substr(0, 6), "data: ") << stream;
    const size_t end = stream.find("\n\n");
    EXPECT_NE(end, std::string_view::npos) << stream;
    if (end == std::string_view::npos) break;
    const std::string_view data = stream.substr(6, end - 6);
    EXPECT_EQ(data.find('\n'), std::string_view::npos) << "one line per event";
    out.emplace_back(data);
    stream.remove_prefix(end + 2);
  }
  return out;
}

TEST(ResponseTest, ChatCompletionBody) {
  const ResponseMeta meta =
      MakeResponseMeta(Endpoint::kChatCompletions, "r42", "smollm2", 1700000000);
  EXPECT_EQ(meta.id, "chatcmpl-r42");
  const json j = json::parse(CompletionResponseJson(meta, "Hi \xf0\x9f\x98\x80 \"there\"",
                                                    ApiFinishReason::kStop, {12, 5, 8}));
  EXPECT_EQ(j["id"], "chatcmpl-r42");
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["model"], "smollm2");
  ASSERT_EQ(j["choices"].size(), 1u);
  const json& c = j["choices"][0];
  EXPECT_EQ(c["index"], 0);
  EXPECT_EQ(c["message"]["role"], "assistant");
  EXPECT_EQ(c["message"]["content"], "Hi \xf0\x9f\x98\x80 \"there\"");
  EXPECT_TRUE(c["logprobs"].is_null());
  EXPECT_EQ(c["finish_reason"], "stop");
  EXPECT_EQ(j["usage"], (json{{"prompt_tokens", 12}, {"completion_tokens", 5},
                              {"total_tokens", 17},
                              {"prompt_tokens_details", {{"cached_tokens", 8}}}}));
}

TEST(ResponseTest, CompletionBody) {
  const ResponseMeta meta = MakeResponseMeta(Endpoint::kCompletions, "r7", "m", 5);
  EXPECT_EQ(meta.id, "cmpl-r7");
  const json j =
      json::parse(CompletionResponseJson(meta, "and then", ApiFinishReason::kLength, {3, 16}));
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "and then");
  EXPECT_FALSE(j["choices"][0].contains("message"));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["total_tokens"], 19);
}

TEST(ResponseTest, ChatStreamWithUsage) {
  StreamEncoder enc(MakeResponseMeta(Endpoint::kChatCompletions, "s1", "m", 9),
                    /*include_usage=*/true);
  EXPECT_EQ(enc.Delta(""), "");  // nothing new: nothing sent
  const std::string stream =
      enc.Begin() + enc.Delta("Hel") + enc.Delta("lo\n") + enc.End(ApiFinishReason::kStop, {4, 3});
  const std::vector<std::string> events = SseData(stream);
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_THAT(stream, ::testing::EndsWith("data: [DONE]\n\n"));

  const json first = json::parse(events[0]);
  EXPECT_EQ(first["id"], "chatcmpl-s1");
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], (json{{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first.contains("usage") && first["usage"].is_null());

  EXPECT_EQ(json::parse(events[1])["choices"][0]["delta"], (json{{"content", "Hel"}}));
  EXPECT_EQ(json::parse(events[2])["choices"][0]["delta"], (json{{"content", "lo\n"}}));

  const json last = json::parse(events[3]);
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");

  const json usage = json::parse(events[4]);
  EXPECT_EQ(usage["choices"], json::array());
  EXPECT_EQ(usage["usage"], (json{{"prompt_tokens", 4}, {"completion_tokens", 3},
                                  {"total_tokens", 7},
                                  {"prompt_tokens_details", {{"cached_tokens", 0}}}}));
  EXPECT_EQ(usage["id"], "chatcmpl-s1");
}

TEST(ResponseTest, SeveralChoicesInOneBody) {
  const ResponseMeta meta = MakeResponseMeta(Endpoint::kChatCompletions, "r3", "m", 5);
  const std::vector<LogprobEntry> lps = {{"b", -0.5f, {}, 0}};
  const std::vector<ChoiceOutput> choices = {{"a", ApiFinishReason::kStop, nullptr},
                                             {"b", ApiFinishReason::kLength, &lps}};
  const json j = json::parse(CompletionResponseJson(meta, choices, {4, 7}));
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["message"]["content"], "a");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(j["choices"][1]["index"], 1);
  EXPECT_EQ(j["choices"][1]["message"]["content"], "b");
  EXPECT_EQ(j["choices"][1]["finish_reason"], "length");
  EXPECT_EQ(j["choices"][1]["logprobs"]["content"][0]["token"], "b");
  EXPECT_EQ(j["usage"]["total_tokens"], 11);
}

// vLLM's prompt_logprobs: completions carry the list on every choice, chat once at the top level;
// the first entry null, the others keyed by token id (as strings) with logprob, rank (null when
// unknown) and decoded_token; absent unless asked for.
TEST(ResponseTest, PromptLogprobsInVllmsShape) {
  const PromptLogprobsList list = {std::nullopt,
                                   std::vector<RankedLogprob>{{42, -1.5f, 0, "He"}, {7, -0.25f, 1, "Hi"}},
                                   std::vector<RankedLogprob>{{9, -1e30f, 2, "\xf0\x9f"}}};
  const json want = json::array(
      {nullptr,
       {{"42", {{"logprob", -1.5}, {"rank", nullptr}, {"decoded_token", "He"}}},
        {"7", {{"logprob", -0.25}, {"rank", 1}, {"decoded_token", "Hi"}}}},
       {{"9", {{"logprob", -9999.0}, {"rank", 2}, {"decoded_token", "\xef\xbf\xbd"}}}}});
  const std::vector<ChoiceOutput> two = {{"a", ApiFinishReason::kStop, nullptr},
                                         {"b", ApiFinishReason::kLength, nullptr}};
  const json cmpl = json::parse(
      CompletionResponseJson(MakeResponseMeta(Endpoint::kCompletions, "r", "m", 5), two, {3, 2}, &list));
  EXPECT_FALSE(cmpl.contains("prompt_logprobs"));
  for (const json& choice : cmpl["choices"]) EXPECT_EQ(choice["prompt_logprobs"], want);
  const json chat = json::parse(
      CompletionResponseJson(MakeResponseMeta(Endpoint::kChatCompletions, "r", "m", 5), two, {3, 2}, &list));
  EXPECT_EQ(chat["prompt_logprobs"], want);
  for (const json& choice : chat["choices"]) EXPECT_FALSE(choice.contains("prompt_logprobs"));
  // Not asked for: no field at all.
  const json plain = json::parse(CompletionResponseJson(MakeResponseMeta(Endpoint::kCompletions, "r", "m", 5), two, {3, 2}));
  EXPECT_FALSE(plain["choices"][0].contains("prompt_logprobs"));
}

TEST(ResponseTest, SeveralChoicesInOneStream) {
  StreamEncoder enc(MakeResponseMeta(Endpoint::kChatCompletions, "s3", "m", 9), /*include_usage=*/true);
  const std::string stream = enc.Begin(2) + enc.Delta("x", nullptr, 1) + enc.Delta("y", nullptr, 0) +
                             enc.Finish(1, ApiFinishReason::kLength) + enc.End(ApiFinishReason::kStop, {4, 3}, 0);
  const std::vector<std::string> events = SseData(stream);
  ASSERT_EQ(events.size(), 8u);
  // A role chunk per choice, then the chunks as they came, each naming its choice.
  for (int i : {0, 1}) {
    const json role = json::parse(events[i]);
    EXPECT_EQ(role["choices"][0]["index"], i);
    EXPECT_EQ(role["choices"][0]["delta"]["role"], "assistant");
  }
  EXPECT_EQ(json::parse(events[2])["choices"][0]["index"], 1);
  EXPECT_EQ(json::parse(events[2])["choices"][0]["delta"]["content"], "x");
  EXPECT_EQ(json::parse(events[3])["choices"][0]["index"], 0);
  const json first_end = json::parse(events[4]);
  EXPECT_EQ(first_end["choices"][0]["index"], 1);
  EXPECT_EQ(first_end["choices"][0]["finish_reason"], "length");
  const json last_end = json::parse(events[5]);
  EXPECT_EQ(last_end["choices"][0]["index"], 0);
  EXPECT_EQ(last_end["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(json::parse(events[6])["usage"]["completion_tokens"], 3);
  EXPECT_EQ(events[7], "[DONE]");
}

TEST(ResponseTest, CompletionStreamWithoutUsage) {
  StreamEncoder enc(MakeResponseMeta(Endpoint::kCompletions, "s2", "m", 9),
                    /*include_usage=*/false);
  EXPECT_EQ(enc.Begin(), "");
  const std::string stream = enc.Begin() + enc.Delta("abc") + enc.End(ApiFinishReason::kLength,
                                                                     {1, 1});
  const std::vector<std::string> events = SseData(stream);
  ASSERT_EQ(events.size(), 3u);
  const json chunk = json::parse(events[0]);
  EXPECT_EQ(chunk["object"], "text_completion");
  EXPECT_EQ(chunk["id"], "cmpl-s2");
  EXPECT_EQ(chunk["choices"][0]["text"], "abc");
  EXPECT_FALSE(chunk.contains("usage"));
  const json last = json::parse(events[1]);
  EXPECT_EQ(last["choices"][0]["text"], "");
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(events[2], "[DONE]");
}

TEST(ResponseTest, ErrorAfterTheStreamStarted) {
  const std::vector<std::string> events =
      SseData(StreamEncoder::Fail(ApiError::Internal("req-9")));
  ASSERT_EQ(events.size(), 2u);
  const json e = json::parse(events[0]);
  EXPECT_EQ(e["error"]["type"], "server_error");
  EXPECT_THAT(e["error"]["message"].get<std::string>(), HasSubstr("req-9"));
  EXPECT_EQ(events[1], "[DONE]");
}

TEST(ResponseTest, ModelList) {
  const std::vector<ModelCard> models = {{"smollm2", 1700000000, 8192}, {"other", 5, 0}};
  const json j = json::parse(ModelListJson(models));
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["data"][0], (json{{"id", "smollm2"}, {"object", "model"}, {"created", 1700000000},
                                {"owned_by", "tandem"}, {"max_model_len", 8192}}));
  EXPECT_FALSE(j["data"][1].contains("max_model_len"));
  EXPECT_EQ(json::parse(ModelJson(models[1]))["id"], "other");
  EXPECT_EQ(json::parse(ModelListJson({}))["data"], json::array());
}

}  // namespace
}  // namespace tandem::api
