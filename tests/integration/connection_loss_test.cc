// A worker process that dies is dropped by the router as soon as its connection closes, not
// after the heartbeat expiry; one that is only stopped (SIGSTOP) keeps its registration. The
// router's heartbeat expiry is a minute here, so only the connection can explain a quick drop.
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "common/child_process.h"
#include "common/strings.h"
#include "gtest/gtest.h"
#include "testing/test_cluster.h"
#include "testing/tiny_model.h"

namespace tandem::testing {
namespace {

constexpr absl::Duration kExpiry = absl::Seconds(60);

bool Registered(TestCluster& c, const std::string& id) {
  for (const auto& w : c.router().registry().List()) {
    if (w.info.worker_id() == id) return true;
  }
  return false;
}

// Waits up to `limit` for Registered(c, id) == want; returns how long it took, or nullopt.
std::optional<absl::Duration> WaitRegistered(TestCluster& c, const std::string& id, bool want, absl::Duration limit) {
  const absl::Time start = absl::Now();
  while (absl::Now() - start < limit) {
    if (Registered(c, id) == want) return absl::Now() - start;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::nullopt;
}

struct ProcessCluster {
  std::unique_ptr<TestCluster> cluster;
  std::unique_ptr<ChildProcess> worker;  // a `tandem worker --role decode` process
  const std::string id = "decode-process";
};

// An in-process mixed worker, plus a decode worker process (which prefills locally: the
// cluster has no prefill worker).
void Start(ProcessCluster& pc) {
  ClusterSpec spec;
  spec.model_path = TinyModelPath();
  spec.prefill = 0;
  spec.decode = 0;
  spec.mixed = 1;
  spec.worker_expiry = kExpiry;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  pc.cluster = *std::move(c);
  ::setenv("TANDEM_CLUSTER_TOKEN", pc.cluster->cluster_token().c_str(), 1);
  auto w = ChildProcess::Spawn({StrCat(TANDEM_BINARY_DIR, "/tandem"), "worker", "--role", "decode", "--worker-id", pc.id,
                                "--router", StrCat("127.0.0.1:", pc.cluster->router().internal_port()), "--model",
                                spec.model_path, "--threads", "1", "--kv-cache-mb", "16"});
  ASSERT_TRUE(w.ok()) << w.status();
  pc.worker = *std::move(w);
  ASSERT_TRUE(pc.worker->ReadLine(absl::Seconds(60)).ok()) << "the worker did not start";
  ASSERT_TRUE(WaitRegistered(*pc.cluster, pc.id, true, absl::Seconds(30)).has_value());
  // Requests through the cluster (some land on the process), so the router has used its connections.
  for (int i = 0; i < 4; ++i) {
    const GenerateResult r =
        pc.cluster->Generate({5, 6, 7, 8, i + 9}, SamplingParams{.temperature = 0, .max_tokens = 2});
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  }
}

TEST(ConnectionLossTest, AKilledWorkerProcessIsDroppedWithoutWaitingForItsHeartbeats) {
  ProcessCluster pc;
  ASSERT_NO_FATAL_FAILURE(Start(pc));
  pc.worker->Signal(SIGKILL);
  const auto took = WaitRegistered(*pc.cluster, pc.id, false, absl::Seconds(20));
  ASSERT_TRUE(took.has_value()) << "the dead worker is still registered 20 s after kill -9 (expiry "
                                << absl::FormatDuration(kExpiry) << ")";
  std::printf("kill -9 -> dropped by the router in %.1f ms\n", absl::ToDoubleMilliseconds(*took));
  // The cluster goes on serving with the workers it has.
  const GenerateResult r = pc.cluster->Generate({9, 10, 11}, SamplingParams{.temperature = 0, .max_tokens = 2});
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  pc.worker->Stop(absl::Seconds(1));
}

TEST(ConnectionLossTest, AStoppedButLivingWorkerProcessKeepsItsRegistration) {
  ProcessCluster pc;
  ASSERT_NO_FATAL_FAILURE(Start(pc));
  pc.worker->Signal(SIGSTOP);
  // Its connections stay open: nothing tells the router it is gone, and it is not.
  EXPECT_FALSE(WaitRegistered(*pc.cluster, pc.id, false, absl::Seconds(2)).has_value())
      << "a stopped (not dead) worker was dropped before its heartbeat expiry";
  pc.worker->Signal(SIGCONT);
  EXPECT_TRUE(Registered(*pc.cluster, pc.id));
  pc.worker->Stop(absl::Seconds(5));
}

}  // namespace
}  // namespace tandem::testing
