// One front door (router/front_door.h): the same request sent to a live cluster through the
// OpenAI-compatible HTTP API and through the gRPC Generate API gets the same answer: the same
// text, finish reason and usage, or the same error (HTTP status <-> gRPC code as
// ApiError::ToStatus maps them) with the same message.
#include <map>
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "engine/json_grammar.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/test_cluster.h"
#include "testing/tiny_model.h"
#include "unit/http/test_client.h"

namespace tandem::testing {
namespace {

using nlohmann::json;

constexpr int kDefaultMaxTokens = 7;

// One request, written once; both wire forms are made from it.
struct Case {
  std::string name;
  std::vector<std::pair<std::string, std::string>> messages;  // a chat request when non-empty
  std::optional<std::string> prompt;                           // a completion's text
  std::optional<std::vector<int64_t>> prompt_ids;              // a completion's token ids
  std::string model;
  std::optional<int64_t> max_tokens;
  std::optional<double> temperature = 0.0;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  float frequency_penalty = 0;
  std::vector<std::pair<int32_t, float>> logit_bias;
  std::optional<int> logprobs;  // completions only
  std::optional<int> n;         // choices
  bool json_object = false;     // response_format {"type": "json_object"}
  std::string json_schema;      // response_format {"type": "json_schema"} with this schema
  bool chat_with_no_messages = false;
  int want_status = 200;  // what the HTTP door must answer (and the gRPC door its equivalent)

