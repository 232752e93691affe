#include "router/request_flow.h"

#include <chrono>

#include "common/logging.h"
#include "common/strings.h"
#include "rpc/convert.h"

namespace tandem::router {
namespace {

// Streams TokensResponse messages (Decode or GenerateTokens) into the flow.
class TokenReader : public grpc::ClientReadReactor<v1::TokensResponse> {
 public:
  TokenReader(std::shared_ptr<RequestFlow> flow, std::shared_ptr<grpc::ClientContext> ctx)
      : flow_(std::move(flow)), ctx_(std::move(ctx)) {}

  void StartDecode(v1::Worker::Stub* stub, v1::DecodeRequest req) {
    decode_req_ = std::move(req);
    stub->async()->Decode(ctx_.get(), &decode_req_, this);
    Begin();
  }
  void StartGenerate(v1::Worker::Stub* stub, v1::GenerateTokensRequest req) {
    generate_req_ = std::move(req);
    stub->async()->GenerateTokens(ctx_.get(), &generate_req_, this);
    Begin();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // end of stream: OnDone follows
    flow_->OnStreamMessage(msg_);
    msg_.Clear();
    StartRead(&msg_);
  }
  void OnDone(const grpc::Status& status) override {
    flow_->OnStreamDone(status);
    delete this;
  }

 private:
  void Begin() {
    StartRead(&msg_);
    StartCall();
  }

  std::shared_ptr<RequestFlow> flow_;
  std::shared_ptr<grpc::ClientContext> ctx_;
  v1::DecodeRequest decode_req_;
  v1::GenerateTokensRequest generate_req_;
  v1::TokensResponse msg_;
};

std::shared_ptr<grpc::ClientContext> NewContext(absl::Time deadline) {
  auto ctx = std::make_shared<grpc::ClientContext>();
  if (deadline != absl::InfiniteFuture()) ctx->set_deadline(absl::ToChronoTime(deadline));
  return ctx;
}

bool RetryablePrefillError(grpc::StatusCode c) {
  // CANCELLED here comes from the worker (a router-side cancel ends the flow first): it was
  // shutting down.
  return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::ABORTED || c == grpc::StatusCode::CANCELLED ||
         c == grpc::StatusCode::DEADLINE_EXCEEDED || c == grpc::StatusCode::INTERNAL ||
         c == grpc::StatusCode::UNKNOWN || c == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

uint64_t AffinityKey(const std::vector<int32_t>& prompt, int32_t block) {
  // The first block of the prompt: requests sharing it (a system prompt, a chat history)
  // prefer the same prefill worker, whose prefix cache holds it.
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < prompt.size() && i < static_cast<size_t>(block); ++i) {
    h = (h ^ static_cast<uint32_t>(prompt[i])) * 1099511628211ULL;
  }
  return h;
}

}  // namespace

std::shared_ptr<RequestFlow> RequestFlow::Start(RouterRequest request, const FlowOptions& options,
                                                WorkerRegistry* registry, TimedTaskQueue* timer,
                                                std::shared_ptr<RequestObserver> observer) {
  auto flow = std::shared_ptr<RequestFlow>(
      new RequestFlow(std::move(request), options, registry, timer, std::move(observer)));
  flow->Run();
  return flow;
}

RequestFlow::RequestFlow(RouterRequest request, const FlowOptions& options, WorkerRegistry* registry,
                         TimedTaskQueue* timer, std::shared_ptr<RequestObserver> observer)
    : request_(std::move(request)),
      options_(options),
      registry_(registry),
      timer_(timer),
      observer_(std::move(observer)) {
  usage_.prompt_tokens = static_cast<int32_t>(request_.prompt.size());
}

FlowStats RequestFlow::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

bool RequestFlow::Ended() {
  std::lock_guard<std::mutex> lock(mu_);
  return ended_ || cancelled_;
}

void RequestFlow::Run() {
  const bool have_prefill = registry_->CountRole(v1::WORKER_ROLE_PREFILL) > 0;
  if (!have_prefill || static_cast<int32_t>(request_.prompt.size()) < options_.local_prefill_threshold) {
    if (options_.metrics != nullptr) options_.metrics->prefills->With({"local"}).Increment();
    Local();
  } else {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.disaggregated = true;
    }
    if (options_.metrics != nullptr) options_.metrics->prefills->With({"disaggregated"}).Increment();
    Reserve();
  }
}

