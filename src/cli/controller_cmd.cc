// `tandem controller`: the ratio controller (signals → traffic class → plan → actuator), and
// `tandem drain`: drain one worker and wait (a Kubernetes preStop hook).
#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "cli/common_flags.h"
#include "cli/controller_flags.h"
#include "common/child_process.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "controller/loop/admin_client.h"
#include "controller/loop/daemon.h"
#include "controller/core/decision_log.h"
#include "controller/k8s/k8s_actuator.h"
#include "controller/k8s/kube_client.h"
#include "controller/loop/local_actuator.h"
#include "controller/loop/role_change_actuator.h"

namespace tandem::cli {
namespace {

std::atomic<int> g_controller_signal{0};
void OnControllerSignal(int sig) { g_controller_signal.store(sig); }

// Neither starts nor stops anything: the decisions are only logged (as --dry-run, but the
// counts come from the router's registry).
class ObserveOnlyActuator final : public controller::Actuator {
 public:
  explicit ObserveOnlyActuator(controller::AdminClient* admin) : counts_(admin) {}
  std::string name() const override { return "none"; }
  absl::StatusOr<controller::InstanceCounts> Current() override { return counts_.Current(); }
  absl::Status Apply(const controller::InstanceCounts&) override {
    return absl::FailedPreconditionError("--actuator none changes nothing");
  }

