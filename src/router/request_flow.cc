#include "router/request_flow.h"

#include <deque>
#include <random>
#include <utility>
#include <variant>

#include "common/logging.h"
#include "common/strings.h"
#include "router/placement.h"
#include "rpc/convert.h"

namespace tandem::router {
namespace {

bool RetryablePrefillError(absl::StatusCode c) {
  // CANCELLED here comes from the worker (a router-side cancel ends the flow first): it was
  // shutting down. RESOURCE_EXHAUSTED: its queue or KV was full.
  return c == absl::StatusCode::kUnavailable || c == absl::StatusCode::kAborted ||
         c == absl::StatusCode::kCancelled || c == absl::StatusCode::kDeadlineExceeded ||
         c == absl::StatusCode::kInternal || c == absl::StatusCode::kUnknown ||
         c == absl::StatusCode::kResourceExhausted;
}

// A decode worker that cannot take the reservation now but another may: draining, changed role,
// unreachable or slow.
bool TryNextDecodeWorker(absl::StatusCode c) {
  return c == absl::StatusCode::kUnavailable || c == absl::StatusCode::kFailedPrecondition ||
         c == absl::StatusCode::kDeadlineExceeded;
}

std::shared_ptr<spdlog::logger> Log() { return GetLogger("router"); }

// A sampled request without a seed gets one here, so that if it moves to another worker the
// sampler goes on with the same random stream.
RouterRequest WithSeed(RouterRequest r) {
  if (!r.sampling.greedy() && r.sampling.top_k != 1 && !r.sampling.seed.has_value()) {
    std::random_device device;
    r.sampling.seed = (static_cast<uint64_t>(device()) << 32) ^ device();
  }
  return r;
}

}  // namespace

const char* RequestFlow::PhaseName(Phase p) {
  switch (p) {
    case Phase::kStarting: return "starting";
    case Phase::kReserving: return "reserving";
    case Phase::kWaitingForRoom: return "waiting_for_room";
    case Phase::kPrefilling: return "prefilling";
    case Phase::kDecoding: return "decoding";
    case Phase::kGenerating: return "generating";
    case Phase::kEnded: return "ended";
  }
  return "?";
}

// The observer's events, delivered one at a time in the order they were raised. Whoever raises
// an event while none is being delivered delivers the queue; an event raised meanwhile (by
// another thread, or by the observer itself, e.g. Cancel from OnTokens) is queued and delivered
// by that same thread once the current one returns. After a terminal event nothing is accepted.
class RequestFlow::Events {
 public:
  explicit Events(std::shared_ptr<RequestObserver> observer) : observer_(std::move(observer)) {}

