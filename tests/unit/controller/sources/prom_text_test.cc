#include "controller/sources/prom_text.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metrics/registry.h"

namespace tandem::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const PromSample* Find(const PromExposition& e, std::string_view name, const PromLabels& labels = {}) {
  for (const PromSample& s : e.samples) {
    if (s.name == name && s.labels == labels) return &s;
  }
  return nullptr;
}

TEST(PromTextTest, ReadsBackWhatOurRegistryRenders) {
  metrics::MetricsRegistry registry;
  auto& requests = registry.AddCounter("tandem_router_requests_total", "API requests.\nBy route \\ status",
                                       {"route", "status"});
  requests.With({"/v1/chat/completions", "200"}).Increment(41);
  requests.With({"a \"quoted\" \\ back\nslash", "500"}).Increment(2);
  registry.AddGauge("tandem_router_inflight_requests", "Requests being served").With().Set(-3.5);
  auto& ttft = registry.AddHistogram("tandem_router_ttft_seconds", "TTFT", {0.1, 0.5, 1});
  for (double v : {0.05, 0.2, 0.3, 0.7, 9.0}) ttft.With().Observe(v);
  auto& blocks = registry.AddCallbackGauge("tandem_worker_kv_blocks", "KV blocks", {"role", "state"});
  metrics::CallbackRegistration used = blocks.Register({"decode", "used"}, [] { return 1e20; });
  metrics::CallbackRegistration nan = blocks.Register({"decode", "free"}, [] { return std::nan(""); });
  metrics::CallbackRegistration inf = blocks.Register({"decode", "reserved"}, [] { return -INFINITY; });

  auto parsed = ParsePromText(registry.Render());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const PromExposition& e = *parsed;

  const PromSample* weird = Find(e, "tandem_router_requests_total",
                                 {{"route", "a \"quoted\" \\ back\nslash"}, {"status", "500"}});
  ASSERT_NE(weird, nullptr) << "escaped label value did not round-trip";
  EXPECT_EQ(weird->value, 2);
  EXPECT_EQ(Find(e, "tandem_router_requests_total", {{"route", "/v1/chat/completions"}, {"status", "200"}})->value, 41);
  EXPECT_EQ(Find(e, "tandem_router_inflight_requests")->value, -3.5);
  EXPECT_EQ(Find(e, "tandem_worker_kv_blocks", {{"role", "decode"}, {"state", "used"}})->value, 1e20);
  EXPECT_TRUE(std::isnan(Find(e, "tandem_worker_kv_blocks", {{"role", "decode"}, {"state", "free"}})->value));
  EXPECT_EQ(Find(e, "tandem_worker_kv_blocks", {{"role", "decode"}, {"state", "reserved"}})->value, -INFINITY);
  EXPECT_EQ(Find(e, "tandem_router_ttft_seconds_count")->value, 5);
  EXPECT_DOUBLE_EQ(Find(e, "tandem_router_ttft_seconds_sum")->value, 0.05 + 0.2 + 0.3 + 0.7 + 9.0);

  EXPECT_EQ(e.help.at("tandem_router_requests_total"), "API requests.\nBy route \\ status");
  EXPECT_EQ(e.TypeOf("tandem_router_requests_total"), PromType::kCounter);
  EXPECT_EQ(e.TypeOf("tandem_router_inflight_requests"), PromType::kGauge);
  EXPECT_EQ(e.TypeOf("tandem_router_ttft_seconds_bucket"), PromType::kHistogram);
  EXPECT_EQ(e.TypeOf("tandem_router_ttft_seconds_count"), PromType::kHistogram);
  EXPECT_EQ(e.TypeOf("tandem_unknown_total"), PromType::kUntyped);

  auto buckets = CumulativeBuckets(e.samples, "tandem_router_ttft_seconds");
  ASSERT_TRUE(buckets.ok()) << buckets.status();
  ASSERT_EQ(buckets->size(), 4u);
  EXPECT_EQ((*buckets)[0].upper_bound, 0.1);
  EXPECT_EQ((*buckets)[0].count, 1);
  EXPECT_EQ((*buckets)[1].count, 3);
  EXPECT_EQ((*buckets)[2].count, 4);
  EXPECT_TRUE(std::isinf((*buckets)[3].upper_bound));
  EXPECT_EQ((*buckets)[3].count, 5);
}

