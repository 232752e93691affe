// The controller's flags, shared by `tandem controller` and `tandem up` (which runs the
// controller inside itself).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "cli/flags.h"
#include "controller/loop/daemon.h"

namespace tandem::cli {

struct ControllerFlags {
  std::string router_grpc, router_http;
  double ttft_slo_ms = 2000, itl_slo_ms = 200;
  controller::DaemonOptions daemon;

  // `with_sources`: the router addresses and the signal source flags (not in `tandem up`,
  // which knows its router and scrapes it directly).
  void Register(FlagSet& flags, bool with_sources = true);
  // Copies the flags into `daemon` and validates them.
  absl::Status Finish();
};

}  // namespace tandem::cli
