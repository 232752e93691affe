// A whole worker process: the engine on its thread, the KV lease table and transport, the
// Worker gRPC service (with grpc.health.v1), /metrics /healthz /readyz over HTTP, and the
// registration with the router.
//
// Thread-safe. Stop() drains: it stops registering (so the router stops sending work), waits
// for in-flight requests and outbound KV up to a grace period, then shuts everything down.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "gguf/gguf_file.h"
#include "grpcpp/server.h"
#include "http/http_server.h"
#include "metrics/registry.h"
#include "tandem/kv_transport.h"
#include "transfer/transport_registry.h"
#include "worker/engine_runner.h"
#include "worker/kv_lease_table.h"
#include "worker/registration.h"
#include "worker/worker_metrics.h"
#include "worker/worker_service.h"

namespace tandem::worker {

struct WorkerOptions {
  v1::WorkerRole role = v1::WORKER_ROLE_MIXED;
  std::string worker_id;                    // empty: <role>-<host>-<pid>
  std::string advertise_host = "127.0.0.1";  // how the router and peers reach this worker
  std::string bind_host = "127.0.0.1";
  int grpc_port = 0;                        // 0: any free port
  int http_port = 0;
  // host:port of the router's internal port, or several separated by commas: one per router
  // (routers behind one set of workers), each registered with and heartbeated on its own.
  // Empty: do not register.
  std::string router_address;
  absl::Duration heartbeat_interval = absl::Milliseconds(500);
  WorkerServiceOptions service;
};

class WorkerProcess {
 public:
  // Starts serving. `file` must outlive the worker. `transport` names the KV transfer medium
  // and its settings (transfer/transport_registry.h); the worker fills in its cache, layout,
  // lease table and id.
  static absl::StatusOr<std::unique_ptr<WorkerProcess>> Start(const WorkerOptions& options,
                                                              const gguf::GgufFile& file,
                                                              std::unique_ptr<Engine> engine,
                                                              const transfer::TransportOptions& transport);
  ~WorkerProcess();

  void Stop(absl::Duration grace);
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  const std::string& worker_id() const { return worker_id_; }
  bool Ready() const;
  WorkerService& service() { return *service_; }
  EngineRunner& runner() { return *runner_; }
  KvTransport& transport() { return *transport_; }

 private:
  WorkerProcess() = default;
  v1::WorkerInfo Info() const;
  v1::WorkerLoad Load() const;
  // Registers with each router of options.router_address (comma-separated, duplicates once).
  void StartRegistrations(const WorkerOptions& options);

  WorkerOptions options_;
  std::string worker_id_;
  std::string model_id_;
  int context_length_ = 0;
  uint64_t epoch_ = 0;
  int grpc_port_ = 0, http_port_ = 0;
  std::unique_ptr<KvLeaseTable> leases_;
  std::unique_ptr<KvTransport> transport_;
  std::unique_ptr<EngineRunner> runner_;
  std::unique_ptr<metrics::MetricsRegistry> registry_;
  std::vector<metrics::CallbackRegistration> process_metrics_;  // process_* (metrics/process_metrics.h)
  std::unique_ptr<WorkerMetrics> metrics_;
  std::unique_ptr<WorkerService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<http::HttpServer> http_server_;
  std::vector<std::unique_ptr<RouterRegistration>> registrations_;  // one per router
  bool stopped_ = false;
};

}  // namespace tandem::worker
