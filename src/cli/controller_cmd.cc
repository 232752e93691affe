// `tandem controller`: the ratio controller (signals → traffic class → plan → actuator), and
// `tandem drain`: drain one worker and wait (a Kubernetes preStop hook).
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <thread>

#include "absl/strings/numbers.h"
#include "cli/cluster_token.h"
#include "cli/commands.h"
#include "cli/common_flags.h"
#include "cli/controller_flags.h"
#include "cli/environment.h"
#include "cli/worker_flags.h"
#include "common/child_process.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "controller/loop/admin_client.h"
#include "controller/loop/daemon.h"
#include "controller/core/decision_log.h"
#include "controller/k8s/k8s_actuator.h"
#include "controller/k8s/kube_client.h"
#include "controller/k8s/leader_election.h"
#include "controller/loop/local_actuator.h"
#include "controller/loop/role_change_actuator.h"
#include "controller/sizing/sim_sizer.h"
#include "sim/cost_model.h"

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
    flags.String("router", &router_grpc,
                 "the router's internal gRPC address, host:port of its --internal-port (its admin API lists "
                 "and drains workers)");
    flags.String("router-http", &router_http,
                 "the router's HTTP address host:port, whose /metrics is scraped; several routers serving the "
                 "same workers: each one's, comma-separated (their traffic is added up, their worker counts "
                 "are not)");
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
  flags.Float("itl-slo-ms", &itl_slo_ms,
              "inter-token latency target (p99), ms; with --plan-by simulation, of each request's time per output "
              "token after its first (TPOT, p99 over requests)");
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
  flags.Float("slo-memory-s", &daemon.loop.planner.slo_memory_s,
              "after an SLO miss added an instance, keep the role at that count this long unless the traffic "
              "stops (0: forget at once, and a role that meets its SLO only with the extra instance flaps)");
  flags.Float("slo-min-prefill-busy", &daemon.loop.planner.slo_min_prefill_busy,
              "a TTFT SLO miss adds a prefill worker only while the prefill workers are at least this busy (0..1): "
              "below it prompts hardly queue, so the miss is a long prompt's own compute, which another worker "
              "would not shorten (0: every miss adds one)");
  flags.String("plan-by", &plan_by,
               "how instance counts are planned: capacity (each role's load / its measured throughput per busy "
               "second) or simulation (simulate candidate clusters with --profile's cost model at the rate and "
               "prompt/output length distributions read now, and run the cheapest whose predicted SLO "
               "attainment reaches --attainment; with --min-prefill 0 it may run no prefill worker: the decode "
               "workers then compute prompts themselves, i.e. colocated serving)");
  flags.String("profile", &profile, "--plan-by simulation: the cost model, a file `tandem profile` wrote on this "
                                    "kind of machine with this model");
  flags.Float("attainment", &attainment,
              "--plan-by simulation: share of requests that must meet both SLOs (TTFT and ITL as TPOT)");
  flags.Float("prefill-cost", &prefill_cost, "--plan-by simulation: what a prefill worker costs, relative to "
                                             "--decode-cost (the cheapest shape meeting --attainment wins)");
  flags.Float("decode-cost", &decode_cost, "--plan-by simulation: what a decode worker costs");
  flags.Int("sim-cpus", &sim_workers.cpus,
            "--plan-by simulation: the workers share this many CPUs (0: each has its own device or node; -1: this "
            "machine's CPUs with tandem up and --actuator local, else 0)");
  flags.Bool("anomaly-guard", &daemon.loop.anomaly_guard,
             "keep spikes (a value far from its field's recent median, by median absolute deviation), "
             "readings after a gap and the latency of a lost worker's failover from moving the ratio");
  flags.Int("anomaly-confirm", &daemon.loop.guard.confirm_readings,
            "readings in a row a spike must last to count as a new level of the traffic");
  flags.Float("worker-loss-settle-s", &daemon.loop.guard.settle_s,
              "seconds the latency signals are ignored after a worker was lost");
  flags.Bool("forecast", &daemon.loop.forecast,
             "plan for each role's load forecast at the worker start-up time this controller has measured "
             "(last value, Holt's trend or a daily profile, whichever has forecast best lately)");
  flags.Float("restore-drained-after-s", &daemon.restore_drained_after_s,
              "when every prefill (or every decode) worker has been draining this long, and not by this "
              "controller, end their drains: nothing else would (0: never)");
}

