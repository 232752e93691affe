// A whole router process: the OpenAI-compatible HTTP API and the public gRPC Generate API (the
// public plane, guarded by the API key), the Registry and RouterAdmin services for workers and
// the controller on a port of their own (the internal plane, guarded by the cluster token, and
// on loopback unless told otherwise), /metrics /healthz /readyz, and the worker registry with
// heartbeat expiry.
//
// Thread-safe. The GGUF file is read for the tokenizer, the chat template and the model's
// identity (workers must serve the same model); it must outlive the router.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "gguf/gguf_file.h"
#include "grpcpp/server.h"
#include "http/http_server.h"
#include "metrics/registry.h"
#include "router/frontend.h"
#include "router/connection_monitor.h"
#include "router/registry_service.h"
#include "router/router_metrics.h"
#include "router/worker_registry.h"
#include "text/tokenizer.h"

namespace tandem::router {

struct RouterOptions {
  std::string bind_host = "127.0.0.1";  // the public plane's address (HTTP and gRPC Generate)
  int http_port = 8000;   // 0: any free port
  int grpc_port = 50051;  // Generate; 0: any free port
  // The internal plane (Registry, RouterAdmin): its own port, so that opening the public API
  // to clients does not open it; empty host: bind_host.
  std::string internal_bind_host;
  int internal_port = 50053;  // 0: any free port
  int http_threads = 2;
  std::string served_model;        // empty: the GGUF's general.name-derived default
  std::string api_key;             // non-empty: clients must send it (Authorization: Bearer)
  // Registry and RouterAdmin callers must present it, and calls to workers carry it
  // (rpc/cluster_auth.h); empty: no check (development only).
  std::string cluster_token;
  bool admin_api = true;  // serve RouterAdmin (the controller needs it); off: UNIMPLEMENTED
  int32_t local_prefill_threshold = 0;
  // > 0: prompts prefill on the decode worker when a prefill worker is predicted to miss this
  // TTFT and the decode worker to meet it (placement::PrefillLocallyByCost); 0: off.
  absl::Duration local_prefill_ttft_slo = absl::ZeroDuration();
  int32_t default_max_tokens = 0;
  absl::Duration worker_expiry = absl::Seconds(3);
  int32_t heartbeat_ms = 500;
  absl::Duration request_timeout = absl::Minutes(10);
  // How long a request may wait for KV room on a decode worker before it is refused (overload).
  absl::Duration queue_timeout = absl::Seconds(60);
  int max_migrations = 3;  // FlowOptions::max_migrations
};

class RouterProcess {
 public:
  static absl::StatusOr<std::unique_ptr<RouterProcess>> Start(const RouterOptions& options,
                                                              const gguf::GgufFile& file);
  ~RouterProcess();

  void Stop(absl::Duration grace);
  int http_port() const { return http_port_; }
  int grpc_port() const { return grpc_port_; }
  // Where workers register and the controller calls RouterAdmin.
  int internal_port() const { return internal_port_; }
  // Ready when it can serve: a decode-capable worker, and a prefill or mixed worker.
  bool Ready() const;
  WorkerRegistry& registry() { return *registry_; }
  const std::string& served_model() const { return served_model_; }

 private:
  RouterProcess() = default;
  void RegisterWorkerGauges();
  // The gRPC services and the HTTP server (OpenAI API, /metrics /healthz /readyz).
  absl::Status StartServers();
  // A gRPC server on host:port with `services`; `bound` gets the port it took.
  static absl::StatusOr<std::unique_ptr<grpc::Server>> ServeGrpc(const std::string& host, int port,
                                                                 std::vector<grpc::Service*> services, int* bound);
  std::string InternalHost() const;

  RouterOptions options_;
  std::string served_model_;
  int http_port_ = 0, grpc_port_ = 0, internal_port_ = 0;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::unique_ptr<WorkerRegistry> registry_;
  // After registry_: destroyed first, so no connection-loss callback reaches a destroyed registry.
  std::unique_ptr<ConnectionMonitor> monitor_;
  std::unique_ptr<TimedTaskQueue> timer_;
  std::unique_ptr<metrics::MetricsRegistry> metrics_registry_;
  std::vector<metrics::CallbackRegistration> process_metrics_;  // process_* (metrics/process_metrics.h)
  std::unique_ptr<RouterMetrics> metrics_;
  std::unique_ptr<Frontend> frontend_;
  std::unique_ptr<GenerateService> generate_service_;
  std::unique_ptr<rpc::ClusterAuth> auth_;  // before the services that borrow it
  std::unique_ptr<RegistryService> registry_service_;
  std::unique_ptr<RouterAdminService> admin_service_;
  std::unique_ptr<grpc::Server> grpc_server_;           // Generate
  std::unique_ptr<grpc::Server> internal_grpc_server_;  // Registry, RouterAdmin
  std::unique_ptr<http::HttpServer> http_server_;
  std::vector<metrics::CallbackRegistration> callbacks_;
  std::atomic<bool> stop_{false};
  std::thread expiry_thread_;
  bool stopped_ = false;
};

// The model id clients use by default: the GGUF file's base name without ".gguf" and
// quantization suffix, e.g. "SmolLM2-135M-Instruct".
std::string DefaultServedModelName(const std::string& path);

}  // namespace tandem::router
