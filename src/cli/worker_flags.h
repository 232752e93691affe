// A worker's settings as flags: `tandem worker` parses them; `tandem up` and the controller's
// local actuator render them into each worker child's command line (ToArgv in cli/flags.h),
// both from the one Register below.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "cli/common_flags.h"
#include "cli/flags.h"
#include "worker/worker.h"

namespace tandem::cli {

struct WorkerFlags {
  std::string role = "mixed";
  std::string router;  // the router's gRPC address; empty: do not register
  int grpc_port = 0;
  int http_port = 0;
  std::string host = "127.0.0.1";
  std::string bind = "127.0.0.1";  // loopback unless asked: nothing is exposed by default
  std::string worker_id;
  std::string ucx_tls;
  bool kv_checksums = true;
  double transfer_timeout_s = 30;
  int64_t reserve_headroom_blocks = 0;
  double drain_seconds = 30;
  EngineFlags engine;

  void Register(FlagSet& flags);
  // Validated worker options (the engine's come from `engine`).
  absl::StatusOr<worker::WorkerOptions> ToOptions() const;
};

absl::StatusOr<v1::WorkerRole> ParseRole(const std::string& role);

}  // namespace tandem::cli
