#include "cli/router_flags.h"

#include "cli/environment.h"
#include "common/strings.h"

namespace tandem::cli {

void RouterFlags::Register(FlagSet& f) {
  f.String("model", &model, "GGUF model file (default: the bundled model)");
  f.String("served-model-name", &served_model, "model id clients name (default: derived from the file name)");
  f.Int("http-port", &http_port, "port of the HTTP API (0: any free port)");
  f.Int("grpc-port", &grpc_port, "port of the public gRPC Generate API (0: any free port)");
  f.String("bind", &bind,
           "address the public APIs (HTTP, gRPC Generate) listen on (0.0.0.0: every interface, as a container "
           "needs)");
  f.Int("internal-port", &internal_port,
        "port of the internal gRPC services: worker registration and heartbeats (Registry) and the "
        "controller's RouterAdmin; they need the cluster token (0: any free port)");
  f.String("internal-bind", &internal_bind,
           "address the internal gRPC services listen on (default: --bind); workers and the controller "
           "must reach it, clients need not");
  f.Int("http-threads", &http_threads, "threads serving HTTP connections");
  f.Int("local-prefill-threshold", &local_prefill_threshold,
        "prompts shorter than this many tokens prefill on the decode worker (0: never)");
  f.Float("local-prefill-ttft-slo", &local_prefill_ttft_slo_ms,
          "TTFT SLO in ms of conditional disaggregation by cost: a prompt prefills on the decode worker "
          "when the prefill workers' queue is predicted to miss it and the decode worker's to meet it, "
          "at the prefill rate the router measures (0: off)");
  f.Int("default-max-tokens", &default_max_tokens,
        "max_tokens when a request gives none (0: the rest of the context)");
  f.Float("worker-expiry", &worker_expiry_s, "seconds without a heartbeat after which a worker is dropped");
  f.Float("request-timeout", &request_timeout_s, "seconds a request may take in all");
  f.String("api-key", &api_key,
           "clients must send 'Authorization: Bearer <key>' (default: $TANDEM_API_KEY; empty: no key). "
           "Prefer the environment variable: a flag is visible to every user of this machine");
  f.Bool("admin-api", &admin_api,
         "serve the RouterAdmin API (list, drain, set role; the controller uses it). --no-admin-api when no "
         "controller runs: nobody can drain or re-role workers through the router");
  f.Float("queue-timeout", &queue_timeout_s,
          "seconds a request may wait for KV room on a decode worker before it is refused (HTTP 429)");
  f.Int("max-migrations", &max_migrations,
        "times a request may resume on another worker after the one serving it died or was dropped "
        "(it continues from the tokens already streamed; 0: fail it instead)");
}

void RouterFlags::ApplyEnvironment() {
  if (api_key.empty()) api_key = Env("TANDEM_API_KEY");
}

absl::StatusOr<router::RouterOptions> RouterFlags::ToOptions() const {
  if (absl::Status s = CheckPort("--http-port", http_port); !s.ok()) return s;
  if (absl::Status s = CheckPort("--grpc-port", grpc_port); !s.ok()) return s;
  if (absl::Status s = CheckPort("--internal-port", internal_port); !s.ok()) return s;
  if (internal_port != 0 && (internal_port == grpc_port || internal_port == http_port)) {
    return absl::InvalidArgumentError("--internal-port must differ from --grpc-port and --http-port");
  }
  if (http_threads < 1) return absl::InvalidArgumentError("--http-threads must be at least 1");
  if (local_prefill_threshold < 0 || default_max_tokens < 0 || max_migrations < 0 || !(local_prefill_ttft_slo_ms >= 0)) {
    return absl::InvalidArgumentError(
        "--local-prefill-threshold, --local-prefill-ttft-slo, --default-max-tokens and --max-migrations must be >= 0");
  }
  if (!(worker_expiry_s > 0) || !(request_timeout_s > 0) || !(queue_timeout_s > 0)) {
    return absl::InvalidArgumentError("--worker-expiry, --request-timeout and --queue-timeout must be > 0");
  }
  router::RouterOptions o;
  o.bind_host = bind;
  o.http_port = http_port;
  o.grpc_port = grpc_port;
  o.internal_port = internal_port;
  o.internal_bind_host = internal_bind;
  o.http_threads = http_threads;
  o.served_model = served_model;
  o.local_prefill_threshold = local_prefill_threshold;
  o.local_prefill_ttft_slo = absl::Milliseconds(local_prefill_ttft_slo_ms);
  o.default_max_tokens = default_max_tokens;
  o.worker_expiry = absl::Seconds(worker_expiry_s);
  o.request_timeout = absl::Seconds(request_timeout_s);
  o.queue_timeout = absl::Seconds(queue_timeout_s);
  o.max_migrations = max_migrations;
  o.api_key = api_key;
  o.admin_api = admin_api;
  return o;
}

}  // namespace tandem::cli