void RequestFlow::ObserveQueued() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_observed_) return;
    queue_observed_ = true;
  }
  if (options_.metrics != nullptr) options_.metrics->queue->Observe(absl::ToDoubleSeconds(absl::Now() - start_));
}

void RequestFlow::Cancel() {
  std::shared_ptr<grpc::ClientContext> active;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_ || cancelled_) return;
    cancelled_ = true;
    active = active_;
  }
  if (active) active->TryCancel();
  ReleaseLease();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) return;
    ended_ = true;
    finish_ = FinishReason::kCancelled;
  }
  observer_->OnFailed(absl::CancelledError("the request was cancelled"));
}

void RequestFlow::Fail(const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) return;
    ended_ = true;
  }
  ReleaseLease();
  observer_->OnFailed(status);
}

void RequestFlow::Finish(FinishReason reason) {
  RequestUsage usage;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) return;
    ended_ = true;
    finish_ = reason;
    usage = usage_;
    // Decoded to the end: the decode worker adopted the lease. Otherwise (the prefill's first
    // token ended the request) it is released.
    if (decode_started_) lease_held_ = false;
  }
  ReleaseLease();
  observer_->OnFinished(reason, usage);
}

void RequestFlow::ReleaseLease() {
  std::shared_ptr<WorkerHandle> decode;
  std::string lease_id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!lease_held_) return;
    lease_held_ = false;
    decode = decode_;
    lease_id = lease_.lease_id();
  }
  // Fire and forget: a lease that is not released expires on the worker anyway.
  auto ctx = NewContext(absl::Now() + absl::Seconds(5));
  auto req = std::make_shared<v1::ReleaseKvRequest>();
  auto resp = std::make_shared<v1::ReleaseKvResponse>();
  req->set_lease_id(lease_id);
  decode->stub->async()->ReleaseKv(ctx.get(), req.get(), resp.get(), [ctx, req, resp](grpc::Status) {});
}

void RequestFlow::Reserve() {
  const int64_t blocks =
      (static_cast<int64_t>(request_.prompt.size()) + options_.kv_block_size - 1) / options_.kv_block_size;
  std::shared_ptr<WorkerHandle> decode;
  std::shared_ptr<grpc::ClientContext> ctx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_ || cancelled_) return;
    decode = registry_->PickDecode(blocks, tried_decode_);
    if (decode) {
      tried_decode_.insert(decode->info.worker_id());
      decode_ = decode;
      // Not cancellable (active_ stays unset): a reservation cancelled in flight could be
      // granted with nobody left to release it. The answer comes quickly; a cancelled flow then
      // releases the lease.
      ctx = NewContext(std::min(request_.deadline, absl::Now() + absl::Seconds(10)));
    }
  }
  if (!decode) {
    if (registry_->CountDecodeCapable() == 0) {
      Fail(absl::UnavailableError("no decode worker is available"));
    } else {
      WaitForRoom(blocks);  // every decode worker was full: try them again a little later
    }
    return;
  }
  auto req = std::make_shared<v1::ReserveKvRequest>();
  auto resp = std::make_shared<v1::ReserveKvResponse>();
  req->set_request_id(request_.id);
  req->set_num_tokens(static_cast<int32_t>(request_.prompt.size()));
  req->set_lease_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(options_.lease_time)));
  auto self = shared_from_this();
  decode->stub->async()->ReserveKv(ctx.get(), req.get(), resp.get(), [self, ctx, req, resp, decode,
                                                                      blocks](grpc::Status s) {
    const std::string& worker = decode->info.worker_id();
    if (s.ok()) {
      bool cancelled;
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        self->lease_ = *resp;
        self->lease_held_ = true;
        cancelled = self->cancelled_ || self->ended_;
      }
      self->registry_->NoteFreeBlocks(worker, resp->free_kv_blocks());
      self->ObserveQueued();
      if (cancelled) {
        self->ReleaseLease();
        return;
      }
      self->Prefill();
    } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      self->registry_->NoteReserveRefused(worker, blocks);
      self->Reserve();  // the next decode worker, or wait
    } else if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
               s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
               s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      self->Reserve();  // draining, changed role or unreachable: the next decode worker
    } else if (!self->Ended()) {
      self->Fail(rpc::FromGrpc(s));
    }
  });
}

