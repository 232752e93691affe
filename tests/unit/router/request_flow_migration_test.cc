// Migration (request_flow.h, "migrate"): a request whose worker fails or is dropped mid-stream
// resumes elsewhere from its prompt plus the tokens already streamed. What the client would
// notice (every token once, in order, one final answer, usage over both legs) and what the
// workers would (the resumed prompt, max_tokens and sampler position; old calls cancelled,
// leases released, nothing pending).
#include "unit/router/request_flow_fixture.h"

namespace tandem::router {
namespace {

using Tokens = std::vector<int32_t>;

// The request's prompt (Start()'s) followed by `generated`.
Tokens Resumed(int prompt_tokens, const Tokens& generated) {
  Tokens t;
  for (int i = 0; i < prompt_tokens; ++i) t.push_back(3 + i % 50);
  t.insert(t.end(), generated.begin(), generated.end());
  return t;
}

Tokens PromptOf(const google::protobuf::RepeatedField<int32_t>& prompt) { return {prompt.begin(), prompt.end()}; }

class MigrationTest : public RequestFlowTest {};

TEST_F(MigrationTest, DecodeWorkerThatDiesMidStreamIsReplacedWithoutTheClientNoticing) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d1 = AddWorker("d1", v1::WORKER_ROLE_DECODE, 200);  // most room: picked first
  auto& d2 = AddWorker("d2", v1::WORKER_ROLE_DECODE, 100);
  std::shared_ptr<RequestFlow> flow;
  auto stream = StartDecoding(p, d1, &flow, /*max_tokens=*/8);  // first token 7, 3 draws
  ASSERT_TRUE(p.prefills[0]->request.sampling().has_seed()) << "a sampled request gets a seed to resume with";
  const uint64_t seed = p.prefills[0]->request.sampling().seed();
  stream->Send({8, 9}, v1::FINISH_REASON_UNSPECIFIED, 0, 0, /*rng_draws=*/5);
  stream->End(absl::UnavailableError("Socket closed"));
  EXPECT_FALSE(observer_->ended()) << observer_->status;

  // A new leg: KV for the prompt plus the 3 tokens so far, on the other decode worker.
  ASSERT_EQ(d2.reserves.size(), 1u);
  EXPECT_EQ(d2.reserves[0]->request.num_tokens(), 43);
  d2.AnswerReserve(0, "M1");
  ASSERT_EQ(p.prefills.size(), 2u);
  const v1::PrefillRequest& again = p.prefills[1]->request;
  EXPECT_EQ(PromptOf(again.prompt()), Resumed(40, {7, 8, 9}));
  EXPECT_EQ(again.sampling().max_tokens(), 5);  // 8 less the 3 streamed
  EXPECT_EQ(again.rng_draws(), 5);              // the sampler goes on where it stopped
  EXPECT_EQ(again.sampling().seed(), seed);
  EXPECT_EQ(again.sampling().output_in_prompt(), 3);  // penalties count the 3 as output
  EXPECT_EQ(again.destination().lease_id(), "M1");
  p.AnswerPrefill(1, 10);  // rng_draws 3 in the fake's answer
  ASSERT_EQ(d2.decodes.size(), 1u);
  EXPECT_EQ(PromptOf(d2.decodes[0]->decode.prompt()), Resumed(40, {7, 8, 9}));
  EXPECT_EQ(d2.decodes[0]->decode.first_token(), 10);
  EXPECT_EQ(d2.decodes[0]->decode.sampling().max_tokens(), 5);
  EXPECT_EQ(d2.decodes[0]->decode.sampling().output_in_prompt(), 3);
  d2.decodes[0]->Send({11, 12, 13, 14}, v1::FINISH_REASON_LENGTH, /*completion_tokens=*/5);
  d2.decodes[0]->End();

