// Where requests go (src/router/placement.h): the pure rules, and the same rules as the
// registry applies them with its state (free blocks, queued tokens, per-worker prefix index).
#include "router/placement.h"

#include <deque>
#include <map>
#include <random>
#include <thread>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "router/prefix_index.h"
#include "router/worker_registry.h"
#include "unit/router/fake_worker_client.h"

namespace tandem::router {
namespace {

using Tokens = std::vector<int32_t>;

Tokens Random(int n, uint64_t seed) {
  std::mt19937 rng(seed);
  Tokens t;
  for (int i = 0; i < n; ++i) t.push_back(3 + static_cast<int32_t>(rng() % 30000));
  return t;
}

Tokens Concat(const Tokens& a, const Tokens& b) {
  Tokens out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

TEST(PlacementTest, BlockArithmeticUsesTheGivenBlockSize) {
  EXPECT_EQ(placement::BlocksFor(0, 16), 0);
  EXPECT_EQ(placement::BlocksFor(1, 16), 1);
  EXPECT_EQ(placement::BlocksFor(16, 16), 1);
  EXPECT_EQ(placement::BlocksFor(17, 16), 2);
  EXPECT_EQ(placement::BlocksFor(200, 32), 7);
  EXPECT_EQ(placement::BlocksFor(200, 16), 13);
  v1::WorkerInfo info;
  EXPECT_EQ(placement::BlockSizeOf(info), placement::kAssumedBlockSize);
  info.mutable_kv_endpoint()->mutable_layout()->set_block_size(32);
  EXPECT_EQ(placement::BlockSizeOf(info), 32);
}

TEST(PlacementTest, LocalPrefillWithoutPrefillWorkersOrBelowTheThreshold) {
  EXPECT_TRUE(placement::PrefillLocally(5000, 0, 0));
  EXPECT_FALSE(placement::PrefillLocally(5000, 0, 1));
  EXPECT_TRUE(placement::PrefillLocally(31, 32, 2));
  EXPECT_FALSE(placement::PrefillLocally(32, 32, 2));
  EXPECT_FALSE(placement::PrefillLocally(1, 0, 2));
}

// The cost rule: local only when the prefill side's prediction misses what is left of the TTFT
// SLO and the local one meets it; off without an SLO, a measured rate or a worker on each side.
TEST(PlacementTest, PrefillLocallyByCostWhenOnlyTheLocalPredictionMeetsTheSlo) {
  placement::PrefillCostInputs in;
  in.ttft_slo_s = 1.0;
  in.tokens_per_s = 1000;
  in.disaggregated_tokens = 1500;  // 1.5 s
  in.local_tokens = 800;           // 0.8 s
  EXPECT_TRUE(placement::PrefillLocallyByCost(in));
  in.waited_s = 0.3;  // 0.7 s left: the local prediction misses too
  EXPECT_FALSE(placement::PrefillLocallyByCost(in));
  in.waited_s = 0;
  in.disaggregated_tokens = 1000;  // exactly the SLO: met, so disaggregated
  EXPECT_FALSE(placement::PrefillLocallyByCost(in));
  in.disaggregated_tokens = 1500;
  for (auto off : {&placement::PrefillCostInputs::ttft_slo_s, &placement::PrefillCostInputs::tokens_per_s}) {
    placement::PrefillCostInputs o = in;
    o.*off = 0;
    EXPECT_FALSE(placement::PrefillLocallyByCost(o));
  }
  placement::PrefillCostInputs none = in;
  none.local_tokens = -1;
  EXPECT_FALSE(placement::PrefillLocallyByCost(none));
  none = in;
  none.disaggregated_tokens = -1;
  EXPECT_FALSE(placement::PrefillLocallyByCost(none));
}

TEST(PlacementTest, DecodeRoomIsCountedInEachWorkersOwnBlocks) {
  // 200 prompt tokens: 13 blocks of 16, 7 blocks of 32. d16 has 12 free blocks (192 tokens: too
  // few), d32 has 8 (256 tokens: enough). Counting in blocks of 16 everywhere, as the router did
  // with a fixed kv_block_size, finds room nowhere and picks d16 for having more blocks: refused.
  const placement::DecodeCandidate c[] = {{"d16", 16, 12}, {"d32", 32, 8}};
  EXPECT_EQ(placement::PickDecode(c, 200), 1);
  // Both fit: the most free KV in tokens (d32's 15 blocks hold 480 tokens, d16's 20 hold 320).
  const placement::DecodeCandidate both[] = {{"d16", 16, 20}, {"d32", 32, 15}};
  EXPECT_EQ(placement::PickDecode(both, 100), 1);
  // None fits: still the one with the most room (the worker has the last word).
  const placement::DecodeCandidate none[] = {{"a", 16, 3}, {"b", 16, 5}};
  EXPECT_EQ(placement::PickDecode(none, 1000), 1);
  // Ties: the smaller id, whatever the order.
  const placement::DecodeCandidate tie[] = {{"b", 16, 5}, {"a", 16, 5}};
  EXPECT_EQ(placement::PickDecode(tie, 16), 1);
  EXPECT_EQ(placement::PickDecode({}, 16), -1);
}

TEST(PlacementTest, LocalPrefillGoesWhereTheLeastPrefillIsQueued) {
  // Both have room: the least prefill ahead of the first token wins over more free KV.
  const placement::DecodeCandidate queued[] = {{"a", 16, 100, 512}, {"b", 16, 40, 0}};
  EXPECT_EQ(placement::PickLocal(queued, 64), 1);
  EXPECT_EQ(placement::PickDecode(queued, 64), 0) << "a reserved (remote) prefill looks only at KV room";
  // Room comes first: b's empty queue does not help a prompt it cannot hold.
  const placement::DecodeCandidate room[] = {{"a", 16, 100, 512}, {"b", 16, 3, 0}};
  EXPECT_EQ(placement::PickLocal(room, 64), 0);
  // Equal queues: the most free KV, then the smaller id.
  const placement::DecodeCandidate kv[] = {{"a", 16, 40, 0}, {"b", 16, 100, 0}};
  EXPECT_EQ(placement::PickLocal(kv, 64), 1);
  const placement::DecodeCandidate tie[] = {{"b", 16, 40, 7}, {"a", 16, 40, 7}};
  EXPECT_EQ(placement::PickLocal(tie, 64), 1);
  EXPECT_EQ(placement::PickLocal({}, 16), -1);
}

TEST(PlacementTest, RegistryPlacesAndCorrectsInTheWorkersAdvertisedBlockSize) {
  WorkerRegistryOptions o;
  o.make_client = [](const v1::WorkerInfo& i) { return std::make_shared<fakes::FakeWorkerClient>(i.worker_id()); };
  WorkerRegistry r(o);
  auto add = [&r](const std::string& id, int32_t block_size, int64_t free_blocks) {
    v1::WorkerInfo info;
    info.set_worker_id(id);
    info.set_role(v1::WORKER_ROLE_DECODE);
    info.set_grpc_address("x:1");
    info.mutable_kv_endpoint()->mutable_layout()->set_block_size(block_size);
    v1::WorkerLoad load;
    load.set_free_kv_blocks(free_blocks);
    ASSERT_TRUE(r.Register(info, load).ok());
  };
  add("d16", 16, 12);
  add("d32", 32, 8);
  EXPECT_EQ(r.PickDecode(200, {})->info.worker_id(), "d32");
  // d32 refuses 100 tokens (4 of its blocks): the registry now counts fewer than 4 free there.
  r.NoteReserveRefused("d32", 100);
  EXPECT_EQ(r.PickDecode(100, {})->info.worker_id(), "d16");
}

TEST(PlacementTest, KvLayoutsMustMatchInEveryField) {
  v1::KvLayout a;
  a.set_model_id("m");
  a.set_num_layers(30);
  a.set_num_kv_heads(3);
  a.set_head_dim(64);
  a.set_block_size(16);
  a.set_dtype("f16");
  a.set_block_format("cpu/kt-v1");
  EXPECT_TRUE(placement::KvLayoutsMatch(a, a));
  v1::KvLayout b = a;
  b.set_block_size(32);
  EXPECT_FALSE(placement::KvLayoutsMatch(a, b));
  b = a;
  b.set_block_format("cuda/x");
  EXPECT_FALSE(placement::KvLayoutsMatch(a, b));
}

TEST(PlacementTest, BlockChainIdentifiesSharedPrefixesOfFullBlocks) {
  const Tokens system = Random(64, 1);
  const Tokens a = Concat(system, Random(40, 2));
  const Tokens b = Concat(system, Random(40, 3));
  const auto ca = placement::BlockChain(a, 16);
  const auto cb = placement::BlockChain(b, 16);
  ASSERT_EQ(ca.size(), 6u);  // 104 tokens: 6 full blocks, the partial one is not cached
  ASSERT_EQ(cb.size(), 6u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(ca[i], cb[i]) << i;
  for (int i = 4; i < 6; ++i) EXPECT_NE(ca[i], cb[i]) << i;
  // A block's hash depends on everything before it, not only on its own tokens.
  Tokens shifted = a;
  shifted[0] += 1;
  EXPECT_NE(placement::BlockChain(shifted, 16)[5], ca[5]);
  EXPECT_NE(placement::BlockChain(a, 32)[0], ca[1]);
  EXPECT_TRUE(placement::BlockChain(Random(15, 4), 16).empty());
  EXPECT_NE(placement::PromptKey(a), placement::PromptKey(b));
  EXPECT_EQ(placement::PromptKey(a), placement::PromptKey(Tokens(a)));
}

TEST(PlacementTest, PrefixIndexMatchesLeadingBlocksAndForgetsTheLeastRecentlyUsed) {
  PrefixIndex index(8);
  const auto x = placement::BlockChain(Random(16 * 6, 1), 16);
  index.Insert(x);
  EXPECT_EQ(index.MatchedBlocks(x), 6);
  auto y = x;
  y[2] = 12345;  // diverges at block 2
  EXPECT_EQ(index.MatchedBlocks(y), 2);
  // A second prompt of 6 blocks overflows the 8 slots: the tails of the older prompt go first,
  // its first blocks (the part other prompts share) stay the longest.
  const auto z = placement::BlockChain(Random(16 * 6, 2), 16);
  index.Insert(z);
  EXPECT_EQ(index.size(), 8u);
  EXPECT_EQ(index.MatchedBlocks(z), 6);
  EXPECT_EQ(index.MatchedBlocks(x), 2);
  // Using a prompt again makes it recent.
  index.Insert(std::span<const uint64_t>(x).first(2));
  index.Insert(placement::BlockChain(Random(16 * 2, 3), 16));
  EXPECT_EQ(index.MatchedBlocks(x), 2);
}

TEST(PlacementTest, PrefillPrefersTheLeastWorkAheadWithinTheSlack) {
  using C = placement::PrefillCandidate;
  // Equal matches: the least loaded.
  const C equal[] = {{"a", 300, 64}, {"b", 100, 64}, {"c", 200, 64}};
  EXPECT_EQ(placement::PickPrefill(equal, 500, 1, 1024), 1);
  // A longer match wins when it saves more than the extra queue...
  const C history[] = {{"a", 300, 800}, {"b", 0, 64}};
  EXPECT_EQ(placement::PickPrefill(history, 1000, 1, 1024), 0);
  // ...not when it saves less,
  const C short_match[] = {{"a", 300, 128}, {"b", 0, 64}};
  EXPECT_EQ(placement::PickPrefill(short_match, 1000, 1, 1024), 1);
  // and never beyond the slack, whatever it holds.
  const C loaded[] = {{"a", 2000, 4000}, {"b", 0, 0}};
  EXPECT_EQ(placement::PickPrefill(loaded, 4096, 1, 1024), 1);
  // Equal cost: rendezvous on the prompt, so different prompts spread and the same one repeats.
  const C same[] = {{"a", 0, 0}, {"b", 0, 0}, {"c", 0, 0}};
  std::map<int, int> picks;
  for (uint64_t key = 0; key < 300; ++key) {
    const int i = placement::PickPrefill(same, 100, key, 1024);
    EXPECT_EQ(placement::PickPrefill(same, 100, key, 1024), i);
    ++picks[i];
  }
  for (int i = 0; i < 3; ++i) EXPECT_GT(picks[i], 60) << i;
  EXPECT_EQ(placement::PickPrefill({}, 100, 1, 1024), -1);
}

// The registry with N prefill workers (and the state placement reads from it).
class PrefixAffinityTest : public ::testing::Test {
 protected:
  void Start(int prefill_workers) {
    WorkerRegistryOptions o;
    o.affinity_slack_tokens = 1024;
    o.make_client = [](const v1::WorkerInfo& i) { return std::make_shared<fakes::FakeWorkerClient>(i.worker_id()); };
    registry_ = std::make_unique<WorkerRegistry>(o);
    for (int i = 0; i < prefill_workers; ++i) Register(fmt::format("p{}", i), 1);
  }
  void Register(const std::string& id, uint64_t epoch) {
    v1::WorkerInfo info;
    info.set_worker_id(id);
    info.set_role(v1::WORKER_ROLE_PREFILL);
    info.set_grpc_address("x:1");
    info.set_epoch(epoch);
    ASSERT_TRUE(registry_->Register(info, v1::WorkerLoad()).ok());
  }
  // Places a prompt and dispatches it (as the request flow does); returns the worker.
  std::string Send(const Tokens& prompt) {
    const std::string w = registry_->PickPrefill(prompt, nullptr, {})->info.worker_id();
    sent_[{w, prompt}] = registry_->NotePrefillStarted(w, prompt);
    return w;
  }
  void Done(const std::string& worker, const Tokens& prompt) {
    auto it = sent_.find({worker, prompt});
    registry_->NotePrefillEnded(worker, it != sent_.end() ? it->second : static_cast<int64_t>(prompt.size()));
  }

  std::unique_ptr<WorkerRegistry> registry_;
  std::map<std::pair<std::string, Tokens>, int64_t> sent_;  // what each dispatch counted as pending
};

TEST_F(PrefixAffinityTest, RequestsSharingASystemPromptSpreadOverTheWorkers) {
  // Chat requests: the same 64-token template + system prompt, then a 100-token user message,
  // with as many in flight as there are workers. Hashing the first block (the old affinity key)
  // sent every one to the same worker while its queue stayed within the 1024-token slack.
  for (int n : {2, 3, 4}) {
    SCOPED_TRACE(fmt::format("{} prefill workers", n));
    Start(n);
    const Tokens system = Random(64, 99);
    std::deque<std::pair<std::string, Tokens>> in_flight;
    std::map<std::string, int> got;
    for (int i = 0; i < 40; ++i) {
      if (static_cast<int>(in_flight.size()) == n) {
        Done(in_flight.front().first, in_flight.front().second);
        in_flight.pop_front();
      }
      const Tokens prompt = Concat(system, Random(100, 1000 + i));
      const std::string w = Send(prompt);
      ++got[w];
      in_flight.emplace_back(w, prompt);
    }
    ASSERT_EQ(static_cast<int>(got.size()), n);
    for (const auto& [w, count] : got) EXPECT_GE(count, 40 / n - 1) << w;
  }
}

TEST_F(PrefixAffinityTest, AConversationSticksToTheWorkerHoldingItsHistory) {
  Start(4);
  const Tokens system = Random(64, 7);
  // Three conversations, interleaved turn by turn; each turn's prompt is the previous prompt
  // plus the answer and a new user message.
  std::vector<Tokens> history(3);
  std::vector<std::string> home(3);
  for (int turn = 0; turn < 5; ++turn) {
    for (int c = 0; c < 3; ++c) {
      history[c] = Concat(turn == 0 ? system : history[c], Random(48, 100 * c + turn));
      const std::string w = Send(history[c]);
      if (turn == 0) home[c] = w;
      EXPECT_EQ(w, home[c]) << "conversation " << c << " turn " << turn;
      Done(w, history[c]);
    }
  }
}

TEST_F(PrefixAffinityTest, ALoadedWorkerIsSkippedDespiteALongerMatch) {
  Start(2);
  Tokens history = Random(512, 5);
  const std::string home = Send(history);
  Done(home, history);
  const std::string other = home == "p0" ? "p1" : "p0";
  history = Concat(history, Random(32, 6));
  // Queued less than the match saves: stay.
  const Tokens small = Random(300, 8);
  registry_->NotePrefillStarted(home, small);
  EXPECT_EQ(registry_->PickPrefill(history, nullptr, {})->info.worker_id(), home);
  // Queued more than the match saves: go.
  const Tokens medium = Random(300, 9);
  registry_->NotePrefillStarted(home, medium);
  EXPECT_EQ(registry_->PickPrefill(history, nullptr, {})->info.worker_id(), other);
  // Beyond the slack: never, even for a match far longer than the queue.
  Start(2);
  Tokens long_history = Random(4000, 10);
  const std::string home2 = Send(long_history);
  Done(home2, long_history);
  registry_->NotePrefillStarted(home2, Random(1100, 11));
  EXPECT_NE(registry_->PickPrefill(Concat(long_history, Random(8, 12)), nullptr, {})->info.worker_id(), home2);
}

TEST_F(PrefixAffinityTest, RepeatsOfACachedPromptStayWhereItIsCached) {
  // n choices of one request: the same prompt again and again once the first is cached. Each
  // repeat costs its worker only the last partial block, so all stay on the worker holding it
  // (counted as whole prompts, the second would look a prompt's worth busier and leave).
  Start(2);
  const Tokens prompt = Random(530, 21);
  const std::string home = Send(prompt);
  Done(home, prompt);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Send(prompt), home) << "repeat " << i;
  EXPECT_EQ((sent_[{home, prompt}]), 530 - 528);  // 33 full blocks cached, 2 tokens to compute
}

TEST_F(PrefixAffinityTest, AWorkerThatLeavesOrRestartsIsForgotten) {
  Start(2);
  Tokens history = Random(256, 5);
  const std::string home = Send(history);
  Done(home, history);
  history = Concat(history, Random(16, 6));
  const Tokens load = Random(10, 7);
  // The home worker is a little busier: its cache still wins.
  registry_->NotePrefillStarted(home, load);
  EXPECT_EQ(registry_->PickPrefill(history, nullptr, {})->info.worker_id(), home);
  // Registered again by the same process (same epoch): it still has its cache.
  Register(home, 1);
  registry_->NotePrefillStarted(home, load);
  EXPECT_EQ(registry_->PickPrefill(history, nullptr, {})->info.worker_id(), home);
  // A restarted process (new epoch) has an empty cache: the less loaded worker wins.
  Register(home, 2);
  registry_->NotePrefillStarted(home, load);
  EXPECT_NE(registry_->PickPrefill(history, nullptr, {})->info.worker_id(), home);
  // Removed and back: forgotten too.
  Done(home, load);
  const std::string again = Send(history);
  Done(again, history);
  registry_->Remove(again);
  Register(again, 2);
  registry_->NotePrefillStarted(again, load);
  EXPECT_NE(registry_->PickPrefill(history, nullptr, {})->info.worker_id(), again);
}

// A burst: eight different prompts placed at the same moment from eight threads onto four idle
// workers. Each claim sees the ones before it, so the burst spreads two to a worker; placed on
// load read before the others had counted theirs, it could all land on one.
TEST_F(PrefixAffinityTest, ABurstOfClaimsSpreadsOverTheWorkers) {
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE(fmt::format("round {}", round));
    Start(4);
    std::vector<std::string> got(8);
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&, i] {
        const PrefillClaim claim = registry_->ClaimPrefill(Random(600, 100 * round + i), nullptr, {});
        got[i] = claim.worker->info.worker_id();
        EXPECT_EQ(claim.pending_tokens, 600);
      });
    }
    for (std::thread& t : threads) t.join();
    std::map<std::string, int> per_worker;
    for (const std::string& w : got) ++per_worker[w];
    ASSERT_EQ(per_worker.size(), 4u);
    for (const auto& [w, n] : per_worker) EXPECT_EQ(n, 2) << w;
  }
}

}  // namespace
}  // namespace tandem::router
