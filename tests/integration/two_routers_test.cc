// Two routers in front of one set of workers (issue "no single router"): every worker registers
// with both, either router serves any request with the same answer, a drain or role change made
// through one reaches the other (through the worker's own heartbeats), and stopping one router
// under load fails only the requests it held while the other keeps serving.
#include <atomic>
#include <thread>
#include <vector>

#include "controller/loop/admin_client.h"
#include "gtest/gtest.h"
#include "testing/test_cluster.h"
#include "testing/tiny_model.h"

namespace tandem::testing {
namespace {

constexpr int kMaxTokens = 48;
constexpr int kLongTokens = 900;  // with the 40-token prompt, near the tiny model's 1024-token context

SamplingParams Greedy(int max_tokens = kMaxTokens) {
  SamplingParams s;
  s.temperature = 0;
  s.max_tokens = max_tokens;
  s.ignore_eos = true;
  return s;
}

std::vector<int32_t> Prompt(int seed) {
  std::vector<int32_t> p;
  for (int i = 0; i < 40; ++i) p.push_back(5 + (seed * 31 + i * 7) % 200);
  return p;
}

std::unique_ptr<TestCluster> StartTwoRouters() {
  ClusterSpec spec;
  spec.model_path = TinyModelPath();
  spec.routers = 2;
  spec.prefill = 1;
  spec.decode = 2;
  auto c = TestCluster::Start(spec);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

TEST(TwoRoutersTest, EitherRouterServesEveryWorkerWithTheSameAnswer) {
  auto cluster = StartTwoRouters();
  ASSERT_NE(cluster, nullptr);
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(cluster->router(r).registry().CountRole(v1::WORKER_ROLE_PREFILL, false), 1) << "router " << r;
    EXPECT_EQ(cluster->router(r).registry().CountRole(v1::WORKER_ROLE_DECODE, false), 2) << "router " << r;
  }
  const GenerateResult a = cluster->Generate(Prompt(1), Greedy(), absl::Seconds(120), "", /*router=*/0);
  const GenerateResult b = cluster->Generate(Prompt(1), Greedy(), absl::Seconds(120), "", /*router=*/1);
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  EXPECT_EQ(a.tokens.size(), static_cast<size_t>(kMaxTokens));
  EXPECT_EQ(a.tokens, b.tokens);

  // A drain through router 0's admin API reaches router 1 by the worker's next heartbeat.
  controller::AdminClient admin(absl::StrCat("127.0.0.1:", cluster->router(0).internal_port()),
                                cluster->cluster_token());
  const int decode = cluster->FindWorker(v1::WORKER_ROLE_DECODE);
  ASSERT_TRUE(admin.DrainWorker(cluster->worker(decode).worker_id()).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (cluster->router(1).registry().CountRole(v1::WORKER_ROLE_DECODE, /*draining=*/true) != 1 &&
         absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(cluster->router(1).registry().CountRole(v1::WORKER_ROLE_DECODE, /*draining=*/true), 1)
      << "router 1 still sends work to the worker drained through router 0";
}

TEST(TwoRoutersTest, StoppingOneRouterUnderLoadFailsOnlyTheRequestsItHeld) {
  auto cluster = StartTwoRouters();
  ASSERT_NE(cluster, nullptr);
  const GenerateResult reference = cluster->Generate(Prompt(7), Greedy(), absl::Seconds(120), "", 0);
  ASSERT_TRUE(reference.status.ok()) << reference.status.error_message();

  // Four clients on each router, each sending greedy requests one after another: router 0's until
  // told to stop, router 1's (longer ones) until one fails.
  std::atomic<bool> stop{false};
  std::vector<std::vector<GenerateResult>> results(8);
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      const int router = i % 2;
      while (!stop.load()) {
        results[i].push_back(cluster->Generate(Prompt(7), Greedy(router == 1 ? kLongTokens : kMaxTokens), absl::Seconds(120),
                                               "", router));
        if (router == 1 && !results[i].back().status.ok()) return;
      }
    });
  }
  // Stop router 1 while it carries requests (they may still end within its 100 ms shutdown grace).
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  for (;;) {
    auto page = cluster->RouterMetrics(1);
    ASSERT_TRUE(page.ok()) << page.status();
    auto inflight = MetricValue(*page, "tandem_router_inflight_requests");
    if (inflight.ok() && *inflight >= 2) break;
    ASSERT_LT(absl::Now(), give_up) << "router 1 never had two requests in flight";
  }
  cluster->StopRouter(1);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // router 0 goes on serving
  stop.store(true);
  for (auto& t : clients) t.join();

  int ok_on_0 = 0, failed_on_1 = 0;
  for (int i = 0; i < 8; ++i) {
    for (const GenerateResult& r : results[i]) {
      if (i % 2 == 0) {
        EXPECT_TRUE(r.status.ok()) << "router 0's request failed: " << r.status.error_message();
        EXPECT_EQ(r.tokens, reference.tokens);
        ok_on_0 += r.status.ok();
      } else if (!r.status.ok()) {
        // Cut mid-stream, or sent after the stop: the client is told, never given a wrong answer.
        EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
        ++failed_on_1;
      } else {
        EXPECT_EQ(r.tokens.size(), static_cast<size_t>(kLongTokens));  // ended before the stop, whole
      }
    }
  }
  EXPECT_GT(ok_on_0, 4);
  EXPECT_EQ(failed_on_1, 4) << "each of router 1's clients ends with one failed request";

  // The workers stay registered (with router 0) and serve new requests at once.
  for (int i = 0; i < cluster->num_workers(); ++i) EXPECT_TRUE(cluster->worker(i).Ready()) << "worker " << i;
  const GenerateResult after = cluster->Generate(Prompt(7), Greedy(), absl::Seconds(120), "", 0);
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.tokens, reference.tokens);
}

}  // namespace
}  // namespace tandem::testing
