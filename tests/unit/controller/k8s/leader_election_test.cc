// Lease leader election between controller replicas against fake_apiserver.py: one leader at a
// time; a stopped leader hands over at once, a crashed one within the lease duration; a replica
// whose credential may not write Leases never leads.
#include "controller/k8s/leader_election.h"

#include <thread>

#include "gtest/gtest.h"
#include "unit/controller/k8s/fake_apiserver_fixture.h"

namespace tandem::controller {
namespace {

using k8s_testing::kNamespace;
using k8s_testing::kReaderToken;

class LeaderElectionTest : public k8s_testing::FakeApiServerTest {
 protected:
  // Short durations so that the test takes seconds: lease 1.5 s, renew deadline 1 s, retry 0.2 s.
  std::unique_ptr<LeaderElector> Make(const std::string& identity, const std::string& token = k8s_testing::kToken) {
    LeaderElectionOptions o;
    o.kube_namespace = kNamespace;
    o.identity = identity;
    o.lease_duration = absl::Milliseconds(1500);
    o.renew_deadline = absl::Milliseconds(1000);
    o.retry_period = absl::Milliseconds(200);
    auto e = LeaderElector::Create(Config(token), o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }

  // Samples both replicas every 50 ms for `d`; fails if both ever lead. Returns how many samples
  // had a leader.
  int NeverTwoLeaders(LeaderElector& a, LeaderElector& b, absl::Duration d) {
    int led = 0;
    for (absl::Time end = absl::Now() + d; absl::Now() < end;) {
      const bool la = a.IsLeader(), lb = b.IsLeader();
      EXPECT_FALSE(la && lb) << "two leaders at once";
      led += la || lb;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return led;
  }

  // Seconds until `e` leads (or -1 after `limit`).
  double SecondsUntilLeader(LeaderElector& e, absl::Duration limit) {
    const absl::Time start = absl::Now();
    while (absl::Now() - start < limit) {
      if (e.IsLeader()) return absl::ToDoubleSeconds(absl::Now() - start);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
};

TEST_F(LeaderElectionTest, OneLeaderAtATimeAndAStoppedLeaderHandsOverAtOnce) {
  auto a = Make("controller-a");
  auto b = Make("controller-b");
  ASSERT_TRUE(a && b);
  a->Start();
  ASSERT_GE(SecondsUntilLeader(*a, absl::Seconds(5)), 0) << "the first replica creates the Lease and leads";
  b->Start();
  EXPECT_GT(NeverTwoLeaders(*a, *b, absl::Seconds(3)), 50);
  EXPECT_TRUE(a->IsLeader()) << "a renewing leader keeps the Lease";
  EXPECT_FALSE(b->IsLeader());

  a->Stop();  // releases
  const double takeover = SecondsUntilLeader(*b, absl::Seconds(5));
  EXPECT_GE(takeover, 0);
  EXPECT_LT(takeover, 0.6) << "a released Lease is taken at the standby's next try (retry 0.2 s)";
  b->Stop();
}

TEST_F(LeaderElectionTest, ACrashedLeaderIsReplacedWithinTheLeaseDuration) {
  auto a = Make("controller-a");
  auto b = Make("controller-b");
  ASSERT_TRUE(a && b);
  a->Start();
  ASSERT_GE(SecondsUntilLeader(*a, absl::Seconds(5)), 0);
  b->Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  a->Abandon();  // no release: as if the process died
  const absl::Time crashed = absl::Now();
  const double takeover = SecondsUntilLeader(*b, absl::Seconds(10));
  ASSERT_GE(takeover, 0);
  // Not before the lease duration (1.5 s) as b observes it, and not much after it.
  EXPECT_GE(absl::Now() - crashed, absl::Milliseconds(1000));
  EXPECT_LT(takeover, 1.5 + 0.2 + 0.8);
  // The Lease records the new holder and one transition.
  auto client = KubeClient::Create(Config());
  ASSERT_TRUE(client.ok());
  KubeRequest get;
  get.path = StrCat("/apis/coordination.k8s.io/v1/namespaces/", kNamespace, "/leases/tandem-controller");
  auto lease = (*client)->Send(get);
  ASSERT_TRUE(lease.ok() && lease->status == 200);
  const auto spec = k8s_testing::json::parse(lease->body)["spec"];
  EXPECT_EQ(spec["holderIdentity"], "controller-b");
  EXPECT_EQ(spec["leaseTransitions"], 1);
  EXPECT_EQ(spec["leaseDurationSeconds"], 1);
  b->Stop();
}

TEST_F(LeaderElectionTest, AReplicaThatMayNotWriteLeasesNeverLeads) {
  auto reader = Make("controller-r", kReaderToken);
  ASSERT_TRUE(reader);
  reader->Start();
  EXPECT_LT(SecondsUntilLeader(*reader, absl::Seconds(1)), 0);
  reader->Stop();
  LeaderElectionOptions bad;
  bad.kube_namespace = kNamespace;
  EXPECT_EQ(LeaderElector::Create(Config(), bad).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tandem::controller