TEST(PromTextTest, AcceptsTheFormatsOptionalParts) {
  const std::string text =
      "# a free comment\n"
      "\n"
      "   # TYPE x_total counter\n"
      "x_total{a=\"1\",} 3 1712345678000\n"
      "x_total{ a = \"2\" , b=\"\" }\t+Inf\r\n"
      "y -Inf -5\n"
      "z NaN\n"
      "w{} 1.5e3\n"
      "v 7";  // no final newline
  auto parsed = ParsePromText(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const auto& s = parsed->samples;
  ASSERT_EQ(s.size(), 6u);
  EXPECT_EQ(s[0].labels, (PromLabels{{"a", "1"}}));
  EXPECT_EQ(s[0].timestamp_ms, 1712345678000);
  EXPECT_EQ(s[1].labels, (PromLabels{{"a", "2"}, {"b", ""}}));
  EXPECT_EQ(s[1].value, INFINITY);
  EXPECT_FALSE(s[1].timestamp_ms.has_value());
  EXPECT_EQ(s[2].value, -INFINITY);
  EXPECT_EQ(s[2].timestamp_ms, -5);
  EXPECT_TRUE(std::isnan(s[3].value));
  EXPECT_EQ(s[4].value, 1500);
  EXPECT_EQ(s[5].name, "v");
  EXPECT_EQ(s[5].value, 7);
  EXPECT_EQ(parsed->TypeOf("x_total"), PromType::kCounter);
}

TEST(PromTextTest, MalformedLinesNameTheirLine) {
  struct Case {
    std::string bad_line;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"m{a=\"unterminated} 1", "unterminated label value"},
      {"m{a=\"x\\q\"} 1", "invalid escape"},
      {"m{a=\"x\"", "expected ',' or '}'"},
      {"m{a} 1", "expected '='"},
      {"m{a=x} 1", "expected '\"'"},
      {"m{a=\"1\",a=\"2\"} 1", "duplicate label 'a'"},
      {"m{=\"1\"} 1", "expected a label name"},
      {"m", "expected a value"},
      {"m{a=\"1\"}", "expected a value"},
      {"m 1.2.3", "invalid value '1.2.3'"},
      {"m 1e999", "invalid value"},
      {"m nan(0x1)", "invalid value"},
      {"m 1 12.5", "invalid timestamp"},
      {"m 1 12 extra", "unexpected text after the timestamp"},
      {"9m 1", "expected a metric name"},
      {"{a=\"1\"} 1", "expected a metric name"},
      {"m-x 1", "invalid character in the metric name"},
      {"# TYPE m countr", "unknown metric type 'countr'"},
      {"# TYPE m counter extra", "unexpected text after the metric type"},
      {"# TYPE", "expected a metric name after # TYPE"},
      {"# TYPE x_total counter", "second TYPE line for 'x_total'"},
  };
  for (const Case& c : cases) {
    // Two good lines (one a TYPE for x_total) first, so the bad one is line 3.
    const std::string text = "# TYPE x_total counter\nx_total 1\n" + c.bad_line + "\nafter 1\n";
    auto parsed = ParsePromText(text);
    ASSERT_FALSE(parsed.ok()) << "accepted: " << c.bad_line;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("line 3, column ")) << c.bad_line;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(c.message)) << c.bad_line;
  }
}

