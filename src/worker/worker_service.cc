#include "worker/worker_service.h"

#include <chrono>
#include <deque>
#include <mutex>

#include "common/logging.h"
#include "common/strings.h"
#include "rpc/convert.h"

namespace tandem::worker {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A unary call that is completed elsewhere (see PrefillCall); cancellation is forwarded.
class CancellableUnaryReactor : public grpc::ServerUnaryReactor {
 public:
  void set_on_cancel(std::function<void()> f) { on_cancel_ = std::move(f); }
  void OnCancel() override {
    if (on_cancel_) on_cancel_();
  }
  void OnDone() override { delete this; }

 private:
  std::function<void()> on_cancel_;
};

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  auto* r = ctx->DefaultReactor();
  r->Finish(rpc::ToGrpc(s));
  return r;
}

// Streams a request's tokens as the engine produces them. Tokens that arrive while a write is
// in flight are coalesced into the next message. The engine side (Push) and the gRPC side
// (OnWriteDone/OnCancel/OnDone) meet in `State`, which outlives whichever ends first.
class TokenStream : public grpc::ServerWriteReactor<v1::TokensResponse> {
 public:
  struct State {
    std::mutex mu;
    TokenStream* reactor = nullptr;  // null once the call is done
    std::deque<v1::TokensResponse> queue;
    bool writing = false;
    bool finished = false;  // the last message has been queued
    grpc::Status final_status;
  };

  TokenStream(EngineRunner* runner, std::string request_id)
      : runner_(runner), request_id_(std::move(request_id)), state_(std::make_shared<State>()) {
    state_->reactor = this;
  }

  std::shared_ptr<State> state() const { return state_; }

  // Called from the engine thread (or once with an error from the handler).
  static void Push(const std::shared_ptr<State>& state, const std::vector<int32_t>& tokens, bool last,
                   v1::FinishReason reason, const v1::Usage* usage, grpc::Status status = grpc::Status::OK) {
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->reactor == nullptr || state->finished) return;
    if (!tokens.empty() || last) {
      if (state->queue.empty() || (state->writing && state->queue.size() == 1)) state->queue.emplace_back();
      v1::TokensResponse& msg = state->queue.back();
      for (int32_t t : tokens) msg.add_tokens(t);
      if (last) {
        msg.set_finish_reason(reason);
        if (usage) *msg.mutable_usage() = *usage;
      }
    }
    if (last) {
      state->finished = true;
      state->final_status = status;
      if (!status.ok()) state->queue.clear();
    }
    state->reactor->Pump();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->writing = false;
    state_->queue.pop_front();
    if (!ok) {
      state_->queue.clear();
      state_->finished = true;
      state_->final_status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream broken");
    }
    Pump();
  }

  void OnCancel() override { runner_->Cancel(request_id_); }

  void OnDone() override {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->reactor = nullptr;
    }
    delete this;
  }

 private:
  // Starts the next write or finishes. Called with state_->mu held.
  void Pump() {
    if (state_->writing) return;
    if (!state_->queue.empty()) {
      state_->writing = true;
      StartWrite(&state_->queue.front());
    } else if (state_->finished && !finish_called_) {
      finish_called_ = true;
      Finish(state_->final_status);
    }
  }

  EngineRunner* runner_;
  const std::string request_id_;
  std::shared_ptr<State> state_;
  bool finish_called_ = false;
};

v1::Usage UsageOf(const RequestOutput& out) {
  v1::Usage u;
  u.set_prompt_tokens(out.prompt_tokens);
  u.set_completion_tokens(out.generated_tokens);
  u.set_cached_prompt_tokens(out.cached_prompt_tokens);
  return u;
}

// A sink that forwards engine outputs into a TokenStream.
RequestSink StreamSink(std::shared_ptr<TokenStream::State> state, WorkerMetrics* metrics) {
  return [state, metrics](Engine&, const RequestOutput& out) {
    const bool last = out.finish != FinishReason::kNone;
    v1::Usage usage = UsageOf(out);
    grpc::Status status = out.finish == FinishReason::kError
                              ? grpc::Status(grpc::StatusCode::INTERNAL, "the engine failed")
                              : grpc::Status::OK;
    if (last && metrics) metrics->RequestFinished(out);
    TokenStream::Push(state, out.new_tokens, last, rpc::ToProto(out.finish), last ? &usage : nullptr, status);
  };
}

// Ends a stream whose request the engine refused.
std::function<void(const absl::Status&)> RejectSink(std::shared_ptr<TokenStream::State> state) {
  return [state](const absl::Status& s) {
    TokenStream::Push(state, {}, true, v1::FINISH_REASON_ERROR, nullptr, rpc::ToGrpc(s));
  };
}

