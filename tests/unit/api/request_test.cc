// Request validation: what a client that sends a bad body gets back (status, OpenAI error
// type, the field named in `param`), and what a good body turns into.
#include "api/request.h"

#include <algorithm>

#include <random>

#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::api {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

constexpr const char* kMessages = R"("messages": [{"role": "user", "content": "hi"}])";

// A chat body with `extra` fields added after the messages.
std::string Chat(std::string_view extra = "") {
  return extra.empty() ? fmt::format("{{{}}}", kMessages)
                       : fmt::format("{{{}, {}}}", kMessages, extra);
}
std::string Completion(std::string_view extra = "") {
  return extra.empty() ? std::string(R"({"prompt": "Once upon a time"})")
                       : fmt::format(R"({{"prompt": "Once upon a time", {}}})", extra);
}

GenerationRequest ParseChatOk(const std::string& body) {
  auto r = ParseChatCompletionRequest(body);
  EXPECT_TRUE(r.ok()) << body << " -> " << (r.ok() ? "" : r.error().message);
  return r.ok() ? *std::move(r) : GenerationRequest{};
}
GenerationRequest ParseCompletionOk(const std::string& body) {
  auto r = ParseCompletionRequest(body);
  EXPECT_TRUE(r.ok()) << body << " -> " << (r.ok() ? "" : r.error().message);
  return r.ok() ? *std::move(r) : GenerationRequest{};
}

struct BadCase {
  std::string body;
  std::string param;    // expected `param` ("" = null)
  std::string message;  // a substring of the message
  int status = 400;
};

void ExpectRejected(const ApiErrorOr<GenerationRequest>& r, const BadCase& c) {
  ASSERT_FALSE(r.ok()) << c.body;
  EXPECT_EQ(r.error().http_status, c.status) << c.body;
  EXPECT_EQ(r.error().type, "invalid_request_error") << c.body;
  EXPECT_EQ(r.error().param, c.param) << c.body << " -> " << r.error().message;
  EXPECT_THAT(r.error().message, HasSubstr(c.message)) << c.body;
  // The body is OpenAI's error object with the same fields.
  const json body = json::parse(r.error().ToJson());
  EXPECT_EQ(body["error"]["message"], r.error().message);
  EXPECT_EQ(body["error"]["param"], c.param.empty() ? json(nullptr) : json(c.param));
}

TEST(RequestTest, ChatBodyBecomesOptions) {
  const GenerationRequest r = ParseChatOk(R"({
    "model": "smollm2", "messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                   {"type": "text", "text": "there"}]},
      {"role": "assistant", "content": null},
      {"role": "user", "content": "again", "name": "bob"}],
    "max_completion_tokens": 7, "max_tokens": 99, "temperature": 0, "top_p": 0.5,
    "top_k": 40, "seed": 42, "stop": ["\n\n", "END"], "stop_token_ids": [2, 0],
    "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true},
    "n": 1, "user": "u-1", "presence_penalty": 0, "logprobs": false,
    "response_format": {"type": "text"}, "some_future_field": {"x": 1}})");
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, "system");  // developer is rendered as system
  EXPECT_EQ(r.messages[1].content, "Hello\nthere");
  EXPECT_EQ(r.messages[2].role, "assistant");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.messages[3].content, "again");
  const GenerationOptions& o = r.options;
  EXPECT_EQ(o.model, "smollm2");
  EXPECT_EQ(o.max_tokens, 7);  // max_completion_tokens wins
  EXPECT_EQ(o.temperature, 0.0f);
  EXPECT_EQ(o.top_p, 0.5f);
  EXPECT_EQ(o.top_k, 40);
  EXPECT_EQ(o.seed, 42u);
  EXPECT_EQ(o.stop, (std::vector<std::string>{"\n\n", "END"}));
  EXPECT_EQ(o.stop_token_ids, (std::vector<int32_t>{2, 0}));
  EXPECT_TRUE(o.ignore_eos);
  EXPECT_TRUE(o.stream);
  EXPECT_TRUE(o.include_usage);

  const SamplingParams p = o.ToSamplingParams(7);
  EXPECT_EQ(p.max_tokens, 7);
  EXPECT_TRUE(p.greedy());
  EXPECT_EQ(p.top_k, 40);
  EXPECT_EQ(p.seed, 42u);
  EXPECT_TRUE(p.ignore_eos);
  EXPECT_EQ(p.stop_token_ids, (std::vector<int32_t>{2, 0}));
}

TEST(RequestTest, DefaultsWhenFieldsAreAbsentOrNull) {
  const GenerationRequest r =
      ParseChatOk(Chat(R"("max_tokens": null, "temperature": null, "stop": null, "top_k": null)"));
  EXPECT_EQ(r.options.model, "");
  EXPECT_FALSE(r.options.max_tokens.has_value());
  EXPECT_EQ(r.options.temperature, 1.0f);
  EXPECT_EQ(r.options.top_p, 1.0f);
  EXPECT_EQ(r.options.top_k, 0);
  EXPECT_FALSE(r.options.seed.has_value());
  EXPECT_TRUE(r.options.stop.empty());
  EXPECT_FALSE(r.options.stream);
}