// Scrapes cut off mid-body (a worker killed while answering) or corrupted must give an error or
// a prefix of the samples, never a crash or a read past the end (run under ASan in CI).
TEST(PromTextTest, TruncatedAndCorruptedInputNeverCrashes) {
  metrics::MetricsRegistry registry;
  auto& h = registry.AddHistogram("tandem_worker_iteration_seconds", "Iteration", {0.01, 0.1, 1}, {"role", "phase"});
  h.With({"decode", "decode"}).Observe(0.02);
  h.With({"mixed", "prefill \"x\"\\"}).Observe(0.5);
  registry.AddCounter("tandem_worker_tokens_total", "Tokens", {"role", "phase"}).With({"decode", "decode"}).Increment(7);
  const std::string full = registry.Render();
  auto complete = ParsePromText(full);
  ASSERT_TRUE(complete.ok()) << complete.status();

  for (size_t n = 0; n <= full.size(); ++n) {
    const std::string_view prefix(full.data(), n);
    auto parsed = ParsePromText(prefix);
    if (n > 0 && full[n - 1] == '\n') {
      // Cut at a line end: what is there is valid, and it is a prefix of the whole.
      ASSERT_TRUE(parsed.ok()) << "cut at " << n << ": " << parsed.status();
      ASSERT_LE(parsed->samples.size(), complete->samples.size());
    } else if (!parsed.ok()) {
      EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("line ")) << "cut at " << n;
    }
  }

  std::mt19937 rng(1234);
  const std::string alphabet = "{}\"\\=, \n#\t+-.eE0123456789aNIf\r";
  for (int trial = 0; trial < 3000; ++trial) {
    std::string text = full;
    const int edits = 1 + static_cast<int>(rng() % 6);
    for (int k = 0; k < edits && !text.empty(); ++k) {
      const size_t at = rng() % text.size();
      switch (rng() % 3) {
        case 0: text[at] = alphabet[rng() % alphabet.size()]; break;
        case 1: text.erase(at, 1 + rng() % 8); break;
        default: text.insert(at, 1, static_cast<char>(rng() % 256)); break;
      }
    }
    auto parsed = ParsePromText(text);
    if (!parsed.ok()) {
      EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("line "));
    }
  }
}

