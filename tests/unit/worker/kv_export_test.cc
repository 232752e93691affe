// The prefill side of the P->D hand-off (worker/kv_export.h) against the in-process transport,
// with no engine and no gRPC: engine progress is fed by hand and the engine's side is a fake
// that records what the export asks of it. What a decode worker would notice: the right bytes
// in the right lease blocks, the transfer started only once KV exists, a preempted prefill
// failed rather than sending stale blocks, every ending reported once and the KV freed.
#include "worker/kv_export.h"

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "transfer/in_process/in_process_kv_transport.h"

namespace tandem::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(20);  // generous: a hang is what we catch
constexpr int kBlockSize = 4;

KvLayoutInfo Layout() {
  KvLayoutInfo l;
  l.model_id = "test-model";
  l.layout.num_layers = 2;
  l.layout.num_kv_heads = 2;
  l.layout.head_dim = 8;
  l.layout.block_size = kBlockSize;
  l.layout.dtype = DType::kF16;
  l.block_format = "test/host";
  return l;
}

// A KV cache in host memory.
class HostCache final : public KvCacheStorage {
 public:
  HostCache(const KvCacheLayout& layout, int64_t blocks) : bytes_(layout.bytes_per_block() * blocks) {
    layout_ = layout;
    num_blocks_ = blocks;
  }
  uint8_t* host_base() override { return bytes_.data(); }
  std::string_view block_format() const override { return "test/host"; }
  uint8_t* block(int32_t b) { return bytes_.data() + b * layout_.bytes_per_block(); }
  bool BlockEquals(int32_t b, HostCache& other, int32_t other_b) {
    return std::memcmp(block(b), other.block(other_b), layout_.bytes_per_block()) == 0;
  }

 private:
  std::vector<uint8_t> bytes_;
};

// The decode side's leases: records starts and ends. Thread-safe.
class Leases final : public KvLeaseHandler {
 public:
  absl::Status TransferStarting(const std::string& lease, std::span<const int32_t>) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++starts_[lease];
    return absl::OkStatus();
  }
  void TransferEnded(const std::string& lease, const absl::Status& s, int32_t) override {
    std::lock_guard<std::mutex> lock(mu_);
    ends_[lease].push_back(s);
    cv_.notify_all();
  }
  // The outcome of the lease's transfer, once it ended.
  std::optional<absl::Status> WaitEnded(const std::string& lease) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoSeconds(kWait), [&] { return !ends_[lease].empty(); });
    return ends_[lease].empty() ? std::nullopt : std::optional(ends_[lease].front());
  }
  int starts(const std::string& lease) {
    std::lock_guard<std::mutex> lock(mu_);
    return starts_[lease];
  }
  size_t ends(const std::string& lease) {
    std::lock_guard<std::mutex> lock(mu_);
    return ends_[lease].size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> starts_;
  std::map<std::string, std::vector<absl::Status>> ends_;
};

// The engine's side: records the calls; deferred tasks run when the test says so.
class FakeEngine final : public KvExportEngine {
 public:
  void CancelRequest(const std::string& id) override { Record(&cancelled_, id); }
  void ReleaseHeldKv(const std::string& id) override { Record(&released_, id); }
  void Defer(std::function<void()> task) override {
    std::lock_guard<std::mutex> lock(mu_);
    deferred_.push_back(std::move(task));
  }
  void RunDeferred() {
    std::vector<std::function<void()>> tasks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks.swap(deferred_);
    }
    for (auto& t : tasks) t();
  }
  std::vector<std::string> cancelled() {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }
  std::vector<std::string> released() {
    std::lock_guard<std::mutex> lock(mu_);
    return released_;
  }
  size_t deferred() {
    std::lock_guard<std::mutex> lock(mu_);
    return deferred_.size();
  }

 private:
  void Record(std::vector<std::string>* v, const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    v->push_back(id);
  }
  std::mutex mu_;
  std::vector<std::string> cancelled_, released_;
  std::vector<std::function<void()>> deferred_;
};

thread_local bool in_transfer_callback = false;