TEST(RequestTest, TopKOffValuesAndSeedsAndIntegralFloats) {
  EXPECT_EQ(ParseChatOk(Chat(R"("top_k": -1)")).options.top_k, 0);
  EXPECT_EQ(ParseChatOk(Chat(R"("top_k": 0)")).options.top_k, 0);
  EXPECT_EQ(ParseChatOk(Chat(R"("seed": -1)")).options.seed, ~uint64_t{0});
  EXPECT_EQ(ParseChatOk(Chat(R"("seed": 18446744073709551615)")).options.seed, ~uint64_t{0});
  EXPECT_EQ(ParseChatOk(Chat(R"("max_tokens": 10.0)")).options.max_tokens, 10);
  EXPECT_EQ(ParseChatOk(Chat(R"("temperature": 2)")).options.temperature, 2.0f);
  EXPECT_EQ(ParseChatOk(Chat(R"("stop": "###")")).options.stop,
            std::vector<std::string>{"###"});
}

TEST(RequestTest, CompletionPromptForms) {
  EXPECT_EQ(ParseCompletionOk(R"({"prompt": "abc"})").prompt, "abc");
  EXPECT_EQ(ParseCompletionOk(R"({"prompt": ["abc"]})").prompt, "abc");
  const GenerationRequest ids = ParseCompletionOk(R"({"prompt": [1, 2, 3], "max_tokens": 5})");
  EXPECT_EQ(ids.prompt, "");
  EXPECT_EQ(ids.prompt_token_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(ids.options.max_tokens, 5);
  EXPECT_EQ(ParseCompletionOk(R"({"prompt": [[4, 5]]})").prompt_token_ids,
            (std::vector<int32_t>{4, 5}));
  // "logprobs": null and "echo": false ask for nothing.
  ParseCompletionOk(Completion(R"("logprobs": null, "echo": false, "suffix": "", "best_of": 1)"));
}

TEST(RequestTest, MalformedBodies) {
  const std::vector<BadCase> cases = {
      {"", "", "not valid JSON"},
      {"{\"messages\": [", "", "not valid JSON"},
      {"[1, 2]", "", "must be a JSON object"},
      {"\"hello\"", "", "must be a JSON object"},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\"}]}", "", "not valid JSON"},
      {std::string(100, '[') + std::string(100, ']'), "", "nested too deeply"},
  };
  for (const BadCase& c : cases) ExpectRejected(ParseChatCompletionRequest(c.body), c);
}

TEST(RequestTest, BadMessages) {
  const std::vector<BadCase> cases = {
      {"{}", "messages", "'messages' is required"},
      {R"({"messages": []})", "messages", "at least one message"},
      {R"({"messages": "hi"})", "messages", "expected an array"},
      {R"({"messages": ["hi"]})", "messages[0]", "expected an object"},
      {R"({"messages": [{"content": "hi"}]})", "messages[0].role", "is required"},
      {R"({"messages": [{"role": "wizard", "content": "hi"}]})", "messages[0].role",
       "Invalid value for 'messages[0].role': \"wizard\""},
      {R"({"messages": [{"role": 3, "content": "hi"}]})", "messages[0].role", "expected a string"},
      {R"({"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]})",
       "messages[1].role", "not supported"},
      {R"({"messages": [{"role": "user"}]})", "messages[0].content", "is required"},
      {R"({"messages": [{"role": "user", "content": null}]})", "messages[0].content",
       "is required"},
      {R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content",
       "expected a string or an array"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url",
           "image_url": {"url": "http://x/y.png"}}]}]})",
       "messages[0].content[0].type", "not supported"},
      {R"({"messages": [{"role": "user", "content": ["hi"]}]})", "messages[0].content[0]",
       "expected an object"},
      {R"({"messages": [{"role": "user", "content": [{"type": "text"}]}]})",
       "messages[0].content[0].text", "is required"},
      {R"({"messages": [{"role": "assistant", "content": null,
           "tool_calls": [{"id": "1"}]}]})",
       "messages[0].tool_calls", "not supported"},
  };
  for (const BadCase& c : cases) ExpectRejected(ParseChatCompletionRequest(c.body), c);
}

