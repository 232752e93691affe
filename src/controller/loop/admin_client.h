// AdminClient: the router's admin API (list workers, drain one, change its role) and a worker's
// own Drain, as blocking calls with deadlines — for the controller's actuators and `tandem drain`.
//
// Thread-safe (gRPC stubs are).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/v1/registry.grpc.pb.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::controller {

// How much work a worker holds, for choosing which one to drain (less drains sooner): requests
// in flight first, then queued prefill tokens.
int64_t DrainWork(const v1::WorkerLoad& load);

class AdminClient {
 public:
  // `router` is the router's gRPC address (host:port); every call carries `cluster_token`
  // (rpc/cluster_auth.h; empty: none).
  AdminClient(const std::string& router, const std::string& cluster_token,
              absl::Duration timeout = absl::Seconds(5));

  // Every call: Unimplemented, naming the address and what to give instead, when `router` serves
  // no RouterAdmin (its Generate port, or a router run with --no-admin-api).
  absl::StatusOr<std::vector<v1::WorkerStatus>> ListWorkers();
  // Asks the worker (through the router) to drain; the router stops sending it work at once.
  // Returns whether it has already finished everything it had.
  absl::StatusOr<bool> DrainWorker(const std::string& worker_id);
  absl::Status SetWorkerRole(const std::string& worker_id, v1::WorkerRole role);

  // Drains `worker_id` and waits until it has finished its work, polling; DeadlineExceeded
  // after `timeout`.
  absl::Status DrainAndWait(const std::string& worker_id, absl::Duration timeout);

 private:
  const std::string router_;
  std::unique_ptr<v1::RouterAdmin::Stub> stub_;
  const absl::Duration timeout_;
};

// Drains the worker at `address` (its own gRPC port, no router involved) and waits until it is
// idle: what a Kubernetes preStop hook runs. DeadlineExceeded after `timeout`.
absl::Status DrainWorkerDirect(const std::string& address, const std::string& cluster_token, absl::Duration timeout);

}  // namespace tandem::controller