  void Finished(FinishReason reason, const RequestUsage& usage) { Push(Finish{reason, usage}, true); }
  void Failed(const absl::Status& status) { Push(status, true); }
  // Queues tokens without delivering them: called under the flow's lock, so that tokens keep
  // the order in which the flow accepted them across legs. Deliver() (without the lock) sends.
  void QueueTokens(std::vector<int32_t> tokens, std::vector<TokenLogprob> logprobs,
                   std::vector<TokenLogprob> prompt_logprobs) {
    Enqueue(Tokens{std::move(tokens), std::move(logprobs), std::move(prompt_logprobs)}, false);
  }
  void QueueCached(int32_t cached_prompt_tokens) { Enqueue(Cached{cached_prompt_tokens}, false); }
  void Deliver() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (delivering_ || queue_.empty()) return;
      delivering_ = true;
    }
    DeliverQueued();
  }

 private:
  struct Finish {
    FinishReason reason;
    RequestUsage usage;
  };
  struct Cached {
    int32_t tokens;
  };
  struct Tokens {
    std::vector<int32_t> ids;
    std::vector<TokenLogprob> logprobs;
    std::vector<TokenLogprob> prompt_logprobs;  // with the request's first tokens
  };
  using Event = std::variant<Tokens, Finish, absl::Status, Cached>;

  void Enqueue(Event event, bool terminal) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = terminal;
    queue_.push_back(std::move(event));
  }

  void Push(Event event, bool terminal) {
    Enqueue(std::move(event), terminal);
    Deliver();
  }

  // Called by the one thread that set delivering_.
  void DeliverQueued() {
    for (;;) {
      Event next;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (queue_.empty()) {
          delivering_ = false;
          return;
        }
        next = std::move(queue_.front());
        queue_.pop_front();
      }
      if (auto* tokens = std::get_if<Tokens>(&next)) {
        if (!tokens->prompt_logprobs.empty()) observer_->OnPromptLogprobs(tokens->prompt_logprobs);
        observer_->OnTokens(tokens->ids, tokens->logprobs);
      } else if (auto* cached = std::get_if<Cached>(&next)) {
        observer_->OnPromptCached(cached->tokens);
      } else if (auto* finish = std::get_if<Finish>(&next)) {
        observer_->OnFinished(finish->reason, finish->usage);
      } else {
        observer_->OnFailed(std::get<absl::Status>(next));
      }
    }
  }

  const std::shared_ptr<RequestObserver> observer_;
  std::mutex mu_;
  std::deque<Event> queue_;
  bool delivering_ = false;
  bool closed_ = false;  // the terminal event was accepted
};

std::shared_ptr<RequestFlow> RequestFlow::Start(RouterRequest request, const FlowOptions& options,
                                                WorkerRegistry* registry, FlowClock* clock,
                                                std::shared_ptr<RequestObserver> observer) {
  auto flow = std::shared_ptr<RequestFlow>(
      new RequestFlow(std::move(request), options, registry, clock, std::move(observer)));
  flow->Run();
  return flow;
}

std::shared_ptr<RequestFlow> RequestFlow::Start(RouterRequest request, const FlowOptions& options,
                                                WorkerRegistry* registry, TimedTaskQueue* timer,
                                                std::shared_ptr<RequestObserver> observer) {
  auto clock = std::make_unique<QueueClock>(timer);
  auto flow = std::shared_ptr<RequestFlow>(
      new RequestFlow(std::move(request), options, registry, clock.get(), std::move(observer)));
  flow->own_clock_ = std::move(clock);
  flow->Run();
  return flow;
}

RequestFlow::RequestFlow(RouterRequest request, const FlowOptions& options, WorkerRegistry* registry,
                         FlowClock* clock, std::shared_ptr<RequestObserver> observer)
    : request_(WithSeed(std::move(request))),
      options_(options),
      registry_(registry),
      clock_(clock),
      events_(std::make_unique<Events>(std::move(observer))),
      start_(clock->Now()) {
  usage_.prompt_tokens = static_cast<int32_t>(request_.prompt.size());
}

RequestFlow::~RequestFlow() = default;

FlowStats RequestFlow::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

bool RequestFlow::Ended() const {
  std::lock_guard<std::mutex> lock(mu_);
  return phase_ == Phase::kEnded;
}

void RequestFlow::ObserveQueued() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_observed_) return;
    queue_observed_ = true;
  }
  if (options_.metrics != nullptr) options_.metrics->queue->Observe(absl::ToDoubleSeconds(clock_->Now() - start_));
}

void RequestFlow::Cancel() {
  std::shared_ptr<CallCanceller> call;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded) return;
    Log()->debug("request={} cancelled phase={}", request_.id, PhaseName(phase_));
    phase_ = Phase::kEnded;
    finish_ = FinishReason::kCancelled;
    call = std::move(call_);
  }
  if (call) call->Cancel();
  StopWaiting(/*admitted=*/false);
  Unwatch();
  ReleaseLease();
  events_->Failed(absl::CancelledError("the request was cancelled"));
}