TEST(RequestTest, WrongTypesNameTheField) {
  const std::vector<BadCase> cases = {
      {Chat(R"("max_tokens": "10")"), "max_tokens",
       "Invalid type for 'max_tokens': expected an integer, but got a string instead."},
      {Chat(R"("max_tokens": 10.5)"), "max_tokens", "expected an integer"},
      {Chat(R"("max_tokens": true)"), "max_tokens", "expected an integer"},
      {Chat(R"("temperature": "hot")"), "temperature", "expected a number"},
      {Chat(R"("top_p": [1])"), "top_p", "expected a number"},
      {Chat(R"("top_k": 1.5)"), "top_k", "expected an integer"},
      {Chat(R"("seed": "7")"), "seed", "expected an integer"},
      {Chat(R"("stream": "yes")"), "stream", "expected a boolean"},
      {Chat(R"("stream": true, "stream_options": {"include_usage": 1})"),
       "stream_options.include_usage", "expected a boolean"},
      {Chat(R"("stream": true, "stream_options": true)"), "stream_options", "expected an object"},
      {Chat(R"("stop": 5)"), "stop", "a string or an array of strings"},
      {Chat(R"("stop": ["a", 5])"), "stop[1]", "expected a string"},
      {Chat(R"("stop_token_ids": 5)"), "stop_token_ids", "an array of integers"},
      {Chat(R"("stop_token_ids": ["5"])"), "stop_token_ids[0]", "expected an integer"},
      {Chat(R"("ignore_eos": 1)"), "ignore_eos", "expected a boolean"},
      {Chat(R"("model": 5)"), "model", "expected a string"},
      {Chat(R"("n": "1")"), "n", "expected an integer"},
  };
  for (const BadCase& c : cases) ExpectRejected(ParseChatCompletionRequest(c.body), c);
}

TEST(RequestTest, OutOfRangeValues) {
  const std::vector<BadCase> cases = {
      {Chat(R"("max_tokens": 0)"), "max_tokens", "at least 1, got 0"},
      {Chat(R"("max_tokens": -5)"), "max_tokens", "at least 1"},
      {Chat(R"("max_completion_tokens": 0)"), "max_completion_tokens", "at least 1"},
      {Chat(R"("max_tokens": 3000000000)"), "max_tokens", "at most"},
      {Chat(R"("temperature": -0.1)"), "temperature", "between 0 and 2"},
      {Chat(R"("temperature": 2.5)"), "temperature", "between 0 and 2"},
      {Chat(R"("top_p": 0)"), "top_p", "in (0, 1]"},
      {Chat(R"("top_p": 1.01)"), "top_p", "in (0, 1]"},
      {Chat(R"("top_k": -2)"), "top_k", "-1 or 0 (off)"},
      {Chat(R"("stop": "")"), "stop", "must not be an empty string"},
      {Chat(R"("stop": ["a", ""])"), "stop[1]", "must not be an empty string"},
      {Chat(R"("stop": ["a", "b", "c", "d", "e"])"), "stop", "at most 4 strings"},
      {Chat(R"("stop_token_ids": [-1])"), "stop_token_ids[0]", "a token id"},
      {Chat(R"("stream_options": {"include_usage": true})"), "stream_options",
       "only allowed when 'stream' is true"},
      {Chat(R"("n": 0)"), "n", "'n' must be between 1 and 16, got 0"},
      {Chat(R"("n": 17)"), "n", "between 1 and 16, got 17"},
  };
  for (const BadCase& c : cases) ExpectRejected(ParseChatCompletionRequest(c.body), c);
}

TEST(RequestTest, ChoicesAreReadAndBounded) {
  auto chat = ParseChatCompletionRequest(Chat(R"("n": 3, "seed": 5)"));
  ASSERT_TRUE(chat.ok()) << chat.error().message;
  EXPECT_EQ(chat->options.n, 3);
  EXPECT_EQ(chat->options.best_of, 3);  // absent: n
  auto one = ParseChatCompletionRequest(Chat(R"("n": null, "best_of": 1)"));
  ASSERT_TRUE(one.ok()) << one.error().message;
  EXPECT_EQ(one->options.n, 1);
  auto best = ParseCompletionRequest(Completion(R"("n": 2, "best_of": 5)"));
  ASSERT_TRUE(best.ok()) << best.error().message;
  EXPECT_EQ(best->options.n, 2);
  EXPECT_EQ(best->options.best_of, 5);
  const std::vector<BadCase> cases = {
      {Completion(R"("n": 3, "best_of": 2)"), "best_of", "between n (3) and 16, got 2"},
      {Completion(R"("best_of": 17)"), "best_of", "got 17"},
      {Completion(R"("best_of": 2, "stream": true)"), "best_of", "cannot be streamed"},
      {Completion(R"("best_of": "2")"), "best_of", "expected an integer"},
  };
  for (const BadCase& c : cases) ExpectRejected(ParseCompletionRequest(c.body), c);
  // best_of equal to n streams (nothing to choose).
  EXPECT_TRUE(ParseCompletionRequest(Completion(R"("n": 2, "best_of": 2, "stream": true)")).ok());
  RequestLimits small;
  small.max_choices = 4;
  ExpectRejected(ParseChatCompletionRequest(Chat(R"("n": 5)"), small), {"", "n", "between 1 and 4, got 5"});
}

