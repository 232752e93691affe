// Metric definitions on synthetic timelines: TTFT, TPOT, ITL, E2EL, percentiles, goodput and
// attainment with each SLO combination.
#include "bench/metrics.h"

#include "bench/report.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::bench {
namespace {

using ::testing::HasSubstr;

// A successful request: content chunks at `chunks` seconds after sending, ending at `end`.
RequestRecord Timeline(std::vector<double> chunks, double end, int output_tokens) {
  RequestRecord r;
  r.chunk_s = std::move(chunks);
  r.end_s = end;
  r.output_tokens = output_tokens;
  r.output_tokens_requested = output_tokens;
  r.input_tokens = 10;
  r.usage_reported = true;
  return r;
}

TEST(RequestMetrics, TtftItlTpotFromATimeline) {
  const RequestRecord r = Timeline({0.100, 0.150, 0.250, 0.300}, 0.310, 4);
  ASSERT_TRUE(r.ttft_s().has_value());
  EXPECT_DOUBLE_EQ(*r.ttft_s(), 0.100);
  const auto itl = r.itl_s();
  ASSERT_EQ(itl.size(), 3u);
  EXPECT_NEAR(itl[0], 0.050, 1e-12);
  EXPECT_NEAR(itl[1], 0.100, 1e-12);
  EXPECT_NEAR(itl[2], 0.050, 1e-12);
  // TPOT = (E2EL - TTFT) / (out - 1) = (0.310 - 0.100) / 3.
  EXPECT_NEAR(*r.tpot_s(), 0.070, 1e-12);
}

TEST(RequestMetrics, TpotUsesTokensNotChunks) {
  // 9 tokens arrived in 3 chunks (a server that batches its writes).
  const RequestRecord r = Timeline({0.2, 0.5, 1.0}, 1.0, 9);
  EXPECT_NEAR(*r.tpot_s(), 0.1, 1e-12);
  EXPECT_EQ(r.itl_s().size(), 2u);
}

TEST(RequestMetrics, OneTokenHasNoTpotAndNoChunkNoTtft) {
  const RequestRecord one = Timeline({0.2}, 0.21, 1);
  EXPECT_FALSE(one.tpot_s().has_value());
  EXPECT_TRUE(one.itl_s().empty());
  RequestRecord none = Timeline({}, 1.0, 0);
  EXPECT_FALSE(none.ttft_s().has_value());
  EXPECT_FALSE(none.tpot_s().has_value());
}

TEST(Percentile, MatchesNumpysLinearInterpolation) {
  const std::vector<double> v = {4, 1, 3, 2};  // numpy.percentile([1,2,3,4], p)
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 3.7);
  EXPECT_DOUBLE_EQ(Percentile(v, 99), 3.97);
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4);
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0);
}

TEST(Distribution, ReportsMillisecondsOfSeconds) {
  const Distribution d = Distribute({0.010, 0.020, 0.030, 0.040});
  EXPECT_EQ(d.count, 4);
  EXPECT_NEAR(d.mean, 25, 1e-9);
  EXPECT_NEAR(d.median, 25, 1e-9);
  EXPECT_NEAR(d.p90, 37, 1e-9);
  EXPECT_NEAR(d.max, 40, 1e-9);
}