void RequestFlow::WaitForRoom(int64_t blocks) {
  absl::Status give_up;
  absl::Time at;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_ || cancelled_) return;
    const absl::Time now = absl::Now();
    if (wait_start_ == absl::InfinitePast()) wait_start_ = now;
    at = now + backoff_;
    backoff_ = std::min(backoff_ * 2, absl::Milliseconds(200));
    tried_decode_.clear();
    if (at > std::min(request_.deadline, wait_start_ + options_.admission_timeout)) {
      give_up = absl::ResourceExhaustedError(
          StrCat("no decode worker had room for the KV of ", request_.prompt.size(), " prompt tokens (", blocks,
                 " blocks) within ", absl::FormatDuration(now - wait_start_), "; retry later"));
    }
  }
  if (!give_up.ok()) {
    Fail(give_up);
    return;
  }
  auto self = shared_from_this();
  if (!timer_->Post([self] { self->Reserve(); }, at)) Fail(absl::UnavailableError("the router is shutting down"));
}

void RequestFlow::Prefill() {
  std::shared_ptr<WorkerHandle> prefill, decode;
  std::shared_ptr<grpc::ClientContext> ctx;
  auto req = std::make_shared<v1::PrefillRequest>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_ || cancelled_) return;
    if (stats_.prefill_attempts < options_.max_prefill_attempts) {
      prefill = registry_->PickPrefill(AffinityKey(request_.prompt, options_.kv_block_size),
                                       static_cast<int64_t>(request_.prompt.size()), tried_prefill_);
    }
    if (prefill) {
      if (stats_.prefill_attempts > 0 && options_.metrics != nullptr) options_.metrics->prefill_retries->Increment();
      ++stats_.prefill_attempts;
      tried_prefill_.insert(prefill->info.worker_id());
      prefill_ = prefill;
      ctx = NewContext(request_.deadline);
      active_ = ctx;
      decode = decode_;
      req->set_request_id(request_.id);
      req->mutable_prompt()->Add(request_.prompt.begin(), request_.prompt.end());
      *req->mutable_sampling() = rpc::ToProto(request_.sampling);
      *req->mutable_destination()->mutable_endpoint() = lease_.endpoint();
      req->mutable_destination()->set_lease_id(lease_.lease_id());
      *req->mutable_destination()->mutable_block_ids() = lease_.block_ids();
    }
  }
  if (!prefill) {
    std::string why;
    {
      std::lock_guard<std::mutex> lock(mu_);
      why = stats_.prefill_attempts == 0
                ? std::string("no prefill worker is available")
                : StrCat("prefill failed on ", stats_.prefill_attempts, " worker(s); last error: ", last_prefill_error_);
    }
    Fail(absl::UnavailableError(why));
    return;
  }
  const int64_t tokens = static_cast<int64_t>(request_.prompt.size());
  registry_->NotePrefillStarted(prefill->info.worker_id(), tokens);
  auto resp = std::make_shared<v1::PrefillResponse>();
  auto self = shared_from_this();
  prefill->stub->async()->Prefill(ctx.get(), req.get(), resp.get(), [self, ctx, req, resp, prefill,
                                                                     tokens](grpc::Status s) {
    self->registry_->NotePrefillEnded(prefill->info.worker_id(), tokens);
    if (self->Ended()) return;
    if (!s.ok()) {
      if (RetryablePrefillError(s.error_code())) {
        GetLogger("router")->warn("request {}: prefill on {} failed ({}); retrying elsewhere", self->request_.id,
                                  prefill->info.worker_id(), s.error_message());
        {
          std::lock_guard<std::mutex> lock(self->mu_);
          self->last_prefill_error_ = s.error_message();
        }
        self->Prefill();
      } else {
        self->Fail(rpc::FromGrpc(s));
      }
      return;
    }
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->usage_.completion_tokens = 1;
      self->usage_.cached_prompt_tokens = resp->usage().cached_prompt_tokens();
      self->stats_.transfer_seconds = resp->transfer_seconds();
      self->stats_.transfer_bytes = resp->transfer_bytes();
    }
    if (self->options_.metrics != nullptr && resp->transfer_bytes() > 0) {
      self->options_.metrics->transfer_seconds->Observe(resp->transfer_seconds());
      self->options_.metrics->transfer_bytes->Increment(static_cast<double>(resp->transfer_bytes()));
    }
    const int32_t first = resp->first_token();
    self->observer_->OnTokens(std::span<const int32_t>(&first, 1));
    if (resp->finish_reason() == v1::FINISH_REASON_STOP) {
      self->Finish(FinishReason::kStop);
    } else if (self->request_.sampling.max_tokens <= 1) {
      self->Finish(FinishReason::kLength);
    } else {
      self->Decode(first, resp->rng_draws());
    }
  });
}