  EXPECT_EQ(observer_->tokens, (Tokens{7, 8, 9, 10, 11, 12, 13, 14})) << "no token lost or repeated";
  EXPECT_EQ(observer_->reason, FinishReason::kLength);
  EXPECT_EQ(observer_->usage.prompt_tokens, 40);
  EXPECT_EQ(observer_->usage.completion_tokens, 8);
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_EQ(flow->stats().migrations, 1);
  EXPECT_EQ(metrics_.migrations->With({"stream_failed"}).value(), 1);
  EXPECT_EQ(metrics_.migration_seconds->Snap().count, 1u);
  EXPECT_LE(d1.released.size(), 1u);  // the dead worker's lease (harmless if it is gone)
  EXPECT_TRUE(d2.released.empty()) << "the new decode worker adopted its lease";
  EXPECT_EQ(NoPending(), 0);
}

TEST_F(MigrationTest, WorkerShutdownAndUnfinishedStreamsMigrateButBadRequestsDoNot) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  AddWorker("d1", v1::WORKER_ROLE_DECODE, 200);
  auto& d2 = AddWorker("d2", v1::WORKER_ROLE_DECODE, 100);
  for (const absl::Status& failure :
       {absl::CancelledError("server shutting down"), absl::OkStatus() /* ended without a finish reason */,
        absl::NotFoundError("no lease L1 (expired or released)"), absl::InternalError("the engine failed")}) {
    observer_ = std::make_shared<RecordingObserver>();
    auto& d1 = *fakes_.at("d1");
    StartDecoding(p, d1)->End(failure);
    EXPECT_FALSE(observer_->ended()) << failure << " → " << observer_->status;
    ASSERT_FALSE(d2.reserves.empty());
    EXPECT_FALSE(d2.reserves.back()->answered) << "resumed on d2 after: " << failure;
    d2.FailReserve(d2.reserves.size() - 1, absl::InvalidArgumentError("stop here"));
    EXPECT_EQ(observer_->status.code(), absl::StatusCode::kInvalidArgument);
    Register("d1", v1::WORKER_ROLE_DECODE, 200);  // dropped after the shutdown: back again
  }
  // A request the worker refuses as invalid would be refused anywhere: no new leg.
  observer_ = std::make_shared<RecordingObserver>();
  const size_t reserves = d2.reserves.size();
  StartDecoding(p, *fakes_.at("d1"))->End(absl::InvalidArgumentError("token id 99999 is outside the vocabulary"));
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d2.reserves.size(), reserves);
  EXPECT_EQ(NoPending(), 0);
}

TEST_F(MigrationTest, AStreamBrokenMidwayMovesTheWorkersOtherStreamsAtOnce) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d1 = AddWorker("d1", v1::WORKER_ROLE_DECODE, 200);
  auto& d2 = AddWorker("d2", v1::WORKER_ROLE_DECODE, 100);
  auto first = StartDecoding(p, d1);
  auto other_observer = observer_;
  observer_ = std::make_shared<RecordingObserver>();
  auto second = StartDecoding(p, d1);
  first->Send({8});
  second->Send({8});
  // A worker that refuses a new stream (draining) is alive: not dropped.
  ASSERT_NE(registry_->Find("d1"), nullptr);
  first->End(absl::UnavailableError("Socket closed"));  // mid-stream: the connection is gone
  EXPECT_EQ(registry_->Find("d1"), nullptr);
  EXPECT_TRUE(second->cancelled) << "the worker's other stream moved without waiting for its expiry";
  EXPECT_EQ(d2.reserves.size(), 2u);
  EXPECT_EQ(metrics_.migrations->With({"stream_failed"}).value(), 1);
  EXPECT_EQ(metrics_.migrations->With({"worker_lost"}).value(), 1);
  EXPECT_FALSE(other_observer->ended());
  EXPECT_FALSE(observer_->ended());

  // A stream refused before it began (UNAVAILABLE: draining) leaves the worker registered.
  auto& d3 = AddWorker("d3", v1::WORKER_ROLE_DECODE, 500);
  observer_ = std::make_shared<RecordingObserver>();
  StartDecoding(p, d3)->End(absl::UnavailableError("the worker is draining"));
  EXPECT_NE(registry_->Find("d3"), nullptr);
}

TEST_F(MigrationTest, MigrationsAreBoundedThenTheClientGetsTheFailure) {
  options_.max_migrations = 1;
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d1 = AddWorker("d1", v1::WORKER_ROLE_DECODE, 200);
  auto& d2 = AddWorker("d2", v1::WORKER_ROLE_DECODE, 100);
  StartDecoding(p, d1)->End(absl::UnavailableError("Socket closed"));
  d2.AnswerReserve(0, "M1");
  p.AnswerPrefill(1, 8);
  ASSERT_EQ(d2.decodes.size(), 1u);
  d2.decodes[0]->End(absl::UnavailableError("Connection reset"));
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(observer_->status.message().find("Connection reset"), absl::string_view::npos);
  EXPECT_EQ(observer_->tokens, (Tokens{7, 8}));
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_EQ(NoPending(), 0);
}

