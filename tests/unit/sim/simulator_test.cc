// The simulator on cases with known answers.
#include "sim/simulator.h"

#include <cmath>
#include <numeric>

#include "bench/arrivals.h"
#include "gtest/gtest.h"

namespace tandem::sim {
namespace {

SimWorker Worker(Role role, IterationCost cost, int64_t blocks = 4096, int budget = 512) {
  SimWorker w;
  w.role = role;
  w.cost = cost;
  w.num_blocks = blocks;
  w.scheduler.token_budget = budget;
  w.scheduler.max_num_seqs = 256;
  return w;
}

SimCluster Cluster(std::vector<SimWorker> workers) {
  SimCluster c;
  c.workers = std::move(workers);
  c.kv_bytes_per_token = 1000;
  c.hop_s = 0;
  return c;
}

double Mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); }

// DistServe models a prefill instance as an M/D/1 queue: Poisson arrivals at rate R, one
// request at a time, each D seconds. Mean TTFT = D + R D^2 / (2 (1 - R D)).
TEST(Simulator, PrefillQueueMatchesTheMD1Formula) {
  const double d = 0.1;
  const int prompt = 256;
  IterationCost cost{.per_token_s = d / prompt};  // an iteration of one whole prompt takes D
  // Budget = one prompt: requests are served one at a time, like the M/D/1 server.
  SimCluster c = Cluster({Worker(Role::kMixed, cost, 1 << 16, prompt)});
  for (double rho : {0.3, 0.6, 0.8}) {
    const double rate = rho / d;
    bench::Rng rng(42);
    std::vector<SimRequest> reqs;
    for (double t : bench::GammaArrivals({rate, 1.0}, 200000, rng)) reqs.push_back({t, prompt, 1, 0});
    auto r = Simulate(c, reqs);
    ASSERT_TRUE(r.ok()) << r.status();
    std::vector<double> ttft;
    for (const auto& rec : r->records) ttft.push_back(*rec.ttft_s());
    const double expected = d + rate * d * d / (2 * (1 - rate * d));
    EXPECT_NEAR(Mean(ttft), expected, 0.04 * expected) << "utilisation " << rho;
  }
}

// B requests arriving together: the first is prefilled alone (the worker starts as soon as it
// arrives), the rest in the next iteration; from then on every iteration decodes the B
// sequences and takes exactly the profile's time for that shape.
TEST(Simulator, DecodeBatchTakesTheProfilesIterationTime) {
  IterationCost cost{.fixed_s = 0.005, .per_token_s = 0.001, .per_sample_s = 0.0005, .per_attention_s = 1e-6};
  SimCluster c = Cluster({Worker(Role::kMixed, cost)});
  const int b = 8, in = 32, out = 20;
  std::vector<SimRequest> reqs(b, SimRequest{0, in, out, 0});
  auto r = Simulate(c, reqs);
  ASSERT_TRUE(r.ok()) << r.status();
  const int64_t prompt_pairs = int64_t{in} * (in + 1) / 2;
  const double first = cost.Seconds({.tokens = in, .sampled = 1, .attention_pairs = prompt_pairs});
  EXPECT_NEAR(*r->records[0].ttft_s(), first, 1e-12);
  // Iteration 2: the first request's decode (context in) and the other prompts.
  const double second = cost.Seconds({.tokens = 1 + (b - 1) * in, .sampled = b,
                                      .attention_pairs = (in + 1) + (b - 1) * prompt_pairs});
  for (int i = 1; i < b; ++i) EXPECT_NEAR(*r->records[i].ttft_s(), first + second, 1e-12);
  // Iteration k >= 3: b decodes, the first request one token further than the others.
  double t = first + second;
  for (int k = 1; k < out - 1; ++k) {
    const int64_t pairs = int64_t{b} * (in + k) + 1;  // keys in + k (b - 1 of them) and in + k + 1
    t += cost.Seconds({.tokens = b, .sampled = b, .attention_pairs = pairs});
    for (int i = 1; i < b; ++i) EXPECT_NEAR(r->records[i].chunk_s[k], t, 1e-9) << "request " << i << " token " << k;
  }
  // The first request has finished: the last iteration decodes b - 1.
  t += cost.Seconds({.tokens = b - 1, .sampled = b - 1, .attention_pairs = int64_t{b - 1} * (in + out - 1)});
  for (int i = 1; i < b; ++i) EXPECT_NEAR(r->records[i].end_s, t, 1e-9);
  EXPECT_EQ(r->workers[0].max_running, b);
}

