// The request flow's state machine against fake workers (docs/request-path.md): what a client
// would notice (its tokens, its one final answer, the error it gets) and what the workers would
// (which calls, which lease released how often, which calls cancelled, nothing left pending).
#include "router/request_flow.h"

#include <map>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "metrics/registry.h"
#include "unit/router/fake_worker_client.h"

namespace tandem::router {
namespace {

using fakes::FakeWorkerClient;

// Time that moves only when the test says so; delayed tasks run from RunNext().
class ManualClock final : public FlowClock {
 public:
  absl::Time Now() override { return now_; }
  bool RunAt(absl::Time at, std::function<void()> task) override {
    if (stopped_) return false;
    tasks_.emplace(at, std::move(task));
    return true;
  }
  // Moves time to the earliest task and runs it; false if there is none.
  bool RunNext() {
    if (tasks_.empty()) return false;
    auto it = tasks_.begin();
    now_ = std::max(now_, it->first);
    auto task = std::move(it->second);
    tasks_.erase(it);
    task();
    return true;
  }
  size_t waiting() const { return tasks_.size(); }
  void Stop() { stopped_ = true; }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
  std::multimap<absl::Time, std::function<void()>> tasks_;
  bool stopped_ = false;
};

// Records what the client would see, in order.
class RecordingObserver final : public RequestObserver {
 public:
  void OnTokens(std::span<const int32_t> tokens) override {
    Enter("tokens");
    this->tokens.insert(this->tokens.end(), tokens.begin(), tokens.end());
    if (on_tokens) on_tokens();
    --depth_;
  }
  void OnFinished(FinishReason r, const RequestUsage& u) override {
    Enter("finished");
    reason = r;
    usage = u;
    --depth_;
  }
  void OnFailed(const absl::Status& s) override {
    Enter("failed");
    status = s;
    --depth_;
  }
  // Exactly one of OnFinished / OnFailed, it came last, and no call came inside another.
  bool EndedOnceLast() const {
    int terminal = 0;
    for (const auto& e : events) terminal += e != "tokens";
    return terminal == 1 && events.back() != "tokens" && !nested;
  }
  bool ended() const { return !events.empty() && events.back() != "tokens"; }

  std::vector<std::string> events;
  std::vector<int32_t> tokens;
  FinishReason reason = FinishReason::kNone;
  RequestUsage usage;
  absl::Status status;
  std::function<void()> on_tokens;
  bool nested = false;  // a method was called while another was running

 private:
  void Enter(const char* event) {
    nested = nested || depth_ > 0;
    ++depth_;
    events.push_back(event);
  }
  int depth_ = 0;
};

class RequestFlowTest : public ::testing::Test {
 protected:
  RequestFlowTest() : metrics_(metrics_registry_) {
    WorkerRegistryOptions o;
    o.model_id = "m";
    o.make_client = [this](const v1::WorkerInfo& info) { return fakes_.at(info.worker_id()); };
    registry_ = std::make_unique<WorkerRegistry>(o);
    options_.metrics = &metrics_;
    options_.admission_timeout = absl::Seconds(1);
  }

  FakeWorkerClient& AddWorker(const std::string& id, v1::WorkerRole role, int64_t free_blocks = 100,
                              int32_t block_size = 16) {
    auto fake = std::make_shared<FakeWorkerClient>(id, block_size);
    fakes_[id] = fake;
    v1::WorkerInfo info;
    info.set_worker_id(id);
    info.set_role(role);
    info.set_grpc_address("fake:" + id);
    info.set_model_id("m");
    info.set_epoch(1);
    info.mutable_kv_endpoint()->mutable_layout()->set_block_size(block_size);
    v1::WorkerLoad load;
    load.set_free_kv_blocks(free_blocks);
    EXPECT_TRUE(registry_->Register(info, load).ok());
    return *fake;
  }

  std::shared_ptr<RequestFlow> Start(int prompt_tokens, int max_tokens = 8) {
    RouterRequest r;
    r.id = fmt::format("req-{}", next_id_++);
    for (int i = 0; i < prompt_tokens; ++i) r.prompt.push_back(3 + i % 50);
    r.sampling.max_tokens = max_tokens;
    return RequestFlow::Start(std::move(r), options_, registry_.get(), &clock_, observer_);
  }

