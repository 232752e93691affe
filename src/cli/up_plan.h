// `tandem up` in two parts: the launch plan (this file: pure, unit-tested) says which processes
// to start with which settings; the supervisor (up_cmd.cc) starts them, waits until the cluster
// is ready, prints where everything is, and stops it all on Ctrl-C or when a process dies.
//
// The children's command lines are rendered from the same flag structs their commands parse
// (RouterFlags, WorkerFlags, through ToArgv), so a setting is written once. Secrets never go on
// a command line: the API key reaches the router through its environment (TANDEM_API_KEY).
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/cluster_token.h"
#include "cli/controller_flags.h"
#include "cli/flags.h"
#include "cli/router_flags.h"
#include "cli/worker_flags.h"
#include "controller/core/role_move.h"

namespace tandem::cli {

struct UpFlags {
  // The router's and the workers' settings that `tandem up` offers, under their own names (see
  // Register); router.model is the model of every process.
  RouterFlags router;
  WorkerFlags worker;
  int prefill = 1;
  int decode = 1;
  int mixed = 0;
  int routers = 1;  // routers serving the same workers (each worker registers with every one)
  int threads = 0;  // per worker; 0: the CPUs divided among the workers
  double ready_timeout_s = 120;
  bool run_controller = true;
  int controller_port = 9400;
  bool role_change = false;
  std::string rebalance_by = "cost";
  std::string listen = "127.0.0.1";  // the router's address; the workers stay on loopback
  ClusterTokenFlags cluster_token;    // none given: up makes one
  ControllerFlags controller;

  UpFlags();  // the controller's defaults for one machine (decision log, budget chosen later)
  void Register(FlagSet& flags);
  void ApplyEnvironment();
};

struct LaunchPlan {
  RouterFlags router;  // the router child's settings
  // Every worker child's settings except --role, --worker-id and --router (the router's address
  // is known only once it runs).
  WorkerFlags worker;
  int prefill = 0, decode = 0, mixed = 0;
  int routers = 1;
  int threads_per_worker = 1;
  bool run_controller = false;
  ControllerFlags controller;  // with the worker budget resolved
  int controller_port = 0;
  controller::RebalanceBy rebalance_by = controller::RebalanceBy::kCost;
  double ready_timeout_s = 0;
  std::string api_key;              // for the router's environment, never its argv
  std::string cluster_token;        // every child's, through the environment (set by UpCommand)
  std::vector<std::string> notes;   // what the user should be told before the start

  // The model file every child serves.
  void SetModel(const std::string& path);
  // `self` is the tandem executable. Ports >= 0 replace the plan's (a restarted router takes
  // the ports its workers know).
  std::vector<std::string> RouterArgv(const std::string& self, int http_port = -1, int grpc_port = -1,
                                      int internal_port = -1) const;
  std::vector<std::string> RouterEnvironment() const;  // TANDEM_API_KEY=... when a key is set
  // The flags every worker child gets (the controller's local actuator adds --role/--worker-id).
  std::vector<std::string> WorkerArgs(const std::string& router_grpc) const;
  std::vector<std::string> MixedWorkerArgv(const std::string& self, const std::string& router_grpc, int i) const;
};

// InvalidArgument for impossible counts or settings. `cpus` is this machine's. The model is set
// afterwards (SetModel), once it has been fetched.
absl::StatusOr<LaunchPlan> PlanUp(const UpFlags& flags, int cpus);

}  // namespace tandem::cli
