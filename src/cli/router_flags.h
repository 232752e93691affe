// The router's settings as flags: `tandem router` parses them, `tandem up` renders them into
// the router child's command line (ToArgv in cli/flags.h), both from the one Register below.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "cli/flags.h"
#include "router/router.h"

namespace tandem::cli {

struct RouterFlags {
  std::string model;          // empty: the bundled model
  std::string served_model;   // empty: derived from the file name
  std::string bind = "127.0.0.1";  // loopback unless asked: nothing is exposed by default
  int http_port = 8000;
  int grpc_port = 50051;
  int internal_port = 50053;
  std::string internal_bind;  // empty: --bind
  int http_threads = 2;
  int local_prefill_threshold = 0;
  double local_prefill_ttft_slo_ms = 0;
  int default_max_tokens = 0;
  double worker_expiry_s = 3;
  double request_timeout_s = 600;
  double queue_timeout_s = 60;
  int max_migrations = 3;
  // Clients must send it; empty: $TANDEM_API_KEY (ApplyEnvironment), else no key.
  std::string api_key;
  bool admin_api = true;

  void Register(FlagSet& flags);
  // The API key from $TANDEM_API_KEY when --api-key was not given.
  void ApplyEnvironment();
  // Validated options (model path resolved by the caller).
  absl::StatusOr<router::RouterOptions> ToOptions() const;
};

}  // namespace tandem::cli
