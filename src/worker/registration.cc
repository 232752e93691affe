#include "worker/registration.h"

#include <chrono>

#include "common/logging.h"
#include "rpc/cluster_auth.h"

namespace tandem::worker {

RouterRegistration::RouterRegistration(Options options, std::function<v1::WorkerInfo()> info,
                                       std::function<v1::WorkerLoad()> load)
    : options_(std::move(options)), info_(std::move(info)), load_(std::move(load)) {}

RouterRegistration::~RouterRegistration() { Stop(); }

void RouterRegistration::Start() { thread_ = std::thread([this] { Loop(); }); }

void RouterRegistration::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RouterRegistration::Loop() {
  auto log = GetLogger("worker");
  // A restarted router is found again within about a second: gRPC's own reconnect backoff
  // (1 s growing to 120 s) would leave the worker unregistered far longer.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  auto channel = rpc::ClusterChannel(options_.router_address, options_.cluster_token, args);
  auto stub = v1::Registry::NewStub(channel);
  absl::Duration interval = options_.interval;
  absl::Duration backoff = absl::Milliseconds(100);
  bool warned = false;
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    bool ok = false;
    if (!registered_.load()) {
      v1::RegisterRequest req;
      *req.mutable_info() = info_();
      *req.mutable_load() = load_();
      v1::RegisterResponse resp;
      const grpc::Status s = stub->Register(&ctx, req, &resp);
      ok = s.ok();
      if (ok) {
        registered_.store(true);
        warned = false;
        if (resp.heartbeat_ms() > 0) interval = absl::Milliseconds(resp.heartbeat_ms());
        log->info("registered with the router at {} as {} ({})", options_.router_address, req.info().worker_id(),
                  v1::WorkerRole_Name(req.info().role()));
      } else if (!warned) {
        warned = true;
        log->warn("cannot register with the router at {}: {}{}; retrying", options_.router_address, s.error_message(),
                  s.error_code() == grpc::StatusCode::UNIMPLEMENTED
                      ? " (no Registry there: --router must name the router's --internal-port, not its Generate port)"
                      : "");
      }
    } else {
      v1::HeartbeatRequest req;
      const v1::WorkerInfo info = info_();
      req.set_worker_id(info.worker_id());
      req.set_epoch(info.epoch());
      req.set_role(info.role());
      *req.mutable_load() = load_();
      v1::HeartbeatResponse resp;
      const grpc::Status s = stub->Heartbeat(&ctx, req, &resp);
      ok = s.ok();
      if (!ok || !resp.known()) {
        registered_.store(false);
        log->warn("lost the router at {} ({}); registering again", options_.router_address,
                  ok ? "it does not know this worker" : s.error_message());
      }
    }
    backoff = ok ? absl::Milliseconds(100) : std::min(backoff * 2, absl::Seconds(2));
    std::unique_lock<std::mutex> lock(mu_);
    const absl::Duration wait = ok ? interval : backoff;
    cv_.wait_for(lock, std::chrono::microseconds(absl::ToInt64Microseconds(wait)), [this] { return stop_; });
    if (stop_) return;
  }
}

}  // namespace tandem::worker
