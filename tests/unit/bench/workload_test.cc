// Workload presets and specs, length sampling, context clipping and the request plan.
#include "bench/workload.h"

#include <algorithm>

#include "bench/request_plan.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/tiny_model.h"

namespace tandem::bench {
namespace {

using ::testing::HasSubstr;
using Kind = LengthDistribution::Kind;

TEST(Workload, FixedAndUniformFollowTheLengthFlags) {
  auto fixed = ParseWorkload("fixed", {200, 30});
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_EQ(fixed->input.kind, Kind::kFixed);
  EXPECT_EQ(fixed->input.value, 200);
  EXPECT_EQ(fixed->output.value, 30);

  auto uniform = ParseWorkload("uniform", {200, 30});
  ASSERT_TRUE(uniform.ok());
  EXPECT_EQ(uniform->input.kind, Kind::kUniform);
  EXPECT_EQ(uniform->input.min, 100);
  EXPECT_EQ(uniform->input.max, 300);
}

TEST(Workload, KeysOverrideThePreset) {
  auto w = ParseWorkload("uniform:in=64-512, out=16", {});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->input.min, 64);
  EXPECT_EQ(w->input.max, 512);
  EXPECT_EQ(w->output.kind, Kind::kFixed);
  EXPECT_EQ(w->output.value, 16);

  auto chat = ParseWorkload("chat:out_median=64,out_max=100", {});
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->output.kind, Kind::kLogNormal);
  EXPECT_EQ(chat->output.median, 64);
  EXPECT_EQ(chat->output.max, 100);
  EXPECT_EQ(chat->input.median, 160);  // untouched

  auto sp = ParseWorkload("shared-prefix:prefixes=3,prefix=100,in=10,out=5", {});
  ASSERT_TRUE(sp.ok()) << sp.status();
  EXPECT_EQ(sp->num_prefixes, 3);
  EXPECT_EQ(sp->prefix_tokens, 100);
  EXPECT_EQ(sp->input.value, 10);
}

TEST(Workload, ErrorsNameWhatIsWrong) {
  EXPECT_THAT(ParseWorkload("poisson", {}).status().message(), HasSubstr("unknown workload 'poisson'"));
  EXPECT_THAT(ParseWorkload("fixed:size=3", {}).status().message(), HasSubstr("key 'size'"));
  EXPECT_THAT(ParseWorkload("uniform:in=9-2", {}).status().message(), HasSubstr("in=9-2"));
  EXPECT_FALSE(ParseWorkload("fixed:in=0", {}).ok());
  EXPECT_FALSE(ParseWorkload("fixed:in", {}).ok());
  EXPECT_FALSE(ParseWorkload("chat:in_sigma=x", {}).ok());
  EXPECT_FALSE(ParseWorkload("chat:prefixes=2", {}).ok());  // shared-prefix only
  EXPECT_FALSE(ParseWorkload("chat:in_min=500,in_max=100", {}).ok());
}

TEST(Workload, LogNormalPresetsHaveTheirMediansAndStayInRange) {
  auto chat = ParseWorkload("chat", {});
  ASSERT_TRUE(chat.ok());
  Rng rng(9);
  std::vector<int> in, out;
  for (int i = 0; i < 20000; ++i) {
    const RequestShape s = SampleShape(*chat, rng);
    in.push_back(s.input_tokens);
    out.push_back(s.output_tokens);
    ASSERT_GE(s.input_tokens, 8);
    ASSERT_LE(s.input_tokens, 2048);
    ASSERT_GE(s.output_tokens, 8);
    ASSERT_LE(s.output_tokens, 1024);
  }
  std::nth_element(in.begin(), in.begin() + in.size() / 2, in.end());
  std::nth_element(out.begin(), out.begin() + out.size() / 2, out.end());
  EXPECT_NEAR(in[in.size() / 2], 160, 8);
  EXPECT_NEAR(out[out.size() / 2], 160, 8);
}

TEST(Workload, SharedPrefixDrawsAGroupAndAddsThePrefix) {
  auto w = ParseWorkload("shared-prefix:prefixes=4,prefix=100,in=10", {});
  ASSERT_TRUE(w.ok());
  Rng rng(1);
  std::vector<int> seen(4, 0);
  for (int i = 0; i < 400; ++i) {
    const RequestShape s = SampleShape(*w, rng);
    ASSERT_GE(s.prefix_group, 0);
    ASSERT_LT(s.prefix_group, 4);
    ++seen[s.prefix_group];
    EXPECT_EQ(s.input_tokens, 110);
    EXPECT_EQ(s.prefix_tokens, 100);
  }
  for (int n : seen) EXPECT_GT(n, 50);
}

