// Liveness that does not lie: a prefill worker whose engine is busy with one long prefill step
// (longer than the router's heartbeat expiry) keeps its registration, because heartbeats leave
// from their own thread with the load the engine loop last cached.
#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include "gtest/gtest.h"
#include "synth/synthetic_model.h"
#include "testing/test_cluster.h"
#include "testing/tiny_model.h"

namespace tandem::testing {
namespace {

TEST(LivenessTest, APrefillWorkerBusierThanTheHeartbeatExpiryKeepsItsRegistration) {
  // The bundled model's shape with 8 layers: one 3,000-token prompt is one engine step of
  // several seconds on one thread of the 2-core CI machine.
  auto model = *synth::SyntheticModelSpec::Named("smollm2-135m");
  model.num_layers = 8;
  ClusterSpec spec;
  spec.model_path = TinyModelPath(model);
  spec.token_budget = 4096;
  spec.threads = 1;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  TestCluster& cluster = **c;
  const std::string prefill = cluster.worker(cluster.FindWorker(v1::WORKER_ROLE_PREFILL)).worker_id();
  const absl::Duration expiry = router::RouterOptions().worker_expiry;

  std::mt19937 rng(11);
  std::vector<int32_t> prompt(3000);
  for (auto& t : prompt) t = 3 + static_cast<int32_t>(rng() % 250);
  GenerateResult result;
  absl::Duration took;
  std::atomic<bool> done{false};
  std::thread client([&] {
    const absl::Time start = absl::Now();
    result = cluster.Generate(prompt, SamplingParams{.temperature = 0, .max_tokens = 1});
    took = absl::Now() - start;
    done = true;
  });
  double worst_silence = 0;  // seconds since the prefill worker's last heartbeat, at worst
  int polls = 0, missing = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  while (!done && absl::Now() < deadline) {
    ++polls;
    bool present = false;
    for (const auto& w : cluster.router().registry().List()) {
      if (w.info.worker_id() != prefill) continue;
      present = true;
      worst_silence = std::max(worst_silence, w.seconds_since_heartbeat);
    }
    missing += !present;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  client.join();
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  std::printf("prefill of %zu tokens took %.1f s; %d polls, worst heartbeat silence %.2f s, %d polls without it\n",
              prompt.size(), absl::ToDoubleSeconds(took), polls, worst_silence, missing);
  if (took < expiry) GTEST_SKIP() << "this machine prefilled faster than the heartbeat expiry: nothing to show";
  EXPECT_EQ(missing, 0) << "the busy prefill worker lost its registration";
  EXPECT_LT(worst_silence, absl::ToDoubleSeconds(expiry) / 2) << "heartbeats stalled behind the engine step";
}

}  // namespace
}  // namespace tandem::testing
