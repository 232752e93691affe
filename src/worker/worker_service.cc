#include "worker/worker_service.h"

#include <utility>
#include <vector>

#include "common/logging.h"
#include "common/strings.h"
#include "rpc/convert.h"
#include "rpc/server_stream_pump.h"

namespace tandem::worker {
namespace {

// A unary call that is completed elsewhere (Prefill: by its KvExport); cancellation is forwarded.
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

// A token stream to the router: tokens produced while a message waits unsent are coalesced
// into it. The client's cancel cancels the engine request.
using TokenStream = rpc::ServerStreamPump<v1::TokensResponse>;

std::shared_ptr<TokenStream> NewTokenStream(EngineRunner* runner, const std::string& request_id) {
  auto stream = TokenStream::Create(/*coalesce=*/true);
  stream->OnCancel([runner, request_id] { runner->Cancel(request_id); });
  return stream;
}

v1::Usage UsageOf(const RequestOutput& out) {
  v1::Usage u;
  u.set_prompt_tokens(out.prompt_tokens);
  u.set_completion_tokens(out.generated_tokens);
  u.set_cached_prompt_tokens(out.cached_prompt_tokens);
  return u;
}

// A sink that forwards engine outputs into a TokenStream.
RequestSink StreamSink(std::shared_ptr<TokenStream> stream, WorkerMetrics* metrics) {
  return [stream, metrics](Engine&, const RequestOutput& out) {
    const bool last = out.finish != FinishReason::kNone;
    if (!out.new_tokens.empty() || last) {
      v1::TokensResponse msg;
      msg.mutable_tokens()->Add(out.new_tokens.begin(), out.new_tokens.end());
      msg.set_rng_draws(out.rng_draws);
      msg.set_cached_prompt_tokens(out.cached_prompt_tokens);
      for (const TokenLogprob& l : out.logprobs) *msg.add_logprobs() = rpc::ToProto(l);
      for (const TokenLogprob& l : out.prompt_logprobs) *msg.add_prompt_logprobs() = rpc::ToProto(l);
      if (last) {
        msg.set_finish_reason(rpc::ToProto(out.finish));
        *msg.mutable_usage() = UsageOf(out);
      }
      stream->Write(std::move(msg));
    }
    if (!last) return;
    if (metrics) metrics->RequestFinished(out);
    if (out.finish == FinishReason::kError) {
      GetLogger("worker")->warn("request={} failed in the engine", out.id);
      stream->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "the engine failed"));
    } else {
      stream->Finish(grpc::Status::OK);
    }
  };
}

// Ends a stream whose request was refused (here or by the engine).
void Refuse(TokenStream& stream, const std::string& request_id, const absl::Status& s) {
  GetLogger("worker")->info("request={} refused: {}", request_id, s.ToString());
  stream.Finish(rpc::ToGrpc(s));
}

std::function<void(const absl::Status&)> RejectSink(std::shared_ptr<TokenStream> stream, std::string request_id) {
  return [stream, request_id = std::move(request_id)](const absl::Status& s) { Refuse(*stream, request_id, s); };
}