TEST(Summarize, CountsThroughputsAndFailures) {
  std::vector<RequestRecord> rs = {Timeline({0.1, 0.2}, 0.3, 2), Timeline({0.2, 0.3, 0.5}, 0.5, 3)};
  RequestRecord failed;
  failed.failure = FailureKind::kHttpStatus;
  failed.http_status = 503;
  failed.input_tokens = 99;
  rs.push_back(failed);
  rs[1].prompt_tokens_reported = 11;  // != input_tokens 10
  const Summary s = Summarize(rs, 2.0, std::nullopt);
  EXPECT_EQ(s.sent, 3);
  EXPECT_EQ(s.completed, 2);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.input_tokens, 20);  // completed requests only
  EXPECT_EQ(s.output_tokens, 5);
  EXPECT_DOUBLE_EQ(s.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(s.output_throughput, 2.5);
  EXPECT_DOUBLE_EQ(s.total_token_throughput, 12.5);
  EXPECT_EQ(s.itl.count, 3);  // ITLs of every request pooled: 1 + 2
  EXPECT_EQ(s.ttft.count, 2);
  EXPECT_NEAR(s.ttft.mean, 150, 1e-9);
  EXPECT_EQ(s.failures.at("http_status"), 1);
  EXPECT_EQ(s.http_statuses.at(503), 1);
  EXPECT_EQ(s.prompt_token_mismatches, 1);
  EXPECT_FALSE(s.slo.has_value());

  const std::string table = FormatSummaryTable(s);
  EXPECT_THAT(table, HasSubstr("Successful requests:                     2"));
  EXPECT_THAT(table, HasSubstr("Mean TTFT (ms):                          150.00"));
  EXPECT_THAT(table, HasSubstr("HTTP 503:"));
}

TEST(Slo, ParsesVllmStyleSpecs) {
  auto slo = ParseSlo("ttft:2000 tpot:200");
  ASSERT_TRUE(slo.ok()) << slo.status();
  EXPECT_EQ(*slo->ttft_ms, 2000);
  EXPECT_EQ(*slo->tpot_ms, 200);
  EXPECT_FALSE(slo->e2el_ms.has_value());
  EXPECT_EQ(slo->Describe(), "ttft:2000 tpot:200");
  auto commas = ParseSlo("e2el:5000,ttft:1.5");
  ASSERT_TRUE(commas.ok());
  EXPECT_EQ(*commas->e2el_ms, 5000);
  EXPECT_EQ(*commas->ttft_ms, 1.5);
  for (const char* bad : {"", "ttft", "itl:5", "ttft:-1", "ttft:0", "ttft:x", "ttft:1 ttft:2"}) {
    EXPECT_FALSE(ParseSlo(bad).ok()) << bad;
  }
}

// Four requests (TTFT ms, TPOT ms, E2EL ms): A (100, 20, 300), B (500, 20, 700),
// C (100, 80, 900), D failed. Which are good under each SLO combination.
TEST(Slo, AttainmentAndGoodputForEachCombination) {
  const RequestRecord a = Timeline({0.1, 0.3}, 0.3, 11);  // TPOT (0.3-0.1)/10 = 20 ms
  const RequestRecord b = Timeline({0.5, 0.7}, 0.7, 11);
  const RequestRecord c = Timeline({0.1, 0.9}, 0.9, 11);  // TPOT 80 ms
  RequestRecord d = Timeline({0.05}, 0.06, 11);
  d.failure = FailureKind::kTruncated;
  const std::vector<RequestRecord> rs = {a, b, c, d};
  struct Case {
    const char* slo;
    int good;
  };
  const Case cases[] = {
      {"ttft:200", 2},                      // A, C
      {"tpot:50", 2},                       // A, B
      {"e2el:800", 2},                      // A, B
      {"ttft:200 tpot:50", 1},              // A
      {"ttft:600 tpot:100", 3},             // A, B, C
      {"ttft:600 tpot:100 e2el:800", 2},    // A, B
      {"ttft:50", 0},                       // nobody (D is fast but failed)
  };
  for (const Case& c : cases) {
    const auto slo = ParseSlo(c.slo);
    ASSERT_TRUE(slo.ok());
    const Summary s = Summarize(rs, 4.0, *slo);
    EXPECT_EQ(s.good, c.good) << c.slo;
    EXPECT_DOUBLE_EQ(s.attainment, c.good / 4.0) << c.slo;  // failures count against it
    EXPECT_DOUBLE_EQ(s.goodput, c.good / 4.0) << c.slo;     // good / 4 s
  }
  EXPECT_FALSE(MeetsSlo(d, *ParseSlo("e2el:1000")));
  // A single output token has no TPOT, so a TPOT limit cannot fail it.
  EXPECT_TRUE(MeetsSlo(Timeline({0.1}, 0.1, 1), *ParseSlo("tpot:1")));
}

}  // namespace
}  // namespace tandem::bench