  bool chat() const { return !messages.empty() || chat_with_no_messages; }
};

// What a client saw.
struct Outcome {
  int http_status = 200;  // the gRPC code mapped back for the gRPC door
  std::string error;      // the message of an error
  std::string text;
  std::string finish;
  int prompt_tokens = -1;
  int completion_tokens = -1;
  std::vector<float> logprobs;  // each token's, when asked for
  std::vector<std::vector<float>> top_logprobs;
  std::map<int, std::string> choices;   // every choice's text by index (choice 0's is `text` too)
  std::map<int, std::string> finishes;  // and finish reason
};

int HttpStatusOf(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return 200;
    case grpc::StatusCode::INVALID_ARGUMENT: return 400;
    case grpc::StatusCode::UNAUTHENTICATED: return 401;
    case grpc::StatusCode::NOT_FOUND: return 404;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return 429;
    case grpc::StatusCode::UNAVAILABLE: return 503;
    default: return 500;
  }
}

std::string HttpBody(const Case& c) {
  json body = json::object();
  if (c.chat()) {
    body["messages"] = json::array();
    for (const auto& [role, content] : c.messages) body["messages"].push_back({{"role", role}, {"content", content}});
  } else if (c.prompt.has_value()) {
    body["prompt"] = *c.prompt;
  } else if (c.prompt_ids.has_value()) {
    body["prompt"] = *c.prompt_ids;
  }
  if (!c.model.empty()) body["model"] = c.model;
  if (c.max_tokens) body["max_tokens"] = *c.max_tokens;
  if (c.temperature) body["temperature"] = *c.temperature;
  if (c.seed) body["seed"] = *c.seed;
  if (!c.stop.empty()) body["stop"] = c.stop;
  if (c.ignore_eos) body["ignore_eos"] = true;
  if (c.frequency_penalty != 0) body["frequency_penalty"] = c.frequency_penalty;
  for (const auto& [id, bias] : c.logit_bias) body["logit_bias"][std::to_string(id)] = bias;
  if (c.logprobs) body["logprobs"] = *c.logprobs;
  if (c.n) body["n"] = *c.n;
  if (c.json_object) body["response_format"] = {{"type", "json_object"}};
  if (!c.json_schema.empty()) {
    body["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "s"}, {"schema", json::parse(c.json_schema)}}}};
  }
  return body.dump();
}

v1::GenerateRequest GrpcRequest(const Case& c) {
  v1::GenerateRequest req;
  if (c.chat()) {
    auto* chat = req.mutable_chat();
    for (const auto& [role, content] : c.messages) {
      auto* m = chat->add_messages();
      m->set_role(role);
      m->set_content(content);
    }
  } else if (c.prompt.has_value()) {
    req.set_prompt(*c.prompt);
  } else if (c.prompt_ids.has_value()) {
    auto* ids = req.mutable_token_ids();  // set even when empty: an empty token-id prompt
    for (int64_t id : *c.prompt_ids) ids->add_ids(static_cast<int32_t>(id));
  }
  req.set_model(c.model);
  auto* sp = req.mutable_sampling();
  if (c.max_tokens) sp->set_max_tokens(static_cast<int32_t>(*c.max_tokens));
  if (c.temperature) sp->set_temperature(static_cast<float>(*c.temperature));
  if (c.seed) sp->set_seed(*c.seed);
  for (const std::string& s : c.stop) sp->add_stop(s);
  sp->set_ignore_eos(c.ignore_eos);
  sp->set_frequency_penalty(c.frequency_penalty);
  for (const auto& [id, bias] : c.logit_bias) (*sp->mutable_logit_bias())[id] = bias;
  if (c.logprobs) sp->set_logprobs(*c.logprobs);
  if (c.n) req.set_n(*c.n);
  if (c.json_object) sp->set_response_format(v1::RESPONSE_FORMAT_JSON_OBJECT);
  if (!c.json_schema.empty()) {
    sp->set_response_format(v1::RESPONSE_FORMAT_JSON_SCHEMA);
    sp->set_json_schema(c.json_schema);
  }
  return req;
}

class FrontDoorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ClusterSpec spec;
    spec.model_path = TinyModelPath();
    spec.default_max_tokens = kDefaultMaxTokens;
    auto c = TestCluster::Start(spec);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c).release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  Outcome ViaHttp(const Case& c) {
    const char* path = c.chat() ? "/v1/chat/completions" : "/v1/completions";
    auto r = http::testing::Fetch(cluster_->router().http_port(), "POST", path, HttpBody(c),
                                  {"Content-Type: application/json"});
    Outcome o;
    if (!r.has_value()) {
      ADD_FAILURE() << c.name << ": no HTTP response";
      return o;
    }
    o.http_status = r->status;
    const json body = json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    if (r->status != 200) {
      o.error = body["error"]["message"].get<std::string>();
      return o;
    }
    const json& choice = body["choices"][0];
    o.text = c.chat() ? choice["message"]["content"].get<std::string>() : choice["text"].get<std::string>();
    o.finish = choice["finish_reason"].get<std::string>();
    o.prompt_tokens = body["usage"]["prompt_tokens"].get<int>();
    o.completion_tokens = body["usage"]["completion_tokens"].get<int>();
    for (const json& ch : body["choices"]) {
      const int i = ch["index"].get<int>();
      o.choices[i] = c.chat() ? ch["message"]["content"].get<std::string>() : ch["text"].get<std::string>();
      o.finishes[i] = ch["finish_reason"].get<std::string>();
    }
    if (!c.chat() && choice["logprobs"].is_object()) {
      for (const json& lp : choice["logprobs"]["token_logprobs"]) o.logprobs.push_back(lp.get<float>());
      for (const json& top : choice["logprobs"]["top_logprobs"]) {
        std::vector<float> values;
        for (const auto& [token, lp] : top.items()) values.push_back(lp.get<float>());
        std::sort(values.rbegin(), values.rend());
        o.top_logprobs.push_back(values);
      }
    }
    return o;
  }