void RequestFlow::StopWaiting(bool admitted) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!waiting_counted_) return;
    waiting_counted_ = false;
  }
  registry_->admission().NoteWaiting(-1);
  if (admitted) registry_->admission().NoteAdmittedAfterWait(clock_->Now());
}

void RequestFlow::Fail(const absl::Status& status) {
  StopWaiting(/*admitted=*/false);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded) return;
    phase_ = Phase::kEnded;
    call_.reset();
  }
  Unwatch();
  ReleaseLease();
  events_->Failed(status);
}

void RequestFlow::Finish(FinishReason reason) {
  RequestUsage usage;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded) return;
    phase_ = Phase::kEnded;
    call_.reset();
    finish_ = reason;
    usage = usage_;
    // Decoded to the end: the decode worker adopted the lease. Otherwise (the prefill's first
    // token ended the request) it is released.
    if (decode_started_) lease_held_ = false;
  }
  Unwatch();
  ReleaseLease();
  events_->Finished(reason, usage);
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
  Log()->debug("request={} releasing lease={} on worker={}", request_.id, lease_id, decode->info.worker_id());
  decode->client->ReleaseKv(lease_id);
}

void RequestFlow::Reserve() {
  std::shared_ptr<WorkerHandle> decode;
  int64_t tokens;
  bool resuming;
  std::string worker_request_id;
  uint64_t leg;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded) return;
    leg = leg_;
    worker_request_id = LegRequestId();
    tokens = static_cast<int64_t>(LegPromptTokens());
    resuming = stats_.migrations > 0;
    decode = registry_->PickDecode(tokens, ExcludedDecode());
    if (decode) {
      phase_ = Phase::kReserving;
      tried_decode_.insert(decode->info.worker_id());
      decode_ = decode;
    }
  }
  if (!decode) {
    // A resumed request waits for a decode worker to come back (a restart) like one waiting
    // for room.
    if (registry_->CountDecodeCapable() == 0 && !resuming) {
      Fail(absl::UnavailableError("no decode worker is available"));
    } else {
      WaitForRoom();  // every decode worker was full: try them again a little later
    }
    return;
  }
  Log()->debug("request={} reserving KV for {} tokens on worker={}", request_.id, tokens, decode->info.worker_id());
  v1::ReserveKvRequest req;
  req.set_request_id(worker_request_id);
  req.set_num_tokens(static_cast<int32_t>(tokens));
  req.set_lease_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(options_.lease_time)));
  const absl::Time deadline = std::min(request_.deadline, clock_->Now() + options_.reserve_timeout);
  Watch(decode, leg);  // a stopped worker never answers: its loss moves the request on
  decode->client->ReserveKv(req, deadline, [self = shared_from_this(), decode, leg](auto answer) {
    self->OnReserved(decode, leg, std::move(answer));
  });
}

void RequestFlow::OnReserved(const std::shared_ptr<WorkerHandle>& decode, uint64_t leg,
                             absl::StatusOr<v1::ReserveKvResponse> answer) {
  const std::string& worker = decode->info.worker_id();
  bool stale;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stale = leg != leg_;
  }
  if (stale) {  // the request moved on while this worker did not answer: give the lease back
    if (answer.ok()) decode->client->ReleaseKv(answer->lease_id());
    return;
  }
  if (answer.ok()) {
    const int64_t free_blocks = answer->free_kv_blocks();
    bool ended;
    {
      std::lock_guard<std::mutex> lock(mu_);
      lease_ = std::move(*answer);
      lease_held_ = true;
      ended = phase_ == Phase::kEnded;
    }
    registry_->NoteFreeBlocks(worker, free_blocks);
    StopWaiting(/*admitted=*/true);
    ObserveQueued();
    if (ended) {
      ReleaseLease();  // cancelled while the reservation was in flight
      return;
    }
    Prefill();
    return;
  }
  const absl::StatusCode code = answer.status().code();
  if (code == absl::StatusCode::kResourceExhausted) {
    size_t tokens;
    {
      std::lock_guard<std::mutex> lock(mu_);
      tokens = LegPromptTokens();
    }
    registry_->NoteReserveRefused(worker, static_cast<int64_t>(tokens));
    Reserve();  // the next decode worker, or wait
  } else if (TryNextDecodeWorker(code)) {
    Log()->info("request={} reservation on worker={} failed ({}); trying another", request_.id, worker,
                ToStd(answer.status().message()));
    Reserve();
  } else {
    Fail(answer.status());
  }
}

