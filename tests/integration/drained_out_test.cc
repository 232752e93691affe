// A cluster drained out from outside (every decode worker drained through RouterAdmin) serves
// nothing and nothing would undo it; the controller's guard restores it after its grace, and
// leaves the actuator's own drains alone.
#include "controller/loop/drained_out_guard.h"

#include <thread>

#include "gtest/gtest.h"
#include "testing/test_cluster.h"
#include "testing/tiny_model.h"

namespace tandem::testing {
namespace {

// An actuator that changes nothing and claims the drains it is told about.
class FixedActuator final : public controller::Actuator {
 public:
  std::string name() const override { return "fixed"; }
  absl::StatusOr<controller::InstanceCounts> Current() override { return controller::InstanceCounts{1, 1}; }
  absl::Status Apply(const controller::InstanceCounts&) override { return absl::OkStatus(); }
  std::vector<std::string> Draining() const override { return mine; }
  std::vector<std::string> mine;
};

bool WaitFor(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

TEST(DrainedOutTest, EveryDecodeWorkerDrainedIsRestoredAfterTheGraceButNotTheActuatorsOwn) {
  ClusterSpec spec;
  spec.model_path = TinyModelPath();
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  TestCluster& cluster = **c;
  const int decode = cluster.FindWorker(v1::WORKER_ROLE_DECODE);
  const std::string id = cluster.worker(decode).worker_id();
  controller::AdminClient admin(StrCat("127.0.0.1:", cluster.router().internal_port()), cluster.cluster_token());
  ASSERT_TRUE(admin.DrainWorker(id).ok());
  ASSERT_TRUE(WaitFor([&] { return !cluster.router().Ready(); }));
  auto refused = cluster.Generate({5, 6, 7}, SamplingParams{.temperature = 0, .max_tokens = 2});
  EXPECT_FALSE(refused.status.ok()) << "a drained-out cluster served a request";

  FixedActuator actuator;
  controller::DrainedOutGuard guard(&admin, &actuator, absl::Seconds(5));
  const absl::Time t0 = absl::Now();
  actuator.mine = {id};  // the actuator's own drain: never touched
  EXPECT_TRUE(guard.Check(t0)->empty());
  EXPECT_TRUE(guard.Check(t0 + absl::Minutes(1))->empty());
  actuator.mine.clear();  // now it is nobody's
  EXPECT_TRUE(guard.Check(t0 + absl::Minutes(1))->empty()) << "restored before its grace";
  auto restored = guard.Check(t0 + absl::Minutes(1) + absl::Seconds(6));
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(*restored, std::vector<std::string>{id});
  ASSERT_TRUE(WaitFor([&] { return cluster.router().Ready(); }));
  auto served = cluster.Generate({5, 6, 7}, SamplingParams{.temperature = 0, .max_tokens = 2});
  EXPECT_TRUE(served.status.ok()) << served.status.error_message();
  EXPECT_EQ(cluster.worker(decode).service().role(), v1::WORKER_ROLE_DECODE);
}

}  // namespace
}  // namespace tandem::testing