  Outcome ViaGrpc(const Case& c) {
    auto stub = cluster_->NewGenerateStub();
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    auto reader = stub->Generate(&ctx, GrpcRequest(c));
    Outcome o;
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {
      const int i = msg.index();
      o.choices[i] += msg.text();
      if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
        o.finishes[i] = msg.finish_reason() == v1::FINISH_REASON_LENGTH ? "length" : "stop";
      }
      if (msg.has_usage()) {
        o.prompt_tokens = msg.usage().prompt_tokens();
        o.completion_tokens = msg.usage().completion_tokens();
      }
      if (i != 0) continue;
      for (const v1::TokenLogprob& lp : msg.logprobs()) {
        o.logprobs.push_back(lp.logprob());
        o.top_logprobs.emplace_back(lp.top_logprobs().begin(), lp.top_logprobs().end());
      }
    }
    o.text = o.choices[0];
    o.finish = o.finishes[0];
    const grpc::Status s = reader->Finish();
    o.http_status = HttpStatusOf(s.error_code());
    if (!s.ok()) {
      o.error = s.error_message();
      o.choices.clear();
      o.finishes.clear();
    }
    return o;
  }

  // Sends `c` through both doors; expects `want_status` and equal outcomes. Returns HTTP's.
  Outcome ExpectSameAnswer(const Case& c) {
    const Outcome http = ViaHttp(c);
    const Outcome grpc = ViaGrpc(c);
    EXPECT_EQ(http.http_status, c.want_status) << c.name << ": " << http.error;
    EXPECT_EQ(grpc.http_status, http.http_status) << c.name << ": " << grpc.error;
    EXPECT_EQ(grpc.error, http.error) << c.name;
    EXPECT_EQ(grpc.text, http.text) << c.name;
    EXPECT_EQ(grpc.finish, http.finish) << c.name;
    EXPECT_EQ(grpc.prompt_tokens, http.prompt_tokens) << c.name;
    EXPECT_EQ(grpc.completion_tokens, http.completion_tokens) << c.name;
    EXPECT_EQ(grpc.logprobs, http.logprobs) << c.name;
    EXPECT_EQ(grpc.top_logprobs, http.top_logprobs) << c.name;
    EXPECT_EQ(grpc.choices, http.choices) << c.name;
    EXPECT_EQ(grpc.finishes, http.finishes) << c.name;
    return http;
  }

  static TestCluster* cluster_;
};

TestCluster* FrontDoorTest::cluster_ = nullptr;

Case Chat(std::string name, std::vector<std::pair<std::string, std::string>> messages) {
  Case c;
  c.name = std::move(name);
  c.messages = std::move(messages);
  c.max_tokens = 8;
  return c;
}

Case Completion(std::string name, std::string prompt) {
  Case c;
  c.name = std::move(name);
  c.prompt = std::move(prompt);
  c.max_tokens = 8;
  return c;
}

Case TokenIds(std::string name, std::vector<int64_t> ids) {
  Case c;
  c.name = std::move(name);
  c.prompt_ids = std::move(ids);
  c.max_tokens = 6;
  return c;
}

template <typename F>
Case With(Case c, F edit) {
  edit(c);
  return c;
}