absl::Status ControllerFlags::Finish() {
  daemon.router_grpc = router_grpc;
  daemon.router_http = router_http;
  daemon.loop.planner.ttft_slo_s = ttft_slo_ms / 1000.0;
  daemon.loop.planner.itl_slo_s = itl_slo_ms / 1000.0;
  daemon.loop.classifier.slo = daemon.loop.planner.slo();
  TANDEM_RETURN_IF_ERROR(controller::ValidatePlannerConfig(daemon.loop.planner));
  TANDEM_RETURN_IF_ERROR(MakeSizer());
  TANDEM_RETURN_IF_ERROR(controller::ValidateAnomalyGuardOptions(daemon.loop.guard));
  TANDEM_RETURN_IF_ERROR(controller::ValidateForecastOptions(daemon.loop.forecasting));
  return controller::ValidateClassifierOptions(daemon.loop.classifier);
}

absl::Status ControllerFlags::MakeSizer() {
  daemon.loop.sizer.reset();
  if (plan_by == "capacity") {
    if (!profile.empty()) return absl::InvalidArgumentError("--profile is for --plan-by simulation");
    return absl::OkStatus();
  }
  if (plan_by != "simulation") {
    return absl::InvalidArgumentError(StrCat("--plan-by must be capacity or simulation, not '", plan_by, "'"));
  }
  if (profile.empty()) {
    return absl::InvalidArgumentError("--plan-by simulation needs --profile (write one with `tandem profile`)");
  }
  auto read = sim::ReadProfile(profile);
  if (!read.ok()) return absl::InvalidArgumentError(StrCat("--profile ", profile, ": ", read.status().message()));
  controller::SimSizerOptions o;
  o.profile = *std::move(read);
  o.attainment = attainment;
  o.prefill_cost = prefill_cost;
  o.decode_cost = decode_cost;
  o.plan.cpus = std::max(sim_workers.cpus, 0);
  o.threads_per_worker = sim_workers.threads;
  o.plan.kv_cache_bytes = sim_workers.kv_cache_mb << 20;
  o.plan.block_size = sim_workers.block_size;
  o.plan.max_num_seqs = sim_workers.max_num_seqs;
  if (sim_workers.token_budget == "auto") {
    o.plan.token_budget = o.profile.token_budget.value_or(512);
  } else if (!absl::SimpleAtoi(sim_workers.token_budget, &o.plan.token_budget) || o.plan.token_budget < 1) {
    return absl::InvalidArgumentError(StrCat("token budget '", sim_workers.token_budget, "' is not a count"));
  }
  auto sizer = controller::SimSizer::Create(std::move(o));
  if (!sizer.ok()) return absl::InvalidArgumentError(StrCat("--profile ", profile, ": ", sizer.status().message()));
  daemon.loop.sizer = std::shared_ptr<controller::SimSizer>(std::move(*sizer));
  return absl::OkStatus();
}

namespace {

// `tandem controller`'s own flags (the decision flags are ControllerFlags).
struct ActuatorFlags {
  std::string actuator = "none";
  std::string ns, prefill_deployment = "tandem-prefill", decode_deployment = "tandem-decode";
  std::string kubeconfig, kube_context;
  std::string model;
  int threads = 1, initial_prefill = 1, initial_decode = 1;
  int64_t kv_cache_mb = 256;
  bool role_change = false;
  std::string rebalance_by = "cost";
  controller::RebalanceBy rebalance = controller::RebalanceBy::kCost;  // parsed from the two above
  double print_signals_s = 0;
  std::string bind = "0.0.0.0";
  int http_port = 9400;
  bool leader_elect = false;
  std::string lease_name = "tandem-controller", identity;

