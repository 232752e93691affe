// The registry's state behind placement (DESIGN.md "Request path"): registration, heartbeats,
// the router's own dispatches between heartbeats, expiry. Placement rules: placement_test.cc.
#include <map>

#include "gtest/gtest.h"
#include "router/worker_registry.h"
#include "unit/router/fake_worker_client.h"

namespace tandem::router {
namespace {

WorkerRegistry MakeRegistry() {
  WorkerRegistryOptions o;
  o.model_id = "m1";
  o.expiry = absl::Seconds(3);
  o.affinity_slack_tokens = 100;
  o.make_client = [](const v1::WorkerInfo& info) { return std::make_shared<fakes::FakeWorkerClient>(info.worker_id()); };
  return WorkerRegistry(o);
}

v1::WorkerInfo Info(const std::string& id, v1::WorkerRole role, const std::string& model = "m1") {
  v1::WorkerInfo i;
  i.set_worker_id(id);
  i.set_role(role);
  i.set_grpc_address("127.0.0.1:1");
  i.set_model_id(model);
  i.set_epoch(7);
  return i;
}

v1::WorkerLoad Load(int64_t free_blocks, int64_t queued = 0, bool draining = false) {
  v1::WorkerLoad l;
  l.set_free_kv_blocks(free_blocks);
  l.set_queued_prefill_tokens(queued);
  l.set_draining(draining);
  return l;
}

TEST(WorkerRegistryTest, RefusesAWorkerServingAnotherModel) {
  auto r = MakeRegistry();
  absl::Status s = r.Register(Info("d", v1::WORKER_ROLE_DECODE, "m2"), Load(10));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("m2"), std::string::npos);
  EXPECT_EQ(r.CountRole(v1::WORKER_ROLE_DECODE), 0);
}

// Prompt tokens that fill `blocks` blocks of 16 (the workers here advertise no block size).
int64_t Tokens(int64_t blocks) { return blocks * 16; }

TEST(WorkerRegistryTest, DecodeGoesToTheWorkerWithTheMostFreeBlocksThatFits) {
  auto r = MakeRegistry();
  ASSERT_TRUE(r.Register(Info("d1", v1::WORKER_ROLE_DECODE), Load(50)).ok());
  ASSERT_TRUE(r.Register(Info("d2", v1::WORKER_ROLE_DECODE), Load(80)).ok());
  ASSERT_TRUE(r.Register(Info("p1", v1::WORKER_ROLE_PREFILL), Load(500)).ok());
  EXPECT_EQ(r.PickDecode(Tokens(10), {})->info.worker_id(), "d2");
  // The router's own reservations count until the next heartbeat.
  r.NoteBlocksReserved("d2", 40);
  EXPECT_EQ(r.PickDecode(Tokens(10), {})->info.worker_id(), "d1");
  // Nobody seems to have room: still the one with the most (the worker has the last word).
  EXPECT_EQ(r.PickDecode(Tokens(60), {})->info.worker_id(), "d1");
  // A refusal lowers the estimate below what was asked.
  r.NoteReserveRefused("d1", Tokens(30));
  EXPECT_EQ(r.PickDecode(Tokens(30), {})->info.worker_id(), "d2");
  // A reservation's answer carries the worker's own count.
  r.NoteFreeBlocks("d1", 70);
  EXPECT_EQ(r.PickDecode(Tokens(60), {})->info.worker_id(), "d1");
  EXPECT_EQ(r.PickDecode(Tokens(1), {"d1", "d2"}), nullptr);
  // A heartbeat brings the real figure back.
  ASSERT_TRUE(r.Heartbeat("d2", 7, v1::WORKER_ROLE_UNSPECIFIED, Load(80)));
  EXPECT_EQ(r.PickDecode(Tokens(60), {})->info.worker_id(), "d2");
  // A prefill worker never decodes; a draining one gets nothing new.
  ASSERT_TRUE(r.Heartbeat("d2", 7, v1::WORKER_ROLE_UNSPECIFIED, Load(80, 0, true)));
  EXPECT_EQ(r.PickDecode(Tokens(10), {"d1"}), nullptr);
  EXPECT_EQ(r.CountDecodeCapable(), 1);
}

TEST(WorkerRegistryTest, PrefillGoesToTheLeastQueuedWithPrefixAffinity) {
  auto r = MakeRegistry();
  ASSERT_TRUE(r.Register(Info("p1", v1::WORKER_ROLE_PREFILL), Load(0, 0)).ok());
  ASSERT_TRUE(r.Register(Info("p2", v1::WORKER_ROLE_PREFILL), Load(0, 0)).ok());
  ASSERT_TRUE(r.Register(Info("p3", v1::WORKER_ROLE_PREFILL), Load(0, 5000)).ok());
  ASSERT_TRUE(r.Register(Info("d", v1::WORKER_ROLE_DECODE), Load(100)).ok());
  // Equally loaded: the same prompt always lands on the same worker, different prompts spread.
  auto prompt = [](int key) { return std::vector<int32_t>(10, 3 + key); };
  std::set<std::string> seen;
  for (int key = 0; key < 64; ++key) {
    const std::string first = r.PickPrefill(prompt(key), nullptr, {})->info.worker_id();
    EXPECT_EQ(r.PickPrefill(prompt(key), nullptr, {})->info.worker_id(), first);
    EXPECT_NE(first, "p3");  // far more queued than the others
    seen.insert(first);
  }
  EXPECT_EQ(seen, (std::set<std::string>{"p1", "p2"}));
  // Load beyond the slack overrides affinity.
  int key = 0;
  while (r.PickPrefill(prompt(key), nullptr, {})->info.worker_id() != "p1") ++key;
  const std::vector<int32_t> other(1000, 7);
  r.NotePrefillStarted("p1", other);
  EXPECT_EQ(r.PickPrefill(prompt(key), nullptr, {})->info.worker_id(), "p2");
  r.NotePrefillEnded("p1", 1000);
  EXPECT_EQ(r.PickPrefill(prompt(key), nullptr, {})->info.worker_id(), "p1");
  // Retries exclude the workers already tried.
  EXPECT_EQ(r.PickPrefill(prompt(key), nullptr, {"p1"})->info.worker_id(), "p2");
  EXPECT_EQ(r.PickPrefill(prompt(key), nullptr, {"p1", "p2", "p3"}), nullptr);
}

// What the local-prefill cost rule sees: the least work ahead of a prompt's first token on each
// side, the prefill side less what that worker's prefix cache holds of the prompt, the local side
// with the prompts sent there since the last heartbeat; and the measured rate, a moving average.
TEST(WorkerRegistryTest, OutlookCountsTheWorkAheadOfAPromptOnEachSide) {
  auto r = MakeRegistry();
  const std::vector<int32_t> prompt(64, 5);
  EXPECT_EQ(r.Outlook(prompt).disaggregated_tokens, -1);
  EXPECT_EQ(r.Outlook(prompt).local_tokens, -1);
  ASSERT_TRUE(r.Register(Info("p1", v1::WORKER_ROLE_PREFILL), Load(0, 300)).ok());
  ASSERT_TRUE(r.Register(Info("p2", v1::WORKER_ROLE_PREFILL), Load(0, 200)).ok());
  ASSERT_TRUE(r.Register(Info("d1", v1::WORKER_ROLE_DECODE), Load(100, 50)).ok());
  ASSERT_TRUE(r.Register(Info("m", v1::WORKER_ROLE_MIXED), Load(100, 70)).ok());
  ASSERT_TRUE(r.Register(Info("d2", v1::WORKER_ROLE_DECODE), Load(100, 0, /*draining=*/true)).ok());
  PrefillOutlook o = r.Outlook(prompt);
  EXPECT_EQ(o.disaggregated_tokens, 200 + 64);
  EXPECT_EQ(o.local_tokens, 50 + 64) << "the draining worker does not count";
  EXPECT_EQ(o.tokens_per_s, 0);
  // p1 is sent the prompt (its blocks enter p1's index); once p1 reports an empty queue, the
  // same prompt again costs p1 one token (the least a prefill computes).
  r.NotePrefillStarted("p1", prompt);
  ASSERT_TRUE(r.Heartbeat("p1", 7, v1::WORKER_ROLE_UNSPECIFIED, Load(0, 0)));
  EXPECT_EQ(r.Outlook(prompt).disaggregated_tokens, 1);
  EXPECT_EQ(r.ClaimLocal(1000, {"m"})->info.worker_id(), "d1");
  EXPECT_EQ(r.Outlook(prompt).local_tokens, 70 + 64);
  ASSERT_TRUE(r.Heartbeat("d1", 7, v1::WORKER_ROLE_UNSPECIFIED, Load(100, 10)));
  EXPECT_EQ(r.Outlook(prompt).local_tokens, 10 + 64) << "the heartbeat's count replaces the router's";
  r.NotePrefillTimed(1000, 2.0);
  EXPECT_DOUBLE_EQ(r.Outlook(prompt).tokens_per_s, 500);
  r.NotePrefillTimed(1000, 1.0);
  EXPECT_DOUBLE_EQ(r.Outlook(prompt).tokens_per_s, 0.75 * 500 + 0.25 * 1000);
  r.NotePrefillTimed(1000, 0.0);  // not a measurement
  EXPECT_DOUBLE_EQ(r.Outlook(prompt).tokens_per_s, 625);
}

// Two mixed workers between heartbeats: the prompts of a burst that each prefills itself
// alternate between them (each claim counts in that worker's queue and KV until its heartbeat),
// rather than all going to whichever reported the most free KV last.
TEST(WorkerRegistryTest, LocalPrefillsOfABurstSpreadOverMixedWorkers) {
  auto r = MakeRegistry();
  ASSERT_TRUE(r.Register(Info("m1", v1::WORKER_ROLE_MIXED), Load(100)).ok());
  ASSERT_TRUE(r.Register(Info("m2", v1::WORKER_ROLE_MIXED), Load(90)).ok());
  std::map<std::string, int> sent;
  for (int i = 0; i < 8; ++i) ++sent[r.ClaimLocal(200, {})->info.worker_id()];
  EXPECT_EQ(sent["m1"], 4);
  EXPECT_EQ(sent["m2"], 4);
  // The claims count as taken KV too: once m2 reports its 90 blocks free again, a lease sees m1
  // with 100 - 4 * 13 = 48.
  ASSERT_TRUE(r.Heartbeat("m2", 7, v1::WORKER_ROLE_UNSPECIFIED, Load(90, 0)));
  EXPECT_EQ(r.PickDecode(Tokens(10), {})->info.worker_id(), "m2");
  EXPECT_EQ(r.ClaimLocal(200, {})->info.worker_id(), "m2") << "m1 still has 400 tokens queued";
  ASSERT_TRUE(r.Heartbeat("m1", 7, v1::WORKER_ROLE_UNSPECIFIED, Load(100, 0)));
  EXPECT_EQ(r.ClaimLocal(200, {})->info.worker_id(), "m1") << "the heartbeat's counts replace the router's";
  EXPECT_EQ(r.ClaimLocal(200, {"m1", "m2"}), nullptr);
}

TEST(WorkerRegistryTest, WorkersThatStopHeartbeatingExpire) {
  auto r = MakeRegistry();
  ASSERT_TRUE(r.Register(Info("d1", v1::WORKER_ROLE_DECODE), Load(10)).ok());
  ASSERT_TRUE(r.Register(Info("d2", v1::WORKER_ROLE_DECODE), Load(10)).ok());
  const absl::Time now = absl::Now();
  EXPECT_TRUE(r.Expire(now + absl::Seconds(1)).empty());
  EXPECT_EQ(r.Expire(now + absl::Seconds(4)).size(), 2u);
  EXPECT_EQ(r.CountRole(v1::WORKER_ROLE_DECODE), 0);
  // An unknown worker (or another epoch: a restarted process) must register again.
  EXPECT_FALSE(r.Heartbeat("d1", 7, v1::WORKER_ROLE_UNSPECIFIED, Load(10)));
  ASSERT_TRUE(r.Register(Info("d1", v1::WORKER_ROLE_DECODE), Load(10)).ok());
  EXPECT_FALSE(r.Heartbeat("d1", 8, v1::WORKER_ROLE_UNSPECIFIED, Load(10)));
  EXPECT_TRUE(r.Heartbeat("d1", 7, v1::WORKER_ROLE_UNSPECIFIED, Load(10)));
}

TEST(WorkerRegistryTest, LosingAWorkerTellsTheRequestsWatchingIt) {
  // Requests with calls on a worker subscribe to its WorkerLoss (request_flow.h "migrate").
  auto r = MakeRegistry();
  ASSERT_TRUE(r.Register(Info("d1", v1::WORKER_ROLE_DECODE), Load(10)).ok());
  ASSERT_TRUE(r.Register(Info("d2", v1::WORKER_ROLE_DECODE), Load(10)).ok());
  ASSERT_TRUE(r.Register(Info("d3", v1::WORKER_ROLE_DECODE), Load(10)).ok());
  int lost_d1 = 0, lost_d2 = 0, lost_d3 = 0;
  auto d1 = r.Find("d1");
  d1->loss->Subscribe([&] { ++lost_d1; });
  const WorkerLoss::Id unwatched = d1->loss->Subscribe([] { ADD_FAILURE() << "unsubscribed, still called"; });
  d1->loss->Unsubscribe(unwatched);
  r.Find("d2")->loss->Subscribe([&] { ++lost_d2; });
  r.Find("d3")->loss->Subscribe([&] { ++lost_d3; });

  // The same process registering again (the router missed a heartbeat) keeps its requests; a
  // role change keeps the signal too.
  ASSERT_TRUE(r.Register(Info("d1", v1::WORKER_ROLE_DECODE), Load(10)).ok());
  ASSERT_TRUE(r.Heartbeat("d1", 7, v1::WORKER_ROLE_MIXED, Load(10)));
  EXPECT_EQ(lost_d1, 0);
  // Missed heartbeats: dropped, and its watchers told once.
  ASSERT_TRUE(r.Heartbeat("d2", 7, v1::WORKER_ROLE_UNSPECIFIED, Load(10)));
  ASSERT_TRUE(r.Heartbeat("d3", 7, v1::WORKER_ROLE_UNSPECIFIED, Load(10)));
  EXPECT_EQ(r.Expire(absl::Now() + absl::Seconds(10)).size(), 3u);
  EXPECT_EQ(lost_d1, 1);
  EXPECT_EQ(r.Expire(absl::Now() + absl::Seconds(20)).size(), 0u);
  EXPECT_EQ(lost_d1, 1);
  // Subscribing to a lost worker runs at once.
  int late = 0;
  EXPECT_EQ(d1->loss->Subscribe([&] { ++late; }), 0u);
  EXPECT_EQ(late, 1);
  EXPECT_EQ(lost_d2 + lost_d3, 2);

  // A new process under the same id (new epoch) replaces the old one: the old one's watchers
  // are told.
  ASSERT_TRUE(r.Register(Info("d1", v1::WORKER_ROLE_DECODE), Load(10)).ok());
  int replaced = 0;
  r.Find("d1")->loss->Subscribe([&] { ++replaced; });
  v1::WorkerInfo restarted = Info("d1", v1::WORKER_ROLE_DECODE);
  restarted.set_epoch(8);
  ASSERT_TRUE(r.Register(restarted, Load(10)).ok());
  EXPECT_EQ(replaced, 1);
  EXPECT_FALSE(r.Find("d1")->loss->raised());
  // Removed (deregistered).
  int removed = 0;
  r.Find("d1")->loss->Subscribe([&] { ++removed; });
  r.Remove("d1");
  EXPECT_EQ(removed, 1);
}

TEST(WorkerRegistryTest, RoleChangesArriveWithHeartbeats) {
  auto r = MakeRegistry();
  ASSERT_TRUE(r.Register(Info("w", v1::WORKER_ROLE_PREFILL), Load(10)).ok());
  auto before = r.Find("w");
  ASSERT_TRUE(r.Heartbeat("w", 7, v1::WORKER_ROLE_DECODE, Load(10)));
  EXPECT_EQ(r.CountRole(v1::WORKER_ROLE_PREFILL), 0);
  EXPECT_EQ(r.CountRole(v1::WORKER_ROLE_DECODE), 1);
  EXPECT_EQ(before->info.role(), v1::WORKER_ROLE_PREFILL);  // in-flight requests keep their view
  EXPECT_EQ(r.PickDecode(Tokens(1), {})->info.worker_id(), "w");
}

}  // namespace
}  // namespace tandem::router