void RequestFlow::WaitForRoom(bool local) {
  absl::Status give_up;
  absl::Time at;
  absl::Duration waited;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded) return;
    phase_ = Phase::kWaitingForRoom;
    const absl::Time now = clock_->Now();
    if (wait_start_ == absl::InfinitePast()) {
      wait_start_ = now;
      waiting_counted_ = true;
      registry_->admission().NoteWaiting(+1);
    }
    waited = now - wait_start_;
    at = now + backoff_;
    backoff_ = std::min(backoff_ * 2, absl::Milliseconds(200));
    tried_decode_.clear();
    if (at > std::min(request_.deadline, wait_start_ + options_.admission_timeout)) {
      give_up = stats_.migrations > 0
                    ? absl::UnavailableError(StrCat("no decode worker could resume the request within ",
                                                    absl::FormatDuration(waited), " after its worker failed"))
                    : absl::ResourceExhaustedError(StrCat("no decode worker had room for the KV of ",
                                                          request_.prompt.size(), " prompt tokens within ",
                                                          absl::FormatDuration(waited), "; retry later"));
    }
  }
  if (!give_up.ok()) {
    Log()->warn("request={} refused: {}", request_.id, ToStd(give_up.message()));
    StopWaiting(/*admitted=*/false);
    Fail(give_up.code() == absl::StatusCode::kResourceExhausted ? registry_->admission().WithRetryAfter(give_up)
                                                                 : give_up);
    return;
  }
  if (!clock_->RunAt(at, [self = shared_from_this(), local] { local ? self->Local() : self->Reserve(); })) {
    Fail(absl::UnavailableError("the router is shutting down"));
  }
}

// Chooses the next prefill worker and builds its request; nullopt when attempts are spent or no
// worker is left. Called with mu_ held.
std::optional<v1::PrefillRequest> RequestFlow::PickPrefill(std::shared_ptr<WorkerHandle>& prefill,
                                                           std::shared_ptr<CallCanceller>& cancel, int64_t& pending,
                                                           int64_t& ahead) {
  if (stats_.prefill_attempts >= options_.max_prefill_attempts) return std::nullopt;
  const std::vector<int32_t> prompt = LegPrompt();
  PrefillClaim claim = registry_->ClaimPrefill(prompt, &lease_.endpoint().layout(), tried_prefill_);
  if (!claim.worker) return std::nullopt;
  prefill = std::move(claim.worker);
  pending = claim.pending_tokens;
  ahead = claim.queued_ahead;
  if (stats_.prefill_attempts > 0 && options_.metrics != nullptr) options_.metrics->prefill_retries->Increment();
  ++stats_.prefill_attempts;
  tried_prefill_.insert(prefill->info.worker_id());
  prefill_ = prefill;
  phase_ = Phase::kPrefilling;
  cancel = std::make_shared<CallCanceller>();
  call_ = cancel;
  v1::PrefillRequest req;
  req.set_request_id(LegRequestId());
  req.mutable_prompt()->Add(prompt.begin(), prompt.end());
  *req.mutable_sampling() = rpc::ToProto(LegSampling());
  req.set_rng_draws(rng_draws_);
  *req.mutable_destination()->mutable_endpoint() = lease_.endpoint();
  req.mutable_destination()->set_lease_id(lease_.lease_id());
  *req.mutable_destination()->mutable_block_ids() = lease_.block_ids();
  return req;
}

