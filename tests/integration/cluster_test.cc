// The disaggregated request path end to end, in one process: router, prefill, decode and
// mixed workers on loopback gRPC, KV moved by the in-process transport (faults injectable).
// What a user would notice: the same greedy answer whichever way the request went, requests
// that survive a failed prefill worker or fail cleanly, and KV blocks that all come back.
#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "engine/model_config.h"
#include "fmt/format.h"
#include "gtest/gtest.h"
#include "grpcpp/client_context.h"
#include "unit/http/test_client.h"
#include "testing/test_cluster.h"
#include "testing/model_paths.h"
#include "testing/tiny_model.h"

namespace tandem::testing {
namespace {

using Tokens = std::vector<int32_t>;

std::vector<Tokens> RandomPrompts(int n, int vocab, const std::vector<int>& lens, uint64_t seed) {
  std::mt19937 rng(seed);
  std::vector<Tokens> out;
  for (int i = 0; i < n; ++i) {
    Tokens p;
    const int len = lens[i % lens.size()];
    for (int t = 0; t < len; ++t) p.push_back(3 + static_cast<int32_t>(rng() % (vocab - 3)));
    out.push_back(std::move(p));
  }
  return out;
}

SamplingParams Greedy(int max_tokens) {
  SamplingParams s;
  s.temperature = 0;
  s.max_tokens = max_tokens;
  s.ignore_eos = true;
  return s;
}

// Each prompt alone on a fresh engine configured like the workers: `tandem generate`'s path.
std::vector<Tokens> Reference(TestCluster& c, const std::vector<Tokens>& prompts, const SamplingParams& s,
                              WorkerShape shape = {}) {
  auto engine = std::move(*c.NewEngine(shape));
  std::vector<Tokens> out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateRequest r;
    r.id = fmt::format("ref{}", i);
    r.prompt = prompts[i];
    r.sampling = s;
    EXPECT_TRUE(engine->Add(r).ok());
    Tokens got;
    while (engine->HasWork()) {
      auto step = engine->Step();
      EXPECT_TRUE(step.ok()) << step.status();
      for (const auto& o : *step) got.insert(got.end(), o.new_tokens.begin(), o.new_tokens.end());
    }
    out.push_back(got);
  }
  return out;
}

// Every prompt at once, one client thread each.
std::vector<GenerateResult> GenerateConcurrently(TestCluster& c, const std::vector<Tokens>& prompts,
                                                 const SamplingParams& s) {
  std::vector<GenerateResult> results(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = c.Generate(prompts[i], s); });
  }
  for (auto& t : threads) t.join();
  return results;
}

int Vocab(const TestCluster& c) { return ModelConfig::FromGguf(c.file())->vocab_size; }

ClusterSpec TinySpec() {
  ClusterSpec s;
  s.model_path = TinyModelPath();
  s.token_budget = 32;  // prompts take several chunks: KV is sent chunk by chunk
  return s;
}

std::map<int, double> FreeBlocks(TestCluster& c) {
  std::map<int, double> out;
  for (int i = 0; i < c.num_workers(); ++i) {
    auto v = c.FreeBlocksFromMetrics(i);
    EXPECT_TRUE(v.ok()) << v.status();
    out[i] = v.ok() ? *v : -1;
  }
  return out;
}

// Waits until every worker's free-block count (from /metrics) is back to `start`.
void ExpectBlocksReturn(TestCluster& c, const std::map<int, double>& start, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::map<int, double> now;
  while (absl::Now() < deadline) {
    now = FreeBlocks(c);
    if (now == start) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (const auto& [i, v] : start) {
    EXPECT_EQ(now[i], v) << "worker " << c.worker(i).worker_id() << " has not got all its KV blocks back";
  }
}

TEST(ClusterTest, GreedyTokensAreTheSameDisaggregatedMixedAndDirect) {
  auto spec = TinySpec();
  auto disagg = TestCluster::Start(spec);
  ASSERT_TRUE(disagg.ok()) << disagg.status();
  const auto prompts = RandomPrompts(12, Vocab(**disagg), {5, 16, 17, 33, 64, 100, 150, 9, 31, 48, 200, 2}, 7);
  const auto s = Greedy(24);
  const auto expected = Reference(**disagg, prompts, s);

  for (size_t i = 0; i < prompts.size(); ++i) {
    auto r = (*disagg)->Generate(prompts[i], s);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, expected[i]) << "prompt " << i << " (" << prompts[i].size() << " tokens), disaggregated";
    EXPECT_EQ(r.finish, v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(r.usage.prompt_tokens(), static_cast<int32_t>(prompts[i].size()));
    EXPECT_EQ(r.usage.completion_tokens(), 24);
  }
  // Every request went through a KV transfer.
  const int p = (*disagg)->FindWorker(v1::WORKER_ROLE_PREFILL);
  EXPECT_EQ((*disagg)->in_process_transport(p)->transfers_succeeded(), static_cast<int64_t>(prompts.size()));

  spec.prefill = 0;
  spec.decode = 0;
  spec.mixed = 1;
  auto mixed = TestCluster::Start(spec);
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto r = (*mixed)->Generate(prompts[i], s);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, expected[i]) << "prompt " << i << ", mixed worker";
  }
}