// 1P1D: TTFT = prefill + KV transfer of the prompt + the message hops; then decode iterations
// on the decode worker.
TEST(Simulator, DisaggregatedRequestPaysPrefillTransferAndHops) {
  IterationCost cost{.fixed_s = 0.004, .per_token_s = 0.0002, .per_sample_s = 0.001};
  SimCluster c = Cluster({Worker(Role::kPrefill, cost), Worker(Role::kDecode, cost)});
  c.transfer = {0.002, 1e6, "test"};  // 1 MB/s: 100 tokens x 1000 bytes = 0.1 s
  c.hop_s = 0.001;
  const int in = 100, out = 5;
  auto r = Simulate(c, {{0, in, out, 0}});
  ASSERT_TRUE(r.ok()) << r.status();
  const auto& rec = r->records.at(0);
  ASSERT_TRUE(rec.ok()) << rec.error;
  const double prefill = cost.Seconds({.tokens = in, .sampled = 1});
  const double transfer = 0.002 + in * 1000 / 1e6;
  // Reserve (1 hop) + its answer and the Prefill call (2) + the answer with the first token (1).
  EXPECT_NEAR(*rec.ttft_s(), 4 * c.hop_s + prefill + transfer, 1e-9);
  const double decode = cost.Seconds({.tokens = 1, .sampled = 1});
  // Decode starts 2 hops after the hand-off: TPOT = decode + 2 hops / (out - 1).
  EXPECT_NEAR(*rec.tpot_s(), decode + 2 * c.hop_s / (out - 1), 1e-9);
  EXPECT_EQ(r->workers[0].prefill_tokens, in);
  EXPECT_EQ(r->workers[1].prefill_tokens, 0);
  EXPECT_EQ(r->workers[1].decode_tokens, out - 1);
}

TEST(Simulator, ShortPromptsPrefillLocallyUnderTheThreshold) {
  IterationCost cost{.fixed_s = 0.004, .per_token_s = 0.0002};
  SimCluster c = Cluster({Worker(Role::kPrefill, cost), Worker(Role::kDecode, cost)});
  c.local_prefill_threshold = 64;
  auto r = Simulate(c, {{0, 32, 3, 0}, {1, 200, 3, 0}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->workers[0].prefill_tokens, 200);  // only the long prompt went to the prefill worker
  EXPECT_EQ(r->workers[1].prefill_tokens, 32);
}

// The router's cost rule, simulated: the prefill rate is measured from the first request (100
// tokens in ~1 s), then a burst of five 100-token prompts 10 ms apart meets a 2.5 s TTFT SLO:
// the first two fit the prefill worker's queue (~1 s, ~2 s), the next two would wait ~3 s there
// and go to the decode worker (~1 s, ~2 s ahead there), the last would miss on both sides and
// stays disaggregated.
TEST(Simulator, CostRuleSendsPromptsLocallyWhenThePrefillQueueWouldMissTheSlo) {
  IterationCost cost{.fixed_s = 0.004, .per_token_s = 0.01};
  SimCluster c = Cluster({Worker(Role::kPrefill, cost), Worker(Role::kDecode, cost)});
  std::vector<SimRequest> reqs = {{0, 100, 2, 0}};
  for (int i = 0; i < 5; ++i) reqs.push_back({2.0 + 0.01 * i, 100, 2, 0});
  c.local_prefill_ttft_slo_s = 2.5;
  auto r = Simulate(c, reqs);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->workers[1].local_by_cost, 2);
  EXPECT_EQ(r->workers[1].prefill_tokens, 200);
  EXPECT_EQ(r->workers[0].prefill_tokens, 400);
  // The rule off: everything through the prefill worker, and the last of the burst waits longest.
  c.local_prefill_ttft_slo_s = 0;
  auto off = Simulate(c, reqs);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->workers[1].local_by_cost, 0);
  EXPECT_EQ(off->workers[0].prefill_tokens, 600);
  EXPECT_GT(*off->records.back().ttft_s(), 4.5);
  EXPECT_LT(*r->records[3].ttft_s(), 1.5) << "the first one sent locally starts at once";
}