TEST_F(MigrationTest, LocalGenerationResumesOnAnotherMixedWorkerWithTheSamplerPosition) {
  auto& m1 = AddWorker("m1", v1::WORKER_ROLE_MIXED, 200);
  auto& m2 = AddWorker("m2", v1::WORKER_ROLE_MIXED, 100);
  Start(20, 6);
  ASSERT_EQ(m1.generates.size(), 1u);
  const uint64_t seed = m1.generates[0]->generate.sampling().seed();
  m1.generates[0]->Send({5, 6}, v1::FINISH_REASON_UNSPECIFIED, 0, 0, /*rng_draws=*/2);
  m1.generates[0]->End(absl::UnavailableError("Socket closed"));
  ASSERT_EQ(m2.generates.size(), 1u);
  const v1::GenerateTokensRequest& again = m2.generates[0]->generate;
  EXPECT_EQ(PromptOf(again.prompt()), Resumed(20, {5, 6}));
  EXPECT_EQ(again.sampling().max_tokens(), 4);
  EXPECT_EQ(again.rng_draws(), 2);
  EXPECT_EQ(again.sampling().seed(), seed);
  m2.generates[0]->Send({7, 8, 9, 10}, v1::FINISH_REASON_LENGTH, /*completion_tokens=*/4);
  m2.generates[0]->End();
  EXPECT_EQ(observer_->tokens, (Tokens{5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(observer_->usage.completion_tokens, 6);
  EXPECT_TRUE(observer_->EndedOnceLast());
}

TEST_F(MigrationTest, AStalledWorkerDroppedByTheRegistryHasItsStreamsMoved) {
  // A stopped process (SIGSTOP, a hung host) answers nothing: only the registry dropping it
  // (missed heartbeats: WorkerRegistry::Expire, tested in registry_test) says it is gone. Its
  // streams are cancelled and resumed; whatever it sends later is ignored.
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d1 = AddWorker("d1", v1::WORKER_ROLE_DECODE, 200);
  auto& d2 = AddWorker("d2", v1::WORKER_ROLE_DECODE, 100);
  auto stream = StartDecoding(p, d1);
  stream->Send({8});
  registry_->Remove("d1");
  EXPECT_TRUE(stream->cancelled);
  ASSERT_EQ(d2.reserves.size(), 1u);
  EXPECT_EQ(d2.reserves[0]->request.num_tokens(), 42);
  stream->Send({99});  // the stalled worker wakes up: too late
  d2.AnswerReserve(0, "M1");
  p.AnswerPrefill(1, 9);
  ASSERT_EQ(d2.decodes.size(), 1u);
  d2.decodes[0]->Send({10}, v1::FINISH_REASON_STOP, 2);
  d2.decodes[0]->End();
  EXPECT_EQ(observer_->tokens, (Tokens{7, 8, 9, 10}));
  EXPECT_EQ(observer_->reason, FinishReason::kStop);
  EXPECT_EQ(observer_->usage.completion_tokens, 4);
  EXPECT_EQ(metrics_.migrations->With({"worker_lost"}).value(), 1);
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_EQ(NoPending(), 0);
}

TEST_F(MigrationTest, AReservationOnAWorkerThatStoppedAnsweringIsAbandonedForAnother) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d1 = AddWorker("d1", v1::WORKER_ROLE_DECODE, 200);
  auto& d2 = AddWorker("d2", v1::WORKER_ROLE_DECODE, 100);
  Start(40);
  ASSERT_EQ(d1.reserves.size(), 1u);  // d1 is stopped: this call hangs
  registry_->Remove("d1");             // its heartbeats stopped
  ASSERT_EQ(d2.reserves.size(), 1u) << "the request reserved elsewhere without waiting for the call";
  d2.AnswerReserve(0, "M1");
  p.AnswerPrefill(0, 7);
  // d1 wakes up and grants the old reservation: nobody uses it, so it is given back at once.
  d1.AnswerReserve(0, "L-late");
  EXPECT_EQ(d1.released, (std::vector<std::string>{"L-late"}));
  EXPECT_EQ(p.prefills.size(), 1u);
  d2.decodes[0]->Send({8}, v1::FINISH_REASON_STOP, 2);
  d2.decodes[0]->End();
  EXPECT_EQ(observer_->tokens, (Tokens{7, 8}));
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_EQ(NoPending(), 0);
}

TEST_F(MigrationTest, ADecodeWorkerLostDuringPrefillIsNotPrefilledInto) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d1 = AddWorker("d1", v1::WORKER_ROLE_DECODE, 200);
  auto& d2 = AddWorker("d2", v1::WORKER_ROLE_DECODE, 100);
  Start(40);
  d1.AnswerReserve(0, "L1");
  ASSERT_EQ(p.prefills.size(), 1u);
  registry_->Remove("d1");
  EXPECT_TRUE(p.prefills[0]->cancelled) << "the prefill into the lost lease stops";
  ASSERT_EQ(d2.reserves.size(), 1u);
  EXPECT_EQ(d2.reserves[0]->request.num_tokens(), 40);
  d2.AnswerReserve(0, "M1");
  ASSERT_EQ(p.prefills.size(), 2u);
  EXPECT_EQ(p.prefills[1]->request.destination().lease_id(), "M1");
  p.AnswerPrefill(1, 7);
  d2.decodes[0]->Send({8}, v1::FINISH_REASON_STOP, 2);
  d2.decodes[0]->End();
  EXPECT_EQ(observer_->tokens, (Tokens{7, 8}));
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_TRUE(d1.decodes.empty());
  EXPECT_EQ(NoPending(), 0);
}

TEST_F(MigrationTest, PrefillsThatAllFailIntoOneLeaseTryAFreshLeaseElsewhere) {
  // The lease's decode worker may have died unnoticed: every transfer into it fails.
  auto& p1 = AddWorker("p1", v1::WORKER_ROLE_PREFILL);
  auto& p2 = AddWorker("p2", v1::WORKER_ROLE_PREFILL);
  auto& d1 = AddWorker("d1", v1::WORKER_ROLE_DECODE, 200);
  auto& d2 = AddWorker("d2", v1::WORKER_ROLE_DECODE, 100);
  options_.max_prefill_attempts = 2;
  Start(40);
  d1.AnswerReserve(0, "L1");
  for (auto* p : {&p1, &p2}) {
    ASSERT_EQ(p->prefills.size(), 1u);
    p->FailPrefill(0, absl::UnavailableError("KV transfer failed: connection to worker d1 failed"));
  }
  EXPECT_FALSE(observer_->ended()) << observer_->status;
  EXPECT_EQ(d1.released, (std::vector<std::string>{"L1"}));
  ASSERT_EQ(d2.reserves.size(), 1u) << "another decode worker first";
  EXPECT_EQ(d2.reserves[0]->request.num_tokens(), 40);
  d2.AnswerReserve(0, "M1");
  FakeWorkerClient& again = p1.prefills.size() > 1 ? p1 : p2;
  ASSERT_EQ(again.prefills.size(), 2u);
  EXPECT_EQ(again.prefills[1]->request.destination().lease_id(), "M1");
  again.AnswerPrefill(1, 7);
  d2.decodes[0]->Send({8}, v1::FINISH_REASON_STOP, 2);
  d2.decodes[0]->End();
  EXPECT_EQ(observer_->tokens, (Tokens{7, 8}));
  EXPECT_TRUE(observer_->EndedOnceLast());
  EXPECT_EQ(metrics_.migrations->With({"prefill_failed"}).value(), 1);
  EXPECT_NE(registry_->Find("d1"), nullptr) << "not dropped: the prefill workers may have been at fault";
}

TEST_F(MigrationTest, WithNoOtherDecodeWorkerTheRequestWaitsForTheRestartedOne) {
  auto& p = AddWorker("p", v1::WORKER_ROLE_PREFILL);
  auto& d = AddWorker("d", v1::WORKER_ROLE_DECODE);
  StartDecoding(p, d)->End(absl::UnavailableError("Socket closed"));
  EXPECT_FALSE(observer_->ended());
  EXPECT_TRUE(d.reserves.size() == 1u) << "the same process is not asked again";
  clock_.RunNext();
  EXPECT_EQ(d.reserves.size(), 1u);
  // The supervisor restarts it: same id, new epoch.
  auto& restarted = AddWorker("d", v1::WORKER_ROLE_DECODE, 100, 16, /*epoch=*/2);
  while (restarted.reserves.empty() && clock_.RunNext()) {
  }
  ASSERT_EQ(restarted.reserves.size(), 1u);
  EXPECT_EQ(restarted.reserves[0]->request.num_tokens(), 41);

  // Nobody comes back: after the admission timeout, a clear error.
  observer_ = std::make_shared<RecordingObserver>();
  auto& d3 = AddWorker("d3", v1::WORKER_ROLE_DECODE, 500);
  auto stream = StartDecoding(p, d3);
  registry_->Remove("d");
  stream->End(absl::UnavailableError("Socket closed"));
  while (!observer_->ended() && clock_.RunNext()) {
  }
  EXPECT_EQ(observer_->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(observer_->status.message().find("could resume"), absl::string_view::npos) << observer_->status;
}

}  // namespace
}  // namespace tandem::router