TEST(ClusterTest, SeededSamplingContinuesSeamlesslyOnTheDecodeWorker) {
  auto spec = TinySpec();
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const auto prompts = RandomPrompts(4, Vocab(**c), {12, 40, 70, 3}, 11);
  SamplingParams s;
  s.temperature = 1.5f;
  s.top_p = 0.9f;
  s.seed = 1234;
  s.max_tokens = 20;
  s.ignore_eos = true;
  const auto expected = Reference(**c, prompts, s);
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto r = (*c)->Generate(prompts[i], s);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, expected[i]) << "prompt " << i;
  }
}

TEST(ClusterTest, TwoPrefillTwoDecodeUnder32ConcurrentRequests) {
  auto spec = TinySpec();
  spec.prefill = 2;
  spec.decode = 2;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<int> lens;
  for (int i = 0; i < 32; ++i) lens.push_back(4 + (i * 37) % 180);
  const auto prompts = RandomPrompts(32, Vocab(**c), lens, 21);
  const auto s = Greedy(16);
  const auto expected = Reference(**c, prompts, s);
  const auto start = FreeBlocks(**c);

  const auto results = GenerateConcurrently(**c, prompts, s);
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    EXPECT_EQ(results[i].tokens, expected[i]) << "prompt " << i;
  }
  // Both prefill workers took part.
  for (int i = 0; i < (*c)->num_workers(); ++i) {
    if ((*c)->worker(i).service().role() != v1::WORKER_ROLE_PREFILL) continue;
    EXPECT_GT((*c)->in_process_transport(i)->transfers_succeeded(), 0) << (*c)->worker(i).worker_id();
  }
  ExpectBlocksReturn(**c, start, absl::Seconds(10));
}

TEST(ClusterTest, ShortPromptsPrefillOnTheDecodeWorkerBelowTheThreshold) {
  auto spec = TinySpec();
  spec.local_prefill_threshold = 32;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const auto prompts = RandomPrompts(2, Vocab(**c), {10, 80}, 5);
  const auto s = Greedy(8);
  const auto expected = Reference(**c, prompts, s);
  const int p = (*c)->FindWorker(v1::WORKER_ROLE_PREFILL);
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto r = (*c)->Generate(prompts[i], s);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, expected[i]);
  }
  // Only the 80-token prompt crossed to the prefill worker.
  EXPECT_EQ((*c)->in_process_transport(p)->transfers_succeeded(), 1);
}

TEST(ClusterTest, DecodeWorkerWithLargerBlocksIsPlacedByItsOwnBlockSize) {
  // One prefill and one decode worker at the default 16 tokens per block, and a pair started
  // with --block-size 32. A 200-token prompt needs 13 blocks of 16 or 7 of 32: the decode worker
  // at 16 has 16 blocks (256 tokens), the one at 32 has 12 (384 tokens). Counted in blocks of 16
  // everywhere, the router used to think the 32-token worker could not hold the prompt and sent
  // it to the fuller one. KV goes only between workers of the same layout.
  auto spec = TinySpec();
  spec.kv_blocks = 16;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const WorkerShape large{.block_size = 32, .kv_blocks = 12};
  ASSERT_TRUE((*c)->AddWorker(v1::WORKER_ROLE_PREFILL, large).ok());
  ASSERT_TRUE((*c)->AddWorker(v1::WORKER_ROLE_DECODE, large).ok());
  ASSERT_TRUE((*c)->WaitReady().ok());
  const int p16 = 0, p32 = 2;
  ASSERT_EQ((*c)->worker(p32).service().role(), v1::WORKER_ROLE_PREFILL);
  const auto prompts = RandomPrompts(1, Vocab(**c), {200}, 13);
  const auto s = Greedy(8);
  const auto expected = Reference(**c, prompts, s, large);
  auto r = (*c)->Generate(prompts[0], s);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens, expected[0]);
  EXPECT_EQ((*c)->in_process_transport(p32)->transfers_succeeded(), 1) << "the decode worker at block size 32";
  EXPECT_EQ((*c)->in_process_transport(p16)->transfers_succeeded(), 0);
}

