#include "metrics/registry.h"

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metrics/buckets.h"
#include "metrics/text_format.h"

namespace tandem::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsRegistryTest, RendersExactExpositionText) {
  MetricsRegistry registry;
  auto& requests =
      registry.AddCounter("tandem_router_requests_total", "Requests received.", {"model", "code"});
  requests.With({"smollm2", "200"}).Increment(3);
  requests.With({"smollm2", "429"}).Increment();
  registry.AddGauge("tandem_engine_running_sequences", "Sequences in the running batch.")
      .With()
      .Set(7);
  auto& ttft =
      registry.AddHistogram("tandem_router_ttft_seconds", "Time to first token.", {0.1, 0.5, 1});
  ttft.With().Observe(0.0625);
  ttft.With().Observe(0.5);
  ttft.With().Observe(2);
  auto& free_blocks = registry.AddCallbackGauge("tandem_engine_kv_free_blocks",
                                                "Free KV cache blocks.", {"device"});
  CallbackRegistration reg = free_blocks.Register({"cpu"}, [] { return 128.0; });

  EXPECT_EQ(registry.Render(),
            "# HELP tandem_engine_kv_free_blocks Free KV cache blocks.\n"
            "# TYPE tandem_engine_kv_free_blocks gauge\n"
            "tandem_engine_kv_free_blocks{device=\"cpu\"} 128\n"
            "# HELP tandem_engine_running_sequences Sequences in the running batch.\n"
            "# TYPE tandem_engine_running_sequences gauge\n"
            "tandem_engine_running_sequences 7\n"
            "# HELP tandem_router_requests_total Requests received.\n"
            "# TYPE tandem_router_requests_total counter\n"
            "tandem_router_requests_total{model=\"smollm2\",code=\"200\"} 3\n"
            "tandem_router_requests_total{model=\"smollm2\",code=\"429\"} 1\n"
            "# HELP tandem_router_ttft_seconds Time to first token.\n"
            "# TYPE tandem_router_ttft_seconds histogram\n"
            "tandem_router_ttft_seconds_bucket{le=\"0.1\"} 1\n"
            "tandem_router_ttft_seconds_bucket{le=\"0.5\"} 2\n"
            "tandem_router_ttft_seconds_bucket{le=\"1\"} 2\n"
            "tandem_router_ttft_seconds_bucket{le=\"+Inf\"} 3\n"
            "tandem_router_ttft_seconds_sum 2.5625\n"
            "tandem_router_ttft_seconds_count 3\n");
  // Stable: nothing changed, same bytes.
  EXPECT_EQ(registry.Render(), registry.Render());
}

TEST(MetricsRegistryTest, LabelledHistogramPutsLeLast) {
  MetricsRegistry registry;
  auto& h = registry.AddHistogram("x_seconds", "", {1}, {"phase"});
  h.With({"prefill"}).Observe(1);
  EXPECT_EQ(registry.Render(),
            "# TYPE x_seconds histogram\n"
            "x_seconds_bucket{phase=\"prefill\",le=\"1\"} 1\n"
            "x_seconds_bucket{phase=\"prefill\",le=\"+Inf\"} 1\n"
            "x_seconds_sum{phase=\"prefill\"} 1\n"
            "x_seconds_count{phase=\"prefill\"} 1\n");
}

TEST(MetricsRegistryTest, ConstantLabelsGoOnEverySampleAndCanChange) {
  MetricsRegistry registry;
  registry.AddHistogram("x_seconds", "", {1}, {"phase"}).With({"prefill"}).Observe(1);
  registry.AddCounter("y_total", "").With().Increment(2);
  registry.SetConstLabels({{"role", "pre\"fill"}});
  EXPECT_EQ(registry.Render(),
            "# TYPE x_seconds histogram\n"
            "x_seconds_bucket{role=\"pre\\\"fill\",phase=\"prefill\",le=\"1\"} 1\n"
            "x_seconds_bucket{role=\"pre\\\"fill\",phase=\"prefill\",le=\"+Inf\"} 1\n"
            "x_seconds_sum{role=\"pre\\\"fill\",phase=\"prefill\"} 1\n"
            "x_seconds_count{role=\"pre\\\"fill\",phase=\"prefill\"} 1\n"
            "# TYPE y_total counter\n"
            "y_total{role=\"pre\\\"fill\"} 2\n");
  registry.SetConstLabels({{"role", "decode"}});
  EXPECT_THAT(registry.Render(), testing::HasSubstr("y_total{role=\"decode\"} 2\n"));
  registry.SetConstLabels({});
  EXPECT_THAT(registry.Render(), testing::HasSubstr("y_total 2\n"));
}