void RequestFlow::Decode(int32_t first_token, int32_t rng_draws) {
  std::shared_ptr<WorkerHandle> decode;
  std::shared_ptr<grpc::ClientContext> ctx;
  v1::DecodeRequest req;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_ || cancelled_) return;
    decode = decode_;
    ctx = NewContext(request_.deadline);
    active_ = ctx;
    // The worker adopts the lease when the call reaches it; until the request finishes, a
    // cancel or failure still releases it (harmless if it was adopted: the worker says NotFound).
    decode_started_ = true;
    req.set_request_id(request_.id);
    req.set_lease_id(lease_.lease_id());
    req.mutable_prompt()->Add(request_.prompt.begin(), request_.prompt.end());
    req.set_first_token(first_token);
    req.set_rng_draws(rng_draws);
    *req.mutable_sampling() = rpc::ToProto(request_.sampling);
  }
  auto* reader = new TokenReader(shared_from_this(), ctx);
  reader->StartDecode(decode->stub.get(), std::move(req));
}

void RequestFlow::Local() {
  const int64_t blocks =
      (static_cast<int64_t>(request_.prompt.size()) + options_.kv_block_size - 1) / options_.kv_block_size;
  // The worker's scheduler queues the request if it is full.
  std::shared_ptr<WorkerHandle> worker = registry_->PickDecode(blocks, {});
  if (!worker) {
    Fail(absl::UnavailableError("no decode or mixed worker is available"));
    return;
  }
  std::shared_ptr<grpc::ClientContext> ctx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_ || cancelled_) return;
    decode_ = worker;
    ctx = NewContext(request_.deadline);
    active_ = ctx;
  }
  v1::GenerateTokensRequest req;
  req.set_request_id(request_.id);
  req.mutable_prompt()->Add(request_.prompt.begin(), request_.prompt.end());
  *req.mutable_sampling() = rpc::ToProto(request_.sampling);
  ObserveQueued();
  auto* reader = new TokenReader(shared_from_this(), ctx);
  reader->StartGenerate(worker->stub.get(), std::move(req));
}

void RequestFlow::OnStreamMessage(const v1::TokensResponse& msg) {
  if (Ended()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    usage_.completion_tokens += msg.tokens_size();
    if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      finish_ = rpc::FromProto(msg.finish_reason());
      if (msg.has_usage()) {
        usage_.completion_tokens = msg.usage().completion_tokens();
        if (!stats_.disaggregated) usage_.cached_prompt_tokens = msg.usage().cached_prompt_tokens();
      }
    }
  }
  if (msg.tokens_size() > 0) {
    observer_->OnTokens(std::span<const int32_t>(msg.tokens().data(), msg.tokens_size()));
  }
}

void RequestFlow::OnStreamDone(const grpc::Status& status) {
  if (Ended()) return;
  if (!status.ok()) {
    if (status.error_code() == grpc::StatusCode::CANCELLED) {
      // Not our cancel (that ends the flow first): the worker shut down under the request.
      std::string worker;
      {
        std::lock_guard<std::mutex> lock(mu_);
        worker = decode_ ? decode_->info.worker_id() : "";
      }
      Fail(absl::UnavailableError(StrCat("worker ", worker, " stopped while decoding the request")));
    } else {
      Fail(rpc::FromGrpc(status));
    }
    return;
  }
  FinishReason reason;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reason = finish_;
  }
  if (reason == FinishReason::kNone || reason == FinishReason::kError) {
    Fail(absl::InternalError("the worker ended the stream without finishing the request"));
  } else {
    Finish(reason);
  }
}

}  // namespace tandem::router
