// ControllerDaemon: what `tandem controller` runs (and `tandem up` runs inside itself) — the
// control loop on its own thread, its signal source, decision log, and an HTTP server with
// /metrics, /healthz and /readyz.
#pragma once

#include <memory>
#include <string>
#include <vector>
#include <thread>

#include "absl/status/statusor.h"
#include "controller/core/actuator.h"
#include "controller/loop/admin_client.h"
#include "controller/loop/controller.h"
#include "http/http_server.h"
#include "metrics/registry.h"

namespace tandem::controller {

struct DaemonOptions {
  std::string router_grpc;          // the router's gRPC address (admin API: the workers)
  std::string router_http;          // host:port of the router's /metrics
  std::string source = "scrape";    // "scrape" (direct) or "prometheus" (PromQL)
  std::string prometheus_url;       // for "prometheus": http://host:9090
  std::string window = "1m";        // PromQL rate() range
  std::string decision_log;         // JSON lines file; "" = none, "-" = stdout
  std::string bind = "0.0.0.0";
  int http_port = 9400;             // 0: any free port
  // A role whose every worker has been draining this long (not by the actuator) is restored
  // (drained_out_guard.h); 0: never.
  double restore_drained_after_s = 30;
  ControllerOptions loop;
};

// The source `options` names: a direct scrape of the router and the workers `admin` lists, or
// PromQL against Prometheus.
absl::StatusOr<std::unique_ptr<SignalSource>> MakeSignalSource(const DaemonOptions& options, AdminClient* admin);

class ControllerDaemon {
 public:
  // `actuator` and `admin` must outlive the daemon. Starts the HTTP server; the loop starts with
  // Start().
  static absl::StatusOr<std::unique_ptr<ControllerDaemon>> Create(DaemonOptions options, Actuator* actuator,
                                                                  AdminClient* admin);
  ~ControllerDaemon();

  void Start();
  void Stop();
  int http_port() const { return http_server_->port(); }
  Controller& controller() { return *controller_; }

 private:
  ControllerDaemon() = default;

  DaemonOptions options_;
  std::unique_ptr<metrics::MetricsRegistry> registry_;
  std::vector<metrics::CallbackRegistration> process_metrics_;  // process_* (metrics/process_metrics.h)
  std::unique_ptr<SignalSource> source_;
  std::unique_ptr<DecisionLog> log_;
  std::unique_ptr<DrainedOutGuard> guard_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<http::HttpServer> http_server_;
  std::thread thread_;
};

}  // namespace tandem::controller