void RequestFlow::Prefill() {
  std::shared_ptr<WorkerHandle> prefill;
  std::shared_ptr<CallCanceller> cancel;
  std::optional<v1::PrefillRequest> req;
  std::string why;
  uint64_t leg;
  bool attempted = false;
  std::shared_ptr<WorkerHandle> lease_holder;
  int64_t pending = 0;  // the prompt tokens the registry counts against the worker
  int64_t ahead = 0;    // its queued tokens before them
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded) return;
    leg = leg_;
    req = PickPrefill(prefill, cancel, pending, ahead);
    if (!req.has_value()) {
      attempted = stats_.prefill_attempts > 0;
      lease_holder = decode_;
      why = !attempted ? StrCat("no prefill worker is available for the KV layout of decode worker ",
                                decode_->info.worker_id())
                       : StrCat("prefill failed on ", stats_.prefill_attempts, " worker(s); last error: ",
                                last_prefill_error_);
    }
  }
  if (!req.has_value()) {
    // Every attempt into this lease failed (its decode worker may have died before anyone
    // noticed): a new leg tries a fresh lease, on another decode worker if there is one.
    const absl::Status failure = absl::UnavailableError(why);
    if (attempted && Migrate(lease_holder, failure, "prefill_failed", NextLeg::kElsewhereFirst)) return;
    // No prefill worker can fill the lease (the last one died, or none has its KV layout): the
    // next leg computes the prompt on a decode worker rather than the client getting an error.
    if (!attempted && Migrate(lease_holder, failure, "no_prefill_worker", NextLeg::kLocalPrefill)) return;
    Fail(failure);
    return;
  }
  Log()->debug("request={} prefill on worker={} into lease={}", request_.id, prefill->info.worker_id(),
               req->destination().lease_id());
  Watch(prefill, leg);  // the lease's decode worker is watched since Reserve
  const absl::Time sent = clock_->Now();
  prefill->client->Prefill(*req, request_.deadline, std::move(cancel),
                           [self = shared_from_this(), prefill, leg, pending, ahead, sent](auto answer) {
                             self->registry_->NotePrefillEnded(prefill->info.worker_id(), pending);
                             if (answer.ok()) {
                               self->registry_->NotePrefillTimed(ahead + pending,
                                                                 absl::ToDoubleSeconds(self->clock_->Now() - sent));
                             }
                             self->OnPrefilled(prefill, leg, std::move(answer));
                           });
}

void RequestFlow::OnPrefilled(const std::shared_ptr<WorkerHandle>& prefill, uint64_t leg,
                              absl::StatusOr<v1::PrefillResponse> answer) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded || leg != leg_) return;  // ended, or an earlier leg's answer
  }
  if (!answer.ok()) {
    const absl::Status& s = answer.status();
    if (!RetryablePrefillError(s.code())) {
      Fail(s);
      return;
    }
    Log()->warn("request={} prefill on worker={} failed ({}); retrying elsewhere", request_.id,
                prefill->info.worker_id(), ToStd(s.message()));
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_prefill_error_ = std::string(ToStd(s.message()));
    }
    Prefill();
    return;
  }
  const v1::PrefillResponse& resp = *answer;
  bool length_reached;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded || leg != leg_) return;
    const int32_t first = resp.first_token();
    if (stats_.migrations == 0) {
      usage_.cached_prompt_tokens = resp.usage().cached_prompt_tokens();
      events_->QueueCached(usage_.cached_prompt_tokens);
    }
    std::vector<TokenLogprob> logprobs;
    if (request_.sampling.logprobs >= 0 && resp.has_first_logprob()) logprobs.push_back(rpc::FromProto(resp.first_logprob()));
    NoteTokens({&first, 1}, std::move(logprobs), PromptLogprobsOf(resp.prompt_logprobs()));
    rng_draws_ = resp.rng_draws();
    usage_.completion_tokens = static_cast<int32_t>(generated_.size());
    stats_.transfer_seconds = resp.transfer_seconds();
    stats_.transfer_bytes = resp.transfer_bytes();
    length_reached = static_cast<int>(generated_.size()) >= request_.sampling.max_tokens;
  }
  if (options_.metrics != nullptr && resp.transfer_bytes() > 0) {
    options_.metrics->transfer_seconds->Observe(resp.transfer_seconds());
    options_.metrics->transfer_bytes->Increment(static_cast<double>(resp.transfer_bytes()));
  }
  events_->Deliver();
  if (resp.finish_reason() == v1::FINISH_REASON_STOP) {
    Finish(FinishReason::kStop);
  } else if (length_reached) {
    Finish(FinishReason::kLength);
  } else {
    Decode(resp.first_token(), resp.rng_draws());
  }
}