  void Register(FlagSet& flags) {
    flags.String("actuator", &actuator, "kubernetes, local, role-change or none");
    flags.String("namespace", &ns, "kubernetes: namespace of the Deployments (default: the pod's own)");
    flags.String("prefill-deployment", &prefill_deployment, "kubernetes: the prefill Deployment");
    flags.String("decode-deployment", &decode_deployment, "kubernetes: the decode Deployment");
    flags.String("kubeconfig", &kubeconfig, "kubernetes: kubeconfig file (default: in-cluster service account)");
    flags.String("kube-context", &kube_context, "kubernetes: context in --kubeconfig (default: its current-context)");
    flags.String("model", &model, "local: GGUF model for the workers (default: the bundled model)");
    flags.Int("threads", &threads, "local: compute threads per worker");
    flags.Int("kv-cache-mb", &kv_cache_mb, "local: KV cache per worker, MiB");
    flags.Int("initial-prefill", &initial_prefill, "local: prefill workers started at launch");
    flags.Int("initial-decode", &initial_decode, "local: decode workers started at launch");
    flags.String("rebalance-by", &rebalance_by,
                 "local: how a rebalance moves a worker to the other role: cost (per move, whichever is serving "
                 "first by the start-up and drain times measured so far: an idle worker flips at once), flip "
                 "(always drain it and change its role in place: no model reload) or restart (always stop it "
                 "and start a new one)");
    flags.Bool("role-change", &role_change, "local: the same as --rebalance-by flip");
    flags.Float("print-signals", &print_signals_s,
                "read the signals twice this many seconds apart, print the second reading as JSON and exit "
                "(no decisions; for checking a source)");
    flags.Bool("leader-elect", &leader_elect,
               "kubernetes: one of several replicas; only the holder of a coordination.k8s.io/v1 Lease "
               "(--lease-name, in --namespace) decides and acts, the others stand by and take over within "
               "15 s of its death, at once when it stops");
    flags.String("lease-name", &lease_name, "kubernetes: the Lease for --leader-elect");
    flags.String("leader-identity", &identity,
                 "kubernetes: this replica's name in the Lease (default: $POD_NAME, else $HOSTNAME)");
    flags.String("bind", &bind, "address of the HTTP server");
    flags.Int("http-port", &http_port, "port of /metrics, /healthz and /readyz (0: any free port)");
  }
};

// Reads the signals twice `seconds` apart and prints the second reading as JSON.
int PrintSignals(const controller::DaemonOptions& options, controller::AdminClient* admin, double seconds) {
  auto source = controller::MakeSignalSource(options, admin);
  if (!source.ok()) return Fail("controller", std::string(source.status().message()));
  const auto now = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  };
  if (auto first = (*source)->Read(now()); !first.ok()) return Fail("controller", std::string(first.status().message()));
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  auto second = (*source)->Read(now());
  if (!second.ok()) return Fail("controller", std::string(second.status().message()));
  std::printf("%s\n", controller::SignalsToJson(*second).dump().c_str());
  return 0;
}

absl::StatusOr<controller::KubeConfig> LoadKube(const ActuatorFlags& af) {
  controller::KubeConfigOptions ko;
  ko.kubeconfig_path = af.kubeconfig;
  ko.context = af.kube_context;
  ko.service_host = Env("KUBERNETES_SERVICE_HOST");
  ko.service_port = Env("KUBERNETES_SERVICE_PORT");
  if (std::string tmp = Env("TMPDIR"); !tmp.empty()) ko.temp_dir = tmp;
  return controller::LoadKubeConfig(ko);
}