TEST_F(FrontDoorTest, ValidRequestsGetTheSameAnswerThroughBothDoors) {
  const std::vector<Case> cases = {
      Chat("chat", {{"user", "Hello there"}}),
      Completion("completion text", "Once upon a time"),
      TokenIds("token-id prompt", {5, 6, 7, 8, 9}),
      Chat("developer role", {{"developer", "Be brief."}, {"user", "Hi"}}),
      With(Completion("stop strings", "The cat sat on the mat and"), [](Case& c) {
        c.stop = {"e", "at"};
        c.max_tokens = 24;
      }),
      With(Completion("seeded sampling", "Numbers:"), [](Case& c) {
        c.temperature = 0.9;
        c.seed = 1234;
      }),
      With(Completion("max_tokens absent: the router's default", "Tell me"), [](Case& c) {
        c.max_tokens.reset();
        c.ignore_eos = true;
      }),
      With(Chat("the served model named", {{"user", "Hi"}}),
           [](Case& c) { c.model = cluster_->router().served_model(); }),
  };
  for (const Case& c : cases) {
    const Outcome o = ExpectSameAnswer(c);
    EXPECT_GT(o.prompt_tokens, 0) << c.name;
    EXPECT_GE(o.completion_tokens, 1) << c.name;
  }
  // Logit modifiers and log-probabilities mean the same through both doors.
  const Case modified = With(Completion("penalties, a bias and logprobs", "Once upon a time"), [](Case& c) {
    c.frequency_penalty = 1.5f;
    c.logit_bias = {{70, 100.0f}};
    c.logprobs = 2;
    c.ignore_eos = true;
  });
  const Outcome o = ExpectSameAnswer(modified);
  EXPECT_EQ(o.logprobs.size(), static_cast<size_t>(o.completion_tokens));
  ASSERT_FALSE(o.top_logprobs.empty());
  EXPECT_EQ(o.top_logprobs[0].size(), 2u);
  Case unmodified = modified;
  unmodified.frequency_penalty = 0;
  unmodified.logit_bias.clear();
  EXPECT_NE(ViaHttp(unmodified).text, o.text) << "the modifiers changed nothing";
  // Several choices: the same texts under the same indices; choice i is choice 0 seeded + i.
  const Case three = With(Completion("n=3, seeded", "Numbers:"), [](Case& c) {
    c.temperature = 0.9;
    c.seed = 1234;
    c.n = 3;
    c.max_tokens = 12;
  });
  const Outcome n3 = ExpectSameAnswer(three);
  ASSERT_EQ(n3.choices.size(), 3u);
  EXPECT_EQ(n3.finishes.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const Outcome one = ViaHttp(With(three, [i](Case& c) {
      c.n.reset();
      c.seed = 1234 + i;
    }));
    EXPECT_EQ(n3.choices.at(i), one.text) << "choice " << i;
  }
  // JSON mode: the same object through both doors, from a model with no wish to write one.
  for (uint64_t seed : {1u, 2u, 3u}) {
    const Outcome js = ExpectSameAnswer(With(Chat("json_object", {{"user", "Answer in JSON"}}), [seed](Case& c) {
      c.json_object = true;
      c.temperature = 1.0;
      c.seed = seed;
      c.max_tokens = 200;
    }));
    JsonRecognizer prefix;
    EXPECT_TRUE(prefix.FeedAll(js.text)) << js.text;
    if (js.finish == "stop") EXPECT_TRUE(json::parse(js.text).is_object()) << js.text;
    // And with a schema: only its key, an integer.
    const char* schema = R"({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
                             "additionalProperties": false})";
    const Outcome typed = ExpectSameAnswer(With(Chat("json_schema", {{"user", "A number"}}), [&](Case& c) {
      c.json_schema = schema;
      c.temperature = 1.0;
      c.seed = seed;
      c.max_tokens = 200;
    }));
    auto compiled = CompileJsonSchema(schema);
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    JsonRecognizer follows(compiled->get());
    EXPECT_TRUE(follows.FeedAll(typed.text)) << typed.text;
    if (typed.finish == "stop") EXPECT_TRUE(json::parse(typed.text)["n"].is_number_integer()) << typed.text;
  }
  // Several choices under one schema: each follows it, and choice i is the single request seeded + i.
  const Case two = With(Chat("json_schema, n=2", {{"user", "A number"}}), [](Case& c) {
    c.json_schema = R"({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})";
    c.temperature = 1.0;
    c.seed = 7;
    c.n = 2;
    c.max_tokens = 60;
  });
  const Outcome both = ExpectSameAnswer(two);
  ASSERT_EQ(both.choices.size(), 2u);
  auto compiled = CompileJsonSchema(two.json_schema);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  for (int i = 0; i < 2; ++i) {
    JsonRecognizer follows(compiled->get());
    EXPECT_TRUE(follows.FeedAll(both.choices.at(i))) << "choice " << i << ": " << both.choices.at(i);
    const Outcome one = ViaHttp(With(two, [i](Case& c) {
      c.n.reset();
      c.seed = 7 + i;
    }));
    EXPECT_EQ(both.choices.at(i), one.text) << "choice " << i;
  }
  const Outcome defaulted = ViaGrpc(cases[6]);
  EXPECT_EQ(defaulted.completion_tokens, kDefaultMaxTokens);
  EXPECT_EQ(defaulted.finish, "length");
}

TEST_F(FrontDoorTest, DeveloperIsTheSystemRoleThroughBothDoors) {
  const Outcome developer = ExpectSameAnswer(Chat("developer", {{"developer", "Be brief."}, {"user", "Hi"}}));
  const Outcome system = ExpectSameAnswer(Chat("system", {{"system", "Be brief."}, {"user", "Hi"}}));
  EXPECT_EQ(developer.text, system.text);
  EXPECT_EQ(developer.prompt_tokens, system.prompt_tokens);
}