TEST(RequestTest, UnsupportedFeaturesAreRejectedByName) {
  const std::vector<BadCase> cases = {
      {Chat(R"("best_of": 2)"), "best_of", "not supported by this server: in chat completions (use n)"},
      {Chat(R"("tools": [{"type": "function", "function": {"name": "f"}}])"), "tools",
       "'tools' is not supported"},
      {Chat(R"("tool_choice": "required")"), "tool_choice", "not supported"},
      {Chat(R"("functions": [{"name": "f"}])"), "functions", "not supported"},
      {Chat(R"("response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema":
               {"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}}}})"),
       "response_format.json_schema.schema", "cannot be enforced: properties.a: 'pattern' is not supported"},
      {Chat(R"("response_format": {"type": "json_schema", "json_schema": {"name": "x"}})"),
       "response_format.json_schema.schema", "is required"},
      {Chat(R"("response_format": {"type": "json_schema"})"), "response_format.json_schema", "must be an object"},
      {Chat(R"("response_format": "json")"), "response_format", "expected an object"},
      {Chat(R"("response_format": {"type": "yaml"})"), "response_format.type",
       "must be 'text', 'json_object' or 'json_schema', got 'yaml'"},
      {Chat(R"("response_format": {})"), "response_format.type", "needs a 'type'"},
      {Chat(R"("response_format": {"type": 1})"), "response_format.type", "expected a string"},
      {Chat(R"("frequency_penalty": "0")"), "frequency_penalty", "expected a number"},
  };
  for (const BadCase& c : cases) ExpectRejected(ParseChatCompletionRequest(c.body), c);
}

TEST(RequestTest, ResponseFormatJsonObjectReachesTheSamplingParams) {
  using enum ResponseFormat;
  EXPECT_EQ(ParseChatOk(Chat(R"("response_format": {"type": "json_object"})")).options.ToSamplingParams(8).response_format,
            kJsonObject);
  const GenerationRequest completion =
      *ParseCompletionRequest(Completion(R"("response_format": {"type": "json_object"})"));
  EXPECT_EQ(completion.options.ToSamplingParams(8).response_format, kJsonObject);
  const SamplingParams schema = ParseChatOk(Chat(R"("response_format": {"type": "json_schema", "json_schema":
      {"name": "city", "strict": true, "schema": {"type": "object", "properties": {"city": {"type": "string"}}}}})"))
                                    .options.ToSamplingParams(8);
  EXPECT_EQ(schema.response_format, kJsonSchema);
  EXPECT_EQ(nlohmann::json::parse(schema.json_schema)["properties"]["city"]["type"], "string");
  for (const char* off : {R"("response_format": {"type": "text"})", R"("response_format": null)", R"("n": 1)"}) {
    EXPECT_EQ(ParseChatOk(Chat(off)).options.ToSamplingParams(8).response_format, kText) << off;
  }
}

TEST(RequestTest, PenaltiesBiasMinPAndPriorityReachTheSamplingParams) {
  const GenerationRequest r = ParseChatOk(
      Chat(R"("presence_penalty": 0.5, "frequency_penalty": -1.25, "repetition_penalty": 1.3,
              "min_p": 0.05, "logit_bias": {"42": -100, "7": 2.5}, "priority": -3)"));
  const SamplingParams p = r.options.ToSamplingParams(16);
  EXPECT_FLOAT_EQ(p.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(p.frequency_penalty, -1.25f);
  EXPECT_FLOAT_EQ(p.repetition_penalty, 1.3f);
  EXPECT_FLOAT_EQ(p.min_p, 0.05f);
  EXPECT_EQ(p.priority, -3);
  std::vector<std::pair<int32_t, float>> bias = p.logit_bias;
  std::sort(bias.begin(), bias.end());
  ASSERT_EQ(bias.size(), 2u);
  EXPECT_EQ(bias[0], std::make_pair(7, 2.5f));
  EXPECT_EQ(bias[1], std::make_pair(42, -100.0f));
  EXPECT_TRUE(p.modifies_logits());
  // Absent, null and neutral values change nothing.
  const SamplingParams plain = ParseChatOk(Chat(R"("presence_penalty": null, "logit_bias": {},
      "repetition_penalty": 1, "frequency_penalty": 0)")).options.ToSamplingParams(16);
  EXPECT_FALSE(plain.modifies_logits());
  EXPECT_EQ(plain.priority, 0);
  EXPECT_EQ(plain.min_tokens, 0);
}

TEST(RequestTest, MinTokensReachesTheSamplingParamsAndIsCheckedAgainstMaxTokens) {
  EXPECT_EQ(ParseChatOk(Chat(R"("min_tokens": 4, "max_tokens": 10)")).options.ToSamplingParams(10).min_tokens, 4);
  EXPECT_EQ(ParseChatOk(Chat(R"("min_tokens": null)")).options.ToSamplingParams(10).min_tokens, 0);
  const std::vector<BadCase> cases = {
      {Chat(R"("min_tokens": 11, "max_tokens": 10)"), "min_tokens", "at most max_tokens (10)"},
      {Chat(R"("min_tokens": -1)"), "min_tokens", "a count >= 0"},
      {Chat(R"("min_tokens": 1.5)"), "min_tokens", "integer"},
  };
  for (const BadCase& c : cases) ExpectRejected(ParseChatCompletionRequest(c.body), c);
}

TEST(RequestTest, SpeculativeOptOutReachesTheSamplingParams) {
  EXPECT_TRUE(ParseChatOk(Chat("")).options.ToSamplingParams(10).speculative);
  EXPECT_FALSE(ParseChatOk(Chat(R"("speculative": false)")).options.ToSamplingParams(10).speculative);
  EXPECT_TRUE(ParseChatOk(Chat(R"("speculative": null)")).options.ToSamplingParams(10).speculative);
  const BadCase bad = {Chat(R"("speculative": "no")"), "speculative", "a boolean"};
  ExpectRejected(ParseChatCompletionRequest(bad.body), bad);
}

TEST(RequestTest, BadPenaltiesBiasesAndMinP) {
  const std::vector<BadCase> cases = {
      {Chat(R"("presence_penalty": 2.5)"), "presence_penalty", "between -2 and 2"},
      {Chat(R"("frequency_penalty": -2.01)"), "frequency_penalty", "between -2 and 2"},
      {Chat(R"("frequency_penalty": "0")"), "frequency_penalty", "expected a number"},
      {Chat(R"("repetition_penalty": 0)"), "repetition_penalty", "in (0, 10]"},
      {Chat(R"("repetition_penalty": 11)"), "repetition_penalty", "in (0, 10]"},
      {Chat(R"("min_p": 1.5)"), "min_p", "between 0 and 1"},
      {Chat(R"("min_p": -0.1)"), "min_p", "between 0 and 1"},
      {Chat(R"("logit_bias": {"12": 101})"), "logit_bias", "between -100 and 100"},
      {Chat(R"("logit_bias": {"-1": 1})"), "logit_bias", "token ids (>= 0)"},
      {Chat(R"("logit_bias": {"abc": 1})"), "logit_bias", "integers as strings"},
      {Chat(R"("logit_bias": {"12x": 1})"), "logit_bias", "integers as strings"},
      {Chat(R"("logit_bias": {"12": "1"})"), "logit_bias.12", "expected a number"},
      {Chat(R"("logit_bias": [1, 2])"), "logit_bias", "expected an object"},
      {Chat(R"("priority": 1.5)"), "priority", "expected an integer"},
      {Chat(R"("priority": 99999999999)"), "priority", "a 32-bit integer"},
  };
  for (const BadCase& c : cases) ExpectRejected(ParseChatCompletionRequest(c.body), c);
  RequestLimits limits;
  limits.max_logit_bias = 2;
  auto many = ParseChatCompletionRequest(Chat(R"("logit_bias": {"1": 1, "2": 1, "3": 1})"), limits);
  ASSERT_FALSE(many.ok());
  EXPECT_EQ(many.error().param, "logit_bias");
  EXPECT_THAT(many.error().message, HasSubstr("at most 2 entries"));
}

TEST(RequestTest, LogprobsAsChatAndCompletionsAskForThem) {
  EXPECT_EQ(ParseChatOk(Chat()).options.logprobs, -1);
  EXPECT_EQ(ParseChatOk(Chat(R"("logprobs": false, "top_logprobs": 0)")).options.logprobs, -1);
  EXPECT_EQ(ParseChatOk(Chat(R"("logprobs": true)")).options.logprobs, 0);
  EXPECT_EQ(ParseChatOk(Chat(R"("logprobs": true, "top_logprobs": 5)")).options.ToSamplingParams(4).logprobs, 5);
  EXPECT_EQ(ParseCompletionOk(Completion(R"("logprobs": 0)")).options.logprobs, 0);
  EXPECT_EQ(ParseCompletionOk(Completion(R"("logprobs": 3)")).options.logprobs, 3);
  EXPECT_EQ(ParseCompletionOk(Completion(R"("logprobs": null)")).options.logprobs, -1);
  const std::vector<BadCase> cases = {
      {Chat(R"("top_logprobs": 3)"), "top_logprobs", "needs 'logprobs' to be true"},
      {Chat(R"("logprobs": true, "top_logprobs": 21)"), "top_logprobs", "between 0 and 20"},
      {Chat(R"("logprobs": true, "top_logprobs": -1)"), "top_logprobs", "between 0 and 20"},
      {Chat(R"("logprobs": 2)"), "logprobs", "expected a boolean"},
  };
  for (const BadCase& c : cases) ExpectRejected(ParseChatCompletionRequest(c.body), c);
}

TEST(RequestTest, EchoIsForCompletions) {
  EXPECT_TRUE(ParseCompletionOk(Completion(R"("echo": true)")).options.echo);
  EXPECT_FALSE(ParseCompletionOk(Completion(R"("echo": false)")).options.echo);
  // With logprobs the echoed prompt is scored too (lm-evaluation-harness's loglikelihood).
  const GenerationOptions scored = ParseCompletionOk(Completion(R"("echo": true, "logprobs": 3)")).options;
  EXPECT_TRUE(scored.echo);
  EXPECT_EQ(scored.logprobs, 3);
  EXPECT_EQ(scored.prompt_logprobs, 3);
  const std::string chat_echo = Chat(R"("echo": true)");
  ExpectRejected(ParseChatCompletionRequest(chat_echo), {chat_echo, "echo", "in chat completions"});
}

// vLLM's prompt_logprobs: k in [0, 20] or null on both endpoints, reaching the engine; a bad value
// or type, or a streamed request, is a 400 naming the field.
TEST(RequestTest, PromptLogprobsAreReadOnBothEndpoints) {
  for (const bool chat : {true, false}) {
    auto parse = [chat](std::string_view extra) {
      return chat ? ParseChatOk(Chat(extra)).options : ParseCompletionOk(Completion(extra)).options;
    };
    const GenerationOptions five = parse(R"("prompt_logprobs": 5)");
    EXPECT_EQ(five.requested_prompt_logprobs, 5);
    EXPECT_EQ(five.ToSamplingParams(4).prompt_logprobs, 5);
    EXPECT_EQ(five.logprobs, -1);  // the generated tokens' are a separate ask
    EXPECT_EQ(parse(R"("prompt_logprobs": 0)").requested_prompt_logprobs, 0);
    EXPECT_EQ(parse(R"("prompt_logprobs": 20.0)").requested_prompt_logprobs, 20);
    for (const std::string_view off : {R"("prompt_logprobs": null)", ""}) {
      const GenerationOptions o = parse(off);
      EXPECT_EQ(o.requested_prompt_logprobs, -1) << off;
      EXPECT_EQ(o.prompt_logprobs, -1) << off;
    }
    auto body = [chat](std::string_view extra) { return chat ? Chat(extra) : Completion(extra); };
    const std::vector<BadCase> cases = {
        {body(R"("prompt_logprobs": -1)"), "prompt_logprobs", "'prompt_logprobs' must be between 0 and 20, got -1"},
        {body(R"("prompt_logprobs": 21)"), "prompt_logprobs", "between 0 and 20, got 21"},
        {body(R"("prompt_logprobs": "2")"), "prompt_logprobs", "expected an integer, but got a string"},
        {body(R"("prompt_logprobs": true)"), "prompt_logprobs", "expected an integer"},
        {body(R"("prompt_logprobs": 1.5)"), "prompt_logprobs", "expected an integer"},
        {body(R"("prompt_logprobs": [1])"), "prompt_logprobs", "expected an integer"},
        {body(R"("prompt_logprobs": 1, "stream": true)"), "prompt_logprobs", "not available with \"stream\": true"},
        {body(R"("prompt_logprobs": 0, "stream": true)"), "prompt_logprobs", "not available with \"stream\": true"},
    };
    for (const BadCase& c : cases) {
      ExpectRejected(chat ? ParseChatCompletionRequest(c.body) : ParseCompletionRequest(c.body), c);
    }
  }
  // Null with stream asks for nothing.
  EXPECT_EQ(ParseChatOk(Chat(R"("prompt_logprobs": null, "stream": true)")).options.prompt_logprobs, -1);
}

// Completions' echo with logprobs j and prompt_logprobs k: the engine computes the larger; each
// view keeps its own k (the echo's is options.logprobs).
TEST(RequestTest, EchoWithLogprobsAndPromptLogprobsTakeTheLargerK) {
  for (const auto& [j, k] : {std::pair{2, 5}, std::pair{5, 2}, std::pair{3, 3}}) {
    const GenerationOptions o =
        ParseCompletionOk(Completion(fmt::format(R"("echo": true, "logprobs": {}, "prompt_logprobs": {})", j, k))).options;
    EXPECT_EQ(o.logprobs, j);
    EXPECT_EQ(o.requested_prompt_logprobs, k);
    EXPECT_EQ(o.ToSamplingParams(4).prompt_logprobs, std::max(j, k));
  }
  // Echo with logprobs still streams (its prompt entries come in the first chunk).
  EXPECT_EQ(ParseCompletionOk(Completion(R"("echo": true, "logprobs": 1, "stream": true)")).options.prompt_logprobs, 1);
}

TEST(RequestTest, TokenizeAndDetokenizeBodies) {
  auto text = ParseTokenizeRequest(R"({"prompt": "hello", "max_tokens": "ignored"})");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->endpoint, Endpoint::kCompletions);
  EXPECT_EQ(text->prompt, "hello");
  auto chat = ParseTokenizeRequest(R"({"messages": [{"role": "user", "content": "hi"}]})");
  ASSERT_TRUE(chat.ok());
  EXPECT_EQ(chat->endpoint, Endpoint::kChatCompletions);
  ASSERT_EQ(chat->messages.size(), 1u);
  EXPECT_EQ(ParseTokenizeRequest(R"({})").error().param, "prompt");
  EXPECT_EQ(ParseTokenizeRequest(R"({"messages": []})").error().param, "messages");

  auto ids = ParseDetokenizeRequest(R"({"tokens": [1, 2, 3]})");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{1, 2, 3}));
  for (const char* bad : {R"({})", R"({"tokens": "1"})", R"({"tokens": [-1]})", R"({"tokens": [1e12]})",
                          R"({"tokens": [1.5]})"}) {
    auto r = ParseDetokenizeRequest(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().http_status, 400) << bad;
    EXPECT_THAT(r.error().param, ::testing::StartsWith("tokens")) << bad;
  }
}

TEST(RequestTest, BadCompletionBodies) {
  const std::vector<BadCase> cases = {
      {R"({"model": "m"})", "prompt", "'prompt' is required"},
      {R"({"prompt": ""})", "prompt", "must not be empty"},
      {R"({"prompt": [""]})", "prompt", "must not be empty"},
      {R"({"prompt": []})", "prompt", "must not be empty"},
      {R"({"prompt": [[]]})", "prompt", "must not be empty"},
      {R"({"prompt": 42})", "prompt", "expected a string, an array of one string"},
      {R"({"prompt": ["a", "b"]})", "prompt", "batches of 2 prompts"},
      {R"({"prompt": [[1], [2]]})", "prompt", "batches of 2 prompts"},
      {R"({"prompt": [1, -2]})", "prompt", "-2 at index 1"},
      {R"({"prompt": [1, "x"]})", "prompt[1]", "expected an integer"},
      {R"({"prompt": [1, 2.5]})", "prompt[1]", "expected an integer"},
      {R"({"prompt": [1, 99999999999]})", "prompt", "token ids >= 0"},
      {Completion(R"("echo": 1)"), "echo", "expected a boolean"},
      {Completion(R"("logprobs": 21)"), "logprobs", "between 0 and 20"},
      {Completion(R"("logprobs": true)"), "logprobs", "expected an integer"},
      {Completion(R"("suffix": "end")"), "suffix", "'suffix' is not supported"},
      {Completion(R"("max_tokens": "10")"), "max_tokens", "expected an integer"},
  };
  for (const BadCase& c : cases) {
    auto r = ParseCompletionRequest(c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.error().http_status, 400) << c.body;
    EXPECT_EQ(r.error().type, "invalid_request_error");
    EXPECT_EQ(r.error().param, c.param) << c.body << " -> " << r.error().message;
    EXPECT_THAT(r.error().message, HasSubstr(c.message)) << c.body;
  }
}

TEST(RequestTest, SizeLimits) {
  RequestLimits limits;
  limits.max_body_bytes = 4096;
  limits.max_prompt_bytes = 100;
  limits.max_messages = 3;
  limits.max_prompt_token_ids = 4;
  limits.max_stop_bytes = 8;

  auto too_big = ParseChatCompletionRequest(Chat(R"("x": ")" + std::string(5000, 'a') + "\""),
                                            limits);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().http_status, 413);
  EXPECT_THAT(too_big.error().message, HasSubstr("4096 bytes"));

  const std::string long_text(101, 'a');
  auto long_chat = ParseChatCompletionRequest(
      R"({"messages": [{"role": "user", "content": ")" + std::string(60, 'a') +
          R"("}, {"role": "user", "content": ")" + std::string(60, 'b') + R"("}]})",
      limits);
  ASSERT_FALSE(long_chat.ok());
  EXPECT_EQ(long_chat.error().param, "messages");
  EXPECT_THAT(long_chat.error().message, HasSubstr("at most 100 bytes"));

  auto long_prompt = ParseCompletionRequest(R"({"prompt": ")" + long_text + "\"}", limits);
  ASSERT_FALSE(long_prompt.ok());
  EXPECT_EQ(long_prompt.error().param, "prompt");
  EXPECT_TRUE(ParseCompletionRequest(R"({"prompt": ")" + std::string(100, 'a') + "\"}", limits)
                  .ok());

  auto many = ParseChatCompletionRequest(
      R"({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "a"},
                       {"role": "user", "content": "a"}, {"role": "user", "content": "a"}]})",
      limits);
  ASSERT_FALSE(many.ok());
  EXPECT_THAT(many.error().message, HasSubstr("at most 3 messages"));

  auto many_ids = ParseCompletionRequest(R"({"prompt": [1, 2, 3, 4, 5]})", limits);
  ASSERT_FALSE(many_ids.ok());
  EXPECT_THAT(many_ids.error().message, HasSubstr("at most 4 token ids"));

  auto long_stop = ParseChatCompletionRequest(Chat(R"("stop": ["123456789"])"), limits);
  ASSERT_FALSE(long_stop.ok());
  EXPECT_EQ(long_stop.error().param, "stop[0]");
  EXPECT_THAT(long_stop.error().message, HasSubstr("at most 8 bytes"));
  EXPECT_TRUE(ParseChatCompletionRequest(Chat(R"("stop": ["12345678"])"), limits).ok());
}

