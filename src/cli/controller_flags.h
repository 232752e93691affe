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
  // --plan-by simulation: how the sizer is set up.
  std::string plan_by = "capacity";
  std::string profile;
  double attainment = 0.9;
  double prefill_cost = 1, decode_cost = 1;
  // What the simulation assumes about the workers. `tandem up` and --actuator local set these
  // from their worker settings (cpus -1 becomes this machine's CPUs there, 0 elsewhere: one
  // device per worker).
  struct SimWorkers {
    int cpus = -1;
    int threads = 0;  // per worker; 0: cpus ÷ workers
    int64_t kv_cache_mb = 256;
    int block_size = 16;
    std::string token_budget = "512";  // or auto: the profile's picked budget
    int max_num_seqs = 64;
  } sim_workers;

  // `with_sources`: the router addresses and the signal source flags (not in `tandem up`,
  // which knows its router and scrapes it directly).
  void Register(FlagSet& flags, bool with_sources = true);
  // Copies the flags into `daemon` and validates them; with --plan-by simulation reads the
  // profile and makes the sizer (sim_workers.cpus -1 counts as 0 here: set it first).
  absl::Status Finish();

 private:
  absl::Status MakeSizer();
};

}  // namespace tandem::cli