  // Starts a request on prefill worker p and decode worker d and takes it to its decode stream:
  // lease "L<n>" for the n-th reservation on d, first token 7.
  std::shared_ptr<FakeWorkerClient::Stream> StartDecoding(FakeWorkerClient& p, FakeWorkerClient& d,
                                                          std::shared_ptr<RequestFlow>* flow = nullptr,
                                                          int max_tokens = 8) {
    auto started = Start(40, max_tokens);
    if (flow != nullptr) *flow = started;
    d.AnswerReserve(d.reserves.size() - 1, fmt::format("L{}", d.reserves.size()));
    p.AnswerPrefill(p.prefills.size() - 1, 7);
    EXPECT_FALSE(d.decodes.empty());
    return d.decodes.empty() ? nullptr : d.decodes.back();
  }

  int NoPending() const {
    int n = 0;
    for (const auto& [id, f] : fakes_) n += f->pending();
    return n;
  }

  metrics::MetricsRegistry metrics_registry_;
  RouterMetrics metrics_;
  std::map<std::string, std::shared_ptr<FakeWorkerClient>> fakes_;
  std::unique_ptr<WorkerRegistry> registry_;
  ManualClock clock_;
  FlowOptions options_;
  std::shared_ptr<RecordingObserver> observer_ = std::make_shared<RecordingObserver>();
  int next_id_ = 0;
};

TEST_F(RequestFlowTest, DisaggregatedRequestReservesPrefillsIntoTheLeaseAndDecodes) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  auto flow = Start(40, 4);
  ASSERT_EQ(d.reserves.size(), 1u);
  EXPECT_EQ(d.reserves[0]->request.num_tokens(), 40);
  EXPECT_EQ(d.reserves[0]->request.request_id(), "req-0");
  d.AnswerReserve(0, "L1");
  ASSERT_EQ(p.prefills.size(), 1u);
  const v1::PrefillRequest& pre = p.prefills[0]->request;
  EXPECT_EQ(pre.destination().lease_id(), "L1");
  EXPECT_EQ(pre.destination().block_ids_size(), 3);  // 40 tokens in blocks of 16
  EXPECT_EQ(pre.destination().endpoint().worker_id(), "d");
  EXPECT_EQ(pre.prompt_size(), 40);
  p.AnswerPrefill(0, 7, v1::FINISH_REASON_UNSPECIFIED, /*cached_prompt_tokens=*/16);
  EXPECT_EQ(observer_->tokens, (std::vector<int32_t>{7}));
  ASSERT_EQ(d.decodes.size(), 1u);
  EXPECT_EQ(d.decodes[0]->decode.lease_id(), "L1");
  EXPECT_EQ(d.decodes[0]->decode.first_token(), 7);
  EXPECT_EQ(d.decodes[0]->decode.rng_draws(), 3);
  d.decodes[0]->Send({8, 9});
  d.decodes[0]->Send({10}, v1::FINISH_REASON_LENGTH, 4);
  EXPECT_FALSE(observer_->ended()) << "the answer is final only when the stream ends";
  d.decodes[0]->End();
  EXPECT_EQ(observer_->tokens, (std::vector<int32_t>{7, 8, 9, 10}));
  EXPECT_EQ(observer_->reason, FinishReason::kLength);
  EXPECT_EQ(observer_->usage.prompt_tokens, 40);
  EXPECT_EQ(observer_->usage.completion_tokens, 4);
  EXPECT_EQ(observer_->usage.cached_prompt_tokens, 16);  // the prefill worker's prefix cache
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_TRUE(d.released.empty()) << "the decode worker adopted the lease";
  EXPECT_EQ(NoPending(), 0);
  EXPECT_TRUE(flow->stats().disaggregated);
  EXPECT_EQ(flow->stats().prefill_attempts, 1);
  EXPECT_EQ(flow->stats().transfer_bytes, 4096);
  EXPECT_EQ(metrics_.prefills->With({"disaggregated"}).value(), 1);
  EXPECT_EQ(metrics_.prefill_retries->value(), 0);
}

TEST_F(RequestFlowTest, ShortPromptsAndClustersWithoutPrefillWorkersGenerateLocally) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  options_.local_prefill_threshold = 32;
  Start(31, 2);
  EXPECT_TRUE(d.reserves.empty());
  ASSERT_EQ(d.generates.size(), 1u);
  EXPECT_EQ(d.generates[0]->generate.prompt_size(), 31);
  d.generates[0]->Send({5, 6}, v1::FINISH_REASON_LENGTH, 2, /*cached_prompt_tokens=*/16);
  d.generates[0]->End();
  EXPECT_EQ(observer_->tokens, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(observer_->reason, FinishReason::kLength);
  EXPECT_EQ(observer_->usage.cached_prompt_tokens, 16);
  EXPECT_TRUE(observer_->EndedOnceLast());

  // At the threshold: disaggregated.
  observer_ = std::make_shared<RecordingObserver>();
  Start(32, 2);
  EXPECT_EQ(d.reserves.size(), 1u);
  EXPECT_EQ(d.generates.size(), 1u);

  // No prefill worker left: every prompt runs locally, whatever its length.
  registry_->Remove("p");
  observer_ = std::make_shared<RecordingObserver>();
  Start(500, 2);
  EXPECT_EQ(d.reserves.size(), 1u);
  EXPECT_EQ(d.generates.size(), 2u);
  EXPECT_TRUE(p.prefills.empty());
  EXPECT_EQ(metrics_.prefills->With({"local"}).value(), 2);
}

TEST_F(RequestFlowTest, FullDecodeWorkerIsSkippedForTheNext) {
  AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d1 = AddWorker("d1", v1::WORKER_ROLE_DECODE, 200);
  auto& d2 = AddWorker("d2", v1::WORKER_ROLE_DECODE, 100);
  Start(40);
  ASSERT_EQ(d1.reserves.size(), 1u) << "the one with the most room first";
  d1.FailReserve(0, absl::ResourceExhaustedError("not enough free KV blocks"));
  ASSERT_EQ(d2.reserves.size(), 1u);
  d2.AnswerReserve(0, "L2");
  EXPECT_EQ(fakes_["p"]->prefills.at(0)->request.destination().lease_id(), "L2");
  // A draining or unreachable worker is skipped the same way.
  v1::WorkerLoad load;
  load.set_free_kv_blocks(200);
  ASSERT_TRUE(registry_->Heartbeat("d1", 1, v1::WORKER_ROLE_UNSPECIFIED, load));
  observer_ = std::make_shared<RecordingObserver>();
  Start(40);
  ASSERT_EQ(d1.reserves.size(), 2u);
  d1.FailReserve(1, absl::UnavailableError("the worker is draining"));
  ASSERT_EQ(d2.reserves.size(), 2u);
  EXPECT_FALSE(observer_->ended());
  EXPECT_EQ(clock_.waiting(), 0u);
}

TEST_F(RequestFlowTest, AllDecodeWorkersFullWaitsForRoomThenRefusesWithResourceExhausted) {
  AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  Start(40);
  int refusals = 0;
  while (!observer_->ended()) {
    ASSERT_EQ(d.reserves.size(), static_cast<size_t>(refusals + 1));
    d.FailReserve(refusals++, absl::ResourceExhaustedError("not enough free KV blocks"));
    if (!observer_->ended()) {
      ASSERT_TRUE(clock_.RunNext()) << "a refused request waits for room";
    }
  }
  EXPECT_GT(refusals, 3) << "it retried while waiting";
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(observer_->status.message().find("retry later"), absl::string_view::npos) << observer_->status;
  EXPECT_EQ(RetryAfterOf(observer_->status), 5) << "no admission measured yet: the default";
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_EQ(clock_.waiting(), 0u);
  EXPECT_TRUE(d.released.empty());
  EXPECT_EQ(NoPending(), 0);

  // Room appears while waiting: the request goes on.
  observer_ = std::make_shared<RecordingObserver>();
  Start(40);
  const size_t first = d.reserves.size() - 1;
  d.FailReserve(first, absl::ResourceExhaustedError("full"));
  ASSERT_TRUE(clock_.RunNext());
  d.AnswerReserve(first + 1, "L9");
  EXPECT_EQ(fakes_["p"]->prefills.size(), 1u);
  EXPECT_FALSE(observer_->ended());
}

TEST_F(RequestFlowTest, PrefillWorkerThatFailsIsRetriedOnAnotherIntoTheSameLease) {
  // Before the first chunk (connection refused) and after KV started moving (the transfer
  // broke): the router sees a retryable error either way and retries elsewhere.
  for (const absl::Status& failure : {absl::UnavailableError("failed to connect to all addresses"),
                                      absl::UnavailableError("KV transfer failed: peer gone after 2 blocks")}) {
    SCOPED_TRACE(failure.ToString());
    fakes_.clear();
    registry_ = std::make_unique<WorkerRegistry>([this] {
      WorkerRegistryOptions o;
      o.make_client = [this](const v1::WorkerInfo& info) { return fakes_.at(info.worker_id()); };
      return o;
    }());
    observer_ = std::make_shared<RecordingObserver>();
    auto& p1 = AddWorker("p1", v1::WORKER_ROLE_PREFILL);
    auto& p2 = AddWorker("p2", v1::WORKER_ROLE_PREFILL);
    auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
    auto flow = Start(40, 2);
    d.AnswerReserve(0, "L1");
    auto& first = p1.prefills.empty() ? p2 : p1;
    auto& second = p1.prefills.empty() ? p1 : p2;
    ASSERT_EQ(first.prefills.size(), 1u);
    first.FailPrefill(0, failure);
    ASSERT_EQ(second.prefills.size(), 1u);
    EXPECT_EQ(second.prefills[0]->request.destination().lease_id(), "L1");
    const auto& blocks = second.prefills[0]->request.destination().block_ids();
    const auto& before = first.prefills[0]->request.destination().block_ids();
    EXPECT_EQ(std::vector<int32_t>(blocks.begin(), blocks.end()), std::vector<int32_t>(before.begin(), before.end()));
    EXPECT_EQ(d.reserves.size(), 1u) << "no new reservation";
    second.AnswerPrefill(0, 11);
    ASSERT_EQ(d.decodes.size(), 1u);
    d.decodes[0]->Send({12}, v1::FINISH_REASON_LENGTH, 2);
    d.decodes[0]->End();
    EXPECT_EQ(observer_->tokens, (std::vector<int32_t>{11, 12}));
    EXPECT_TRUE(observer_->EndedOnceLast());
    EXPECT_EQ(flow->stats().prefill_attempts, 2);
    EXPECT_TRUE(d.released.empty());
  }
  EXPECT_EQ(metrics_.prefill_retries->value(), 2);
}

TEST_F(RequestFlowTest, WhenEveryPrefillAttemptFailsTheClientGetsTheLastErrorAndTheLeaseIsReleasedOnce) {
  std::vector<FakeWorkerClient*> prefill;
  for (int i = 0; i < 4; ++i) prefill.push_back(&AddWorker(fmt::format("p{}", i), v1::WORKER_ROLE_PREFILL));
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  auto flow = Start(40);
  d.AnswerReserve(0, "L1");
  for (int attempt = 0; attempt < options_.max_prefill_attempts; ++attempt) {
    FakeWorkerClient* busy = nullptr;
    for (auto* p : prefill) {
      if (p->pending() > 0) busy = p;
    }
    ASSERT_NE(busy, nullptr) << "attempt " << attempt;
    busy->FailPrefill(0, absl::UnavailableError(fmt::format("transfer failed #{}", attempt)));
  }
  ASSERT_TRUE(observer_->ended());
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(observer_->status.message().find("transfer failed #2"), absl::string_view::npos) << observer_->status;
  EXPECT_NE(observer_->status.message().find("3 worker(s)"), absl::string_view::npos) << observer_->status;
  EXPECT_EQ(d.released, (std::vector<std::string>{"L1"}));
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_EQ(NoPending(), 0);
  EXPECT_EQ(flow->stats().prefill_attempts, 3);
}

TEST_F(RequestFlowTest, NonRetryablePrefillErrorFailsAtOnceAndReleasesTheLease) {
  auto& p1 = AddWorker("p1", v1::WORKER_ROLE_PREFILL);
  auto& p2 = AddWorker("p2", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  Start(40);
  d.AnswerReserve(0, "L1");
  auto& p = p1.prefills.empty() ? p2 : p1;
  p.FailPrefill(0, absl::InvalidArgumentError("the destination lease has 1 blocks; the prompt needs 3"));
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p1.prefills.size() + p2.prefills.size(), 1u);
  EXPECT_EQ(d.released, (std::vector<std::string>{"L1"}));
  EXPECT_TRUE(observer_->EndedOnceLast());
}

TEST_F(RequestFlowTest, FirstTokenThatEndsTheRequestReleasesTheUnusedLease) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  Start(40, 8);
  d.AnswerReserve(0, "L1");
  p.AnswerPrefill(0, 2, v1::FINISH_REASON_STOP);  // end of sequence at once
  EXPECT_EQ(observer_->reason, FinishReason::kStop);
  EXPECT_TRUE(d.decodes.empty());
  EXPECT_EQ(d.released, (std::vector<std::string>{"L1"}));