 private:
  controller::RoleChangeActuator counts_;
};

}  // namespace

void ControllerFlags::Register(FlagSet& flags, bool with_sources) {
  if (with_sources) {
    flags.String("router", &router_grpc, "the router's gRPC address (its admin API lists and drains workers)");
    flags.String("router-http", &router_http, "the router's HTTP address host:port, whose /metrics is scraped");
    flags.String("source", &daemon.source, "where signals come from: scrape (the router and workers directly) or "
                                           "prometheus (PromQL against --prometheus-url)");
    flags.String("prometheus-url", &daemon.prometheus_url, "Prometheus base URL for --source prometheus");
    flags.String("window", &daemon.window, "PromQL rate() window for --source prometheus");
  }
  flags.String("decision-log", &daemon.decision_log, "append every decision as a JSON line to this file (-: stdout)");
  flags.Bool("dry-run", &daemon.loop.dry_run, "decide and log, but change nothing");
  flags.Float("interval-s", &daemon.loop.interval_s, "seconds between decisions");
  flags.Float("half-life-s", &daemon.loop.smoother.half_life_s, "EWMA half-life of the signals, seconds");
  flags.Float("ttft-slo-ms", &ttft_slo_ms, "time-to-first-token target (p99), ms");
  flags.Float("itl-slo-ms", &itl_slo_ms, "inter-token latency target (p99), ms");
  flags.Int("min-prefill", &daemon.loop.planner.min_prefill, "fewest prefill instances");
  flags.Int("max-prefill", &daemon.loop.planner.max_prefill, "most prefill instances");
  flags.Int("min-decode", &daemon.loop.planner.min_decode, "fewest decode instances");
  flags.Int("max-decode", &daemon.loop.planner.max_decode, "most decode instances");
  flags.Int("max-instances", &daemon.loop.planner.max_total_instances, "budget: most prefill + decode instances");
  flags.Int("max-step-up", &daemon.loop.planner.max_step_up, "most instances added to a role per decision");
  flags.Int("max-step-down", &daemon.loop.planner.max_step_down, "most instances removed from a role per decision");
  flags.Float("up-cooldown-s", &daemon.loop.planner.up_cooldown_s, "seconds after a role's change before it grows again");
  flags.Float("down-cooldown-s", &daemon.loop.planner.down_cooldown_s,
              "seconds after a role's change before it shrinks again");
  flags.Float("target-busy", &daemon.loop.planner.target_busy_fraction,
              "fraction of a worker's measured throughput to plan for (headroom for latency)");
  flags.Float("class-dwell-s", &daemon.loop.classifier.min_dwell_s, "least seconds between traffic class changes");
}

absl::Status ControllerFlags::Finish() {
  daemon.router_grpc = router_grpc;
  daemon.router_http = router_http;
  daemon.loop.planner.ttft_slo_s = ttft_slo_ms / 1000.0;
  daemon.loop.planner.itl_slo_s = itl_slo_ms / 1000.0;
  daemon.loop.classifier.slo = daemon.loop.planner.slo();
  TANDEM_RETURN_IF_ERROR(controller::ValidatePlannerConfig(daemon.loop.planner));
  return controller::ValidateClassifierOptions(daemon.loop.classifier);
}

int ControllerCommand(const std::vector<std::string>& args) {
  ControllerFlags cf;
  std::string actuator = "none", ns, prefill_deployment = "tandem-prefill", decode_deployment = "tandem-decode";
  std::string kubeconfig, kube_context, model, bind = "0.0.0.0";
  int http_port = 9400, threads = 1, initial_prefill = 1, initial_decode = 1;
  int64_t kv_mb = 256;
  bool role_change = false;
  double print_signals = 0;
  FlagSet flags("tandem controller --router HOST:PORT --router-http HOST:PORT --actuator kubernetes|local|role-change|none [flags]",
                "Sizes the prefill and decode pools to the traffic. Every --interval-s it reads the\n"
                "signals (arrival rate, prompt and output lengths, TTFT and ITL against their targets,\n"
                "queued prefill tokens, KV utilisation, the workers' measured throughput), smooths them,\n"
                "classifies the traffic (prompt-heavy, generation-heavy, balanced) and plans instance\n"
                "counts from the measured capacity, within bounds, a budget, step limits and cooldowns.\n"
                "Actuators: kubernetes (scales the prefill and decode Deployments), local (starts and\n"
                "stops `tandem worker` processes, draining first), role-change (drains a worker and\n"
                "flips its role; no model reload), none (decides and logs only). Serves /metrics,\n"
                "/healthz and /readyz on --http-port.");
  cf.Register(flags);
  flags.String("actuator", &actuator, "kubernetes, local, role-change or none");
  flags.String("namespace", &ns, "kubernetes: namespace of the Deployments (default: the pod's own)");
  flags.String("prefill-deployment", &prefill_deployment, "kubernetes: the prefill Deployment");
  flags.String("decode-deployment", &decode_deployment, "kubernetes: the decode Deployment");
  flags.String("kubeconfig", &kubeconfig, "kubernetes: kubeconfig file (default: in-cluster service account)");
  flags.String("kube-context", &kube_context, "kubernetes: context in --kubeconfig (default: its current-context)");
  flags.String("model", &model, "local: GGUF model for the workers (default: the bundled model)");
  flags.Int("threads", &threads, "local: compute threads per worker");
  flags.Int("kv-cache-mb", &kv_mb, "local: KV cache per worker, MiB");
  flags.Int("initial-prefill", &initial_prefill, "local: prefill workers started at launch");
  flags.Int("initial-decode", &initial_decode, "local: decode workers started at launch");
  flags.Bool("role-change", &role_change, "local: rebalance by flipping a drained worker's role instead of "
                                          "stopping one and starting another");
  flags.Float("print-signals", &print_signals,
              "read the signals twice this many seconds apart, print the second reading as JSON and exit "
              "(no decisions; for checking a source)");
  flags.String("bind", &bind, "address of the HTTP server");
  flags.Int("http-port", &http_port, "port of /metrics, /healthz and /readyz (0: any free port)");
  if (absl::Status s = flags.Parse(args); !s.ok()) {
    return s.code() == absl::StatusCode::kCancelled ? 0 : Fail("controller", std::string(s.message()), 2);
  }
  if (absl::Status s = cf.Finish(); !s.ok()) return Fail("controller", std::string(s.message()), 2);
  if (cf.router_grpc.empty()) return Fail("controller", "--router is required (the router's gRPC address)", 2);
  cf.daemon.bind = bind;
  cf.daemon.http_port = http_port;

  controller::AdminClient admin(cf.router_grpc);
  if (print_signals > 0) {
    auto source = controller::MakeSignalSource(cf.daemon, &admin);
    if (!source.ok()) return Fail("controller", std::string(source.status().message()));
    const auto now = [] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    };
    if (auto first = (*source)->Read(now()); !first.ok()) {
      return Fail("controller", std::string(first.status().message()));
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(print_signals));
    auto second = (*source)->Read(now());
    if (!second.ok()) return Fail("controller", std::string(second.status().message()));
    std::printf("%s\n", controller::SignalsToJson(*second).dump().c_str());
    return 0;
  }
  std::unique_ptr<controller::Actuator> act;
  controller::LocalActuator* local = nullptr;
  if (actuator == "kubernetes") {
    controller::KubeConfigOptions ko;
    ko.kubeconfig_path = kubeconfig;
    ko.context = kube_context;
    auto config = controller::LoadKubeConfig(ko);
    if (!config.ok()) return Fail("controller", std::string(config.status().message()));
    controller::KubernetesActuatorOptions ao;
    ao.kube_namespace = ns;
    ao.prefill_deployment = prefill_deployment;
    ao.decode_deployment = decode_deployment;
    auto k = controller::KubernetesActuator::Create(*config, ao);
    if (!k.ok()) return Fail("controller", std::string(k.status().message()));
    act = std::move(*k);
  } else if (actuator == "local") {
    auto path = ResolveModelPath(model);
    if (!path.ok()) return Fail("controller", std::string(path.status().message()));
    controller::LocalActuatorOptions lo;
    lo.tandem_binary = ChildProcess::SelfPath();
    lo.worker_flags = {"--router", cf.router_grpc, "--model", *path, "--threads", std::to_string(threads),
                       "--kv-cache-mb", std::to_string(kv_mb)};
    lo.role_change = role_change;
    auto la = std::make_unique<controller::LocalActuator>(lo, &admin);
    local = la.get();
    act = std::move(la);
  } else if (actuator == "role-change") {
    act = std::make_unique<controller::RoleChangeActuator>(&admin);
  } else if (actuator == "none") {
    act = std::make_unique<ObserveOnlyActuator>(&admin);
    cf.daemon.loop.dry_run = true;
  } else {
    return Fail("controller", StrCat("unknown --actuator '", actuator, "' (kubernetes, local, role-change or none)"), 2);
  }
  std::signal(SIGINT, OnControllerSignal);
  std::signal(SIGTERM, OnControllerSignal);
  if (local != nullptr) {
    for (int i = 0; i < initial_prefill + initial_decode; ++i) {
      const auto role = i < initial_prefill ? controller::Role::kPrefill : controller::Role::kDecode;
      if (absl::Status s = local->StartAndWait(role); !s.ok()) return Fail("controller", std::string(s.message()));
    }
  }
  auto daemon = controller::ControllerDaemon::Create(cf.daemon, act.get(), &admin);
  if (!daemon.ok()) return Fail("controller", std::string(daemon.status().message()));
  std::printf("controller http_port=%d actuator=%s source=%s\n", (*daemon)->http_port(), act->name().c_str(),
              cf.daemon.source.c_str());
  std::fflush(stdout);
  (*daemon)->Start();
  while (g_controller_signal.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  GetLogger("controller")->info("stopping");
  (*daemon)->Stop();
  daemon->reset();
  act.reset();  // a local actuator drains and stops its workers
  return 0;
}

int DrainCommand(const std::vector<std::string>& args) {
  std::string worker;
  double timeout = 300;
  FlagSet flags("tandem drain --worker HOST:PORT [--timeout-s 300]",
                "Asks a worker to drain — take no new work, finish what it has, send the KV it still\n"
                "owes — and waits until it has. Exit 0 when drained, 1 on timeout or error. Meant for a\n"
                "Kubernetes preStop hook: `tandem drain --worker 127.0.0.1:<worker gRPC port>`.");
  flags.String("worker", &worker, "the worker's gRPC address");
  flags.Float("timeout-s", &timeout, "seconds to wait for the worker's work to finish");
  if (absl::Status s = flags.Parse(args); !s.ok()) {
    return s.code() == absl::StatusCode::kCancelled ? 0 : Fail("drain", std::string(s.message()), 2);
  }
  if (worker.empty()) return Fail("drain", "--worker is required", 2);
  const absl::Status s = controller::DrainWorkerDirect(worker, absl::Seconds(timeout));
  if (!s.ok()) return Fail("drain", std::string(s.message()));
  std::fprintf(stderr, "tandem drain: %s drained\n", worker.c_str());
  return 0;
}

}  // namespace tandem::cli