GenerateRequest EngineRequest(const std::string& id, const google::protobuf::RepeatedField<int32_t>& prompt,
                              const v1::SamplingParams& sampling) {
  GenerateRequest r;
  r.id = id;
  r.prompt.assign(prompt.begin(), prompt.end());
  r.sampling = rpc::FromProto(sampling);
  r.priority = r.sampling.priority;
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
      auth_(options.cluster_token, metrics != nullptr ? metrics->unauthenticated : nullptr),
      role_(options.role),
      export_engine_(runner) {}

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

absl::Status WorkerService::CheckReserveRequest(const v1::ReserveKvRequest& req) const {
  if (req.num_tokens() <= 0) {
    return absl::InvalidArgumentError(StrCat("num_tokens must be positive, got ", req.num_tokens()));
  }
  if (options_.max_reserve_tokens > 0 && req.num_tokens() > options_.max_reserve_tokens) {
    return absl::InvalidArgumentError(StrCat("num_tokens ", req.num_tokens(), " exceeds this worker's context of ",
                                             options_.max_reserve_tokens, " tokens"));
  }
  if (req.lease_ms() < 0 || absl::Milliseconds(req.lease_ms()) > options_.max_lease) {
    return absl::InvalidArgumentError(StrCat("lease_ms must be between 0 (the default) and ",
                                             absl::ToInt64Milliseconds(options_.max_lease), ", got ", req.lease_ms()));
  }
  if (req.request_id().empty() || req.request_id().size() > 256) {
    return absl::InvalidArgumentError("request_id must have 1 to 256 characters");
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* WorkerService::ReserveKv(grpc::CallbackServerContext* ctx, const v1::ReserveKvRequest* req,
                                                   v1::ReserveKvResponse* resp) {
  if (absl::Status s = auth_.Check(*ctx, "Worker/ReserveKv"); !s.ok()) return Reply(ctx, s);
  if (absl::Status s = CheckAccepting(false, true); !s.ok()) return Reply(ctx, s);
  if (absl::Status s = CheckReserveRequest(*req); !s.ok()) {
    GetLogger("worker")->info("request={} KV reservation refused: {}", req->request_id(), s.message());
    return Reply(ctx, s);
  }
  auto* reactor = ctx->DefaultReactor();
  const int32_t tokens = req->num_tokens();
  const int64_t headroom = options_.reserve_headroom_blocks;
  const absl::Duration lease = req->lease_ms() > 0 ? absl::Milliseconds(req->lease_ms()) : absl::Seconds(10);
  const std::string request_id = req->request_id();
  // On the engine thread: the blocks are allocated between iterations, and the call is
  // answered from there (no gRPC thread waits for the engine).
  runner_->Post([this, reactor, resp, tokens, headroom, lease, request_id](Engine& e) {
    auto blocks = e.AllocateKvBlocks(tokens, headroom);
    if (!blocks.ok()) {
      if (metrics_) metrics_->reserve_refused->Increment();
      GetLogger("worker")->debug("request={} KV reservation of {} tokens refused: {}", request_id, tokens,
                                 blocks.status().ToString());
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
  if (absl::Status s = auth_.Check(*ctx, "Worker/ReleaseKv"); !s.ok()) return Reply(ctx, s);
  auto blocks = leases_->Release(req->lease_id());
  if (!blocks.ok()) return Reply(ctx, blocks.status());
  if (!blocks->empty()) runner_->Post([b = std::move(*blocks)](Engine& e) { e.FreeKvBlocks(b); });
  return Reply(ctx, absl::OkStatus());
}

namespace {

// The Prefill response for an export that ended well.
void FillPrefillResponse(const KvExportResult& r, v1::PrefillResponse* resp) {
  resp->set_first_token(r.first_token);
  resp->set_rng_draws(r.rng_draws);
  if (r.first_logprob) *resp->mutable_first_logprob() = rpc::ToProto(*r.first_logprob);
  for (const TokenLogprob& l : r.prompt_logprobs) *resp->add_prompt_logprobs() = rpc::ToProto(l);
  resp->set_prefill_seconds(r.prefill_seconds);
  resp->mutable_usage()->set_prompt_tokens(r.prompt_tokens);
  resp->mutable_usage()->set_completion_tokens(1);
  resp->mutable_usage()->set_cached_prompt_tokens(r.cached_prompt_tokens);
  if (r.finish == FinishReason::kStop) resp->set_finish_reason(v1::FINISH_REASON_STOP);
  resp->set_transfer_seconds(r.transfer_seconds);
  resp->set_transfer_bytes(r.transfer_bytes);
}

}  // namespace

void WorkerService::RunnerExportEngine::CancelRequest(const std::string& request_id) { runner_->Cancel(request_id); }

void WorkerService::RunnerExportEngine::ReleaseHeldKv(const std::string& request_id) {
  runner_->Post([request_id](Engine& e) { e.ReleaseHeldKv(request_id); });
}

void WorkerService::RunnerExportEngine::Defer(std::function<void()> task) {
  runner_->Post([task = std::move(task)](Engine&) { task(); });
}

absl::StatusOr<KvExportOptions> WorkerService::ExportOptions(const v1::PrefillRequest& req) const {
  KvExportOptions o;
  o.request_id = req.request_id();
  o.destination = rpc::FromProto(req.destination());
  o.destination.request_id = req.request_id();  // the transfer's log lines name the request
  if (std::string diff = layout_.Mismatch(o.destination.endpoint.layout); !diff.empty()) {
    return absl::FailedPreconditionError(StrCat("KV layout mismatch with the decode worker: ", diff));
  }
  o.prompt_tokens = req.prompt_size();
  o.block_size = layout_.layout.block_size;
  o.block_bytes = layout_.layout.bytes_per_block();
  o.transfer_timeout = options_.transfer_timeout;
  const int32_t prompt_blocks = (o.prompt_tokens + o.block_size - 1) / o.block_size;
  if (static_cast<int32_t>(o.destination.blocks.size()) < prompt_blocks) {
    return absl::InvalidArgumentError(StrCat("the destination lease has ", o.destination.blocks.size(),
                                             " blocks; the prompt needs ", prompt_blocks));
  }
  return o;
}

grpc::ServerUnaryReactor* WorkerService::Prefill(grpc::CallbackServerContext* ctx, const v1::PrefillRequest* req,
                                                 v1::PrefillResponse* resp) {
  if (absl::Status s = auth_.Check(*ctx, "Worker/Prefill"); !s.ok()) return Reply(ctx, s);
  if (absl::Status s = CheckAccepting(true, false); !s.ok()) return Reply(ctx, s);
  absl::StatusOr<KvExportOptions> options = ExportOptions(*req);
  if (!options.ok()) {
    GetLogger("worker")->info("request={} prefill refused: {}", req->request_id(), options.status().ToString());
    return Reply(ctx, options.status());
  }
  auto* reactor = new CancellableUnaryReactor();
  outbound_transfers_.fetch_add(1);
  auto done = [reactor, resp, metrics = metrics_, outbound = &outbound_transfers_](const absl::Status& s,
                                                                                     const KvExportResult& r) {
    if (metrics != nullptr && r.computed) metrics->prefill_seconds->Observe(r.prefill_seconds);
    if (metrics != nullptr && r.transfer_ended) metrics->TransferDone(r.transfer_code, r.transfer_bytes, r.transfer_seconds);
    outbound->fetch_sub(1);
    if (s.ok()) FillPrefillResponse(r, resp);
    reactor->Finish(rpc::ToGrpc(s));
  };
  auto kv_export = KvExport::Create(*std::move(options), transport_, &export_engine_, std::move(done));
  reactor->set_on_cancel([kv_export] { kv_export->Cancel(absl::CancelledError("cancelled by the client")); });

  GenerateRequest request = EngineRequest(req->request_id(), req->prompt(), req->sampling());
  request.rng_draws = req->rng_draws();
  request.sampling.max_tokens = 1;
  request.hold_kv = true;
  request.report_progress = true;
  runner_->Add(
      std::move(request),
      [kv_export](Engine& engine, const RequestOutput& out) { kv_export->OnProgress(out, engine.BlockTable(out.id)); },
      [kv_export](const absl::Status& s) { kv_export->Cancel(s); });
  return reactor;
}

grpc::ServerWriteReactor<v1::TokensResponse>* WorkerService::Decode(grpc::CallbackServerContext* ctx,
                                                                    const v1::DecodeRequest* req) {
  auto stream = NewTokenStream(runner_, req->request_id());
  absl::Status s = auth_.Check(*ctx, "Worker/Decode");
  // A lease is work this worker already took: a draining worker still finishes it.
  if (s.ok()) s = CheckAccepting(false, true, /*admitted=*/true);
  // Every block of the prompt must hold the transferred KV (a sender that ended early leaves
  // stale blocks behind).
  const int32_t block_size = layout_.layout.block_size;
  const int32_t prompt_blocks = block_size > 0 ? (req->prompt_size() + block_size - 1) / block_size : 0;
  absl::StatusOr<std::vector<int32_t>> blocks = s.ok() ? leases_->Adopt(req->lease_id(), prompt_blocks) : s;
  if (!blocks.ok()) {
    Refuse(*stream, req->request_id(), blocks.status());
  } else {
    GenerateRequest request = EngineRequest(req->request_id(), req->prompt(), req->sampling());
    runner_->AddPrefilled(std::move(request), *std::move(blocks), req->first_token(), req->rng_draws(),
                          StreamSink(stream, metrics_), RejectSink(stream, req->request_id()));
  }
  return stream->reactor();
}

grpc::ServerWriteReactor<v1::TokensResponse>* WorkerService::GenerateTokens(grpc::CallbackServerContext* ctx,
                                                                            const v1::GenerateTokensRequest* req) {
  auto stream = NewTokenStream(runner_, req->request_id());
  absl::Status s = auth_.Check(*ctx, "Worker/GenerateTokens");
  if (s.ok()) s = CheckAccepting(false, false);
  if (!s.ok()) {
    Refuse(*stream, req->request_id(), s);
  } else {
    GenerateRequest request = EngineRequest(req->request_id(), req->prompt(), req->sampling());
    request.rng_draws = req->rng_draws();
    runner_->Add(std::move(request), StreamSink(stream, metrics_), RejectSink(stream, req->request_id()));
  }
  return stream->reactor();
}

grpc::ServerUnaryReactor* WorkerService::Cancel(grpc::CallbackServerContext* ctx, const v1::CancelRequest* req,
                                                v1::CancelResponse* resp) {
  if (absl::Status s = auth_.Check(*ctx, "Worker/Cancel"); !s.ok()) return Reply(ctx, s);
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
  if (absl::Status s = auth_.Check(*ctx, "Worker/Drain"); !s.ok()) return Reply(ctx, s);
  draining_.store(true);
  if (metrics_ != nullptr) metrics_->SetDraining(true);
  resp->set_drained(Idle());
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* WorkerService::SetRole(grpc::CallbackServerContext* ctx, const v1::SetRoleRequest* req,
                                                 v1::SetRoleResponse*) {
  if (absl::Status s = auth_.Check(*ctx, "Worker/SetRole"); !s.ok()) return Reply(ctx, s);
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
