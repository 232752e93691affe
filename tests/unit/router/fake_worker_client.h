// A scriptable WorkerClient for unit tests of the router: every call is recorded and stays
// pending until the test answers it (Answer* / Fail* below, or the stream's Send / End), so a
// test decides the order of events. Cancelling a call through its CallCanceller marks it
// cancelled and, like gRPC, completes it at once with CANCELLED (from inside Cancel()).
//
// Not thread-safe: a test drives it from one thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "router/worker_client.h"

namespace tandem::router::fakes {

class FakeWorkerClient final : public WorkerClient {
 public:
  template <typename Req, typename Done>
  struct Call {
    Req request;
    absl::Time deadline;
    Done done;
    bool answered = false;
    bool cancelled = false;
  };
  struct Stream {
    v1::DecodeRequest decode;           // for Decode
    v1::GenerateTokensRequest generate;  // for GenerateTokens
    TokenStreamHandler handler;
    bool ended = false;
    bool cancelled = false;

    // One message of tokens; `finish` set on the last one, with the completion count as usage;
    // `rng_draws`: the sampler's draws so far.
    void Send(std::vector<int32_t> tokens, v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED,
              int32_t completion_tokens = 0, int32_t cached_prompt_tokens = 0, int32_t rng_draws = 0) {
      v1::TokensResponse msg;
      msg.mutable_tokens()->Add(tokens.begin(), tokens.end());
      msg.set_rng_draws(rng_draws);
      msg.set_finish_reason(finish);
      msg.set_cached_prompt_tokens(cached_prompt_tokens);  // as the worker: on every message
      if (finish != v1::FINISH_REASON_UNSPECIFIED) {
        msg.mutable_usage()->set_completion_tokens(completion_tokens);
        msg.mutable_usage()->set_cached_prompt_tokens(cached_prompt_tokens);
      }
      handler.on_message(msg);
    }
    void End(const absl::Status& status = absl::OkStatus()) {
      if (ended) return;
      ended = true;
      handler.on_done(status);
    }
  };
  using ReserveCall = Call<v1::ReserveKvRequest, ReserveDone>;
  using PrefillCall = Call<v1::PrefillRequest, PrefillDone>;

  explicit FakeWorkerClient(std::string worker_id, int32_t block_size = 16)
      : worker_id_(std::move(worker_id)), block_size_(block_size) {}

  // --- WorkerClient ---
  void ReserveKv(const v1::ReserveKvRequest& request, absl::Time deadline, ReserveDone done) override {
    reserves.push_back(std::make_shared<ReserveCall>(ReserveCall{request, deadline, std::move(done)}));
  }
  void Prefill(const v1::PrefillRequest& request, absl::Time deadline, std::shared_ptr<CallCanceller> cancel,
               PrefillDone done) override {
    auto call = std::make_shared<PrefillCall>(PrefillCall{request, deadline, std::move(done)});
    prefills.push_back(call);
    cancel->SetAction([call] {
      call->cancelled = true;
      if (!call->answered) {
        call->answered = true;
        call->done(absl::CancelledError("cancelled by the router"));
      }
    });
  }
  void Decode(const v1::DecodeRequest& request, absl::Time, std::shared_ptr<CallCanceller> cancel,
              TokenStreamHandler handler) override {
    Track(decodes, std::move(handler)).decode = request;
    ArmCancel(*cancel, decodes.back());
  }
  void GenerateTokens(const v1::GenerateTokensRequest& request, absl::Time, std::shared_ptr<CallCanceller> cancel,
                      TokenStreamHandler handler) override {
    Track(generates, std::move(handler)).generate = request;
    ArmCancel(*cancel, generates.back());
  }
  void ReleaseKv(const std::string& lease_id) override { released.push_back(lease_id); }
  void Drain(absl::Time, DrainDone done) override {
    v1::DrainResponse r;
    r.set_drained(true);
    done(r);
  }
  void SetRole(v1::WorkerRole, absl::Time, StatusDone done) override { done(absl::OkStatus()); }

