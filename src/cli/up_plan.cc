#include "cli/up_plan.h"

#include <algorithm>

#include "cli/environment.h"
#include "common/strings.h"

namespace tandem::cli {

UpFlags::UpFlags() {
  controller.daemon.decision_log = "tandem-decisions.jsonl";
  controller.daemon.loop.planner.max_total_instances = 0;  // 0: chosen by PlanUp from the machine
}

void UpFlags::Register(FlagSet& f) {
  f.String("model", &model, "GGUF model file (default: the bundled SmolLM2-135M-Instruct)");
  f.Int("http-port", &http_port, "port of the OpenAI-compatible HTTP API");
  f.Int("grpc-port", &grpc_port, "port of the router's gRPC services");
  f.Int("prefill", &prefill, "prefill workers at start");
  f.Int("decode", &decode, "decode workers at start");
  f.Int("mixed", &mixed, "mixed workers (prefill and decode in one process, no KV transfer; no controller)");
  f.Int("threads", &threads, "compute threads per worker (0: the CPUs divided among the workers)");
  f.Int("kv-cache-mb", &kv_cache_mb, "KV cache per worker, MiB");
  f.Int("local-prefill-threshold", &local_prefill_threshold,
        "prompts shorter than this many tokens prefill on the decode worker (0: never)");
  f.String("ucx-tls", &ucx_tls, "UCX transports for KV transfers (default: UCX's choice)");
  f.String("api-key", &api_key,
           "clients must send 'Authorization: Bearer <key>' (default: $TANDEM_API_KEY; passed to the "
           "router through its environment, never its command line)");
  f.Float("ready-timeout", &ready_timeout_s, "seconds to wait for the cluster to become ready");
  f.Bool("controller", &run_controller, "run the ratio controller (--no-controller: fixed worker counts)");
  f.Int("controller-port", &controller_port, "port of the controller's /metrics, /healthz, /readyz (0: any)");
  f.Bool("role-change", &role_change,
         "the controller rebalances by flipping a drained worker's role rather than replacing it");
  controller.Register(f, /*with_sources=*/false);
}

void UpFlags::ApplyEnvironment() {
  if (api_key.empty()) api_key = Env("TANDEM_API_KEY");
}

absl::StatusOr<LaunchPlan> PlanUp(const UpFlags& flags, int cpus) {
  if (flags.prefill < 0 || flags.decode < 0 || flags.mixed < 0 || flags.decode + flags.mixed < 1) {
    return absl::InvalidArgumentError("need at least one decode or mixed worker (--decode, --mixed)");
  }
  cpus = std::max(1, cpus);
  LaunchPlan plan;
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
  plan.role_change = flags.role_change;
  plan.ready_timeout_s = flags.ready_timeout_s;
  plan.api_key = flags.api_key;

  plan.SetModel(flags.model);
  plan.router.http_port = flags.http_port;
  plan.router.grpc_port = flags.grpc_port;
  plan.router.local_prefill_threshold = flags.local_prefill_threshold;
  if (absl::Status s = plan.router.ToOptions().status(); !s.ok()) return s;

  plan.worker.engine.threads = plan.threads_per_worker;
  plan.worker.engine.kv_cache_mb = flags.kv_cache_mb;
  plan.worker.ucx_tls = flags.ucx_tls;
  return plan;
}

void LaunchPlan::SetModel(const std::string& path) {
  router.model = path;
  worker.engine.model = path;
}

std::vector<std::string> LaunchPlan::RouterArgv(const std::string& self) const {
  std::vector<std::string> argv = {self, "router"};
  RouterFlags flags = router;
  flags.api_key.clear();  // through the environment
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