void RequestFlow::Decode(int32_t first_token, int32_t rng_draws) {
  std::shared_ptr<WorkerHandle> decode;
  auto cancel = std::make_shared<CallCanceller>();
  v1::DecodeRequest req;
  uint64_t leg;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded) return;
    phase_ = Phase::kDecoding;
    leg = leg_;
    decode = decode_;
    call_ = cancel;
    // The worker adopts the lease when the call reaches it; until the request finishes, a
    // cancel or failure still releases it (harmless if it was adopted: the worker says NotFound).
    decode_started_ = true;
    req.set_request_id(LegRequestId());
    req.set_lease_id(lease_.lease_id());
    const std::vector<int32_t> prompt = LegPrompt();
    req.mutable_prompt()->Add(prompt.begin(), prompt.end());
    req.set_first_token(first_token);
    req.set_rng_draws(rng_draws);
    *req.mutable_sampling() = rpc::ToProto(LegSampling());
  }
  Log()->debug("request={} decode on worker={} from lease={}", request_.id, decode->info.worker_id(), req.lease_id());
  decode->client->Decode(req, request_.deadline, std::move(cancel), StreamHandler(leg));
}

void RequestFlow::Local() {
  // The worker's scheduler queues the request if it is full.
  auto cancel = std::make_shared<CallCanceller>();
  std::shared_ptr<WorkerHandle> worker;
  v1::GenerateTokensRequest req;
  uint64_t leg = 0;
  bool resuming;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded) return;
    const std::vector<int32_t> prompt = LegPrompt();
    worker = registry_->ClaimLocal(static_cast<int64_t>(prompt.size()), ExcludedDecode());
    resuming = stats_.migrations > 0;
    if (worker) {
      phase_ = Phase::kGenerating;
      decode_ = worker;
      call_ = cancel;
      leg = leg_;
      req.set_request_id(LegRequestId());
      req.mutable_prompt()->Add(prompt.begin(), prompt.end());
      *req.mutable_sampling() = rpc::ToProto(LegSampling());
      req.set_rng_draws(rng_draws_);
    }
  }
  if (!worker) {
    if (resuming) {
      WaitForRoom(/*local=*/true);  // until a worker comes back, up to the admission timeout
    } else {
      Fail(absl::UnavailableError("no decode or mixed worker is available"));
    }
    return;
  }
  StopWaiting(/*admitted=*/true);
  ObserveQueued();
  Log()->debug("request={} local prefill and decode on worker={}", request_.id, worker->info.worker_id());
  Watch(worker, leg);
  worker->client->GenerateTokens(req, request_.deadline, std::move(cancel), StreamHandler(leg));
}

WorkerClient::TokenStreamHandler RequestFlow::StreamHandler(uint64_t leg) {
  auto self = shared_from_this();
  return {[self, leg](const v1::TokensResponse& msg) { self->OnStreamMessage(leg, msg); },
          [self, leg](const absl::Status& status) { self->OnStreamDone(leg, status); }};
}

