// The controller's local actuator with real `tandem worker` processes registered with a live
// router: a rebalance flips a worker or replaces it as --rebalance-by says (by cost: an idle one
// flips), and one that arrives as two decisions still flips the worker instead of replacing it.
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <memory>
#include <thread>

#include "common/strings.h"
#include "controller/loop/admin_client.h"
#include "controller/loop/local_actuator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/test_cluster.h"
#include "testing/tiny_model.h"

namespace tandem::testing {
namespace {

using controller::InstanceCounts;
using controller::LocalActuator;

// Waits until `pred(processes)` holds (up to 30 s); returns the last processes seen.
template <typename Pred>
std::vector<LocalActuator::Process> WaitFor(LocalActuator& a, Pred pred) {
  std::vector<LocalActuator::Process> ps;
  for (int i = 0; i < 300; ++i) {
    a.TakeUnexpectedExits();
    ps = a.Processes();
    if (pred(ps)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return ps;
}

bool RegisteredAs(controller::AdminClient& admin, const std::string& id, v1::WorkerRole role) {
  auto workers = admin.ListWorkers();
  if (!workers.ok()) return false;
  for (const v1::WorkerStatus& w : *workers) {
    if (w.info().worker_id() == id) return w.info().role() == role && !w.load().draining();
  }
  return false;
}

struct ActuatorCluster {
  std::unique_ptr<TestCluster> cluster;
  std::unique_ptr<controller::AdminClient> admin;
  std::unique_ptr<LocalActuator> actuator;
  LocalActuator::Process started;
};

// A router whose own worker is a mixed one (the actuator's prefill-0 and decode-0 must not clash
// with in-process ids), and a local actuator with role changes that has started one prefill
// worker, registered.
void StartWithOnePrefillWorker(ActuatorCluster& ac,
                               controller::RebalanceBy by = controller::RebalanceBy::kFlip) {
  ClusterSpec spec;
  spec.model_path = TinyModelPath();
  spec.prefill = 0;
  spec.decode = 0;
  spec.mixed = 1;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  ac.cluster = *std::move(c);
  const std::string router = StrCat("127.0.0.1:", ac.cluster->router().internal_port());
  ::setenv("TANDEM_CLUSTER_TOKEN", ac.cluster->cluster_token().c_str(), 1);
  ac.admin = std::make_unique<controller::AdminClient>(router, ac.cluster->cluster_token());
  controller::LocalActuatorOptions o;
  o.tandem_binary = StrCat(TANDEM_BINARY_DIR, "/tandem");
  o.worker_flags = {"--router", router, "--model", spec.model_path, "--threads", "1", "--kv-cache-mb", "16"};
  o.rebalance_by = by;
  ac.actuator = std::make_unique<LocalActuator>(o, ac.admin.get());
  ASSERT_TRUE(ac.actuator->StartAndWait(controller::Role::kPrefill).ok());
  auto ps = ac.actuator->Processes();
  ASSERT_EQ(ps.size(), 1u);
  ac.started = ps[0];
  for (int i = 0; i < 100 && !RegisteredAs(*ac.admin, ac.started.worker_id, v1::WORKER_ROLE_PREFILL); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(RegisteredAs(*ac.admin, ac.started.worker_id, v1::WORKER_ROLE_PREFILL));
}

// The one process is the worker started first, now registered as a decode worker.
void ExpectFlippedNotReplaced(ActuatorCluster& ac) {
  auto ps = WaitFor(*ac.actuator, [&](const auto& p) {
    return p.size() == 1 && p[0].role == "decode" &&
           RegisteredAs(*ac.admin, ac.started.worker_id, v1::WORKER_ROLE_DECODE);
  });
  ASSERT_EQ(ps.size(), 1u) << "a second process was started instead of flipping the draining one";
  EXPECT_EQ(ps[0].pid, ac.started.pid);
  EXPECT_EQ(ps[0].worker_id, ac.started.worker_id);
  EXPECT_EQ(ps[0].role, "decode");
  EXPECT_TRUE(RegisteredAs(*ac.admin, ac.started.worker_id, v1::WORKER_ROLE_DECODE));
  EXPECT_TRUE(ac.actuator->TakeUnexpectedExits().empty());
}

TEST(LocalActuatorTest, AScaleOutClaimsAWorkerStillDrainingToStopAndFlipsIt) {
  ActuatorCluster ac;
  ASSERT_NO_FATAL_FAILURE(StartWithOnePrefillWorker(ac));
  // The worker is stopped (SIGSTOP), so its drain cannot end before the second decision comes.
  ASSERT_EQ(::kill(ac.started.pid, SIGSTOP), 0);
  ASSERT_TRUE(ac.actuator->Apply({0, 0}).ok());  // decision 1: one prefill worker fewer
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(ac.actuator->Apply({0, 1}).ok());  // decision 2: one decode worker more
  auto now = ac.actuator->Current();
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(*now, (InstanceCounts{0, 1}));
  ASSERT_EQ(::kill(ac.started.pid, SIGCONT), 0);
  ExpectFlippedNotReplaced(ac);
  ac.actuator->StopAll();
}

// An idle worker drains at once; the next decision comes a controller tick later. Seen in CI:
// the drained prefill worker had stopped 150 ms after the scale-in, 1 s before the scale-out.
TEST(LocalActuatorTest, ADrainedWorkerWaitsForAFollowingScaleOutBeforeItStops) {
  ActuatorCluster ac;
  ASSERT_NO_FATAL_FAILURE(StartWithOnePrefillWorker(ac));
  ASSERT_TRUE(ac.actuator->Apply({0, 0}).ok());
  std::this_thread::sleep_for(std::chrono::seconds(1));
  ASSERT_TRUE(ac.actuator->Apply({0, 1}).ok());
  ExpectFlippedNotReplaced(ac);
  ac.actuator->StopAll();
}

// By cost, an idle worker flips: its drain ends at once, a new process would need its start-up
// (measured when the first worker started). The report says so with the figures.
TEST(LocalActuatorTest, ByCostAnIdleWorkerFlipsAndTheReportSaysWhy) {
  ActuatorCluster ac;
  ASSERT_NO_FATAL_FAILURE(StartWithOnePrefillWorker(ac, controller::RebalanceBy::kCost));
  ASSERT_TRUE(ac.actuator->costs().start_s().has_value());
  EXPECT_GT(*ac.actuator->costs().start_s(), 0);
  EXPECT_EQ(ac.actuator->name(), "local+cost");
  ASSERT_TRUE(ac.actuator->Apply({0, 1}).ok());  // one decision: prefill → decode
  ExpectFlippedNotReplaced(ac);
  const controller::ActuationReport report = ac.actuator->TakeReport();
  EXPECT_EQ(report.flips, 1);
  EXPECT_EQ(report.restarts, 0);
  ASSERT_EQ(report.notes.size(), 1u);
  EXPECT_THAT(report.notes[0], ::testing::HasSubstr("prefill → decode by flip, ready sooner: drain 0.0 s, start-up "));
  EXPECT_THAT(report.notes[0], ::testing::HasSubstr("(it is idle)"));
  EXPECT_TRUE(ac.actuator->TakeReport().notes.empty());  // taken once
  ac.actuator->StopAll();
}

// With --rebalance-by restart the same move stops the worker and starts a new one.
TEST(LocalActuatorTest, ByRestartTheWorkerIsReplaced) {
  ActuatorCluster ac;
  ASSERT_NO_FATAL_FAILURE(StartWithOnePrefillWorker(ac, controller::RebalanceBy::kRestart));
  ASSERT_TRUE(ac.actuator->Apply({0, 1}).ok());
  auto ps = WaitFor(*ac.actuator, [&](const auto& p) { return p.size() == 1 && p[0].role == "decode"; });
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_NE(ps[0].pid, ac.started.pid);
  EXPECT_NE(ps[0].worker_id, ac.started.worker_id);
  const controller::ActuationReport report = ac.actuator->TakeReport();
  EXPECT_EQ(report.flips, 0);
  EXPECT_EQ(report.restarts, 1);
  ASSERT_EQ(report.notes.size(), 1u);
  EXPECT_THAT(report.notes[0], ::testing::HasSubstr("by restart (--rebalance-by restart)"));
  ac.actuator->StopAll();
}

}  // namespace
}  // namespace tandem::testing