TEST(Workload, HelpNamesEveryPresetWithItsParameters) {
  const std::string help = WorkloadPresetHelp();
  for (const char* s : {"fixed", "uniform", "chat: input LogNormal(median 160, sigma 0.9) in [8, 2048]",
                        "summarize: input LogNormal(median 1536, sigma 0.5) in [256, 6144]", "shared-prefix: 8"}) {
    EXPECT_THAT(help, HasSubstr(s));
  }
}

TEST(ClipShape, FitsRequestsIntoTheContext) {
  RequestShape s{100, 50};
  EXPECT_FALSE(ClipShape(0, 1, &s));  // unknown context: unchanged
  EXPECT_FALSE(ClipShape(1000, 1, &s));
  s = {900, 300};
  EXPECT_TRUE(ClipShape(1000, 1, &s));
  EXPECT_EQ(s.input_tokens, 700);  // input cut to context - output
  EXPECT_EQ(s.output_tokens, 300);
  s = {2000, 900};
  EXPECT_TRUE(ClipShape(1000, 1, &s));
  EXPECT_EQ(s.input_tokens, 500);  // not below half the context
  EXPECT_EQ(s.output_tokens, 500);
  s = {3, 10};
  EXPECT_TRUE(ClipShape(1000, 20, &s));  // raised to the shortest possible prompt
  EXPECT_EQ(s.input_tokens, 20);
}

TEST(DrawTraffic, ArrivalsDoNotDependOnTheWorkload) {
  TrafficSpec a;
  a.process = {5.0, 1.0};
  a.num_prompts = 50;
  a.workload = *ParseWorkload("fixed", {});
  TrafficSpec b = a;
  b.workload = *ParseWorkload("chat", {});
  const auto ta = DrawTraffic(a, 3), tb = DrawTraffic(b, 3), tc = DrawTraffic(a, 4);
  ASSERT_EQ(ta.size(), 50u);
  for (size_t i = 0; i < ta.size(); ++i) EXPECT_EQ(ta[i].time_s, tb[i].time_s);
  EXPECT_NE(ta[10].time_s, tc[10].time_s);  // another seed, other times
}

TEST(BuildRequests, BodiesAskForExactStreamedLengths) {
  auto tok_path = tandem::testing::TinyModelPath();
  auto file = gguf::GgufFile::Open(tok_path);
  ASSERT_TRUE(file.ok());
  auto tok = text::Tokenizer::Create(*text::TokenizerConfigFromGguf(**file));
  ASSERT_TRUE(tok.ok());
  auto builder = PromptBuilder::Create(tok->get(), nullptr);
  ASSERT_TRUE(builder.ok()) << builder.status();
  std::vector<Arrival> arrivals = {{0.0, 0, {40, 8}}, {0.5, 0, {900, 300}}};
  RequestSettings settings;
  settings.model = "m";
  settings.context_length = 1000;
  PlanStats stats;
  auto plan = BuildRequests(arrivals, **builder, settings, 1, &stats);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->size(), 2u);
  EXPECT_EQ(stats.clipped, 1);
  EXPECT_EQ((*plan)[1].input_tokens, 700);
  const auto body = nlohmann::json::parse((*plan)[0].body);
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["max_tokens"], 8);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_FALSE(body.contains("min_tokens"));  // ignore_eos fixes the length on every server
  EXPECT_EQ((*builder)->Count({"", body["prompt"].get<std::string>()}), 40);

  // Built in parallel, yet the same for the same seed.
  std::vector<Arrival> many(64, Arrival{0.0, 0, {30, 4}});
  auto a = BuildRequests(many, **builder, settings, 7, nullptr);
  auto b = BuildRequests(many, **builder, settings, 7, nullptr);
  auto c = BuildRequests(many, **builder, settings, 8, nullptr);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  for (size_t i = 0; i < many.size(); ++i) {
    EXPECT_EQ((*a)[i].body, (*b)[i].body);
    EXPECT_NE((*a)[i].body, (*c)[i].body);
  }
}

}  // namespace
}  // namespace tandem::bench