TEST(RequestTest, DefaultLimitsAreDocumentedValues) {
  const RequestLimits limits;
  EXPECT_EQ(limits.max_stop_strings, 4u);
  EXPECT_EQ(limits.max_prompt_bytes, 1u << 20);
  // A 1 MiB prompt is accepted, one byte more is not.
  EXPECT_TRUE(ParseCompletionRequest(R"({"prompt": ")" + std::string(1 << 20, 'a') + "\"}").ok());
  EXPECT_FALSE(
      ParseCompletionRequest(R"({"prompt": ")" + std::string((1 << 20) + 1, 'a') + "\"}").ok());
}

TEST(RequestTest, ContextLengthChecks) {
  // Explicit max_tokens that fits.
  auto fits = ResolveMaxTokens(Endpoint::kChatCompletions, 100, 28, 0, 128);
  ASSERT_TRUE(fits.ok());
  EXPECT_EQ(*fits, 28);
  // One token too many: vLLM's wording, param and code as OpenAI's.
  auto over = ResolveMaxTokens(Endpoint::kChatCompletions, 100, 29, 0, 128);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().http_status, 400);
  EXPECT_EQ(over.error().param, "messages");
  EXPECT_EQ(over.error().code, "context_length_exceeded");
  EXPECT_EQ(over.error().message,
            "This model's maximum context length is 128 tokens. However, you requested 129 "
            "tokens (100 in the messages, 29 in the completion). Please reduce the length of "
            "the messages or completion.");
  // Absent max_tokens: the caller's default, capped at the room left...
  auto capped = ResolveMaxTokens(Endpoint::kCompletions, 120, std::nullopt, 16, 128);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(*capped, 8);
  EXPECT_EQ(*ResolveMaxTokens(Endpoint::kCompletions, 10, std::nullopt, 16, 128), 16);
  // ...or, with no default, the rest of the context.
  EXPECT_EQ(*ResolveMaxTokens(Endpoint::kChatCompletions, 100, std::nullopt, 0, 128), 28);
  // A prompt that fills the context leaves no room at all.
  auto full = ResolveMaxTokens(Endpoint::kCompletions, 128, std::nullopt, 0, 128);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().param, "prompt");
  EXPECT_THAT(full.error().message, HasSubstr("maximum context length is 128 tokens"));
  EXPECT_THAT(full.error().message, HasSubstr("your prompt resulted in 128 tokens"));
  auto empty = ResolveMaxTokens(Endpoint::kCompletions, 0, 5, 0, 128);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().param, "prompt");
}