TEST(MetricsRegistryTest, EscapesHelpAndLabelValues) {
  MetricsRegistry registry;
  registry.AddCounter("a_total", "Path C:\\tmp\nsecond \"line\"", {"v"})
      .With({"say \"hi\"\\\n"})
      .Increment();
  EXPECT_EQ(registry.Render(),
            "# HELP a_total Path C:\\\\tmp\\nsecond \"line\"\n"
            "# TYPE a_total counter\n"
            "a_total{v=\"say \\\"hi\\\"\\\\\\n\"} 1\n");
}

TEST(MetricsRegistryTest, LabelValuesMayBeAnyUtf8) {
  MetricsRegistry registry;
  registry.AddGauge("g", "h", {"model"}).With({"llama-3.1 8B ✓ {x=1}"}).Set(1);
  EXPECT_THAT(registry.Render(), HasSubstr("g{model=\"llama-3.1 8B ✓ {x=1}\"} 1\n"));
}

TEST(MetricsRegistryTest, FamiliesWithoutChildrenAreLeftOut) {
  MetricsRegistry registry;
  registry.AddCounter("labelled_total", "h", {"code"});
  EXPECT_EQ(registry.Render(), "");
  registry.AddCounter("unlabelled_total", "h").With();
  EXPECT_EQ(registry.Render(),
            "# HELP unlabelled_total h\n# TYPE unlabelled_total counter\n"
            "unlabelled_total 0\n");
}

TEST(MetricsRegistryTest, ChildHandlesAreStable) {
  MetricsRegistry registry;
  auto& family = registry.AddCounter("c_total", "h", {"k"});
  Counter& first = family.With({"a"});
  for (int i = 0; i < 100; ++i) family.With({std::to_string(i)});
  EXPECT_EQ(&first, &family.With({"a"}));
}

TEST(MetricsRegistryTest, IdenticalRegistrationReturnsTheSameFamily) {
  MetricsRegistry registry;
  auto& a = registry.AddCounter("c_total", "h", {"k"});
  auto& b = registry.AddCounter("c_total", "h", {"k"});
  EXPECT_EQ(&a, &b);
  auto& h1 = registry.AddHistogram("h_seconds", "h", {1, 2});
  auto& h2 = registry.AddHistogram("h_seconds", "h", {1, 2, INFINITY});
  EXPECT_EQ(&h1, &h2);
}

TEST(MetricsRegistryTest, GaugeSetAddAndNegativeValues) {
  MetricsRegistry registry;
  Gauge& g = registry.AddGauge("queue_depth", "h").With();
  g.Set(5);
  g.Add(-7.5);
  g.Increment();
  EXPECT_DOUBLE_EQ(g.value(), -1.5);
  EXPECT_THAT(registry.Render(), HasSubstr("queue_depth -1.5\n"));
}