// Wraps a transport to watch how the export uses it: when transfers start and with which
// deadline, which blocks are sent in which order, and whether a transfer is ever destroyed
// inside its own callback.
class WatchingTransport final : public KvTransport {
 public:
  explicit WatchingTransport(KvTransport* inner) : inner_(inner) {}
  std::string_view name() const override { return inner_->name(); }
  const KvEndpoint& local_endpoint() const override { return inner_->local_endpoint(); }
  absl::StatusOr<std::unique_ptr<KvTransfer>> StartTransfer(const KvDestination& d, absl::Time deadline) override {
    auto t = inner_->StartTransfer(d, deadline);
    if (!t.ok()) return t.status();
    std::lock_guard<std::mutex> lock(mu_);
    deadlines_.push_back(deadline);
    return std::unique_ptr<KvTransfer>(new Transfer(this, *std::move(t)));
  }

  std::vector<absl::Time> deadlines() {
    std::lock_guard<std::mutex> lock(mu_);
    return deadlines_;
  }
  std::vector<int32_t> sent_indexes() {
    std::lock_guard<std::mutex> lock(mu_);
    return sent_;
  }
  int callbacks() { return callbacks_.load(); }
  bool destroyed_in_callback() const { return destroyed_in_callback_.load(); }

 private:
  class Transfer final : public KvTransfer {
   public:
    Transfer(WatchingTransport* owner, std::unique_ptr<KvTransfer> inner) : owner_(owner), inner_(std::move(inner)) {}
    ~Transfer() override {
      if (in_transfer_callback) owner_->destroyed_in_callback_ = true;
    }
    void Send(std::span<const BlockCopy> copies) override {
      {
        std::lock_guard<std::mutex> lock(owner_->mu_);
        for (const BlockCopy& c : copies) owner_->sent_.push_back(c.index);
      }
      inner_->Send(copies);
    }
    void Finish(std::function<void(absl::Status)> done) override {
      inner_->Finish([owner = owner_, done = std::move(done)](absl::Status s) {
        in_transfer_callback = true;
        done(s);
        in_transfer_callback = false;
        owner->callbacks_.fetch_add(1);
      });
    }

   private:
    WatchingTransport* owner_;
    std::unique_ptr<KvTransfer> inner_;
  };

  KvTransport* inner_;
  std::mutex mu_;
  std::vector<absl::Time> deadlines_;
  std::vector<int32_t> sent_;
  std::atomic<int> callbacks_{0};
  std::atomic<bool> destroyed_in_callback_{false};
};

// What `done` reported. Thread-safe.
struct Outcome {
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  absl::Status status;
  KvExportResult result;

  std::optional<absl::Status> Wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, absl::ToChronoSeconds(kWait), [&] { return calls > 0; });
    return calls > 0 ? std::optional(status) : std::nullopt;
  }
  int count() {
    std::lock_guard<std::mutex> lock(mu);
    return calls;
  }
};

RequestOutput Progress(int32_t num_computed) {
  RequestOutput out;
  out.id = "req-1";
  out.num_computed = num_computed;
  return out;
}

RequestOutput Last(FinishReason reason = FinishReason::kLength) {
  RequestOutput out;
  out.id = "req-1";
  out.finish = reason;
  out.new_tokens = {42};
  out.rng_draws = 3;
  out.prompt_tokens = 10;
  out.generated_tokens = 1;
  out.cached_prompt_tokens = 4;
  out.num_computed = 10;
  return out;
}

class KvExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const KvLayoutInfo layout = Layout();
    source_cache_ = std::make_unique<HostCache>(layout.layout, 16);
    dest_cache_ = std::make_unique<HostCache>(layout.layout, 16);
    std::mt19937 rng(7);
    for (int32_t b = 0; b < 16; ++b) {
      for (int64_t i = 0; i < layout.layout.bytes_per_block(); ++i) source_cache_->block(b)[i] = rng() & 0xff;
    }
    auto hub = std::make_shared<transfer::InProcessKvHub>();
    transfer::InProcessKvTransportOptions o;
    o.hub = hub;
    o.layout = layout;
    o.worker_id = "decode";
    o.cache = dest_cache_.get();
    o.lease_handler = &leases_;
    dest_ = transfer::InProcessKvTransport::Create(o).value();
    o.worker_id = "prefill";
    o.cache = source_cache_.get();
    o.lease_handler = nullptr;
    source_ = transfer::InProcessKvTransport::Create(o).value();
    watching_ = std::make_unique<WatchingTransport>(source_.get());
  }

  void TearDown() override {
    engine_.RunDeferred();
    EXPECT_FALSE(watching_->destroyed_in_callback()) << "a transfer was destroyed inside its own callback";
  }

  // An export of a 10-token prompt (3 blocks of 4) into lease blocks {7, 2, 5}.
  std::shared_ptr<KvExport> NewExport(absl::Duration timeout = absl::Seconds(20)) {
    KvExportOptions o;
    o.request_id = "req-1";
    o.destination.endpoint = dest_->local_endpoint();
    o.destination.lease_id = "lease-1";
    o.destination.blocks = {7, 2, 5};
    o.prompt_tokens = 10;
    o.block_size = kBlockSize;
    o.block_bytes = Layout().layout.bytes_per_block();
    o.transfer_timeout = timeout;
    return KvExport::Create(o, watching_.get(), &engine_, [out = outcome_](const absl::Status& s, const KvExportResult& r) {
      std::lock_guard<std::mutex> lock(out->mu);
      ++out->calls;
      out->status = s;
      out->result = r;
      out->cv.notify_all();
    });
  }

  // The engine computes the whole prompt: two chunks of 4 tokens, then the last output.
  void ComputeWholePrompt(KvExport& kv) {
    kv.OnProgress(Progress(4), table_);
    kv.OnProgress(Progress(8), table_);
    kv.OnProgress(Last(), table_);
  }

  KvExportResult result() {
    std::lock_guard<std::mutex> lock(outcome_->mu);
    return outcome_->result;
  }

  const std::vector<int32_t> table_ = {11, 3, 9, 14};  // the request's local blocks (one spare)
  Leases leases_;
  FakeEngine engine_;
  std::unique_ptr<HostCache> source_cache_, dest_cache_;
  // Mid-transfer means the decode side has pinned the lease; the handshake runs on the
  // transports' threads, so a test that needs a pinned lease waits for it.
  bool WaitPinned(const std::string& lease) {
    const absl::Time deadline = absl::Now() + kWait;
    while (leases_.starts(lease) == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
    return leases_.starts(lease) == 1;
  }

  std::unique_ptr<transfer::InProcessKvTransport> dest_, source_;
  std::unique_ptr<WatchingTransport> watching_;
  std::shared_ptr<Outcome> outcome_ = std::make_shared<Outcome>();
};

TEST_F(KvExportTest, BlocksArriveInOrderAndTheHandOffCompletes) {
  auto kv = NewExport();
  kv->OnProgress(Progress(4), table_);
  kv->OnProgress(Progress(6), table_);  // half a block more: nothing new to send
  kv->OnProgress(Progress(8), table_);
  kv->OnProgress(Last(), table_);
  std::optional<absl::Status> s = outcome_->Wait();
  ASSERT_TRUE(s.has_value()) << "the export never ended";
  ASSERT_TRUE(s->ok()) << *s;

  EXPECT_THAT(watching_->sent_indexes(), ElementsAre(0, 1, 2));
  EXPECT_TRUE(dest_cache_->BlockEquals(7, *source_cache_, 11));
  EXPECT_TRUE(dest_cache_->BlockEquals(2, *source_cache_, 3));
  EXPECT_TRUE(dest_cache_->BlockEquals(5, *source_cache_, 9));
  EXPECT_EQ(leases_.WaitEnded("lease-1").value_or(absl::UnknownError("none")), absl::OkStatus());
  const KvExportResult r = result();
  EXPECT_TRUE(r.computed);
  EXPECT_EQ(r.first_token, 42);
  EXPECT_EQ(r.rng_draws, 3);
  EXPECT_EQ(r.prompt_tokens, 10);
  EXPECT_EQ(r.cached_prompt_tokens, 4);
  EXPECT_TRUE(r.transfer_ended);
  EXPECT_EQ(r.transfer_bytes, 3 * Layout().layout.bytes_per_block());
  // The hand-off is complete: the held KV is released, nothing is cancelled.
  EXPECT_THAT(engine_.released(), ElementsAre("req-1"));
  EXPECT_TRUE(engine_.cancelled().empty());
  EXPECT_EQ(outcome_->count(), 1);
}