TEST_F(FrontDoorTest, InvalidRequestsGetTheSameErrorThroughBothDoors) {
  auto bad = [](Case c, int status) {
    c.want_status = status;
    return c;
  };
  const std::vector<Case> cases = {
      bad(With(Completion("a stop string over the byte limit", "Hi"), [](Case& c) { c.stop = {std::string(257, 'x')}; }),
          400),
      bad(With(Completion("5 stop strings", "Hi"), [](Case& c) { c.stop = {"a", "b", "c", "d", "e"}; }), 400),
      bad(With(Completion("an empty stop string", "Hi"), [](Case& c) { c.stop = {"a", ""}; }), 400),
      bad(Completion("empty prompt", ""), 400),
      bad(TokenIds("empty token-id prompt", {}), 400),
      bad(With(Chat("no messages", {}), [](Case& c) { c.chat_with_no_messages = true; }), 400),
      bad(Chat("unknown role", {{"wizard", "Hi"}}), 400),
      bad(Chat("tool role", {{"user", "Hi"}, {"tool", "42"}}), 400),
      bad(TokenIds("prompt over the context", std::vector<int64_t>(1100, 5)), 400),
      bad(With(Completion("max_tokens over the context", "Hi"), [](Case& c) { c.max_tokens = 5000; }), 400),
      bad(With(Completion("negative max_tokens", "Hi"), [](Case& c) { c.max_tokens = -3; }), 400),
      bad(With(Completion("bad temperature", "Hi"), [](Case& c) { c.temperature = 3.5; }), 400),
      bad(With(Completion("unknown model", "Hi"), [](Case& c) { c.model = "gpt-nonexistent"; }), 404),
      bad(TokenIds("token id outside the vocabulary", {5, 100000}), 400),
      bad(TokenIds("negative token id", {5, -1}), 400),
      bad(With(Completion("n over the limit", "Hi"), [](Case& c) { c.n = 17; }), 400),
      // Once ended the router: a $ref whose JSON pointer escape is malformed.
      bad(With(Chat("a $ref with a malformed escape", {{"user", "Hi"}}),
               [](Case& c) { c.json_schema = R"({"type": "object", "properties": {"a": {"$ref": "#/$defs/b~"}}})"; }),
          400),
  };
  for (const Case& c : cases) {
    const Outcome o = ExpectSameAnswer(c);
    EXPECT_FALSE(o.error.empty()) << c.name;
  }
  // The gRPC door's refusals are counted like the HTTP door's: by HTTP status.
  auto page = cluster_->Metrics(-1);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_GE(MetricValue(*page, "tandem_router_requests_total{route=\"grpc:Generate\",status=\"400\"}").value_or(0),
            static_cast<double>(cases.size() - 1));
  EXPECT_EQ(MetricValue(*page, "tandem_router_requests_total{route=\"grpc:Generate\",status=\"404\"}").value_or(0), 1);
}

// A response format this router does not know (a newer client's enum value) is refused by name,
// not served as text.
TEST_F(FrontDoorTest, AnUnknownGrpcResponseFormatIsRefused) {
  v1::GenerateRequest req = GrpcRequest(Chat("unknown response format", {{"user", "Hi"}}));
  req.mutable_sampling()->set_response_format(static_cast<v1::ResponseFormat>(7));
  auto stub = cluster_->NewGenerateStub();
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto reader = stub->Generate(&ctx, req);
  v1::GenerateResponse msg;
  EXPECT_FALSE(reader->Read(&msg)) << "a refused request streamed text: " << msg.text();
  const grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("response_format"), std::string::npos) << s.error_message();
}

// The prompt's log-probabilities: HTTP completions' echo + logprobs and gRPC's prompt_logprobs give
// the same values (HTTP: the first prompt token unscored; gRPC: the prompt's ids and one entry
// per token after the first), and an out-of-range k is refused by name.
TEST_F(FrontDoorTest, PromptLogprobsAreTheSameThroughBothDoors) {
  const std::string prompt = "Once upon a time, in a land far away, there lived";
  json body = {{"prompt", prompt}, {"max_tokens", 2}, {"temperature", 0}, {"echo", true}, {"logprobs", 2}};
  auto r = http::testing::Fetch(cluster_->router().http_port(), "POST", "/v1/completions", body.dump(),
                                {"Content-Type: application/json"});
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->status, 200) << r->body;
  const json lp = json::parse(r->body)["choices"][0]["logprobs"];
  const json& shown = lp["token_logprobs"];
  ASSERT_GE(shown.size(), 4u);
  EXPECT_TRUE(shown[0].is_null());
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());

  v1::GenerateRequest req = GrpcRequest(Completion("prompt logprobs", prompt));
  req.mutable_sampling()->set_max_tokens(2);
  req.mutable_sampling()->set_temperature(0);
  req.mutable_sampling()->set_prompt_logprobs(2);
  auto stub = cluster_->NewGenerateStub();
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  auto reader = stub->Generate(&ctx, req);
  v1::GenerateResponse msg;
  std::vector<int32_t> ids;
  std::vector<v1::TokenLogprob> scored;
  int carrying = 0;
  while (reader->Read(&msg)) {
    if (msg.prompt_token_ids_size() == 0) continue;
    ++carrying;
    ids.assign(msg.prompt_token_ids().begin(), msg.prompt_token_ids().end());
    scored.assign(msg.prompt_logprobs().begin(), msg.prompt_logprobs().end());
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(carrying, 1);
  ASSERT_EQ(ids.size() + 2, shown.size());  // HTTP: the prompt's tokens and the 2 generated
  ASSERT_EQ(scored.size() + 1, ids.size());
  for (size_t i = 0; i < scored.size(); ++i) {
    EXPECT_FLOAT_EQ(scored[i].logprob(), shown[i + 1].get<float>()) << "prompt token " << i + 1;
    EXPECT_EQ(scored[i].top_ids_size(), 2);
    EXPECT_LE(scored[i].logprob(), 0.0f);
  }

  req.mutable_sampling()->set_prompt_logprobs(21);
  grpc::ClientContext bad_ctx;
  bad_ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto bad = stub->Generate(&bad_ctx, req);
  EXPECT_FALSE(bad->Read(&msg));
  const grpc::Status s = bad->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("prompt_logprobs"), std::string::npos) << s.error_message();
}