  observer_ = std::make_shared<RecordingObserver>();
  Start(40, 1);  // max_tokens 1: the prefill's token is the whole answer
  d.AnswerReserve(1, "L2");
  p.AnswerPrefill(1, 9);
  EXPECT_EQ(observer_->reason, FinishReason::kLength);
  EXPECT_EQ(observer_->usage.completion_tokens, 1);
  EXPECT_EQ(d.released, (std::vector<std::string>{"L1", "L2"}));
  EXPECT_TRUE(observer_->EndedOnceLast());
}

TEST_F(RequestFlowTest, ExpiredLeaseAtDecodeFailsTheRequestWithoutLeaks) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  StartDecoding(p, d)->End(absl::NotFoundError("no lease L1 (expired or released)"));
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(observer_->tokens, (std::vector<int32_t>{7}));
  EXPECT_TRUE(observer_->EndedOnceLast());
  // The release is harmless (the worker no longer has the lease) and happens once.
  EXPECT_LE(d.released.size(), 1u);
  EXPECT_EQ(NoPending(), 0);
  EXPECT_EQ(clock_.waiting(), 0u);
}

TEST_F(RequestFlowTest, DecodeStreamThatBreaksMidwayFailsTheRequest) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  auto stream = StartDecoding(p, d);
  stream->Send({8, 9});
  stream->End(absl::UnavailableError("Socket closed"));
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(observer_->tokens, (std::vector<int32_t>{7, 8, 9}));
  EXPECT_TRUE(observer_->EndedOnceLast());

  // The worker shutting down under the stream (CANCELLED that the router did not ask for) is
  // the worker's failure, not the client's cancel.
  observer_ = std::make_shared<RecordingObserver>();
  StartDecoding(p, d)->End(absl::CancelledError("server shutting down"));
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(observer_->status.message().find("stopped while decoding"), absl::string_view::npos);

  // A stream that ends "OK" without a finish reason is not a finished request.
  observer_ = std::make_shared<RecordingObserver>();
  stream = StartDecoding(p, d);
  stream->Send({8});
  stream->End();
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(observer_->EndedOnceLast());
}

