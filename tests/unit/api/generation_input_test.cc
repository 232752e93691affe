// The one validation both front doors use (api/generation_input.h), on inputs as the gRPC door
// builds them (no JSON): the same rules and words as the HTTP door's, and values JSON cannot
// carry (NaN, infinity) refused too.
#include "api/generation_input.h"

#include <cmath>
#include <limits>

#include "api/request.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::api {
namespace {

using ::testing::HasSubstr;

GenerationInput Text(std::string prompt) {
  GenerationInput in;
  in.kind = PromptKind::kText;
  in.prompt = std::move(prompt);
  return in;
}

GenerationInput ChatOf(std::vector<text::ChatMessage> messages) {
  GenerationInput in;
  in.kind = PromptKind::kChat;
  in.messages = std::move(messages);
  return in;
}

ApiError Rejected(GenerationInput in, const RequestLimits& limits = {}) {
  auto r = ValidateGenerationInput(std::move(in), limits);
  EXPECT_FALSE(r.ok());
  return r.ok() ? ApiError{} : r.error();
}

TEST(GenerationInputTest, ValidInputBecomesTheRequest) {
  GenerationInput in = ChatOf({{"developer", "Be brief."}, {"user", "Hi"}});
  in.options.max_tokens = 12;
  in.options.temperature = 0.5;
  in.options.top_k = -1;
  in.options.stop = {"END"};
  in.options.stop_token_ids = {2};
  auto r = ValidateGenerationInput(in, {});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->endpoint, Endpoint::kChatCompletions);
  EXPECT_EQ(r->messages[0].role, "system");
  EXPECT_EQ(r->options.max_tokens, 12);
  EXPECT_EQ(r->options.temperature, 0.5f);
  EXPECT_EQ(r->options.top_k, 0);
  EXPECT_EQ(r->options.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(r->options.stop_token_ids, std::vector<int32_t>{2});

  GenerationInput ids;
  ids.kind = PromptKind::kTokenIds;
  ids.prompt_token_ids = {1, 2, 3};
  auto c = ValidateGenerationInput(ids, {});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->endpoint, Endpoint::kCompletions);
  EXPECT_EQ(c->prompt_token_ids, (std::vector<int32_t>{1, 2, 3}));
}

// The prompt's log-probabilities: completions' echo with logprobs k scores the prompt with k
// alternatives; gRPC's prompt_logprobs asks alone; neither otherwise; k is range-checked by name.
TEST(GenerationInputTest, PromptLogprobsComeFromEchoWithLogprobsOrAreAskedForAlone) {
  const auto prompt_logprobs = [](bool echo, std::optional<int64_t> logprobs, std::optional<int64_t> prompt) {
    GenerationInput in = Text("Hello");
    in.options.echo = echo;
    in.options.logprobs = logprobs;
    in.options.prompt_logprobs = prompt;
    auto r = ValidateGenerationInput(in, {});
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? r->options.ToSamplingParams(4).prompt_logprobs : -2;
  };
  EXPECT_EQ(prompt_logprobs(true, 3, std::nullopt), 3);
  EXPECT_EQ(prompt_logprobs(true, std::nullopt, std::nullopt), -1);
  EXPECT_EQ(prompt_logprobs(false, 3, std::nullopt), -1);
  EXPECT_EQ(prompt_logprobs(false, std::nullopt, 0), 0);
  EXPECT_EQ(prompt_logprobs(true, 2, 5), 5);  // both: the larger k
  EXPECT_EQ(prompt_logprobs(true, 5, 2), 5);
  GenerationInput in = Text("Hello");
  in.options.prompt_logprobs = 21;
  const ApiError e = Rejected(in);
  EXPECT_EQ(e.param, "prompt_logprobs");
  EXPECT_THAT(e.message, HasSubstr("between 0 and 20"));
}