// A decode worker whose KV holds one request at a time: the second waits for the first to
// finish (no overcommit), and with a short queue timeout a third is refused with 429.
TEST(Simulator, KvCapacityMakesRequestsWaitAndTimesThemOut) {
  IterationCost cost{.fixed_s = 0.02};
  // 10 blocks of 16 = 160 tokens: one request of 100 + 50 fits, two do not. Each takes ~1 s;
  // the router retries a reservation after 10, 30, 70, ... 1110, 1310, 1510 ms.
  SimCluster c = Cluster({Worker(Role::kPrefill, cost), Worker(Role::kDecode, cost, 10)});
  c.queue_timeout_s = 1.5;
  auto r = Simulate(c, {{0, 100, 50, 0}, {0.001, 100, 50, 0}, {0.002, 100, 50, 0}});
  ASSERT_TRUE(r.ok()) << r.status();
  const auto& a = r->records[0];
  const auto& b = r->records[1];
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok()) << b.error;
  EXPECT_GE(b.scheduled_s + *b.ttft_s(), a.scheduled_s + a.end_s);  // b's prefill began after a ended
  const auto& third = r->records[2];
  EXPECT_EQ(third.failure, bench::FailureKind::kHttpStatus);
  EXPECT_EQ(third.http_status, 429);
}

TEST(Simulator, RejectsClustersAndRequestsThatCannotWork) {
  IterationCost cost{.fixed_s = 0.01};
  EXPECT_FALSE(Simulate(Cluster({Worker(Role::kPrefill, cost)}), {{0, 10, 2, 0}}).ok());
  EXPECT_FALSE(Simulate(Cluster({Worker(Role::kMixed, cost, 2)}), {{0, 100, 2, 0}}).ok());  // 32 tokens of KV
  EXPECT_FALSE(Simulate(Cluster({Worker(Role::kMixed, cost)}), {{0, 0, 2, 0}}).ok());
}

TEST(Simulator, SameInputsGiveTheSameResult) {
  IterationCost cost{.fixed_s = 0.005, .per_token_s = 0.001, .per_sample_s = 0.0005};
  SimCluster c = Cluster({Worker(Role::kPrefill, cost), Worker(Role::kPrefill, cost), Worker(Role::kDecode, cost)});
  bench::Rng rng(5);
  std::vector<SimRequest> reqs;
  int i = 0;
  for (double t : bench::GammaArrivals({20, 1.0}, 300, rng)) reqs.push_back({t, 50 + (i * 37) % 400, 5 + (i++ * 13) % 60, 0});
  auto a = Simulate(c, reqs);
  auto b = Simulate(c, reqs);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->records.size(), b->records.size());
  for (size_t k = 0; k < a->records.size(); ++k) EXPECT_EQ(a->records[k].chunk_s, b->records[k].chunk_s);
  // Both prefill workers got work (placement spreads by queued tokens).
  EXPECT_GT(a->workers[0].prefill_tokens, 0);
  EXPECT_GT(a->workers[1].prefill_tokens, 0);
}

}  // namespace
}  // namespace tandem::sim

namespace tandem::sim {
namespace {

// The goodput search records only first-token times: TTFT, TPOT and the SLO verdict must be
// the same as with every token recorded.
TEST(Simulator, FirstTokenOnlyRecordsGiveTheSameTtftAndTpot) {
  IterationCost cost{.fixed_s = 0.005, .per_token_s = 0.001, .per_sample_s = 0.0005};
  SimCluster c = Cluster({Worker(Role::kPrefill, cost), Worker(Role::kDecode, cost)});
  bench::Rng rng(9);
  std::vector<SimRequest> reqs;
  int i = 0;
  for (double t : bench::GammaArrivals({10, 1.0}, 200, rng)) reqs.push_back({t, 40 + (i * 53) % 300, 2 + (i++ * 7) % 40, 0});
  auto full = Simulate(c, reqs);
  c.record_every_token = false;
  auto lean = Simulate(c, reqs);
  ASSERT_TRUE(full.ok() && lean.ok());
  bench::SloSpec slo;
  slo.ttft_ms = 300;
  slo.tpot_ms = 20;
  int good = 0;
  for (size_t k = 0; k < reqs.size(); ++k) {
    const auto& a = full->records[k];
    const auto& b = lean->records[k];
    EXPECT_EQ(b.chunk_s.size(), 1u);
    EXPECT_EQ(a.output_tokens, b.output_tokens);
    EXPECT_DOUBLE_EQ(*a.ttft_s(), *b.ttft_s());
    if (a.output_tokens > 1) EXPECT_DOUBLE_EQ(*a.tpot_s(), *b.tpot_s());
    EXPECT_EQ(bench::MeetsSlo(a, slo), bench::MeetsSlo(b, slo));
    good += bench::MeetsSlo(a, slo) ? 1 : 0;
  }
  EXPECT_GT(good, 0);
  EXPECT_LT(good, static_cast<int>(reqs.size()));  // the SLO separates requests: the check means something
}

}  // namespace
}  // namespace tandem::sim