TEST_F(KvExportTest, TheTransferStartsWithTheFirstComputedChunk) {
  auto kv = NewExport(absl::Seconds(5));
  // Queued in the engine: no transfer yet, so its deadline is not running.
  EXPECT_TRUE(watching_->deadlines().empty());
  EXPECT_EQ(leases_.starts("lease-1"), 0);
  const absl::Time before_first_chunk = absl::Now();
  kv->OnProgress(Progress(4), table_);
  ASSERT_EQ(watching_->deadlines().size(), 1u);
  EXPECT_GE(watching_->deadlines()[0], before_first_chunk + absl::Seconds(5));
  ComputeWholePrompt(*kv);  // a progress report repeated changes nothing
  ASSERT_TRUE(outcome_->Wait().value_or(absl::UnknownError("none")).ok());
  EXPECT_EQ(watching_->deadlines().size(), 1u);  // one transfer for the whole prompt
}

TEST_F(KvExportTest, APreemptedPrefillFailsInsteadOfSendingStaleBlocks) {
  auto kv = NewExport();
  kv->OnProgress(Progress(8), table_);
  ASSERT_TRUE(WaitPinned("lease-1"));
  kv->OnProgress(Progress(4), table_);  // recomputing from scratch after a preemption
  std::optional<absl::Status> s = outcome_->Wait();
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->code(), absl::StatusCode::kUnavailable) << *s;
  EXPECT_THAT(s->message(), HasSubstr("preempted"));
  EXPECT_THAT(engine_.cancelled(), ElementsAre("req-1"));
  EXPECT_TRUE(engine_.released().empty());
  kv->OnProgress(Last(), table_);  // the engine's later outputs change nothing
  EXPECT_EQ(outcome_->count(), 1);
  // The dropped transfer is aborted: the decode side's lease is unpinned with an error.
  EXPECT_EQ(engine_.deferred(), 1u);
  engine_.RunDeferred();
  EXPECT_FALSE(leases_.WaitEnded("lease-1").value_or(absl::OkStatus()).ok());
  EXPECT_THAT(watching_->sent_indexes(), ElementsAre(0, 1));
}

TEST_F(KvExportTest, AnEngineCancelOrFailureEndsIt) {
  for (FinishReason reason : {FinishReason::kCancelled, FinishReason::kError}) {
    outcome_ = std::make_shared<Outcome>();
    auto kv = NewExport();
    kv->OnProgress(Last(reason), table_);
    std::optional<absl::Status> s = outcome_->Wait();
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->code(), absl::StatusCode::kAborted) << *s;
    EXPECT_TRUE(watching_->deadlines().empty()) << "no KV was computed: no transfer to start";
  }
}

// Where a cancel can land: queued, mid-transfer, and after the last output while the transport
// is still confirming the blocks.
enum class Stage { kQueued, kSending, kFinishing };

class KvExportCancelTest : public KvExportTest, public ::testing::WithParamInterface<Stage> {};