TEST(PromTextTest, SumsOverLabelMatchersWithAbsentLabelsReadingEmpty) {
  auto parsed = ParsePromText(
      "kv{role=\"decode\",state=\"used\"} 30\n"
      "kv{role=\"decode\",state=\"free\"} 70\n"
      "kv{role=\"mixed\",state=\"used\"} 5\n"
      "kv{role=\"prefill\",state=\"used\"} 1000\n"
      "kv{state=\"used\"} 1\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const auto& s = parsed->samples;
  EXPECT_EQ(SumSamples(s, "kv"), 1106);
  EXPECT_EQ(SumSamples(s, "kv", {LabelMatcher::AnyOf("role", {"decode", "mixed"})}), 105);
  EXPECT_EQ(SumSamples(s, "kv", {LabelMatcher::AnyOf("role", {"decode", "mixed"}), LabelMatcher::Eq("state", "used")}),
            35);
  EXPECT_EQ(SumSamples(s, "kv", {LabelMatcher::Eq("role", "")}), 1);  // PromQL: absent == ""
  EXPECT_EQ(SumSamples(s, "kv", {LabelMatcher::Eq("role", "router")}), std::nullopt);
  EXPECT_EQ(SumSamples(s, "other"), std::nullopt);
}

TEST(PromTextTest, CumulativeBucketsSumByLeAcrossSeriesAndRejectBadBounds) {
  auto parsed = ParsePromText(
      "h_bucket{role=\"decode\",le=\"0.5\"} 2\n"
      "h_bucket{role=\"decode\",le=\"+Inf\"} 3\n"
      "h_bucket{role=\"mixed\",le=\"0.5\"} 4\n"
      "h_bucket{role=\"mixed\",le=\"+Inf\"} 10\n"
      "h_bucket{role=\"prefill\",le=\"0.5\"} 100\n"
      "h_bucket{role=\"prefill\",le=\"+Inf\"} 100\n"
      "bad_bucket{le=\"fast\"} 1\n"
      "nole_bucket 1\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto buckets = CumulativeBuckets(parsed->samples, "h", {LabelMatcher::AnyOf("role", {"decode", "mixed"})});
  ASSERT_TRUE(buckets.ok());
  ASSERT_EQ(buckets->size(), 2u);
  EXPECT_EQ((*buckets)[0].upper_bound, 0.5);
  EXPECT_EQ((*buckets)[0].count, 6);
  EXPECT_EQ((*buckets)[1].count, 13);
  EXPECT_THAT(std::string(CumulativeBuckets(parsed->samples, "bad").status().message()), HasSubstr("le=\"fast\""));
  EXPECT_FALSE(CumulativeBuckets(parsed->samples, "nole").ok());
  EXPECT_TRUE(CumulativeBuckets(parsed->samples, "absent")->empty());
}

TEST(PromTextTest, HistogramQuantileInterpolatesLikePrometheus) {
  // 10 in (0, 0.1], 20 in (0.1, 0.5], 10 in (0.5, 1], none above.
  const std::vector<HistogramBucket> b = {{0.1, 10}, {0.5, 30}, {1, 40}, {INFINITY, 40}};
  // p50: rank 20 falls in (0.1, 0.5], 10 of its 20 in: 0.1 + 0.4 * 10/20.
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.5, b), 0.3);
  // p99: rank 39.6 in (0.5, 1], 9.6 of its 10: 0.5 + 0.5 * 0.96.
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.99, b), 0.98);
  // p10: rank 4 in the first bucket, which starts at 0.
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.1, b), 0.04);
  // Input order does not matter.
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.5, {{INFINITY, 40}, {1, 40}, {0.1, 10}, {0.5, 30}}), 0.3);
  // A rank in the +Inf bucket reads as the highest finite bound.
  EXPECT_EQ(HistogramQuantile(0.9, {{0.1, 1}, {INFINITY, 10}}), 0.1);
  // A first bound <= 0 is returned as is.
  EXPECT_EQ(HistogramQuantile(0.5, {{-1, 5}, {1, 10}, {INFINITY, 10}}), -1);
  // Torn counts are made monotonic: (0.5, 1] holds 0, so p50 stays in (0.1, 0.5].
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.5, {{0.1, 10}, {0.5, 30}, {1, 25}, {INFINITY, 30}}), 0.1 + 0.4 * 5 / 20);

  EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, {{0.1, 0}, {INFINITY, 0}})));   // no observations
  EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, {{0.1, 3}, {1, 5}})));           // no +Inf bucket
  EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, {{INFINITY, 5}})));             // one bucket
  EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, {})));
  EXPECT_EQ(HistogramQuantile(-0.1, b), -INFINITY);
  EXPECT_EQ(HistogramQuantile(1.1, b), INFINITY);
  EXPECT_TRUE(std::isnan(HistogramQuantile(NAN, b)));
}

TEST(PromTextTest, ParsesValuesAsPrometheusWritesThem) {
  EXPECT_EQ(ParsePromValue("1"), 1);
  EXPECT_EQ(ParsePromValue("-0.25"), -0.25);
  EXPECT_EQ(ParsePromValue("+3"), 3);
  EXPECT_EQ(ParsePromValue("1e+20"), 1e20);
  EXPECT_EQ(ParsePromValue("+Inf"), INFINITY);
  EXPECT_EQ(ParsePromValue("-Inf"), -INFINITY);
  EXPECT_EQ(ParsePromValue("Inf"), INFINITY);
  EXPECT_TRUE(std::isnan(*ParsePromValue("NaN")));
  for (std::string_view bad : {"", "+", "-", "+-1", "1x", " 1", "0x10", "nan(1)", "1e999"}) {
    EXPECT_EQ(ParsePromValue(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace tandem::controller