  // --- Answers ---
  // Grants reservation `i` under `lease_id`, with one block per block_size prompt tokens and
  // this worker's endpoint.
  void AnswerReserve(size_t i, const std::string& lease_id, int64_t free_blocks_after = 100) {
    ReserveCall& call = *reserves.at(i);
    v1::ReserveKvResponse r;
    r.set_lease_id(lease_id);
    const int32_t blocks = (call.request.num_tokens() + block_size_ - 1) / block_size_;
    for (int32_t b = 0; b < blocks; ++b) r.add_block_ids(100 + b);
    r.mutable_endpoint()->set_worker_id(worker_id_);
    r.mutable_endpoint()->mutable_layout()->set_block_size(block_size_);
    r.set_free_kv_blocks(free_blocks_after);
    call.answered = true;
    call.done(r);
  }
  void FailReserve(size_t i, const absl::Status& status) {
    reserves.at(i)->answered = true;
    reserves.at(i)->done(status);
  }
  // `prompt_logprobs`: how many prompt log-probabilities the answer carries (-0.5 each).
  void AnswerPrefill(size_t i, int32_t first_token, v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED,
                     int32_t cached_prompt_tokens = 0, int prompt_logprobs = 0) {
    PrefillCall& call = *prefills.at(i);
    v1::PrefillResponse r;
    for (int k = 0; k < prompt_logprobs; ++k) r.add_prompt_logprobs()->set_logprob(-0.5f);
    r.set_first_token(first_token);
    r.set_finish_reason(finish);
    r.set_rng_draws(3);
    r.mutable_usage()->set_cached_prompt_tokens(cached_prompt_tokens);
    r.set_transfer_bytes(4096);
    r.set_transfer_seconds(0.01);
    call.answered = true;
    call.done(r);
  }
  void FailPrefill(size_t i, const absl::Status& status) {
    prefills.at(i)->answered = true;
    prefills.at(i)->done(status);
  }

  // Calls not yet answered (or ended), and calls cancelled.
  int pending() const {
    int n = 0;
    for (const auto& c : reserves) n += !c->answered;
    for (const auto& c : prefills) n += !c->answered;
    for (const auto& s : decodes) n += !s->ended;
    for (const auto& s : generates) n += !s->ended;
    return n;
  }
  int cancelled() const {
    int n = 0;
    for (const auto& c : prefills) n += c->cancelled;
    for (const auto& s : decodes) n += s->cancelled;
    for (const auto& s : generates) n += s->cancelled;
    return n;
  }

  // Drops every call's callback without calling it. A test's calls left unanswered hold their
  // request flows (and the flows this fake, through its registry handle): a reference cycle
  // that LeakSanitizer reports unless the fixture breaks it at the end.
  void Forget() {
    for (auto& c : reserves) c->done = nullptr;
    for (auto& c : prefills) c->done = nullptr;
    for (auto* streams : {&decodes, &generates}) {
      for (auto& s : *streams) s->handler = {};
    }
    reserves.clear();
    prefills.clear();
    decodes.clear();
    generates.clear();
  }

  std::vector<std::shared_ptr<ReserveCall>> reserves;
  std::vector<std::shared_ptr<PrefillCall>> prefills;
  std::vector<std::shared_ptr<Stream>> decodes;
  std::vector<std::shared_ptr<Stream>> generates;
  std::vector<std::string> released;  // lease ids, once per ReleaseKv call

 private:
  static Stream& Track(std::vector<std::shared_ptr<Stream>>& streams, TokenStreamHandler handler) {
    streams.push_back(std::make_shared<Stream>());
    streams.back()->handler = std::move(handler);
    return *streams.back();
  }
  static void ArmCancel(CallCanceller& cancel, std::shared_ptr<Stream> stream) {
    cancel.SetAction([stream] {
      stream->cancelled = true;
      stream->End(absl::CancelledError("cancelled by the router"));
    });
  }

  const std::string worker_id_;
  const int32_t block_size_;
};

}  // namespace tandem::router::fakes