TEST_P(KvExportCancelTest, ACancelEndsItOnceAndFreesTheKv) {
  if (GetParam() == Stage::kFinishing) {
    // The transport takes a while: Finish's callback arrives after the cancel.
    transfer::InProcessFault slow;
    slow.kind = transfer::InProcessFault::Kind::kDelay;
    slow.delay = absl::Milliseconds(100);
    source_->InjectFault(slow);
  }
  auto kv = NewExport();
  if (GetParam() != Stage::kQueued) {
    kv->OnProgress(Progress(4), table_);
    ASSERT_TRUE(WaitPinned("lease-1"));
  }
  if (GetParam() == Stage::kFinishing) {
    kv->OnProgress(Progress(8), table_);
    kv->OnProgress(Last(), table_);
  }
  kv->Cancel(absl::CancelledError("cancelled by the client"));
  // The reply was sent; a real caller frees its response and reactor now.
  ASSERT_EQ(outcome_->count(), 1);
  EXPECT_EQ(outcome_->Wait()->code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(engine_.cancelled(), ElementsAre("req-1"));

  kv->Cancel(absl::CancelledError("again"));
  kv->OnProgress(Progress(8), table_);
  engine_.RunDeferred();  // the transfer is dropped
  if (GetParam() == Stage::kFinishing) {
    // Finish's callback still comes; it must not report or release anything again.
    const absl::Time deadline = absl::Now() + kWait;
    while (watching_->callbacks() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
    EXPECT_EQ(watching_->callbacks(), 1);
  }
  if (GetParam() != Stage::kQueued) {
    EXPECT_TRUE(leases_.WaitEnded("lease-1").has_value()) << "the lease stayed pinned";
    EXPECT_EQ(leases_.ends("lease-1"), 1u);
  } else {
    EXPECT_EQ(leases_.starts("lease-1"), 0);
  }
  EXPECT_EQ(outcome_->count(), 1);
  EXPECT_TRUE(engine_.released().empty()) << "the cancel already freed the KV";
  EXPECT_EQ(engine_.cancelled().size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Stages, KvExportCancelTest,
                         ::testing::Values(Stage::kQueued, Stage::kSending, Stage::kFinishing));

TEST_F(KvExportTest, AnInjectedTransferFaultIsTheError) {
  transfer::InProcessFault drop;
  drop.kind = transfer::InProcessFault::Kind::kDropAfterBlocks;
  drop.after_blocks = 1;
  drop.status = absl::UnavailableError("injected: link down");
  source_->InjectFault(drop);
  ComputeWholePrompt(*NewExport());
  std::optional<absl::Status> s = outcome_->Wait();
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->code(), absl::StatusCode::kUnavailable) << *s;
  EXPECT_THAT(s->message(), HasSubstr("KV transfer failed"));
  EXPECT_THAT(s->message(), HasSubstr("injected: link down"));
  EXPECT_TRUE(result().transfer_ended);
  EXPECT_THAT(engine_.cancelled(), ElementsAre("req-1"));  // frees the held KV
  EXPECT_TRUE(engine_.released().empty());
}

TEST_F(KvExportTest, ARefusedHandshakeIsTheError) {
  transfer::InProcessFault refuse;
  refuse.kind = transfer::InProcessFault::Kind::kRefuse;
  refuse.status = absl::FailedPreconditionError("injected: stale epoch");
  source_->InjectFault(refuse);
  ComputeWholePrompt(*NewExport());
  std::optional<absl::Status> s = outcome_->Wait();
  ASSERT_TRUE(s.has_value());
  EXPECT_THAT(s->message(), HasSubstr("injected: stale epoch"));
  EXPECT_EQ(outcome_->count(), 1);
}

TEST_F(KvExportTest, AShortBlockTableFailsRatherThanLeavingALeaseBlockUnwritten) {
  auto kv = NewExport();
  const std::vector<int32_t> short_table = {11, 3};
  kv->OnProgress(Last(), short_table);
  std::optional<absl::Status> s = outcome_->Wait();
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->code(), absl::StatusCode::kInternal) << *s;
  EXPECT_THAT(engine_.cancelled(), ElementsAre("req-1"));
}

// Progress, the transport and a cancel racing from three threads: one report, always.
TEST_F(KvExportTest, EndsExactlyOnceUnderRacingCancel) {
  for (int round = 0; round < 50; ++round) {
    outcome_ = std::make_shared<Outcome>();
    auto kv = NewExport();
    std::thread engine_thread([&] { ComputeWholePrompt(*kv); });
    std::thread client([&] {
      if (round % 2 == 0) std::this_thread::yield();
      kv->Cancel(absl::CancelledError("cancelled by the client"));
    });
    engine_thread.join();
    client.join();
    ASSERT_TRUE(outcome_->Wait().has_value());
    engine_.RunDeferred();
    EXPECT_EQ(outcome_->count(), 1) << "round " << round;
  }
}

}  // namespace
}  // namespace tandem::worker