TEST_F(RequestFlowTest, CancelDuringReservationReleasesTheLeaseGrantedAfterwards) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  auto flow = Start(40);
  flow->Cancel();
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_TRUE(d.released.empty());
  d.AnswerReserve(0, "L1");
  EXPECT_EQ(d.released, (std::vector<std::string>{"L1"}));
  EXPECT_TRUE(p.prefills.empty());
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_EQ(NoPending(), 0);
}

TEST_F(RequestFlowTest, CancelWhileWaitingForRoomStopsWaiting) {
  AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  auto flow = Start(40);
  d.FailReserve(0, absl::ResourceExhaustedError("full"));
  ASSERT_EQ(clock_.waiting(), 1u);
  flow->Cancel();
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kCancelled);
  clock_.RunNext();
  EXPECT_EQ(d.reserves.size(), 1u) << "no reservation after the cancel";
  EXPECT_TRUE(observer_->EndedOnceLast());
}

TEST_F(RequestFlowTest, CancelDuringPrefillCancelsThePrefillAndReleasesTheLease) {
  auto& p1 = AddWorker("p1", v1::WORKER_ROLE_PREFILL);
  auto& p2 = AddWorker("p2", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  auto flow = Start(40);
  d.AnswerReserve(0, "L1");
  auto& p = p1.prefills.empty() ? p2 : p1;
  flow->Cancel();  // the fake answers the cancelled call with CANCELLED at once
  EXPECT_TRUE(p.prefills[0]->cancelled);
  EXPECT_EQ(p1.prefills.size() + p2.prefills.size(), 1u) << "a cancelled prefill is not retried";
  EXPECT_EQ(d.released, (std::vector<std::string>{"L1"}));
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_EQ(NoPending(), 0);
}

TEST_F(RequestFlowTest, CancelDuringDecodeCancelsTheDecodeStream) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  std::shared_ptr<RequestFlow> flow;
  auto stream = StartDecoding(p, d, &flow);
  stream->Send({8});
  flow->Cancel();
  EXPECT_TRUE(stream->cancelled);
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(observer_->tokens, (std::vector<int32_t>{7, 8}));
  EXPECT_LE(d.released.size(), 1u);  // harmless once the worker adopted it
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_EQ(NoPending(), 0);

  // Cancelling a local generation cancels its stream too.
  options_.local_prefill_threshold = 100;
  observer_ = std::make_shared<RecordingObserver>();
  auto local = Start(10);
  local->Cancel();
  EXPECT_TRUE(d.generates.at(0)->cancelled);
  EXPECT_TRUE(observer_->EndedOnceLast());
}