TEST(ClusterTest, NoKvBlocksLeakAfter1000RequestsWith20PercentCancelled) {
  auto spec = TinySpec();
  spec.local_prefill_threshold = 8;  // some requests take the local path too
  spec.kv_blocks = 128;              // small enough that blocks run short at times
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const int vocab = Vocab(**c);
  const auto start = FreeBlocks(**c);
  for (const auto& [i, v] : start) ASSERT_GT(v, 0);

  constexpr int kRequests = 1000;
  std::atomic<int> next{0}, cancelled{0}, finished{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 12; ++t) {
    threads.emplace_back([&, t] {
      auto stub = (*c)->NewGenerateStub();
      std::mt19937 rng(1000 + t);
      for (int i = next++; i < kRequests; i = next++) {
        v1::GenerateRequest req;
        const int len = 1 + static_cast<int>(rng() % 120);
        for (int k = 0; k < len; ++k) req.mutable_token_ids()->add_ids(3 + static_cast<int32_t>(rng() % (vocab - 3)));
        req.mutable_sampling()->set_max_tokens(1 + static_cast<int32_t>(rng() % 24));
        req.mutable_sampling()->set_temperature(0);
        req.mutable_sampling()->set_ignore_eos(true);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        const bool cancel = rng() % 5 == 0;
        // Cancel at a random point: before any answer (during reservation, prefill or the
        // transfer) or after a few streamed messages.
        const int cancel_after = static_cast<int>(rng() % 4);
        const int delay_us = static_cast<int>(rng() % 20000);
        auto reader = stub->Generate(&ctx, req);
        if (cancel && cancel_after == 0) {
          std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
          ctx.TryCancel();
        }
        v1::GenerateResponse msg;
        int reads = 0;
        while (reader->Read(&msg)) {
          if (cancel && ++reads == cancel_after) ctx.TryCancel();
        }
        grpc::Status s = reader->Finish();
        if (s.ok()) {
          ++finished;
        } else if (s.error_code() == grpc::StatusCode::CANCELLED) {
          ++cancelled;
        } else {
          ++failed;
          ADD_FAILURE() << "request " << i << ": " << s.error_message();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::printf("%d finished, %d cancelled, %d failed\n", finished.load(), cancelled.load(), failed.load());
  EXPECT_EQ(finished + cancelled + failed, kRequests);
  EXPECT_EQ(failed, 0);
  EXPECT_GT(cancelled, 100);  // ~20% minus those that finished before the cancel landed
  // Well before the 15 s lease expiry: no block may depend on it to come back.
  ExpectBlocksReturn(**c, start, absl::Seconds(5));
  for (int i = 0; i < (*c)->num_workers(); ++i) {
    EXPECT_TRUE((*c)->worker(i).service().Idle()) << (*c)->worker(i).worker_id();
    auto page = (*c)->Metrics(i);
    ASSERT_TRUE(page.ok());
    EXPECT_EQ(*MetricValue(*page, "tandem_worker_kv_leases_expired_total"), 0) << "a lease was left to expire";
  }
}

// The two prefill workers of a cluster with spec.prefill = 2 (indexes for in_process_transport).
std::pair<int, int> TwoPrefillWorkers(TestCluster& c) {
  int first = -1, second = -1;
  for (int i = 0; i < c.num_workers(); ++i) {
    if (c.worker(i).service().role() == v1::WORKER_ROLE_PREFILL) (first < 0 ? first : second) = i;
  }
  return {first, second};
}

// Every prompt answered, with exactly the tokens of `expected`.
void ExpectAnswers(TestCluster& c, const std::vector<Tokens>& prompts, const SamplingParams& s,
                   const std::vector<Tokens>& expected) {
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto r = c.Generate(prompts[i], s);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, expected[i]) << "prompt " << i;
  }
}

TEST(ClusterTest, PrefillRetriedOnAnotherWorkerWhenTheTransferDrops) {
  auto spec = TinySpec();
  spec.prefill = 2;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const auto prompts = RandomPrompts(8, Vocab(**c), {100, 150, 64, 120, 90, 33, 47, 200}, 31);
  const auto s = Greedy(12);
  const auto expected = Reference(**c, prompts, s);
  const auto start = FreeBlocks(**c);
  // One prefill worker's connection drops every transfer after two blocks: requests that go
  // there first fail mid-transfer and are retried on the other one.
  transfer::InProcessFault fault;
  fault.kind = transfer::InProcessFault::Kind::kDropAfterBlocks;
  fault.after_blocks = 2;
  const auto [bad, good] = TwoPrefillWorkers(**c);
  (*c)->in_process_transport(bad)->InjectFault(fault);
  ExpectAnswers(**c, prompts, s, expected);
  EXPECT_GE((*c)->in_process_transport(bad)->transfers_failed(), 1) << "no request tried the faulty worker";
  EXPECT_EQ((*c)->in_process_transport(bad)->transfers_succeeded(), 0);
  EXPECT_EQ((*c)->in_process_transport(good)->transfers_succeeded(), static_cast<int64_t>(prompts.size()));
  ExpectBlocksReturn(**c, start, absl::Seconds(10));
}

TEST(ClusterTest, TransferThatKeepsFailingFailsTheRequestCleanly) {
  auto spec = TinySpec();
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const auto start = FreeBlocks(**c);
  transfer::InProcessFault fault;
  fault.kind = transfer::InProcessFault::Kind::kDropAfterBlocks;
  fault.after_blocks = 1;
  (*c)->in_process_transport((*c)->FindWorker(v1::WORKER_ROLE_PREFILL))->InjectFault(fault);
  const auto prompts = RandomPrompts(1, Vocab(**c), {90}, 3);
  auto r = (*c)->Generate(prompts[0], Greedy(8));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
  EXPECT_NE(r.status.error_message().find("KV transfer failed"), std::string::npos) << r.status.error_message();
  EXPECT_TRUE(r.tokens.empty()) << "no token may come from partial KV";
  ExpectBlocksReturn(**c, start, absl::Seconds(10));
}

// KV blocks damaged on the way (checksums on, the default): no request decodes from them. With
// two prefill workers the damaged hand-offs are retried on the other one and every answer is
// the one an undamaged cluster gives; with one, the request fails with the reason.
TEST(ClusterTest, CorruptedKvIsNeverDecoded) {
  auto spec = TinySpec();
  spec.prefill = 2;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const auto prompts = RandomPrompts(6, Vocab(**c), {100, 150, 64, 120, 90, 33}, 37);
  const auto s = Greedy(12);
  const auto expected = Reference(**c, prompts, s);
  const auto start = FreeBlocks(**c);
  transfer::InProcessFault fault;
  fault.kind = transfer::InProcessFault::Kind::kCorruptBlocks;
  const auto [bad, good] = TwoPrefillWorkers(**c);
  (*c)->in_process_transport(bad)->InjectFault(fault);
  ExpectAnswers(**c, prompts, s, expected);
  EXPECT_GE((*c)->in_process_transport(bad)->transfers_failed(), 1) << "no request tried the faulty worker";
  EXPECT_EQ((*c)->in_process_transport(bad)->transfers_succeeded(), 0) << "a damaged transfer passed";
  ExpectBlocksReturn(**c, start, absl::Seconds(10));

  (*c)->in_process_transport(good)->InjectFault(fault);  // now every prefill worker damages its KV
  auto r = (*c)->Generate(prompts[0], s);
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.status.error_message().find("corrupted"), std::string::npos) << r.status.error_message();
  EXPECT_TRUE(r.tokens.empty()) << "a token came from damaged KV";
  ExpectBlocksReturn(**c, start, absl::Seconds(10));
}

TEST(ClusterTest, UnresponsiveDecodePeerNeverHangsPastTheTransferDeadline) {
  auto spec = TinySpec();
  spec.transfer_timeout = absl::Milliseconds(800);
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const auto start = FreeBlocks(**c);
  transfer::InProcessFault fault;
  fault.kind = transfer::InProcessFault::Kind::kUnresponsive;
  (*c)->in_process_transport((*c)->FindWorker(v1::WORKER_ROLE_PREFILL))->InjectFault(fault);
  const auto prompts = RandomPrompts(1, Vocab(**c), {50}, 4);
  const absl::Time t0 = absl::Now();
  auto r = (*c)->Generate(prompts[0], Greedy(8), absl::Seconds(30));
  const absl::Duration took = absl::Now() - t0;
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << "the router must answer, not the client's clock";
  EXPECT_TRUE(r.tokens.empty());
  // One attempt (one prefill worker) bounded by the transfer deadline, plus slack.
  EXPECT_LT(took, absl::Seconds(10)) << took;
  ExpectBlocksReturn(**c, start, absl::Seconds(20));
}

TEST(ClusterTest, PrefillWorkerKilledMidRequestIsRetriedElsewhere) {
  auto spec = TinySpec();
  spec.prefill = 2;
  spec.token_budget = 16;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const auto prompts = RandomPrompts(1, Vocab(**c), {400}, 8);
  const auto s = Greedy(8);
  const auto expected = Reference(**c, prompts, s);
  // Slow both prefill workers' transfers so that the request is surely mid-transfer when the
  // worker it went to dies.
  transfer::InProcessFault slow;
  slow.kind = transfer::InProcessFault::Kind::kDelay;
  slow.delay = absl::Milliseconds(100);
  slow.transfers = 1;
  std::vector<int> prefill;
  for (int i = 0; i < (*c)->num_workers(); ++i) {
    if ((*c)->worker(i).service().role() == v1::WORKER_ROLE_PREFILL) {
      prefill.push_back(i);
      (*c)->in_process_transport(i)->InjectFault(slow);
    }
  }
  GenerateResult r;
  std::thread client([&] { r = (*c)->Generate(prompts[0], s); });
  // Kill the first prefill worker that has the request in flight.
  int killed = -1;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (killed < 0 && absl::Now() < deadline) {
    for (int i : prefill) {
      if ((*c)->worker(i).runner().inflight() > 0 || !(*c)->worker(i).service().Idle()) {
        killed = i;
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GE(killed, 0) << "the request never reached a prefill worker";
  (*c)->KillWorker(killed);
  client.join();
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens, expected[0]);
}

// Starts a long generation, kills the decode worker that is streaming it once it is under way,
// and returns what the client got.
GenerateResult KillTheDecodeWorkerMidStream(TestCluster& c, const Tokens& prompt, const SamplingParams& s) {
  GenerateResult r;
  std::thread client([&] { r = c.Generate(prompt, s, absl::Seconds(120)); });
  int serving = -1;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (serving < 0 && absl::Now() < deadline) {
    for (int i = 0; i < c.num_workers() && serving < 0; ++i) {
      if (c.has_worker(i) && c.worker(i).service().role() == v1::WORKER_ROLE_DECODE &&
          c.worker(i).runner().inflight() > 0) {
        serving = i;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_GE(serving, 0) << "the request never reached a decode worker";
  std::this_thread::sleep_for(std::chrono::milliseconds(3));  // some tokens streamed
  if (serving >= 0) c.KillWorker(serving);
  client.join();
  return r;
}

double Migrations(TestCluster& c) {
  auto page = c.Metrics(-1);
  EXPECT_TRUE(page.ok()) << page.status();
  if (!page.ok()) return -1;
  double n = 0;
  for (const char* cause : {"stream_failed", "worker_lost"}) {
    auto v = MetricValue(*page, fmt::format("tandem_router_migrations_total{{cause=\"{}\"}}", cause));
    if (v.ok()) n += *v;
  }
  return n;
}

TEST(ClusterTest, DecodeWorkerKilledMidStreamIsResumedOnAnotherWithTheSameTokens) {
  auto spec = TinySpec();
  spec.decode = 2;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const auto prompts = RandomPrompts(2, Vocab(**c), {20, 60}, 9);
  SamplingParams seeded;
  seeded.temperature = 1.5f;
  seeded.top_p = 0.95f;
  seeded.seed = 77;
  seeded.max_tokens = 900;
  seeded.ignore_eos = true;
  // Greedy and seeded sampling alike: the client gets exactly an uninterrupted run's tokens.
  for (const SamplingParams& s : {Greedy(900), seeded}) {
    const auto expected = Reference(**c, {prompts[0]}, s);
    const double before = Migrations(**c);
    const GenerateResult r = KillTheDecodeWorkerMidStream(**c, prompts[0], s);
    EXPECT_EQ(Migrations(**c), before + 1) << "the kill must land mid-stream";
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, expected[0]) << "temperature " << s.temperature;
    EXPECT_EQ(r.usage.completion_tokens(), 900);
    EXPECT_EQ(r.usage.prompt_tokens(), 20);
    ASSERT_TRUE((*c)->AddWorker(v1::WORKER_ROLE_DECODE).ok());  // the next round has two again
    ASSERT_TRUE((*c)->WaitReady().ok());
  }
}

TEST(ClusterTest, DecodeWorkerKilledWithNoOtherFailsCleanlyAfterTheQueueTimeout) {
  auto spec = TinySpec();
  spec.queue_timeout = absl::Seconds(2);
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const auto prompts = RandomPrompts(1, Vocab(**c), {20}, 9);
  const absl::Time start = absl::Now();
  const GenerateResult r = KillTheDecodeWorkerMidStream(**c, prompts[0], Greedy(1000));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
  EXPECT_NE(r.status.error_message().find("could resume"), std::string::npos) << r.status.error_message();
  EXPECT_LT(r.tokens.size(), 1000u);
  EXPECT_LT(absl::Now() - start, absl::Seconds(20)) << "it waited for a decode worker, but not for ever";
}

TEST(ClusterTest, ApiKeyIsRequiredWhenSet) {
  auto spec = TinySpec();
  spec.api_key = "sk-test-123";
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const int port = (*c)->router().http_port();
  auto none = http::testing::Fetch(port, "GET", "/v1/models");
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->status, 401);
  EXPECT_NE(none->body.find("invalid_api_key"), std::string::npos) << none->body;
  auto wrong = http::testing::Fetch(port, "GET", "/v1/models", "", {"Authorization: Bearer sk-test-124"});
  EXPECT_EQ(wrong->status, 401);
  auto right = http::testing::Fetch(port, "GET", "/v1/models", "", {"Authorization: Bearer sk-test-123"});
  EXPECT_EQ(right->status, 200) << right->body;
  // Probes and metrics stay open.
  EXPECT_EQ(http::testing::Fetch(port, "GET", "/healthz")->status, 200);
  EXPECT_EQ(http::testing::Fetch(port, "GET", "/metrics")->status, 200);
  // gRPC Generate: the same key as metadata.
  auto denied = (*c)->Generate({5, 6, 7}, Greedy(2));
  EXPECT_EQ(denied.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  auto allowed = (*c)->Generate({5, 6, 7}, Greedy(2), absl::Seconds(30), "Bearer sk-test-123");
  EXPECT_TRUE(allowed.status.ok()) << allowed.status.error_message();
  EXPECT_EQ(allowed.tokens.size(), 2u);
}

TEST(ClusterTest, RealModelGreedyIdentityAcrossPaths) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  ClusterSpec spec;
  spec.model_path = model;
  spec.prefill = 2;
  spec.decode = 2;
  spec.mixed = 0;
  spec.kv_blocks = 512;
  spec.token_budget = 128;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  // 32 prompts of 8..300 tokens (several chunks at a 128-token budget).
  std::vector<int> lens;
  for (int i = 0; i < 32; ++i) lens.push_back(8 + (i * 53) % 292);
  const auto prompts = RandomPrompts(32, 30000, lens, 77);
  const auto s = Greedy(12);
  const auto expected = Reference(**c, prompts, s);

  // 32 concurrent requests over 2 prefill + 2 decode workers.
  const auto results = GenerateConcurrently(**c, prompts, s);
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    EXPECT_EQ(results[i].tokens, expected[i]) << "prompt " << i << " (" << prompts[i].size() << " tokens), 2P2D";
  }
  c->reset();

  // One mixed worker, one request at a time (the first 12 prompts).
  spec.prefill = spec.decode = 0;
  spec.mixed = 1;
  auto m = TestCluster::Start(spec);
  ASSERT_TRUE(m.ok()) << m.status();
  for (size_t i = 0; i < 12; ++i) {
    auto r = (*m)->Generate(prompts[i], s);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, expected[i]) << "prompt " << i << ", mixed";
  }
}

}  // namespace
}  // namespace tandem::testing