TEST(MetricsRegistryTest, ConcurrentIncrementsSumExactly) {
  MetricsRegistry registry;
  auto& counters = registry.AddCounter("ops_total", "h", {"worker"});
  auto& histogram = registry.AddHistogram("op_seconds", "h", {0.5});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& shared = counters.With({"shared"});
      Counter& own = counters.With({std::to_string(t)});
      Histogram& h = histogram.With();
      for (int i = 0; i < kPerThread; ++i) {
        shared.Increment();
        own.Increment();
        h.Observe(i % 2 == 0 ? 0.25 : 1.0);
        if (i % 20000 == 0) registry.Render();  // scrapes race with updates
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(counters.With({"shared"}).value(), kThreads * kPerThread);
  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(counters.With({std::to_string(t)}).value(), kPerThread);
  const Histogram::Snapshot snap = histogram.With().Snap();
  EXPECT_EQ(snap.count, uint64_t{kThreads * kPerThread});
  EXPECT_EQ(snap.cumulative_counts[0], uint64_t{kThreads * kPerThread / 2});
  EXPECT_DOUBLE_EQ(snap.sum, kThreads * kPerThread / 2 * 1.25);
}

TEST(HistogramTest, BucketBoundsAreInclusiveAndCumulative) {
  const std::vector<double> bounds = {1, 2, 5};
  Histogram h(bounds);
  for (double v : {-3.0, 0.5, 1.0, 1.0000001, 2.0, 4.9, 5.0, 5.1, 1e9}) h.Observe(v);
  h.Observe(NAN);  // ignored
  const Histogram::Snapshot snap = h.Snap();
  EXPECT_THAT(snap.cumulative_counts, ::testing::ElementsAre(3, 5, 7, 9));
  EXPECT_EQ(snap.count, 9u);
  EXPECT_DOUBLE_EQ(snap.sum, -3 + 0.5 + 1 + 1.0000001 + 2 + 4.9 + 5 + 5.1 + 1e9);
}

TEST(HistogramTest, NoBoundsMeansOnlyInf) {
  MetricsRegistry registry;
  registry.AddHistogram("h_bytes", "h", {}).With().Observe(42);
  EXPECT_EQ(registry.Render(),
            "# HELP h_bytes h\n# TYPE h_bytes histogram\n"
            "h_bytes_bucket{le=\"+Inf\"} 1\nh_bytes_sum 42\nh_bytes_count 1\n");
}

TEST(CallbackTest, EvaluatedAtScrapeTimeAndUnregisteredByHandle) {
  MetricsRegistry registry;
  auto& family = registry.AddCallbackCounter("engine_steps_total", "h");
  double steps = 1;
  {
    CallbackRegistration reg = family.Register({}, [&] { return steps; });
    EXPECT_THAT(registry.Render(), HasSubstr("engine_steps_total 1\n"));
    steps = 42;
    EXPECT_THAT(registry.Render(), HasSubstr("engine_steps_total 42\n"));
  }
  EXPECT_EQ(registry.Render(), "");
}

TEST(CallbackTest, NewestRegistrationWinsAndOlderReturns) {
  MetricsRegistry registry;
  auto& family = registry.AddCallbackGauge("free_blocks", "h", {"engine"});
  CallbackRegistration old_reg = family.Register({"0"}, [] { return 1.0; });
  {
    CallbackRegistration new_reg = family.Register({"0"}, [] { return 2.0; });
    EXPECT_THAT(registry.Render(), HasSubstr("free_blocks{engine=\"0\"} 2\n"));
    EXPECT_THAT(registry.Render(), Not(HasSubstr("free_blocks{engine=\"0\"} 1\n")));
  }
  EXPECT_THAT(registry.Render(), HasSubstr("free_blocks{engine=\"0\"} 1\n"));
}

TEST(CallbackTest, HandleMayOutliveRegistryAndMoves) {
  CallbackRegistration reg;
  {
    MetricsRegistry registry;
    CallbackRegistration first =
        registry.AddCallbackGauge("g", "h").Register({}, [] { return 3.0; });
    reg = std::move(first);
    EXPECT_THAT(registry.Render(), HasSubstr("g 3\n"));
  }
  reg.Reset();  // registry gone: must not crash
}

TEST(CallbackTest, UnregisterRacesWithScrapes) {
  MetricsRegistry registry;
  auto& family = registry.AddCallbackGauge("g", "h", {"i"});
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) registry.Render();
  });
  for (int i = 0; i < 2000; ++i) {
    auto value = std::make_unique<double>(i);
    CallbackRegistration reg =
        family.Register({std::to_string(i % 3)}, [p = value.get()] { return *p; });
    reg.Reset();
    value.reset();  // a late callback would read freed memory (caught by ASan)
  }
  done = true;
  scraper.join();
}

TEST(TextFormatTest, FormatsValuesLikePrometheus) {
  EXPECT_EQ(FormatValue(1), "1");
  EXPECT_EQ(FormatValue(0.005), "0.005");
  EXPECT_EQ(FormatValue(-2.5), "-2.5");
  EXPECT_EQ(FormatValue(1e20), "1e+20");
  EXPECT_EQ(FormatValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatValue(NAN), "NaN");
}

