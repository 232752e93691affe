// The request flow's state machine against fake workers (docs/request-path.md): what a client
// would notice (its tokens, its one final answer, the error it gets) and what the workers would
// (which calls, which lease released how often, which calls cancelled, nothing left pending).
#include "router/request_flow.h"

#include <map>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "metrics/registry.h"
#include "unit/router/request_flow_fixture.h"

namespace tandem::router {
namespace {

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
  EXPECT_EQ(observer_->cached_prompt_tokens, 16) << "known before the answer may end early";
  EXPECT_TRUE(observer_->cached_before_tokens);
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
  d.generates[0]->Send({5}, v1::FINISH_REASON_UNSPECIFIED, 0, /*cached_prompt_tokens=*/16);
  EXPECT_EQ(observer_->cached_prompt_tokens, 16) << "known before the answer may end early";
  EXPECT_TRUE(observer_->cached_before_tokens);
  d.generates[0]->Send({6}, v1::FINISH_REASON_LENGTH, 2, /*cached_prompt_tokens=*/16);
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

// Conditional disaggregation by cost (--local-prefill-ttft-slo): the router times each prefill
// (the queue ahead of it and its own tokens, claim to answer) and sends a prompt to the decode
// worker when the prefill worker's queue would miss the TTFT SLO at that rate and the decode
// worker's would not.
TEST_F(RequestFlowTest, PromptsPrefillLocallyWhenThePrefillQueueWouldMissTheTtftSlo) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  options_.local_prefill_ttft_slo = absl::Seconds(1);
  auto heartbeat = [&](const std::string& id, int64_t queued) {
    v1::WorkerLoad load;
    load.set_free_kv_blocks(100);
    load.set_queued_prefill_tokens(queued);
    ASSERT_TRUE(registry_->Heartbeat(id, 1, v1::WORKER_ROLE_UNSPECIFIED, load));
  };
  // No prefill timed yet: no prediction, so disaggregated however long the queue. This one is
  // timed: 900 queued + 100 own tokens in 2 s.
  heartbeat("p", 900);
  Start(100, 2);
  ASSERT_EQ(d.reserves.size(), 1u);
  d.AnswerReserve(0, "L1");
  ASSERT_EQ(p.prefills.size(), 1u);
  clock_.Advance(absl::Seconds(2));
  p.AnswerPrefill(0, 7);
  EXPECT_DOUBLE_EQ(registry_->Outlook(std::vector<int32_t>(10, 3)).tokens_per_s, 500.0);