TEST_F(RequestFlowTest, CancelFromInsideOnTokensEndsTheRequestAfterThoseTokens) {
  // A stop string matched in the first tokens: the observer cancels from OnTokens.
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  auto flow = Start(40);
  std::weak_ptr<RequestFlow> weak = flow;
  observer_->on_tokens = [weak, this] {
    if (observer_->tokens.size() >= 3) weak.lock()->Cancel();
  };
  d.AnswerReserve(0, "L1");
  p.AnswerPrefill(0, 7);
  d.decodes[0]->Send({8, 9});
  EXPECT_TRUE(d.decodes[0]->cancelled);
  EXPECT_EQ(observer_->events, (std::vector<std::string>{"tokens", "tokens", "failed"}));
  EXPECT_TRUE(observer_->EndedOnceLast()) << "OnFailed came while OnTokens was running";
  d.decodes[0]->Send({10});  // late tokens from the worker go nowhere
  EXPECT_EQ(observer_->tokens.size(), 3u);
}

TEST_F(RequestFlowTest, CancelAfterTheRequestFinishedIsANoOp) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  std::shared_ptr<RequestFlow> flow;
  auto stream = StartDecoding(p, d, &flow, 2);
  stream->Send({8}, v1::FINISH_REASON_LENGTH, 2);
  stream->End();
  flow->Cancel();
  flow->Cancel();
  EXPECT_EQ(observer_->reason, FinishReason::kLength);
  EXPECT_EQ(observer_->events, (std::vector<std::string>{"tokens", "tokens", "finished"}));
  EXPECT_EQ(p.cancelled() + d.cancelled(), 0);
  EXPECT_TRUE(d.released.empty());
}