TEST(TextFormatTest, ValidatesNames) {
  EXPECT_TRUE(ValidateMetricName("tandem_router_requests_total").ok());
  EXPECT_TRUE(ValidateMetricName("job:rate5m").ok());
  EXPECT_TRUE(ValidateMetricName("_x9").ok());
  EXPECT_FALSE(ValidateMetricName("").ok());
  EXPECT_FALSE(ValidateMetricName("9lives").ok());
  EXPECT_FALSE(ValidateMetricName("has-dash").ok());
  EXPECT_FALSE(ValidateMetricName("has space").ok());
  EXPECT_EQ(ValidateMetricName("é").code(), absl::StatusCode::kInvalidArgument);

  EXPECT_TRUE(ValidateLabelName("model").ok());
  EXPECT_TRUE(ValidateLabelName("_x1").ok());
  EXPECT_FALSE(ValidateLabelName("__name__").ok());
  EXPECT_FALSE(ValidateLabelName("a:b").ok());
  EXPECT_FALSE(ValidateLabelName("1a").ok());
  EXPECT_FALSE(ValidateLabelName("").ok());
}

TEST(BucketsTest, Layouts) {
  EXPECT_THAT(ExponentialBuckets(1, 2, 4), ::testing::ElementsAre(1, 2, 4, 8));
  EXPECT_THAT(LinearBuckets(0.5, 0.5, 3), ::testing::ElementsAre(0.5, 1.0, 1.5));
  const std::vector<double> latency = DefaultLatencyBuckets();
  EXPECT_EQ(latency.front(), 0.005);
  EXPECT_EQ(latency.back(), 60);
  EXPECT_TRUE(std::is_sorted(latency.begin(), latency.end()));
}

TEST(BucketsTest, ScopedLatencyTimerObservesOnce) {
  MetricsRegistry registry;
  Histogram& h = AddLatencyHistogram(registry, "op_seconds", "h").With();
  {
    ScopedLatencyTimer timer(h);
    EXPECT_GE(timer.Stop(), 0);
    EXPECT_EQ(timer.Stop(), 0);
  }
  EXPECT_EQ(h.Snap().count, 1u);
  EXPECT_EQ(h.upper_bounds().size(), DefaultLatencyBuckets().size());
}

// Registration mistakes are bugs and stop the process (see registry.h).
using MetricsRegistryDeathTest = ::testing::Test;

TEST(MetricsRegistryDeathTest, RejectsBadRegistrations) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  MetricsRegistry registry;
  EXPECT_DEATH(registry.AddCounter("requests", "h"), "must end in _total");
  EXPECT_DEATH(registry.AddGauge("bad-name", "h"), "does not match");
  EXPECT_DEATH(registry.AddGauge("g", "h", {"__reserved"}), "reserved");
  EXPECT_DEATH(registry.AddGauge("g", "h", {"a", "a"}), "duplicate label");
  EXPECT_DEATH(registry.AddHistogram("h", "h", {1}, {"le"}), "reserved for histogram");
  EXPECT_DEATH(registry.AddHistogram("h", "h", {2, 1}), "strictly increasing");
  EXPECT_DEATH(registry.AddHistogram("h", "h", {1, NAN}), "not finite");
  registry.AddGauge("g", "h", {"a"});
  EXPECT_DEATH(registry.AddCounter("g", "h", {"a"}), "must end in _total");
  EXPECT_DEATH(registry.AddGauge("g", "other help", {"a"}), "registered twice");
  EXPECT_DEATH(registry.AddCallbackGauge("g", "h", {"a"}), "registered twice");
  EXPECT_DEATH(registry.AddGauge("g", "h", {"a"}).With({"x", "y"}), "takes 1 label values");
  registry.AddHistogram("lat", "h", {1});
  EXPECT_DEATH(registry.AddGauge("lat_count", "h"), "another family already emits");
  EXPECT_DEATH(registry.SetConstLabels({{"a", "x"}}), "also a label of g");
  registry.SetConstLabels({{"role", "x"}});
  EXPECT_DEATH(registry.AddGauge("r", "h", {"role"}), "constant label of the registry");
}

}  // namespace
}  // namespace tandem::metrics