  // 5000 queued: 10 s at 500 tokens/s against 1 s; the decode worker's 0.2 s meets it.
  heartbeat("p", 5000);
  observer_ = std::make_shared<RecordingObserver>();
  auto flow = Start(100, 2);
  EXPECT_EQ(p.prefills.size(), 1u);
  EXPECT_EQ(d.reserves.size(), 1u);
  ASSERT_EQ(d.generates.size(), 1u);
  EXPECT_TRUE(flow->stats().local_by_cost);
  EXPECT_EQ(metrics_.prefills->With({"local_by_cost"}).value(), 1);
  // The decode worker as busy: both would miss, so the prompt stays with the prefill worker.
  heartbeat("d", 5000);
  observer_ = std::make_shared<RecordingObserver>();
  flow = Start(100, 2);
  EXPECT_EQ(d.generates.size(), 1u);
  EXPECT_EQ(d.reserves.size(), 2u);
  EXPECT_FALSE(flow->stats().local_by_cost);
  // An idle prefill worker again: disaggregated.
  heartbeat("p", 0);
  heartbeat("d", 0);
  observer_ = std::make_shared<RecordingObserver>();
  Start(100, 2);
  EXPECT_EQ(d.reserves.size(), 3u);
  EXPECT_EQ(d.generates.size(), 1u);
  // Without the SLO the rule is off.
  options_.local_prefill_ttft_slo = absl::ZeroDuration();
  heartbeat("p", 5000);
  observer_ = std::make_shared<RecordingObserver>();
  Start(100, 2);
  EXPECT_EQ(d.reserves.size(), 4u);
  EXPECT_EQ(metrics_.prefills->With({"local_by_cost"}).value(), 1);
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

// A later choice of an admitted request (n > 1) waits with no admission timeout: for room that
// its siblings free as they finish, until the request's own deadline.
TEST_F(RequestFlowTest, WithoutAnAdmissionTimeoutAFlowWaitsForRoomUntilItsDeadline) {
  AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  options_.admission_timeout = absl::InfiniteDuration();
  RouterRequest r;
  r.id = "req-choice-1";
  r.prompt.assign(40, 5);
  r.sampling.max_tokens = 8;
  const absl::Time start = clock_.Now();
  r.deadline = start + absl::Minutes(3);
  RequestFlow::Start(std::move(r), options_, registry_.get(), &clock_, observer_);
  size_t refusals = 0;
  while (!observer_->ended() && clock_.Now() - start < absl::Minutes(2)) {
    ASSERT_EQ(d.reserves.size(), refusals + 1);
    d.FailReserve(refusals++, absl::ResourceExhaustedError("full"));
    ASSERT_TRUE(clock_.RunNext());
  }
  EXPECT_FALSE(observer_->ended()) << "still waiting two minutes on, past the default 60 s: " << observer_->status;
  d.AnswerReserve(refusals, "L1");
  EXPECT_EQ(fakes_["p"]->prefills.size(), 1u) << "room came: the choice goes on";
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
  options_.max_migrations = 0;  // else a fresh lease is tried (request_flow_migration_test.cc)
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

TEST_F(RequestFlowTest, DecodeStreamThatFailsWithNoMigrationsLeftFailsTheRequest) {
  // Migration is tested in request_flow_migration_test.cc; with it turned off, the client gets
  // the worker's failure, once.
  options_.max_migrations = 0;
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  auto stream = StartDecoding(p, d);
  stream->Send({8, 9});
  stream->End(absl::UnavailableError("Socket closed"));
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(observer_->tokens, (std::vector<int32_t>{7, 8, 9}));
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_EQ(registry_->Find("d"), nullptr) << "a connection lost mid-stream drops the worker";
  Register("d", v1::WORKER_ROLE_DECODE);  // it was alive after all: its next heartbeat

  // The worker shutting down under the stream (CANCELLED that the router did not ask for) is
  // the worker's failure, not the client's cancel.
  observer_ = std::make_shared<RecordingObserver>();
  StartDecoding(p, d)->End(absl::CancelledError("server shutting down"));
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(observer_->status.message().find("stopped while decoding"), absl::string_view::npos);
  Register("d", v1::WORKER_ROLE_DECODE);

  // A stream that ends "OK" without a finish reason is not a finished request.
  observer_ = std::make_shared<RecordingObserver>();
  stream = StartDecoding(p, d);
  stream->Send({8});
  stream->End();
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(observer_->EndedOnceLast());

  // An expired lease at decode: the release is harmless and happens once; nothing leaks.
  observer_ = std::make_shared<RecordingObserver>();
  const size_t released = d.released.size();
  StartDecoding(p, d)->End(absl::NotFoundError("no lease L1 (expired or released)"));
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_LE(d.released.size() - released, 1u);
  EXPECT_EQ(NoPending(), 0);
  EXPECT_EQ(clock_.waiting(), 0u);
  EXPECT_EQ(metrics_.migrations->With({"stream_failed"}).value(), 0);
}

// Prompt log-probabilities come once, before the first token, from the first leg; a count that
// does not match the prompt is not passed on; a resumed leg does not ask for them again.
TEST_F(RequestFlowTest, PromptLogprobsArePassedOnOnceFromTheFirstLeg) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  auto& d2 = AddWorker("d2", v1::WORKER_ROLE_DECODE);
  auto flow = Start(40, 4, /*prompt_logprobs=*/1);
  auto& first = d.reserves.empty() ? d2 : d;
  auto& second = &first == &d ? d2 : d;
  first.AnswerReserve(0, "L1");
  ASSERT_EQ(p.prefills.size(), 1u);
  EXPECT_EQ(p.prefills[0]->request.sampling().prompt_logprobs(), 1);
  p.AnswerPrefill(0, 7, v1::FINISH_REASON_UNSPECIFIED, 0, /*prompt_logprobs=*/39);
  EXPECT_EQ(observer_->prompt_logprobs, std::vector<int>{39});
  EXPECT_TRUE(observer_->prompt_logprobs_before_tokens);
  ASSERT_EQ(first.decodes.size(), 1u);
  first.decodes[0]->Send({8});
  first.decodes[0]->End(absl::UnavailableError("Socket closed"));  // migrates
  ASSERT_EQ(second.reserves.size(), 1u);
  second.AnswerReserve(0, "L2");
  ASSERT_EQ(p.prefills.size(), 2u);
  EXPECT_FALSE(p.prefills[1]->request.sampling().has_prompt_logprobs()) << "the resumed leg asks again";
  p.AnswerPrefill(1, 9, v1::FINISH_REASON_UNSPECIFIED, 0, /*prompt_logprobs=*/41);
  ASSERT_EQ(second.decodes.size(), 1u);
  second.decodes[0]->Send({10}, v1::FINISH_REASON_LENGTH, 2);
  second.decodes[0]->End();
  EXPECT_EQ(observer_->tokens, (std::vector<int32_t>{7, 8, 9, 10}));
  EXPECT_EQ(observer_->prompt_logprobs, std::vector<int>{39}) << "passed on once";

  observer_ = std::make_shared<RecordingObserver>();
  Start(40, 4, /*prompt_logprobs=*/1);
  FakeWorkerClient& third = !d.reserves.empty() && !d.reserves.back()->answered ? d : d2;
  third.AnswerReserve(third.reserves.size() - 1, "L3");
  p.AnswerPrefill(p.prefills.size() - 1, 7, v1::FINISH_REASON_UNSPECIFIED, 0, /*prompt_logprobs=*/5);
  EXPECT_TRUE(observer_->prompt_logprobs.empty()) << "5 log-probabilities for a 40-token prompt";
  EXPECT_EQ(observer_->tokens, (std::vector<int32_t>{7}));
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

TEST_F(RequestFlowTest, PrefillGoesToAWorkerWhoseKvLayoutMatchesTheLeaseElseTheDecodeWorkerComputesIt) {
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
  registry_->Remove("p32");  // its 8 prefills are cancelled and re-reserve (a new leg each)
  EXPECT_EQ(p32.cancelled(), 8);
  // No prefill worker left has the lease's layout: the decode worker computes the prompt itself
  // instead of the client getting an error.
  observer_ = std::make_shared<RecordingObserver>();
  Start(40);
  d32.AnswerReserve(d32.reserves.size() - 1, "L8");
  EXPECT_FALSE(observer_->ended()) << observer_->status;
  EXPECT_EQ(d32.released.back(), "L8");
  EXPECT_TRUE(p16.prefills.empty());
  ASSERT_EQ(d32.generates.size(), 1u);
  EXPECT_EQ(d32.generates[0]->generate.prompt_size(), 40);
  d32.generates[0]->Send({7, 8}, v1::FINISH_REASON_STOP, 2);
  d32.generates[0]->End();
  EXPECT_TRUE(observer_->status.ok()) << observer_->status;
  EXPECT_EQ(observer_->tokens, (std::vector<int32_t>{7, 8}));
  EXPECT_EQ(metrics_.prefills->With({"local_fallback"}).value(), 1);
  EXPECT_EQ(metrics_.migrations->With({"no_prefill_worker"}).value(), 1);
}

}  // namespace
}  // namespace tandem::router