// POSTs `body` to the router; the status and the parsed answer.
std::pair<int, json> Post(TestCluster& cluster, std::string_view path, const json& body) {
  auto r = http::testing::Fetch(cluster.router().http_port(), "POST", path, body.dump(),
                                {"Content-Type: application/json"});
  if (!r.has_value()) return {0, json()};
  return {r->status, json::parse(r->body, nullptr, /*allow_exceptions=*/false)};
}

// Checks one answer's vLLM prompt_logprobs list against the prompt's ids and echo's scores
// (`echo_lp` and `echo_tokens`: echo with logprobs' token_logprobs and tokens for the same prompt):
// the first entry null; entry i keyed by token ids, holding prompt token i with echo's
// log-probability and text, and the k best ranked 1 .. k.
void ExpectVllmPromptLogprobs(const json& list, const std::vector<int32_t>& ids, const json& echo_lp,
                              const json& echo_tokens, int k) {
  ASSERT_TRUE(list.is_array()) << list;
  ASSERT_EQ(list.size(), ids.size());
  EXPECT_TRUE(list[0].is_null());
  for (size_t i = 1; i < ids.size(); ++i) {
    const json& entry = list[i];
    const std::string key = std::to_string(ids[i]);
    ASSERT_TRUE(entry.contains(key)) << "prompt token " << i << ": " << entry;
    const json& own = entry[key];
    EXPECT_NEAR(own["logprob"].get<double>(), echo_lp[i].get<double>(), 1e-4) << "prompt token " << i;
    EXPECT_EQ(own["decoded_token"], echo_tokens[i]) << "prompt token " << i;
    std::vector<double> by_rank(k + 1, 1.0);  // rank r's log-probability
    for (const auto& [id, c] : entry.items()) {
      ASSERT_TRUE(c["rank"].is_number_integer()) << "prompt token " << i << ": " << entry;
      const int rank = c["rank"].get<int>();
      if (rank <= k) by_rank[rank] = c["logprob"].get<double>();
    }
    for (int r = 1; r <= k; ++r) {
      EXPECT_LE(by_rank[r], 0.0) << "prompt token " << i << " has no rank " << r << ": " << entry;
      if (r > 1) {
        EXPECT_LE(by_rank[r], by_rank[r - 1]) << "prompt token " << i;
      }
    }
    EXPECT_LE(entry.size(), static_cast<size_t>(k + 1));
    // The prompt token's rank is its place in the whole vocabulary, shown or not.
    const int own_rank = own["rank"].get<int>();
    EXPECT_GE(own_rank, 1) << "prompt token " << i;
    if (own_rank <= k) {
      EXPECT_EQ(by_rank[own_rank], own["logprob"].get<double>()) << "prompt token " << i;
    } else {
      EXPECT_LE(own["logprob"].get<double>(), by_rank[k]) << "prompt token " << i;
    }
  }
}