TEST(RequestTest, TokenIdsOutsideTheVocabulary) {
  const std::vector<int32_t> ok = {0, 5, 99};
  EXPECT_FALSE(CheckTokenIdsInVocab(ok, 100, "prompt").has_value());
  const std::vector<int32_t> bad = {0, 100};
  const std::optional<ApiError> e = CheckTokenIdsInVocab(bad, 100, "stop_token_ids");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->http_status, 400);
  EXPECT_EQ(e->param, "stop_token_ids");
  EXPECT_THAT(e->message, HasSubstr("token id 100 at index 1"));
}

TEST(RequestTest, HostileNumbersAndNesting) {
  const std::vector<BadCase> cases = {
      {Chat(R"("max_tokens": 1e400)"), "", "not valid JSON"},
      {Chat(R"("max_tokens": 1e300)"), "max_tokens", "expected an integer"},
      {Chat(R"("max_tokens": 99999999999999999999999)"), "max_tokens", "expected an integer"},
      {Chat(R"("temperature": -1e-320)"), "temperature", "between 0 and 2"},
      {Chat(R"("seed": 1.5)"), "seed", "expected an integer"},
  };
  for (const BadCase& c : cases) {
    auto r = ParseChatCompletionRequest(c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.error().http_status, 400) << c.body;
    EXPECT_THAT(r.error().message, HasSubstr(c.message)) << c.body << " -> " << r.error().message;
  }
  // Brackets inside strings are not nesting; 64 levels are fine, 65 are not.
  EXPECT_TRUE(
      ParseChatCompletionRequest(Chat(R"("x": ")" + std::string(100, '[') + "\"")).ok());
  EXPECT_TRUE(ParseChatCompletionRequest(Chat(R"("x": )" + std::string(63, '[') +
                                              std::string(63, ']')))
                  .ok());
  EXPECT_FALSE(ParseChatCompletionRequest(Chat(R"("x": )" + std::string(64, '[') +
                                               std::string(64, ']')))
                   .ok());
}

