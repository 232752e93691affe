#include "cli/up_plan.h"

#include <algorithm>
#include <utility>

#include "common/strings.h"

namespace tandem::cli {

UpFlags::UpFlags() {
  controller.daemon.decision_log = "tandem-decisions.jsonl";
  controller.daemon.loop.planner.max_total_instances = 0;  // 0: chosen by PlanUp from the machine
}

void UpFlags::Register(FlagSet& f) {
  // The router's settings that make sense for a local cluster, with the router's own help.
  f.RegisterOnly(std::vector<std::string>{"model", "served-model-name", "http-port", "grpc-port",
                                          "local-prefill-threshold", "local-prefill-ttft-slo", "default-max-tokens",
                                          "request-timeout",
                                          "queue-timeout", "max-migrations", "api-key"});
  router.Register(f);
  // Every worker's engine and transfer settings (--threads is up's own: it divides the CPUs).
  f.RegisterOnly(std::vector<std::string>{"kv-cache-mb", "block-size", "token-budget", "budget-itl-ms", "max-num-seqs",
                                          "max-model-len", "prefix-cache", "isa", "speculative-ngram",
                                          "speculative-max-batch", "speculative-draft-cost", "ucx-tls", "kv-checksums", "transfer-timeout",
                                          "reserve-headroom-blocks"});
  worker.Register(f);
  f.RegisterOnly(std::nullopt);
  f.Int("prefill", &prefill, "prefill workers at start");
  f.Int("decode", &decode, "decode workers at start");
  f.Int("mixed", &mixed, "mixed workers (prefill and decode in one process, no KV transfer; no controller)");
  f.Int("routers", &routers,
        "routers serving the same workers (1-4): every worker registers with each; the first takes "
        "--http-port and --grpc-port, the others free ports (printed); stopping one fails only its requests");
  f.Int("threads", &threads, "compute threads per worker (0: the CPUs divided among the workers)");
  f.Float("ready-timeout", &ready_timeout_s, "seconds to wait for the cluster to become ready");
  f.Bool("controller", &run_controller, "run the ratio controller (--no-controller: fixed worker counts)");
  f.Int("controller-port", &controller_port, "port of the controller's /metrics, /healthz, /readyz (0: any)");
  f.String("listen", &listen,
           "address the router's HTTP and gRPC APIs listen on (0.0.0.0: every interface; set --api-key "
           "first); workers and the internal plane stay on 127.0.0.1");
  cluster_token.Register(f, /*with_insecure=*/false);
  f.String("rebalance-by", &rebalance_by,
           "how the controller moves a worker to the other role: cost (per move, whichever is serving first "
           "by the start-up and drain times measured so far), flip (drain it and change its role in place) "
           "or restart (stop it and start a new one)");
  f.Bool("role-change", &role_change, "the same as --rebalance-by flip");
  controller.Register(f, /*with_sources=*/false);
}

void UpFlags::ApplyEnvironment() { router.ApplyEnvironment(); }

absl::StatusOr<LaunchPlan> PlanUp(const UpFlags& flags, int cpus) {
  if (flags.prefill < 0 || flags.decode < 0 || flags.mixed < 0 || flags.decode + flags.mixed < 1) {
    return absl::InvalidArgumentError("need at least one decode or mixed worker (--decode, --mixed)");
  }
  if (flags.routers < 1 || flags.routers > 4) {
    return absl::InvalidArgumentError(StrCat("--routers must be between 1 and 4, got ", flags.routers));
  }
  cpus = std::max(1, cpus);
  LaunchPlan plan;
  plan.routers = flags.routers;
  plan.prefill = flags.prefill;
  plan.decode = flags.decode;
  plan.mixed = flags.mixed;
  plan.run_controller = flags.run_controller;
  if (flags.mixed > 0 && plan.run_controller) {
    plan.notes.push_back("mixed workers run without the controller (it sizes prefill and decode pools)");
    plan.run_controller = false;
  }
  plan.controller = flags.controller;
  auto& planner = plan.controller.daemon.loop.planner;
  if (planner.max_total_instances <= 0) {
    // One machine: room for one more worker than it starts with, at least 3, at most the CPUs.
    planner.max_total_instances = std::max({flags.prefill + flags.decode + 1, 3, std::min(cpus, 8)});
  }
  const int workers = flags.prefill + flags.decode + flags.mixed;
  plan.threads_per_worker = flags.threads > 0 ? flags.threads : std::max(1, cpus / workers);
  plan.controller_port = flags.controller_port;
  auto rebalance_by = controller::ParseRebalanceBy(flags.role_change ? "flip" : flags.rebalance_by);
  if (!rebalance_by.ok()) return absl::InvalidArgumentError(StrCat("--rebalance-by: ", rebalance_by.status().message()));
  plan.rebalance_by = *rebalance_by;
  plan.ready_timeout_s = flags.ready_timeout_s;
  plan.router = flags.router;
  plan.router.bind = flags.listen;
  // The internal plane stays on loopback whatever --listen opens, on a port the router picks (the
  // supervisor reads it from the router's first line).
  plan.router.internal_bind = "127.0.0.1";
  plan.router.internal_port = 0;
  if (flags.listen != "127.0.0.1" && flags.listen != "localhost" && flags.router.api_key.empty()) {
    plan.notes.push_back(StrCat("the API listens on ", flags.listen, " without an API key: anyone who reaches it "
                                "can use the model (set $TANDEM_API_KEY)"));
  }
  plan.api_key = std::exchange(plan.router.api_key, "");  // the router's environment carries it
  if (absl::Status s = plan.router.ToOptions().status(); !s.ok()) return s;
  plan.worker = flags.worker;
  plan.worker.engine.threads = plan.threads_per_worker;
  if (absl::Status s = plan.worker.ToOptions().status(); !s.ok()) return s;
  ControllerFlags::SimWorkers& sim = plan.controller.sim_workers;
  if (sim.cpus < 0) sim.cpus = plan.worker.engine.device == "cpu" ? cpus : 0;
  sim.threads = plan.threads_per_worker;
  sim.kv_cache_mb = plan.worker.engine.kv_cache_mb;
  sim.block_size = plan.worker.engine.block_size;
  sim.token_budget = plan.worker.engine.token_budget;
  sim.max_num_seqs = plan.worker.engine.max_num_seqs;
  plan.SetModel(flags.router.model);
  return plan;
}

void LaunchPlan::SetModel(const std::string& path) {
  router.model = path;
  worker.engine.model = path;
}

std::vector<std::string> LaunchPlan::RouterArgv(const std::string& self, int http_port, int grpc_port,
                                                int internal_port) const {
  RouterFlags flags = router;
  if (http_port >= 0) flags.http_port = http_port;
  if (grpc_port >= 0) flags.grpc_port = grpc_port;
  if (internal_port >= 0) flags.internal_port = internal_port;
  std::vector<std::string> argv = {self, "router"};
  for (std::string& a : ToArgv(flags)) argv.push_back(std::move(a));
  return argv;
}

std::vector<std::string> LaunchPlan::RouterEnvironment() const {
  if (api_key.empty()) return {};
  return {StrCat("TANDEM_API_KEY=", api_key)};
}

std::vector<std::string> LaunchPlan::WorkerArgs(const std::string& router_grpc) const {
  WorkerFlags flags = worker;
  flags.router = router_grpc;
  flags.role = WorkerFlags{}.role;  // each child names its own
  return ToArgv(flags);
}

std::vector<std::string> LaunchPlan::MixedWorkerArgv(const std::string& self, const std::string& router_grpc,
                                                     int i) const {
  std::vector<std::string> argv = {self, "worker", "--role=mixed", StrCat("--worker-id=mixed-", i)};
  for (std::string& a : WorkerArgs(router_grpc)) argv.push_back(std::move(a));
  return argv;
}

}  // namespace tandem::cli