void RequestFlow::OnStreamMessage(uint64_t leg, const v1::TokensResponse& msg) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded || leg != leg_) return;
    if (!leg_streamed_ && !stats_.disaggregated && stats_.migrations == 0) {
      usage_.cached_prompt_tokens = msg.cached_prompt_tokens();  // computed here, on the first leg
      events_->QueueCached(usage_.cached_prompt_tokens);
    }
    leg_streamed_ = true;
    std::vector<TokenLogprob> logprobs;
    if (request_.sampling.logprobs >= 0) {
      for (const v1::TokenLogprob& l : msg.logprobs()) logprobs.push_back(rpc::FromProto(l));
    }
    NoteTokens({msg.tokens().data(), static_cast<size_t>(msg.tokens_size())}, std::move(logprobs),
               PromptLogprobsOf(msg.prompt_logprobs()));
    rng_draws_ = std::max(rng_draws_, msg.rng_draws());
    usage_.completion_tokens += msg.tokens_size();
    if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      finish_ = rpc::FromProto(msg.finish_reason());
      if (msg.has_usage()) {
        usage_.completion_tokens = static_cast<int32_t>(leg_base_) + msg.usage().completion_tokens();
        if (!stats_.disaggregated && stats_.migrations == 0) {
          usage_.cached_prompt_tokens = msg.usage().cached_prompt_tokens();
        }
      }
    }
  }
  events_->Deliver();
}

void RequestFlow::OnStreamDone(uint64_t leg, const absl::Status& status) {
  FinishReason reason;
  std::shared_ptr<WorkerHandle> worker;
  bool streamed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded || leg != leg_) return;
    reason = finish_;
    worker = decode_;
    streamed = leg_streamed_;
  }
  absl::Status failure = status;
  if (status.code() == absl::StatusCode::kCancelled) {
    // Not our cancel (that ends the flow first): the worker shut down under the request.
    failure = absl::UnavailableError(StrCat("worker ", worker->info.worker_id(), " stopped while decoding the request"));
  } else if (status.ok() && (reason == FinishReason::kNone || reason == FinishReason::kError)) {
    failure = absl::InternalError("the worker ended the stream without finishing the request");
  } else if (status.ok()) {
    Finish(reason);
    return;
  }
  Log()->warn("request={} stream from worker={} failed: {}", request_.id, worker->info.worker_id(),
              ToStd(failure.message()));
  if (!Migratable(failure) || !Migrate(worker, failure, "stream_failed")) Fail(failure);
  // A connection lost mid-stream (a stream the worker had accepted cannot be refused with
  // UNAVAILABLE) or a shutdown: the process is gone, so its other requests move now, not at
  // its heartbeat expiry. After this request's own migration, which already left it.
  if ((status.code() == absl::StatusCode::kUnavailable && streamed) || status.code() == absl::StatusCode::kCancelled) {
    registry_->Drop(worker->info.worker_id(), worker->info.epoch(),
                    StrCat("its stream broke mid-request (", ToStd(status.message()), ")"));
  }
}

void RequestFlow::NoteTokens(std::span<const int32_t> tokens, std::vector<TokenLogprob> logprobs,
                             std::vector<TokenLogprob> prompt_logprobs) {
  if (tokens.empty()) return;
  if (!generated_.empty() || prompt_logprobs.size() + 1 != request_.prompt.size()) prompt_logprobs.clear();
  generated_.insert(generated_.end(), tokens.begin(), tokens.end());
  if (migrated_at_ != absl::InfinitePast()) {
    if (options_.metrics != nullptr) {
      options_.metrics->migration_seconds->Observe(absl::ToDoubleSeconds(clock_->Now() - migrated_at_));
    }
    migrated_at_ = absl::InfinitePast();
  }
  if (logprobs.size() != tokens.size()) logprobs.clear();  // all or none (a peer's count is not trusted)
  events_->QueueTokens({tokens.begin(), tokens.end()}, std::move(logprobs), std::move(prompt_logprobs));
}

}  // namespace tandem::router
