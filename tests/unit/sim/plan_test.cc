// Cluster shapes, and the goodput of a shape found by simulation on a case with a known
// capacity.
#include "sim/plan.h"

#include "bench/workload.h"
#include "common/strings.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::sim {
namespace {

TEST(ClusterShape, NamesParseBack) {
  for (const char* name : {"colocated", "1p1d", "3p5d", "4mixed"}) {
    auto s = ParseClusterShape(name);
    ASSERT_TRUE(s.ok()) << name;
    EXPECT_EQ(s->Name(), name);
  }
  EXPECT_EQ(ParseClusterShape("2p1d")->prefill, 2);
  for (const char* bad : {"", "0p1d", "1p0d", "p1d", "xmixed", "1p1", "mixed", "0mixed"}) {
    EXPECT_FALSE(ParseClusterShape(bad).ok()) << bad;
  }
}

TEST(ClusterShape, CandidatesCoverEverySplitOfSmallBudgets) {
  std::vector<std::string> names;
  for (const ClusterShape& s : CandidateShapes(4, /*cpu_budget=*/true)) names.push_back(s.Name());
  EXPECT_EQ(names, (std::vector<std::string>{"colocated", "1p3d", "2p2d", "3p1d"}));
  EXPECT_EQ(CandidateShapes(4, false).front().Name(), "4mixed");
  // 64 workers: about 16 splits, the extremes included, then refinement around the best.
  const auto big = CandidateShapes(64, false);
  EXPECT_LE(big.size(), 20u);
  EXPECT_EQ(big.back().prefill, 63);
  const auto refined = RefineSplits(64, big[3], big);
  ASSERT_FALSE(refined.empty());
  for (const ClusterShape& s : refined) EXPECT_EQ(s.workers(), 64);
}

Profile OneEntryProfile(IterationCost cost) {
  Profile p;
  p.model.kv_bytes_per_token = 1000;
  WorkerProfile w;
  w.cost = cost;
  p.workers.push_back(w);
  return p;
}

TEST(Plan, ThreadsFollowTheCpuBudget) {
  Profile p = OneEntryProfile({.fixed_s = 0.01});
  p.workers[0].threads = 1;
  WorkerProfile two = p.workers[0];
  two.threads = 2;
  two.cost.fixed_s = 0.005;
  p.workers.push_back(two);
  PlanSettings s;
  s.profile = &p;
  s.cpus = 2;
  EXPECT_EQ(ThreadsPerWorker(*ParseClusterShape("colocated"), s), 2);
  EXPECT_EQ(ThreadsPerWorker(*ParseClusterShape("1p1d"), s), 1);
  EXPECT_EQ(ThreadsPerWorker(*ParseClusterShape("2p2d"), s), 1);  // at least one each
  auto colocated = BuildCluster(*ParseClusterShape("colocated"), s);
  auto split = BuildCluster(*ParseClusterShape("1p1d"), s);
  ASSERT_TRUE(colocated.ok() && split.ok());
  EXPECT_DOUBLE_EQ(colocated->workers.at(0).cost.fixed_s, 0.005);  // the 2-thread entry
  EXPECT_DOUBLE_EQ(split->workers.at(0).cost.fixed_s, 0.01);
  EXPECT_EQ(split->workers.at(0).role, Role::kPrefill);
  EXPECT_EQ(split->workers.at(1).role, Role::kDecode);
  // 256 MiB of 16-token blocks of 16,000 bytes.
  EXPECT_EQ(split->workers.at(0).num_blocks, (256LL << 20) / 16000);
}

// One mixed worker serving each request in exactly D seconds (budget = one prompt, one output
// token). With nearly periodic arrivals (burstiness 100) nothing queues below 1/D req/s and the
// queue grows without bound above it, so the goodput at a TTFT SLO of 3D is 1/D.
TEST(Plan, GoodputOfADeterministicServerIsItsServiceRate) {
  const double d = 0.05;
  const int prompt = 128;
  Profile p = OneEntryProfile({.per_token_s = d / prompt});
  PlanSettings s;
  s.profile = &p;
  s.token_budget = prompt;
  GoodputSearchSettings g;
  g.traffic.num_prompts = 600;
  g.traffic.process.burstiness = 100;
  auto w = bench::ParseWorkload(StrCat("fixed:in=", prompt, ",out=1"), bench::WorkloadDefaults());
  ASSERT_TRUE(w.ok()) << w.status();
  g.traffic.workload = *w;
  g.slo.ttft_ms = 3 * d * 1000;
  g.rate_min = 1;
  g.iterations = 10;
  auto r = FindGoodput(*ParseClusterShape("colocated"), s, g);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->goodput.has_value());
  EXPECT_NEAR(*r->goodput, 1 / d, 0.05 / d);
  EXPECT_GT(r->simulations, 5);
}

TEST(Plan, RequestsComeFromABenchResultFile) {
  nlohmann::json result = {{"requests",
                            {{{"scheduled_s", 0.5}, {"input_tokens", 10}, {"output_tokens_requested", 4}},
                             {{"scheduled_s", 0.1}, {"input_tokens", 20}, {"output_tokens_requested", 2}, {"phase", 1}}}}};
  auto r = RequestsFromBenchResult(result);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_DOUBLE_EQ((*r)[0].arrival_s, 0.1);  // in time order
  EXPECT_EQ((*r)[0].phase, 1);
  EXPECT_EQ((*r)[1].output_tokens, 4);
  EXPECT_FALSE(RequestsFromBenchResult(nlohmann::json{{"summary", {}}}).ok());
}

}  // namespace
}  // namespace tandem::sim
