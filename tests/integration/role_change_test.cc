// The controller's role-change actuator against a real cluster: it drains a worker through the
// router's admin API and flips its role, with requests in flight, without losing any.
#include <mutex>
#include <thread>

#include "common/strings.h"
#include "controller/loop/admin_client.h"
#include "controller/loop/role_change_actuator.h"
#include "gtest/gtest.h"
#include "testing/test_cluster.h"
#include "testing/tiny_model.h"

namespace tandem::testing {
namespace {

SamplingParams Greedy(int max_tokens) {
  SamplingParams s;
  s.temperature = 0;
  s.max_tokens = max_tokens;
  s.ignore_eos = true;
  return s;
}

absl::StatusOr<controller::InstanceCounts> WaitForCounts(controller::Actuator& a, controller::InstanceCounts want) {
  absl::StatusOr<controller::InstanceCounts> got;
  for (int i = 0; i < 100; ++i) {
    got = a.Current();
    if (got.ok() && *got == want) return got;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return got;
}

TEST(RoleChangeTest, FlipsADrainedDecodeWorkerToPrefillWithRequestsInFlight) {
  ClusterSpec spec;
  spec.model_path = TinyModelPath();
  spec.prefill = 1;
  spec.decode = 2;
  spec.token_budget = 32;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  controller::AdminClient admin(StrCat("127.0.0.1:", (*c)->router().internal_port()), (*c)->cluster_token());
  controller::RoleChangeActuator actuator(&admin, absl::Seconds(30));
  auto before = actuator.Current();
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(*before, (controller::InstanceCounts{1, 2}));

  // A different total is not this actuator's to make.
  EXPECT_EQ(actuator.Apply({1, 1}).code(), absl::StatusCode::kFailedPrecondition);

  // Requests keep flowing while a decode worker drains and becomes a prefill worker.
  const std::vector<int32_t> prompt = {5, 9, 14, 3, 77, 31, 8, 8, 120, 41, 6, 2, 19, 33, 4, 90};
  const auto expected = (*c)->Generate(prompt, Greedy(40));
  ASSERT_TRUE(expected.status.ok()) << expected.status.error_message();
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::mutex mu;
  std::string first_failure;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      while (!stop.load()) {
        auto r = (*c)->Generate(prompt, Greedy(40));
        const bool good = r.status.ok() && r.tokens == expected.tokens;
        (good ? ok : failed).fetch_add(1);
        if (!good) {
          std::lock_guard<std::mutex> lock(mu);
          if (first_failure.empty()) {
            first_failure = r.status.ok() ? "different tokens" : r.status.error_message();
          }
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const absl::Status applied = actuator.Apply({2, 1});
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop.store(true);
  for (auto& t : clients) t.join();
  ASSERT_TRUE(applied.ok()) << applied;
  auto after = WaitForCounts(actuator, {2, 1});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, (controller::InstanceCounts{2, 1}));
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(failed.load(), 0) << first_failure;
  // The new prefill worker takes prompts: every request after the flip still comes out the same.
  for (int i = 0; i < 4; ++i) {
    auto r = (*c)->Generate(prompt, Greedy(40));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, expected.tokens);
  }
  // And back: idempotent when already there.
  EXPECT_TRUE(actuator.Apply({2, 1}).ok());
}

}  // namespace
}  // namespace tandem::testing
