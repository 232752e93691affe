#include "controller/loop/admin_client.h"

#include <grpcpp/grpcpp.h>

#include <thread>

#include "common/strings.h"
#include "rpc/cluster_auth.h"
#include "rpc/convert.h"

namespace tandem::controller {

int64_t DrainWork(const v1::WorkerLoad& load) {
  return int64_t{load.inflight_requests()} * 1'000'000 + load.queued_prefill_tokens();
}

namespace {

void SetDeadline(grpc::ClientContext& ctx, absl::Duration timeout) {
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)));
}

constexpr absl::Duration kPollInterval = absl::Milliseconds(100);

// A router's Generate port (or a router run with --no-admin-api) answers UNIMPLEMENTED: say which
// address to give instead of passing gRPC's bare "unknown service".
absl::Status FromAdminCall(const grpc::Status& s, const std::string& router) {
  if (s.error_code() != grpc::StatusCode::UNIMPLEMENTED) return rpc::FromGrpc(s);
  return absl::UnimplementedError(StrCat("no RouterAdmin API at ", router, " (", s.error_message(),
                                         "): --router must name the router's --internal-port (50053 by "
                                         "default), not its Generate port, and the router must not run with "
                                         "--no-admin-api"));
}

}  // namespace

AdminClient::AdminClient(const std::string& router, const std::string& cluster_token, absl::Duration timeout)
    : router_(router), stub_(v1::RouterAdmin::NewStub(rpc::ClusterChannel(router, cluster_token))),
      timeout_(timeout) {}

absl::StatusOr<std::vector<v1::WorkerStatus>> AdminClient::ListWorkers() {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout_);
  v1::ListWorkersRequest req;
  v1::ListWorkersResponse resp;
  const grpc::Status s = stub_->ListWorkers(&ctx, req, &resp);
  if (!s.ok()) return FromAdminCall(s, router_);
  return std::vector<v1::WorkerStatus>(resp.workers().begin(), resp.workers().end());
}

absl::StatusOr<bool> AdminClient::DrainWorker(const std::string& worker_id) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout_);
  v1::DrainWorkerRequest req;
  req.set_worker_id(worker_id);
  v1::DrainWorkerResponse resp;
  const grpc::Status s = stub_->DrainWorker(&ctx, req, &resp);
  if (!s.ok()) return FromAdminCall(s, router_);
  return resp.drained();
}

absl::Status AdminClient::SetWorkerRole(const std::string& worker_id, v1::WorkerRole role) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout_);
  v1::SetWorkerRoleRequest req;
  req.set_worker_id(worker_id);
  req.set_role(role);
  v1::SetWorkerRoleResponse resp;
  const grpc::Status s = stub_->SetWorkerRole(&ctx, req, &resp);
  if (!s.ok()) return FromAdminCall(s, router_);
  return absl::OkStatus();
}

absl::Status AdminClient::DrainAndWait(const std::string& worker_id, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    auto drained = DrainWorker(worker_id);
    if (!drained.ok()) return drained.status();
    if (*drained) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          StrCat("worker ", worker_id, " still has work after draining for ", absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(absl::ToInt64Milliseconds(kPollInterval)));
  }
}

absl::Status DrainWorkerDirect(const std::string& address, const std::string& cluster_token, absl::Duration timeout) {
  auto stub = v1::Worker::NewStub(rpc::ClusterChannel(address, cluster_token));
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, absl::Seconds(5));
    v1::DrainRequest req;
    v1::DrainResponse resp;
    const grpc::Status s = stub->Drain(&ctx, req, &resp);
    if (!s.ok()) return rpc::FromGrpc(s);
    if (resp.drained()) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          StrCat("the worker at ", address, " still has work after draining for ", absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(absl::ToInt64Milliseconds(kPollInterval)));
  }
}

}  // namespace tandem::controller