TEST(GenerationInputTest, NoPromptIsRequiredPrompt) {
  const ApiError e = Rejected(GenerationInput{});
  EXPECT_EQ(e.param, "prompt");
  EXPECT_EQ(e.message, "'prompt' is required");
  EXPECT_EQ(e.code, "missing_required_parameter");
}

TEST(GenerationInputTest, NumbersJsonCannotCarryAreRefused) {
  for (double t : {std::nan(""), std::numeric_limits<double>::infinity(), -0.5}) {
    GenerationInput in = Text("hi");
    in.options.temperature = t;
    EXPECT_EQ(Rejected(in).param, "temperature") << t;
  }
  GenerationInput in = Text("hi");
  in.options.top_p = std::nan("");
  EXPECT_EQ(Rejected(in).param, "top_p");
}

// The gRPC door's input gets the HTTP door's exact words.
TEST(GenerationInputTest, SameWordsAsTheHttpParser) {
  const std::pair<std::string, GenerationInput> cases[] = {
      {R"({"prompt": "hi", "temperature": 2.5})", [] {
         GenerationInput in = Text("hi");
         in.options.temperature = 2.5;
         return in;
       }()},
      {R"({"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]})", [] {
         GenerationInput in = Text("hi");
         in.options.stop = {"a", "b", "c", "d", "e"};
         return in;
       }()},
      {R"({"prompt": "hi", "stop": ["a", ""]})", [] {
         GenerationInput in = Text("hi");
         in.options.stop = {"a", ""};
         return in;
       }()},
      {R"({"prompt": "hi", "max_tokens": -3})", [] {
         GenerationInput in = Text("hi");
         in.options.max_tokens = -3;
         return in;
       }()},
      {R"({"prompt": [1, -2]})", [] {
         GenerationInput in;
         in.kind = PromptKind::kTokenIds;
         in.prompt_token_ids = {1, -2};
         return in;
       }()},
      {R"({"prompt": ""})", Text("")},
  };
  for (const auto& [body, input] : cases) {
    auto http = ParseCompletionRequest(body);
    ASSERT_FALSE(http.ok()) << body;
    const ApiError grpc = Rejected(input);
    EXPECT_EQ(grpc.message, http.error().message) << body;
    EXPECT_EQ(grpc.param, http.error().param) << body;
    EXPECT_EQ(grpc.http_status, http.error().http_status) << body;
  }
  auto http_chat = ParseChatCompletionRequest(R"({"messages": [{"role": "wizard", "content": "x"}]})");
  ASSERT_FALSE(http_chat.ok());
  EXPECT_EQ(Rejected(ChatOf({{"wizard", "x"}})).message, http_chat.error().message);
}

TEST(GenerationInputTest, OneStopStringSentAsAStringIsNamedStop) {
  GenerationInput in = Text("hi");
  in.options.stop = {std::string(300, 'x')};
  in.options.stop_is_list = false;
  const ApiError e = Rejected(in);
  EXPECT_EQ(e.param, "stop");
  EXPECT_THAT(e.message, HasSubstr("at most 256 bytes long, got 300 bytes"));
}

TEST(GenerationInputTest, LimitsApplyToEveryPromptForm) {
  RequestLimits limits;
  limits.max_prompt_bytes = 10;
  limits.max_prompt_token_ids = 3;
  limits.max_messages = 1;
  EXPECT_EQ(Rejected(Text(std::string(11, 'a')), limits).param, "prompt");
  GenerationInput ids;
  ids.kind = PromptKind::kTokenIds;
  ids.prompt_token_ids = {1, 2, 3, 4};
  EXPECT_THAT(Rejected(ids, limits).message, HasSubstr("at most 3 token ids"));
  EXPECT_THAT(Rejected(ChatOf({{"user", "a"}, {"user", "b"}}), limits).message, HasSubstr("at most 1 messages"));
  EXPECT_THAT(Rejected(ChatOf({{"user", std::string(11, 'a')}}), limits).message, HasSubstr("at most 10 bytes"));
}

}  // namespace
}  // namespace tandem::api