TEST_F(RequestFlowTest, NoWorkersMeansUnavailable) {
  Start(40);
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(observer_->EndedOnceLast());

  // Prefill workers but no decode worker.
  AddWorker("p", v1::WORKER_ROLE_PREFILL);
  observer_ = std::make_shared<RecordingObserver>();
  Start(40);
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(observer_->status.message().find("decode"), absl::string_view::npos);
}

TEST_F(RequestFlowTest, RouterShuttingDownWhileWaitingForRoomFailsTheRequest) {
  AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  clock_.Stop();
  Start(40);
  d.FailReserve(0, absl::ResourceExhaustedError("full"));
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(observer_->status.message().find("shutting down"), absl::string_view::npos);
}

TEST_F(RequestFlowTest, PrefillGoesToAWorkerWhoseKvLayoutMatchesTheLease) {
  // Workers started with different --block-size cannot exchange KV: the prefill worker must
  // match the decode worker that holds the lease.
  auto& p16 = AddWorker("p16", v1::WORKER_ROLE_PREFILL, 100, 16);
  auto& p32 = AddWorker("p32", v1::WORKER_ROLE_PREFILL, 100, 32);
  auto& d32 = AddWorker("d32", v1::WORKER_ROLE_DECODE, 100, 32);
  for (int i = 0; i < 8; ++i) {
    Start(40 + i);
    d32.AnswerReserve(i, fmt::format("L{}", i));
  }
  EXPECT_TRUE(p16.prefills.empty());
  EXPECT_EQ(p32.prefills.size(), 8u);
  EXPECT_EQ(p32.prefills[0]->request.destination().block_ids_size(), 2);  // 40 tokens in blocks of 32
  registry_->Remove("p32");
  observer_ = std::make_shared<RecordingObserver>();
  Start(40);
  d32.AnswerReserve(8, "L8");
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kUnavailable) << observer_->status;
  EXPECT_NE(observer_->status.message().find("KV layout"), absl::string_view::npos);
  EXPECT_EQ(d32.released.back(), "L8");
}

}  // namespace
}  // namespace tandem::router