GenerateRequest EngineRequest(const std::string& id, const google::protobuf::RepeatedField<int32_t>& prompt,
                              const v1::SamplingParams& sampling) {
  GenerateRequest r;
  r.id = id;
  r.prompt.assign(prompt.begin(), prompt.end());
  r.sampling = rpc::FromProto(sampling);
  return r;
}

}  // namespace

WorkerService::WorkerService(const WorkerServiceOptions& options, EngineRunner* runner, KvLeaseTable* leases,
                             KvTransport* transport, const KvLayoutInfo& layout, WorkerMetrics* metrics)
    : options_(options),
      runner_(runner),
      leases_(leases),
      transport_(transport),
      layout_(layout),
      metrics_(metrics),
      role_(options.role) {}

bool WorkerService::Idle() const {
  return runner_->inflight() == 0 && leases_->size() == 0 && outbound_transfers_.load() == 0 &&
         runner_->load().reserved_blocks == 0;
}

absl::Status WorkerService::CheckAccepting(bool needs_prefill, bool needs_decode, bool admitted) const {
  if (draining_.load() && !admitted) return absl::UnavailableError("the worker is draining");
  const v1::WorkerRole role = role_.load();
  if (needs_prefill && role == v1::WORKER_ROLE_DECODE) {
    return absl::FailedPreconditionError("this worker has the decode role");
  }
  if (needs_decode && role == v1::WORKER_ROLE_PREFILL) {
    return absl::FailedPreconditionError("this worker has the prefill role");
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* WorkerService::ReserveKv(grpc::CallbackServerContext* ctx, const v1::ReserveKvRequest* req,
                                                   v1::ReserveKvResponse* resp) {
  if (absl::Status s = CheckAccepting(false, true); !s.ok()) return Reply(ctx, s);
  auto* reactor = ctx->DefaultReactor();
  const int32_t tokens = req->num_tokens();
  const int64_t headroom = options_.reserve_headroom_blocks;
  const absl::Duration lease = absl::Milliseconds(req->lease_ms() > 0 ? req->lease_ms() : 10000);
  const std::string request_id = req->request_id();
  // On the engine thread: the blocks are allocated between iterations, and the call is
  // answered from there (no gRPC thread waits for the engine).
  runner_->Post([this, reactor, resp, tokens, headroom, lease, request_id](Engine& e) {
    auto blocks = e.AllocateKvBlocks(tokens, headroom);
    if (!blocks.ok()) {
      if (metrics_) metrics_->reserve_refused->Increment();
      reactor->Finish(rpc::ToGrpc(blocks.status()));
      return;
    }
    resp->mutable_block_ids()->Add(blocks->begin(), blocks->end());
    resp->set_lease_id(leases_->Add(request_id, std::move(*blocks), absl::Now() + lease));
    *resp->mutable_endpoint() = rpc::ToProto(transport_->local_endpoint(), options_.transport_name);
    resp->set_free_kv_blocks(e.Load().free_blocks);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::ReleaseKv(grpc::CallbackServerContext* ctx, const v1::ReleaseKvRequest* req,
                                                   v1::ReleaseKvResponse*) {
  auto blocks = leases_->Release(req->lease_id());
  if (!blocks.ok()) return Reply(ctx, blocks.status());
  if (!blocks->empty()) runner_->Post([b = std::move(*blocks)](Engine& e) { e.FreeKvBlocks(b); });
  return Reply(ctx, absl::OkStatus());
}

namespace {

// One Prefill call, shared by the engine thread (progress), the transport thread (Finish) and
// gRPC (cancellation). Everything is guarded by `mu`; the response is written and the call
// completed exactly once, and nothing touches them after that.
struct PrefillCall {
  std::mutex mu;
  CancellableUnaryReactor* reactor = nullptr;  // null once completed
  v1::PrefillResponse* resp = nullptr;
  std::shared_ptr<KvTransfer> transfer;        // started with the first computed chunk; null after End
  bool ended = false;
  // The transfer starts when the first chunk is computed, not when the call arrives: its
  // deadline bounds the hand-off, not the time the prompt waits in this worker's queue.
  KvTransport* transport = nullptr;
  KvDestination destination;
  absl::Duration transfer_timeout;
  int32_t sent = 0;                            // logical blocks sent
  int64_t bytes = 0;
  Clock::time_point start = Clock::now(), first_send;
  bool sending_started = false;
  std::atomic<int32_t>* outbound = nullptr;    // the service's count of unfinished transfers
  EngineRunner* runner = nullptr;

  // Drops the transfer (aborting it if unfinished) and completes the call. Idempotent.
  void End(const grpc::Status& status) {
    std::shared_ptr<KvTransfer> dropped;
    CancellableUnaryReactor* r = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (ended) return;
      ended = true;
      dropped = std::move(transfer);
      r = reactor;
      reactor = nullptr;
    }
    outbound->fetch_sub(1);
    // Never destroy a transfer inside its own callback: let the engine thread drop it.
    if (dropped) runner->Post([dropped = std::move(dropped)](Engine&) {});
    if (r) r->Finish(status);
  }
};

}  // namespace

grpc::ServerUnaryReactor* WorkerService::Prefill(grpc::CallbackServerContext* ctx, const v1::PrefillRequest* req,
                                                 v1::PrefillResponse* resp) {
  if (absl::Status s = CheckAccepting(true, false); !s.ok()) return Reply(ctx, s);
  const KvDestination dest = rpc::FromProto(req->destination());
  if (std::string diff = layout_.Mismatch(dest.endpoint.layout); !diff.empty()) {
    return Reply(ctx, absl::FailedPreconditionError(StrCat("KV layout mismatch with the decode worker: ", diff)));
  }
  GenerateRequest request = EngineRequest(req->request_id(), req->prompt(), req->sampling());
  request.sampling.max_tokens = 1;
  request.hold_kv = true;
  request.report_progress = true;
  const int bs = layout_.layout.block_size;
  const int64_t block_bytes = layout_.layout.bytes_per_block();
  const int32_t prompt_blocks = static_cast<int32_t>((request.prompt.size() + bs - 1) / bs);
  if (static_cast<int32_t>(dest.blocks.size()) < prompt_blocks) {
    return Reply(ctx, absl::InvalidArgumentError(StrCat("the destination lease has ", dest.blocks.size(),
                                                        " blocks; the prompt needs ", prompt_blocks)));
  }
  auto call = std::make_shared<PrefillCall>();
  auto* reactor = new CancellableUnaryReactor();
  call->reactor = reactor;
  call->resp = resp;
  call->transport = transport_;
  call->destination = dest;
  call->destination.request_id = req->request_id();
  call->transfer_timeout = options_.transfer_timeout;
  call->outbound = &outbound_transfers_;
  call->runner = runner_;
  outbound_transfers_.fetch_add(1);
  const std::string id = req->request_id();
  EngineRunner* runner = runner_;
  WorkerMetrics* metrics = metrics_;
  reactor->set_on_cancel([call, runner, id] {
    runner->Cancel(id);  // frees the sequence or its held KV
    call->End(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  });

  RequestSink sink = [call, bs, block_bytes, prompt_blocks, runner, id, metrics](Engine& engine,
                                                                                  const RequestOutput& out) {
    absl::Status failure;
    std::shared_ptr<KvTransfer> finishing;  // kept alive across Finish even if cancelled meanwhile
    {
      std::lock_guard<std::mutex> lock(call->mu);
      if (call->ended) return;  // cancelled meanwhile
      const bool done = out.finish != FinishReason::kNone;
      if (!call->transfer && out.finish != FinishReason::kCancelled && out.finish != FinishReason::kError) {
        auto transfer = call->transport->StartTransfer(call->destination, absl::Now() + call->transfer_timeout);
        if (transfer.ok()) {
          call->transfer = std::move(*transfer);
        } else {
          failure = transfer.status();
        }
      }
      if (!failure.ok()) {
        // The transfer could not start (the destination is unknown to the transport).
      } else if (out.finish == FinishReason::kCancelled || out.finish == FinishReason::kError) {
        failure = absl::AbortedError("the prefill was cancelled");
      } else if (!done && out.num_computed < call->sent * bs) {
        // Preempted and recomputing from scratch: blocks already sent may be stale. Give up;
        // the router retries elsewhere.
        failure = absl::UnavailableError("the prefill was preempted for lack of KV blocks; retry");
      } else {
        const std::vector<int32_t> table = engine.BlockTable(out.id);
        const int32_t ready = done ? prompt_blocks : out.num_computed / bs;
        std::vector<BlockCopy> copies;
        for (int32_t i = call->sent; i < ready && i < static_cast<int32_t>(table.size()); ++i) {
          copies.push_back({table[i], i});
        }
        if (!copies.empty()) {
          if (!call->sending_started) {
            call->sending_started = true;
            call->first_send = Clock::now();
          }
          call->transfer->Send(copies);
          call->sent += static_cast<int32_t>(copies.size());
          call->bytes += static_cast<int64_t>(copies.size()) * block_bytes;
        }
        if (done) {
          const double prefill_seconds = SecondsSince(call->start);
          v1::PrefillResponse* resp = call->resp;
          resp->set_first_token(out.new_tokens.empty() ? -1 : out.new_tokens[0]);
          resp->set_rng_draws(out.rng_draws);
          resp->set_prefill_seconds(prefill_seconds);
          resp->mutable_usage()->set_prompt_tokens(out.prompt_tokens);
          resp->mutable_usage()->set_completion_tokens(1);
          resp->mutable_usage()->set_cached_prompt_tokens(out.cached_prompt_tokens);
          if (out.finish == FinishReason::kStop) resp->set_finish_reason(v1::FINISH_REASON_STOP);
          if (metrics) metrics->prefill_seconds->Observe(prefill_seconds);
          finishing = call->transfer;
        }
      }
    }
    if (!failure.ok()) {
      runner->Cancel(id);
      call->End(rpc::ToGrpc(failure));
      return;
    }
    if (finishing == nullptr) return;
    finishing->Finish([call, runner, id, metrics](absl::Status s) {
      double seconds = 0;
      int64_t bytes = 0;
      {
        std::lock_guard<std::mutex> lock(call->mu);
        seconds = call->sending_started ? SecondsSince(call->first_send) : 0.0;
        bytes = call->bytes;
        if (call->reactor != nullptr) {
          call->resp->set_transfer_seconds(seconds);
          call->resp->set_transfer_bytes(bytes);
        }
      }
      runner->Post([id](Engine& e) { e.ReleaseHeldKv(id); });
      if (metrics) metrics->TransferDone(s.ok(), bytes, seconds);
      call->End(s.ok() ? grpc::Status::OK
                       : rpc::ToGrpc(absl::UnavailableError(StrCat("KV transfer failed: ", s.message()))));
    });
  };
  runner_->Add(std::move(request), std::move(sink), [call](const absl::Status& s) { call->End(rpc::ToGrpc(s)); });
  return reactor;
}

grpc::ServerWriteReactor<v1::TokensResponse>* WorkerService::Decode(grpc::CallbackServerContext* ctx,
                                                                    const v1::DecodeRequest* req) {
  auto* stream = new TokenStream(runner_, req->request_id());
  auto state = stream->state();
  // A lease is work this worker already took: a draining worker still finishes it.
  absl::Status s = CheckAccepting(false, true, /*admitted=*/true);
  if (s.ok()) {
    auto blocks = leases_->Adopt(req->lease_id());
    if (!blocks.ok()) {
      s = blocks.status();
    } else {
      GenerateRequest request = EngineRequest(req->request_id(), req->prompt(), req->sampling());
      runner_->AddPrefilled(std::move(request), std::move(*blocks), req->first_token(), req->rng_draws(),
                            StreamSink(state, metrics_), RejectSink(state));
    }
  }
  if (!s.ok()) TokenStream::Push(state, {}, true, v1::FINISH_REASON_ERROR, nullptr, rpc::ToGrpc(s));
  return stream;
}

grpc::ServerWriteReactor<v1::TokensResponse>* WorkerService::GenerateTokens(grpc::CallbackServerContext* ctx,
                                                                            const v1::GenerateTokensRequest* req) {
  auto* stream = new TokenStream(runner_, req->request_id());
  auto state = stream->state();
  absl::Status s = CheckAccepting(false, false);
  if (s.ok()) {
    runner_->Add(EngineRequest(req->request_id(), req->prompt(), req->sampling()), StreamSink(state, metrics_),
                 RejectSink(state));
  }
  if (!s.ok()) TokenStream::Push(state, {}, true, v1::FINISH_REASON_ERROR, nullptr, rpc::ToGrpc(s));
  return stream;
}

grpc::ServerUnaryReactor* WorkerService::Cancel(grpc::CallbackServerContext* ctx, const v1::CancelRequest* req,
                                                v1::CancelResponse* resp) {
  const std::string id = req->request_id();
  auto* reactor = ctx->DefaultReactor();
  runner_->Post([id, resp, reactor](Engine& e) {
    resp->set_found(e.Cancel(id));
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Drain(grpc::CallbackServerContext* ctx, const v1::DrainRequest*,
                                               v1::DrainResponse* resp) {
  draining_.store(true);
  if (metrics_ != nullptr) metrics_->SetDraining(true);
  resp->set_drained(Idle());
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* WorkerService::SetRole(grpc::CallbackServerContext* ctx, const v1::SetRoleRequest* req,
                                                 v1::SetRoleResponse*) {
  if (req->role() == v1::WORKER_ROLE_UNSPECIFIED) return Reply(ctx, absl::InvalidArgumentError("no role given"));
  role_.store(req->role());
  draining_.store(false);
  if (metrics_ != nullptr) {
    metrics_->SetDraining(false);
    metrics_->SetRole(req->role() == v1::WORKER_ROLE_PREFILL  ? "prefill"
                      : req->role() == v1::WORKER_ROLE_DECODE ? "decode"
                                                              : "mixed");
  }
  GetLogger("worker")->info("role set to {}", v1::WorkerRole_Name(req->role()));
  return Reply(ctx, absl::OkStatus());
}

}  // namespace tandem::worker
