#include "controller/sizing/sim_sizer.h"

#include <cmath>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::controller {
namespace {

using ::testing::HasSubstr;

// A worker whose iteration costs 5 ms plus 1 ms per token: a 1000-token prompt takes ~1 s.
sim::Profile OneMsPerToken() {
  sim::Profile p;
  p.model.name = "test";
  p.model.kv_bytes_per_token = 1024;
  p.model.context_length = 8192;
  sim::WorkerProfile w;
  w.threads = 1;
  w.cost.fixed_s = 0.005;
  w.cost.per_token_s = 0.001;
  w.cost.per_sample_s = 0.0002;
  p.workers = {w};
  p.transfer = {0.0005, 1e9, "test"};
  return p;
}

std::unique_ptr<SimSizer> Sizer(double prefill_cost = 1, double decode_cost = 1, double switch_margin = 0.1) {
  SimSizerOptions o;
  o.profile = OneMsPerToken();
  o.prefill_cost = prefill_cost;
  o.decode_cost = decode_cost;
  o.switch_margin = switch_margin;
  o.warmup_readings = 0;  // the tests' signals carry no measurements unless they say so
  auto s = SimSizer::Create(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(*s);
}

constexpr InstanceCounts kOneEach{1, 1};

PlannerConfig Bounds(int min_prefill) {
  PlannerConfig c;
  c.min_prefill = min_prefill;
  c.max_prefill = 3;
  c.max_decode = 3;
  c.max_total_instances = 4;
  c.ttft_slo_s = 10;
  c.itl_slo_s = 0.2;
  return c;
}

// Every prompt `prompt` tokens, every answer `output` tokens (no quantiles: fixed lengths).
Signals Lengths(double prompt, double output) {
  Signals s;
  s.prompt_tokens_mean = prompt;
  s.output_tokens_mean = output;
  return s;
}

TEST(LengthSamplerTest, WithoutQuantilesEveryDrawIsTheMean) {
  auto s = LengthSampler::FromMoments(250, kNoData, kNoData, kNoData);
  ASSERT_TRUE(s.has_value());
  for (double u : {0.0, 0.3, 0.99, 1.0}) EXPECT_EQ(s->At(u), 250);
  EXPECT_FALSE(LengthSampler::FromMoments(kNoData, 10, 20, 30).has_value());
  EXPECT_FALSE(LengthSampler::FromMoments(0, 10, 20, 30).has_value());
}

TEST(LengthSamplerTest, QuantilesShapeTheDrawsAndTheMeanIsKept) {
  auto s = LengthSampler::FromMoments(200, 100, 300, 900);
  ASSERT_TRUE(s.has_value());
  EXPECT_NEAR(s->mean(), 200, 1e-6);
  const int n = 20000;
  double sum = 0;
  int last = 0;
  for (int i = 0; i < n; ++i) {
    const int v = s->At((i + 0.5) / n);
    EXPECT_GE(v, last);  // a quantile function never decreases
    last = v;
    sum += v;
  }
  EXPECT_NEAR(sum / n, 200, 2);
  // The quantiles keep their proportions (all scaled alike to meet the mean).
  EXPECT_NEAR(static_cast<double>(s->At(0.9)) / s->At(0.5), 3.0, 0.05);
  EXPECT_NEAR(static_cast<double>(s->At(0.99)) / s->At(0.9), 3.0, 0.05);
}

TEST(SimSizerTest, CandidatesAreTriedCheapestFirst) {
  const auto all = Sizer()->Candidates(Bounds(0));
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front(), (InstanceCounts{0, 1}));
  EXPECT_EQ(all[1], (InstanceCounts{0, 2}));  // cost 2: fewer prefill workers first
  EXPECT_EQ(all[2], (InstanceCounts{1, 1}));
  for (const InstanceCounts& c : all) EXPECT_LE(c.prefill + c.decode, 4);
  // Prefill workers at a quarter of the price: 1p1d (1.25) comes before 0p2d (2).
  const auto cheap_prefill = Sizer(0.25, 1)->Candidates(Bounds(0));
  EXPECT_EQ(cheap_prefill[1], (InstanceCounts{1, 1}));
  // min_prefill 1 leaves out every shape without prefill workers.
  for (const InstanceCounts& c : Sizer()->Candidates(Bounds(1))) EXPECT_GE(c.prefill, 1);
}

TEST(SimSizerTest, LightTrafficGetsTheCheapestShape) {
  auto sizer = Sizer();
  auto sized = sizer->Size(Lengths(100, 20), 0.2, Bounds(0), kOneEach);
  ASSERT_TRUE(sized.has_value());
  EXPECT_EQ(sized->counts, (InstanceCounts{0, 1}));
  EXPECT_TRUE(sized->meets_target);
  EXPECT_EQ(sized->shapes_tried, 1);
  EXPECT_THAT(sized->detail, HasSubstr("0p1d 100%"));
  sized = sizer->Size(Lengths(100, 20), 0.2, Bounds(1), kOneEach);
  ASSERT_TRUE(sized.has_value());
  EXPECT_EQ(sized->counts, (InstanceCounts{1, 1}));
  // No traffic: the cheapest shape, nothing simulated.
  sized = sizer->Size(Lengths(100, 20), 0, Bounds(0), kOneEach);
  ASSERT_TRUE(sized.has_value());
  EXPECT_EQ(sized->counts, (InstanceCounts{0, 1}));
  EXPECT_EQ(sized->shapes_tried, 0);
  // No lengths: nothing to simulate.
  EXPECT_FALSE(sizer->Size(Signals{}, 1, Bounds(0), kOneEach).has_value());
}

TEST(SimSizerTest, TheCheapestShapeThatMeetsTheTargetWins) {
  // 1.5 prompts/s of ~1 s each: one worker would be 150% busy.
  auto sizer = Sizer();
  const Signals s = Lengths(1000, 2);
  const PlannerConfig bounds = Bounds(0);
  const auto requests = sizer->Requests(s, 1.5);
  auto one = sizer->Attainment({0, 1}, requests, bounds);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_LT(*one, 0.5);
  auto sized = sizer->Size(s, 1.5, bounds, kOneEach);
  ASSERT_TRUE(sized.has_value());
  EXPECT_TRUE(sized->meets_target) << sized->detail;
  EXPECT_GE(sized->attainment, 0.9);
  // Every cheaper candidate misses the target; the chosen one is the first that meets it.
  for (const InstanceCounts& c : sizer->Candidates(bounds)) {
    auto a = sizer->Attainment(c, requests, bounds);
    ASSERT_TRUE(a.ok()) << a.status();
    if (c == sized->counts) {
      EXPECT_DOUBLE_EQ(*a, sized->attainment);
      break;
    }
    EXPECT_LT(*a, 0.9) << c.prefill << "p" << c.decode << "d: " << sized->detail;
  }
  EXPECT_GE(sized->counts.prefill + sized->counts.decode, 2);
}

TEST(SimSizerTest, PromptTokensServedFromThePrefixCacheAreNotPrefillLoad) {
  // The same traffic with 90% of every prompt cached: 100 tokens to compute, one worker is enough.
  auto sizer = Sizer();
  Signals s = Lengths(1000, 2);
  s.prompt_cached_fraction = 0.9;
  for (const sim::SimRequest& r : sizer->Requests(s, 1.5)) EXPECT_EQ(r.input_tokens, 100);
  auto sized = sizer->Size(s, 1.5, Bounds(0), kOneEach);
  ASSERT_TRUE(sized.has_value());
  EXPECT_EQ(sized->counts, (InstanceCounts{0, 1})) << sized->detail;
}

TEST(SimSizerTest, WhenNothingMeetsTheTargetTheBestShapeIsChosen) {
  // 5 prompts/s of ~1 s: even four workers cannot keep up.
  auto sized = Sizer()->Size(Lengths(1000, 2), 5, Bounds(0), kOneEach);
  ASSERT_TRUE(sized.has_value());
  EXPECT_FALSE(sized->meets_target);
  EXPECT_EQ(sized->counts.prefill + sized->counts.decode, 4) << sized->detail;
  EXPECT_THAT(sized->detail, HasSubstr("best below"));
}

TEST(SimSizerTest, AnEquallyCheapShapeThatMeetsTheTargetStays) {
  // 1.2 prompts/s of ~1 s: of the three-worker shapes 0p3d comes first and meets the target,
  // and so does 2p1d (two prefill workers at 60%); 1p2d does not (one prefill worker at 120%).
  auto sizer = Sizer();
  const Signals s = Lengths(1000, 2);
  const auto requests = sizer->Requests(s, 1.2);
  ASSERT_GE(*sizer->Attainment({2, 1}, requests, Bounds(0)), 0.9);
  ASSERT_LT(*sizer->Attainment({1, 2}, requests, Bounds(0)), 0.9);
  auto from_2p1d = sizer->Size(s, 1.2, Bounds(0), {2, 1});
  ASSERT_TRUE(from_2p1d.has_value());
  EXPECT_EQ(from_2p1d->counts, (InstanceCounts{2, 1})) << from_2p1d->detail;  // no move for nothing
  auto from_1p2d = sizer->Size(s, 1.2, Bounds(0), {1, 2});
  ASSERT_TRUE(from_1p2d.has_value());
  EXPECT_EQ(from_1p2d->counts, (InstanceCounts{0, 3})) << from_1p2d->detail;
}

TEST(SimSizerTest, AScaleDownMustClearTheTargetByTheMargin) {
  // 1.2 prompts/s of ~1 s: 0p3d is predicted at 90.3% (decode steps stall behind 512-token
  // prefill chunks past the 200 ms ITL SLO), 2p1d at 100%.
  auto sizer = Sizer();
  const Signals s = Lengths(1000, 2);
  const double a = *sizer->Attainment({0, 3}, sizer->Requests(s, 1.2), Bounds(0));
  ASSERT_GE(a, 0.9);
  ASSERT_LT(a, 0.95);
  // From 2p2d (cost 4) the cheaper 0p3d is not enough, the equally cheap 2p1d (100%) is.
  auto sized = sizer->Size(s, 1.2, Bounds(0), {2, 2});
  ASSERT_TRUE(sized.has_value());
  EXPECT_EQ(sized->counts, (InstanceCounts{2, 1})) << sized->detail;
  // From 1p1d (cost 2) 0p3d is a scale-up: the plain target applies.
  sized = sizer->Size(s, 1.2, Bounds(0), kOneEach);
  ASSERT_TRUE(sized.has_value());
  EXPECT_EQ(sized->counts, (InstanceCounts{0, 3})) << sized->detail;
}

TEST(SimSizerTest, WhenNothingMeetsTheTargetOnlyAClearGainMoves) {
  // 5 prompts/s of ~1 s: no shape of at most four workers meets the target; 3p1d is the best.
  auto sizer = Sizer(1, 1, /*switch_margin=*/0.25);
  const Signals s = Lengths(1000, 2);
  const auto requests = sizer->Requests(s, 5);
  const double best = *sizer->Attainment({3, 1}, requests, Bounds(0));
  const double near = *sizer->Attainment({2, 1}, requests, Bounds(0));
  const double far = *sizer->Attainment({1, 1}, requests, Bounds(0));
  ASSERT_LT(best - near, 0.25);
  ASSERT_GT(best - far, 0.25);
  auto sized = sizer->Size(s, 5, Bounds(0), {2, 1});
  ASSERT_TRUE(sized.has_value());
  EXPECT_FALSE(sized->meets_target);
  EXPECT_EQ(sized->counts, (InstanceCounts{2, 1})) << sized->detail;
  sized = sizer->Size(s, 5, Bounds(0), {1, 1});
  ASSERT_TRUE(sized.has_value());
  EXPECT_EQ(sized->counts, (InstanceCounts{3, 1})) << sized->detail;
}

TEST(SimSizerTest, TheProfileIsScaledByWhatTheRunningWorkersMeasure) {
  auto sizer = Sizer();
  Signals s = Lengths(100, 10);
  EXPECT_TRUE(std::isnan(sizer->MeasuredScale(s, kOneEach)));  // nothing measured yet
  // Decode iterations of 4 sequences: the profile says 5 + 4 x 1 + 4 x 0.2 = 9.8 ms; they take
  // twice that.
  s.decode_iteration_mean_s = 0.0196;
  s.decode_tokens_per_busy_second = 4 / 0.0196;
  EXPECT_NEAR(sizer->MeasuredScale(s, kOneEach), 2.0, 1e-6);
  // Prefill chunks of the mean prompt (100 tokens): the profile says 5 + 100 + 0.2 ms; they run at
  // a quarter of its speed. The scale is the geometric mean of the two ratios: sqrt(2 x 4).
  s.prefill_tokens_per_busy_second = 100 / 0.1052 / 4;
  EXPECT_NEAR(sizer->MeasuredScale(s, kOneEach), std::sqrt(8.0), 1e-6);
  // Absurd readings are bounded.
  s.prefill_tokens_per_busy_second = 1e-6;
  s.decode_iteration_mean_s = kNoData;
  EXPECT_DOUBLE_EQ(sizer->MeasuredScale(s, kOneEach), 4.0);

  // The scale slows every simulated iteration: 1.5 prompts/s of ~1 s on two workers met the
  // target as profiled (2p1d); measured at twice the profile's cost, they cannot.
  Signals heavy = Lengths(1000, 2);
  heavy.time_s = 1;
  auto as_profiled = sizer->Size(heavy, 1.5, Bounds(0), {2, 1});
  ASSERT_TRUE(as_profiled.has_value());
  EXPECT_EQ(as_profiled->counts, (InstanceCounts{2, 1})) << as_profiled->detail;
  EXPECT_THAT(as_profiled->detail, HasSubstr("profile costs x1)"));
  const auto requests = sizer->Requests(heavy, 1.5);
  const double before = *sizer->Attainment({2, 1}, requests, Bounds(0));
  heavy.time_s = 2;
  heavy.decode_iteration_mean_s = 2 * 0.0062;  // batch 1 at context 1001: 5 + 1 + 0.2 ms, twice
  heavy.decode_tokens_per_busy_second = 1 / heavy.decode_iteration_mean_s;
  auto slower = sizer->Size(heavy, 1.5, Bounds(0), {2, 1});
  ASSERT_TRUE(slower.has_value());
  EXPECT_NEAR(sizer->scale(), 2.0, 1e-6);
  EXPECT_THAT(slower->detail, HasSubstr("profile costs x2.00 as measured"));
  const double after = *sizer->Attainment({2, 1}, requests, Bounds(0));
  EXPECT_GE(before, 0.9);
  EXPECT_LT(after, before - 0.2);
  EXPECT_FALSE(slower->meets_target && slower->counts == (InstanceCounts{2, 1})) << slower->detail;
}

TEST(SimSizerTest, NothingIsSizedBeforeTheWarmUpReadings) {
  SimSizerOptions o;
  o.profile = OneMsPerToken();
  o.warmup_readings = 3;
  auto sizer = *SimSizer::Create(o);
  Signals s = Lengths(100, 10);
  s.decode_iteration_mean_s = 0.0098;  // as the profile says
  s.decode_tokens_per_busy_second = 4 / 0.0098;
  for (int i = 0; i < 2; ++i) {
    s.time_s = i;
    EXPECT_FALSE(sizer->Size(s, 0.5, Bounds(0), kOneEach).has_value()) << "reading " << i;
    EXPECT_FALSE(sizer->Size(s, 0.5, Bounds(0), kOneEach).has_value()) << "a reading counts once";
  }
  s.time_s = 2;  // the third reading folded in: sizing starts
  auto sized = sizer->Size(s, 0.5, Bounds(0), kOneEach);
  ASSERT_TRUE(sized.has_value());
  EXPECT_EQ(sized->counts, (InstanceCounts{0, 1}));
}

TEST(SimSizerTest, RequestsAreDeterministicAndFitTheCache) {
  auto sizer = Sizer();
  Signals s = Lengths(400, 100);
  s.prompt_tokens_p50 = 300;
  s.prompt_tokens_p90 = 900;
  s.prompt_tokens_p99 = 4000;
  const auto a = sizer->Requests(s, 2), b = sizer->Requests(s, 2);
  ASSERT_EQ(a.size(), 240u);  // 2 req/s for the 120 s horizon
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].input_tokens, b[i].input_tokens);
    EXPECT_DOUBLE_EQ(a[i].arrival_s, b[i].arrival_s);
    EXPECT_LE(a[i].input_tokens + a[i].output_tokens, 8192);
    if (i > 0) EXPECT_GE(a[i].arrival_s, a[i - 1].arrival_s);
  }
  EXPECT_EQ(sizer->Requests(s, 0.01).size(), 60u);  // at least min_requests
  EXPECT_EQ(sizer->Requests(s, 100).size(), 300u);  // at most max_requests
}

TEST(SimSizerTest, RejectsUnusableOptions) {
  SimSizerOptions o;
  EXPECT_FALSE(SimSizer::Create(o).ok());  // no profile entry
  o.profile = OneMsPerToken();
  o.attainment = 0;
  EXPECT_FALSE(SimSizer::Create(o).ok());
  o.attainment = 0.9;
  o.prefill_cost = 0;
  EXPECT_FALSE(SimSizer::Create(o).ok());
  o.prefill_cost = 1;
  o.switch_margin = 1.5;
  EXPECT_FALSE(SimSizer::Create(o).ok());
  o.switch_margin = 0.1;
  EXPECT_TRUE(SimSizer::Create(o).ok());
}

}  // namespace
}  // namespace tandem::controller