// Whatever arrives, the parser answers with a value or a 4xx: it never throws or aborts.
TEST(RequestTest, MangledBodiesNeverCrash) {
  const std::string seeds[] = {
      Chat(R"("max_tokens": 5, "stop": ["a", "b"], "stream": true,
              "stream_options": {"include_usage": true}, "top_k": 3, "seed": 7)"),
      R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]})",
      R"({"prompt": [1, 2, 3], "max_tokens": 3, "stop_token_ids": [1]})",
  };
  const std::string alphabet = "{}[]\\\",:0123456789.-eEtrufalsn \xc3\xff";
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; ++i) {
    std::string body = seeds[rng() % 3];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const size_t pos = rng() % body.size();
      switch (rng() % 3) {
        case 0: body[pos] = alphabet[rng() % alphabet.size()]; break;
        case 1: body.erase(pos, 1 + rng() % 8); break;
        default: body.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
      }
    }
    for (bool chat : {true, false}) {
      if (chat) {
        auto r = ParseChatCompletionRequest(body);
        if (!r.ok()) {
          ASSERT_EQ(r.error().http_status / 100, 4) << body;
        }
      } else {
        auto r = ParseCompletionRequest(body);
        if (!r.ok()) {
          ASSERT_EQ(r.error().http_status / 100, 4) << body;
        }
      }
    }
  }
}

}  // namespace
}  // namespace tandem::api