absl::StatusOr<std::unique_ptr<controller::LeaderElector>> MakeLeaderElector(const ActuatorFlags& af) {
  if (af.actuator != "kubernetes") return absl::InvalidArgumentError("--leader-elect needs --actuator kubernetes");
  TANDEM_ASSIGN_OR_RETURN(controller::KubeConfig config, LoadKube(af));
  controller::LeaderElectionOptions lo;
  lo.kube_namespace = af.ns.empty() ? config.default_namespace : af.ns;
  lo.lease_name = af.lease_name;
  lo.identity = !af.identity.empty() ? af.identity : !Env("POD_NAME").empty() ? Env("POD_NAME") : Env("HOSTNAME");
  return controller::LeaderElector::Create(std::move(config), lo);
}

absl::StatusOr<std::unique_ptr<controller::Actuator>> MakeKubernetesActuator(const ActuatorFlags& af) {
  TANDEM_ASSIGN_OR_RETURN(controller::KubeConfig config, LoadKube(af));
  controller::KubernetesActuatorOptions ao;
  ao.kube_namespace = af.ns;
  ao.prefill_deployment = af.prefill_deployment;
  ao.decode_deployment = af.decode_deployment;
  TANDEM_ASSIGN_OR_RETURN(auto k, controller::KubernetesActuator::Create(config, ao));
  return std::unique_ptr<controller::Actuator>(std::move(k));
}

absl::StatusOr<std::unique_ptr<controller::Actuator>> MakeLocalActuator(const ActuatorFlags& af,
                                                                       const std::string& router_grpc,
                                                                       controller::AdminClient* admin) {
  TANDEM_ASSIGN_OR_RETURN(std::string path, ResolveModelPath(af.model));
  WorkerFlags worker;
  worker.router = router_grpc;
  worker.engine.model = path;
  worker.engine.threads = af.threads;
  worker.engine.kv_cache_mb = af.kv_cache_mb;
  controller::LocalActuatorOptions lo;
  lo.tandem_binary = ChildProcess::SelfPath();
  lo.worker_flags = ToArgv(worker);
  lo.rebalance_by = af.rebalance;
  auto local = std::make_unique<controller::LocalActuator>(lo, admin);
  for (int i = 0; i < af.initial_prefill + af.initial_decode; ++i) {
    const auto role = i < af.initial_prefill ? controller::Role::kPrefill : controller::Role::kDecode;
    TANDEM_RETURN_IF_ERROR(local->StartAndWait(role));
  }
  return std::unique_ptr<controller::Actuator>(std::move(local));
}

// The actuator --actuator names; `dry_run` is set for "none".
absl::StatusOr<std::unique_ptr<controller::Actuator>> MakeActuator(const ActuatorFlags& af, const std::string& router_grpc,
                                                                  controller::AdminClient* admin, bool& dry_run) {
  if (af.actuator == "kubernetes") return MakeKubernetesActuator(af);
  if (af.actuator == "local") return MakeLocalActuator(af, router_grpc, admin);
  if (af.actuator == "role-change") return std::unique_ptr<controller::Actuator>(new controller::RoleChangeActuator(admin));
  if (af.actuator == "none") {
    dry_run = true;
    return std::unique_ptr<controller::Actuator>(new ObserveOnlyActuator(admin));
  }
  return absl::InvalidArgumentError(StrCat("unknown --actuator '", af.actuator, "'"));
}

}  // namespace