// vLLM's prompt_logprobs over HTTP, on the disaggregated cluster (the prefill worker scores the
// prompt): the same values as completions' echo with logprobs, in vLLM's shape (completions: on
// every choice; chat: at the top level), alongside echo with each view's own k, and refused with
// stream.
TEST_F(FrontDoorTest, PromptLogprobsInVllmsShapeOverHttp) {
  const std::string prompt = "Once upon a time, in a land far away, there lived";
  const auto [tstatus, tokenized] = Post(*cluster_, "/tokenize", {{"prompt", prompt}});
  ASSERT_EQ(tstatus, 200) << tokenized;
  const std::vector<int32_t> ids = tokenized["tokens"].get<std::vector<int32_t>>();
  ASSERT_GE(ids.size(), 4u);
  const json base = {{"prompt", prompt}, {"max_tokens", 2}, {"temperature", 0}};
  json echo_body = base;
  echo_body.update({{"echo", true}, {"logprobs", 1}});
  const auto [estatus, echo] = Post(*cluster_, "/v1/completions", echo_body);
  ASSERT_EQ(estatus, 200) << echo;
  const json& echo_lp = echo["choices"][0]["logprobs"];

  json body = base;
  body.update({{"prompt_logprobs", 3}, {"n", 2}, {"seed", 1}, {"temperature", 1.0}});
  const auto [status, answer] = Post(*cluster_, "/v1/completions", body);
  ASSERT_EQ(status, 200) << answer;
  ASSERT_EQ(answer["choices"].size(), 2u);
  for (const json& choice : answer["choices"]) {
    ExpectVllmPromptLogprobs(choice["prompt_logprobs"], ids, echo_lp["token_logprobs"], echo_lp["tokens"], 3);
    EXPECT_TRUE(choice["logprobs"].is_null());
  }

  // Both in one request: echo's entries keep 1 alternative, the list has 3.
  json both = echo_body;
  both["prompt_logprobs"] = 3;
  const auto [bstatus, together] = Post(*cluster_, "/v1/completions", both);
  ASSERT_EQ(bstatus, 200) << together;
  const json& choice = together["choices"][0];
  ExpectVllmPromptLogprobs(choice["prompt_logprobs"], ids, echo_lp["token_logprobs"], echo_lp["tokens"], 3);
  ASSERT_EQ(choice["logprobs"]["top_logprobs"].size(), ids.size() + 2);
  for (size_t i = 1; i < ids.size() + 2; ++i) EXPECT_EQ(choice["logprobs"]["top_logprobs"][i].size(), 1u) << i;

  // Chat: once, at the top level; the choice's logprobs are the answer's tokens only.
  json chat = {{"messages", json::array({json{{"role", "user"}, {"content", prompt}}})},
               {"max_tokens", 2}, {"temperature", 0}, {"prompt_logprobs", 2}, {"logprobs", true}};
  const auto [cstatus, chat_answer] = Post(*cluster_, "/v1/chat/completions", chat);
  ASSERT_EQ(cstatus, 200) << chat_answer;
  const json& list = chat_answer["prompt_logprobs"];
  ASSERT_TRUE(list.is_array()) << chat_answer;
  EXPECT_EQ(list.size(), chat_answer["usage"]["prompt_tokens"].get<size_t>());
  EXPECT_TRUE(list[0].is_null());
  EXPECT_TRUE(list[1].is_object() && !list[1].empty()) << list[1];
  EXPECT_FALSE(chat_answer["choices"][0].contains("prompt_logprobs"));
  EXPECT_EQ(chat_answer["choices"][0]["logprobs"]["content"].size(),
            chat_answer["usage"]["completion_tokens"].get<size_t>());

  // Not with stream; not out of range.
  for (const auto& [field, value] : {std::pair{"stream", json(true)}, std::pair{"prompt_logprobs", json(21)}}) {
    json bad = body;
    bad[field] = value;
    const auto [bad_status, error] = Post(*cluster_, "/v1/completions", bad);
    EXPECT_EQ(bad_status, 400) << error;
    EXPECT_EQ(error["error"]["param"], "prompt_logprobs") << error;
  }
}

}  // namespace
}  // namespace tandem::testing
