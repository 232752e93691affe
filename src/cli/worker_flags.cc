#include "cli/worker_flags.h"

#include "common/strings.h"

namespace tandem::cli {

absl::StatusOr<v1::WorkerRole> ParseRole(const std::string& role) {
  if (role == "prefill") return v1::WORKER_ROLE_PREFILL;
  if (role == "decode") return v1::WORKER_ROLE_DECODE;
  if (role == "mixed") return v1::WORKER_ROLE_MIXED;
  return absl::InvalidArgumentError(StrCat("--role must be prefill, decode or mixed, not '", role, "'"));
}

void WorkerFlags::Register(FlagSet& f) {
  f.String("role", &role, "prefill, decode or mixed");
  f.String("router", &router,
           "the router's internal gRPC address to register with, host:port of its --internal-port; several "
           "routers serving the same workers: their addresses separated by commas (the worker registers "
           "with each and is ready once one knows it). Empty: do not register");
  f.Int("grpc-port", &grpc_port, "port of the Worker gRPC service (0: any free port)");
  f.Int("http-port", &http_port, "port of /metrics, /healthz and /readyz (0: any free port)");
  f.String("host", &host, "address the router and other workers use to reach this worker");
  f.String("bind", &bind, "address to listen on (0.0.0.0: every interface, as a container needs)");
  f.String("worker-id", &worker_id, "name of this worker (default: <role>-<host>-<pid>)");
  f.String("ucx-tls", &ucx_tls, "UCX transports for the KV cache (UCX_TLS syntax; default: UCX's choice)");
  f.Bool("kv-checksums", &kv_checksums,
         "send a checksum of every KV block this worker transfers, so that a block corrupted on the "
         "way fails the transfer instead of producing garbage (--no-kv-checksums to skip; received "
         "checksums are always checked; host caches only)");
  f.Float("transfer-timeout", &transfer_timeout_s, "seconds a KV transfer may take");
  f.Int("reserve-headroom-blocks", &reserve_headroom_blocks,
        "KV blocks kept free for running requests when reserving");
  f.Float("drain-seconds", &drain_seconds, "on shutdown, seconds to wait for in-flight work");
  engine.Register(f);
}

absl::StatusOr<worker::WorkerOptions> WorkerFlags::ToOptions() const {
  auto parsed_role = ParseRole(role);
  if (!parsed_role.ok()) return parsed_role.status();
  if (absl::Status s = CheckPort("--http-port", http_port); !s.ok()) return s;
  if (absl::Status s = CheckPort("--grpc-port", grpc_port); !s.ok()) return s;
  if (!(transfer_timeout_s > 0)) return absl::InvalidArgumentError("--transfer-timeout must be > 0");
  if (reserve_headroom_blocks < 0) return absl::InvalidArgumentError("--reserve-headroom-blocks must be >= 0");
  if (drain_seconds < 0) return absl::InvalidArgumentError("--drain-seconds must be >= 0");
  worker::WorkerOptions wo;
  wo.role = *parsed_role;
  wo.worker_id = worker_id;
  wo.advertise_host = host;
  wo.bind_host = bind;
  wo.grpc_port = grpc_port;
  wo.http_port = http_port;
  wo.router_address = router;
  wo.service.transfer_timeout = absl::Seconds(transfer_timeout_s);
  wo.service.reserve_headroom_blocks = reserve_headroom_blocks;
  return wo;
}

}  // namespace tandem::cli