int ControllerCommand(const std::vector<std::string>& args) {
  ControllerFlags cf;
  ActuatorFlags af;
  ClusterTokenFlags tf;
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
  af.Register(flags);
  tf.Register(flags);
  if (auto exit_code = ParseArgs(flags, args, "controller")) return *exit_code;
  auto token = tf.Resolve();
  if (!token.ok()) return Fail("controller", std::string(token.status().message()), 2);
  // Workers the local actuator starts inherit it (never on their command lines).
  if (!token->empty()) ::setenv(kClusterTokenEnv, token->c_str(), 1);
  if (af.actuator == "local") {
    if (cf.sim_workers.cpus < 0) cf.sim_workers.cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    cf.sim_workers.threads = af.threads;
    cf.sim_workers.kv_cache_mb = af.kv_cache_mb;
  }
  if (absl::Status s = cf.Finish(); !s.ok()) return Fail("controller", std::string(s.message()), 2);
  if (cf.router_grpc.empty()) return Fail("controller", "--router is required (the router's gRPC address)", 2);
  cf.daemon.bind = af.bind;
  cf.daemon.http_port = af.http_port;

  controller::AdminClient admin(cf.router_grpc, *token);
  // A wrong address fails now, clearly; a router not up yet (UNAVAILABLE) is waited for by the loop.
  if (auto w = admin.ListWorkers(); !w.ok() && absl::IsUnimplemented(w.status())) {
    return Fail("controller", std::string(w.status().message()), 2);
  }
  if (af.print_signals_s > 0) return PrintSignals(cf.daemon, &admin, af.print_signals_s);
  std::signal(SIGINT, OnControllerSignal);
  std::signal(SIGTERM, OnControllerSignal);
  if (af.actuator != "kubernetes" && af.actuator != "local" && af.actuator != "role-change" && af.actuator != "none") {
    return Fail("controller", StrCat("unknown --actuator '", af.actuator, "' (kubernetes, local, role-change or none)"),
                2);
  }
  if (auto by = controller::ParseRebalanceBy(af.role_change ? "flip" : af.rebalance_by); by.ok()) {
    af.rebalance = *by;
  } else {
    return Fail("controller", StrCat("--rebalance-by: ", by.status().message()), 2);
  }
  std::unique_ptr<controller::LeaderElector> elector;
  if (af.leader_elect) {
    auto e = MakeLeaderElector(af);
    if (!e.ok()) return Fail("controller", std::string(e.status().message()), 2);
    elector = std::move(*e);
    cf.daemon.loop.may_act = [e = elector.get()] { return e->IsLeader(); };
    elector->Start();
  }
  auto act = MakeActuator(af, cf.router_grpc, &admin, cf.daemon.loop.dry_run);
  if (!act.ok()) return Fail("controller", std::string(act.status().message()));
  auto daemon = controller::ControllerDaemon::Create(cf.daemon, act->get(), &admin);
  if (!daemon.ok()) return Fail("controller", std::string(daemon.status().message()));
  std::printf("controller http_port=%d actuator=%s source=%s\n", (*daemon)->http_port(), (*act)->name().c_str(),
              cf.daemon.source.c_str());
  std::fflush(stdout);
  (*daemon)->Start();
  while (g_controller_signal.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  GetLogger("controller")->info("stopping");
  (*daemon)->Stop();
  if (elector) elector->Stop();  // releases the Lease: a standby takes over at once
  daemon->reset();
  act->reset();  // a local actuator drains and stops its workers
  return 0;
}

int DrainCommand(const std::vector<std::string>& args) {
  std::string worker;
  double timeout = 300;
  ClusterTokenFlags tf;
  FlagSet flags("tandem drain --worker HOST:PORT [--timeout-s 300]",
                "Asks a worker to drain — take no new work, finish what it has, send the KV it still\n"
                "owes — and waits until it has. Exit 0 when drained, 1 on timeout or error. Meant for a\n"
                "Kubernetes preStop hook: `tandem drain --worker 127.0.0.1:<worker gRPC port>`.");
  flags.String("worker", &worker, "the worker's gRPC address");
  flags.Float("timeout-s", &timeout, "seconds to wait for the worker's work to finish");
  tf.Register(flags);
  if (auto exit_code = ParseArgs(flags, args, "drain")) return *exit_code;
  if (worker.empty()) return Fail("drain", "--worker is required", 2);
  auto token = tf.Resolve();
  if (!token.ok()) return Fail("drain", std::string(token.status().message()), 2);
  const absl::Status s = controller::DrainWorkerDirect(worker, *token, absl::Seconds(timeout));
  if (!s.ok()) return Fail("drain", std::string(s.message()));
  std::fprintf(stderr, "tandem drain: %s drained\n", worker.c_str());
  return 0;
}

}  // namespace tandem::cli
