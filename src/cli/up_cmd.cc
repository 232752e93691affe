// `tandem up`: the whole cluster on this machine with the bundled model — a router, prefill and
// decode workers — started as child processes of this one, ready when this prints its URL.
// What to start comes from the launch plan (up_plan.h); this file is the supervisor that runs it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "cli/common_flags.h"
#include "cli/up_plan.h"
#include "common/child_process.h"
#include "common/strings.h"
#include "controller/loop/admin_client.h"
#include "controller/loop/daemon.h"
#include "controller/loop/local_actuator.h"
#include "rpc/cluster_auth.h"

namespace tandem::cli {
namespace {

std::atomic<int> g_up_signal{0};
void OnUpSignal(int sig) { g_up_signal.store(sig); }

// GET http://127.0.0.1:port/path; the HTTP status code, or 0 if nothing answered.
int HttpGetStatus(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int status = 0;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string req = StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[64] = {};
      if (::recv(fd, buf, sizeof buf - 1, 0) > 12) std::sscanf(buf, "HTTP/1.%*d %d", &status);
    }
  }
  ::close(fd);
  return status;
}

struct Member {
  std::string role;
  std::unique_ptr<ChildProcess> process;
  std::string grpc, http;
  std::vector<std::string> argv, env;  // to start it again
  absl::Time started = absl::Now();
  absl::Time restart_at = absl::InfinitePast();  // set while it is down
  CrashBackoff backoff;
};

// Runs a launch plan: the router and mixed workers as its own children, prefill and decode
// workers through the controller's local actuator (which the controller then resizes).
class UpSupervisor {
 public:
  explicit UpSupervisor(LaunchPlan plan) : plan_(std::move(plan)), self_(ChildProcess::SelfPath()) {}

  // Starts everything and waits until the router is ready; the exit code on failure.
  std::optional<int> Start();
  void PrintReady() const;
  // Watches the processes until a signal or a death; returns the exit code after stopping all.
  int Supervise();
  int StopAll(int code);

 private:
  absl::Status StartRouter();
  absl::Status StartWorkers();
  absl::Status AwaitReady();
  absl::Status StartController();
  // Starts a crashed router or mixed worker again when its backoff has passed.
  void RestartMember(Member& m);

  const LaunchPlan plan_;
  const std::string self_;
  std::vector<Member> members_;  // the router and mixed workers
  int next_mixed_ = 0;           // the next mixed worker's index (ids mixed-<index>)
  std::string router_grpc_;   // every router's internal address, comma-separated (the workers' --router)
  std::string admin_router_;  // the first router's internal address (RouterAdmin, for the controller)
  std::vector<std::string> router_https_;  // every router's HTTP address
  std::vector<int> router_http_ports_;     // and its port
  std::string router_model_;
  int router_http_ = 0;       // the first router's HTTP port
  std::unique_ptr<controller::AdminClient> admin_;
  std::unique_ptr<controller::LocalActuator> pool_;  // prefill and decode workers
  std::unique_ptr<controller::ControllerDaemon> daemon_;
};

int UpSupervisor::StopAll(int code) {
  if (daemon_) daemon_->Stop();
  // Workers first (they drain and deregister), then the router.
  for (auto it = members_.rbegin(); it != members_.rend(); ++it) {
    if (it->role != "router" && it->process->Running()) it->process->Signal(SIGTERM);
  }
  if (pool_) pool_->StopAll();
  for (auto& m : members_) {
    if (m.role != "router") m.process->Stop(absl::Seconds(35));
  }
  for (auto& m : members_) {
    if (m.role == "router") m.process->Stop(absl::Seconds(10));
  }
  return code;
}

absl::Status UpSupervisor::StartRouter() {
  for (int i = 0; i < plan_.routers; ++i) {
    // The first router takes the plan's ports; the others free ones (printed in the table).
    auto router = ChildProcess::Spawn(i == 0 ? plan_.RouterArgv(self_) : plan_.RouterArgv(self_, 0, 0, 0),
                                      plan_.RouterEnvironment());
    if (!router.ok()) return router.status();
    members_.push_back({"router", std::move(*router), "", ""});
    auto line = members_.back().process->ReadLine(absl::Seconds(60));
    if (!line.ok()) return absl::UnavailableError("the router did not start (see its log above)");
    auto fields = ParseStatusFields(*line);
    Member& m = members_.back();
    m.grpc = StrCat(plan_.router.bind, ":", fields["grpc_port"]);  // Generate, for clients
    m.http = StrCat("127.0.0.1:", fields["http_port"]);
    // A restart takes the same ports: the clients, the workers and the controller know them.
    m.argv = plan_.RouterArgv(self_, std::stoi(fields["http_port"]), std::stoi(fields["grpc_port"]),
                              std::stoi(fields["internal_port"]));
    m.env = plan_.RouterEnvironment();
    // What the workers call (Registry: each router's) and the controller (RouterAdmin: the first's).
    const std::string internal = StrCat("127.0.0.1:", fields["internal_port"]);
    router_grpc_ += StrCat(router_grpc_.empty() ? "" : ",", internal);
    router_https_.push_back(m.http);
    router_http_ports_.push_back(std::stoi(fields["http_port"]));
    if (i == 0) {
      admin_router_ = internal;
      router_http_ = std::stoi(fields["http_port"]);
      router_model_ = fields["model"];
    }
  }
  return absl::OkStatus();
}

absl::Status UpSupervisor::StartWorkers() {
  for (int i = 0; i < plan_.mixed; ++i) {
    auto argv = plan_.MixedWorkerArgv(self_, router_grpc_, i);
    auto child = ChildProcess::Spawn(argv);
    if (!child.ok()) return child.status();
    members_.push_back({"mixed", std::move(*child), "", ""});
    members_.back().argv = std::move(argv);
  }
  next_mixed_ = plan_.mixed;
  admin_ = std::make_unique<controller::AdminClient>(admin_router_, plan_.cluster_token);
  controller::LocalActuatorOptions lo;
  lo.tandem_binary = self_;
  lo.worker_flags = plan_.WorkerArgs(router_grpc_);
  lo.start_timeout = absl::Seconds(plan_.ready_timeout_s);
  lo.rebalance_by = plan_.rebalance_by;
  lo.restart_crashed = true;  // with or without the controller, a crashed worker comes back
  pool_ = std::make_unique<controller::LocalActuator>(lo, admin_.get());
  for (int i = 0; i < plan_.prefill + plan_.decode; ++i) {
    if (g_up_signal.load() != 0) return absl::CancelledError("interrupted");
    const auto role = i < plan_.prefill ? controller::Role::kPrefill : controller::Role::kDecode;
    if (absl::Status s = pool_->StartAndWait(role); !s.ok()) return s;
  }
  for (auto& m : members_) {
    if (m.role == "router") continue;
    auto line = m.process->ReadLine(absl::Seconds(plan_.ready_timeout_s));
    if (!line.ok()) return absl::UnavailableError(StrCat("a ", m.role, " worker did not start (see its log above)"));
    auto fields = ParseStatusFields(*line);
    m.grpc = StrCat("127.0.0.1:", fields["grpc_port"]);
    m.http = StrCat("127.0.0.1:", fields["http_port"]);
  }
  return absl::OkStatus();
}

absl::Status UpSupervisor::AwaitReady() {
  const absl::Time deadline = absl::Now() + absl::Seconds(plan_.ready_timeout_s);
  const auto all_ready = [this] {
    for (int port : router_http_ports_) {
      if (HttpGetStatus(port, "/readyz") != 200) return false;
    }
    return true;
  };
  while (!all_ready()) {
    if (g_up_signal.load() != 0) return absl::CancelledError("interrupted");
    for (auto& m : members_) {
      if (!m.process->Running()) return absl::UnavailableError(StrCat("the ", m.role, " process exited early"));
    }
    if (!pool_->TakeUnexpectedExits().empty()) {
      return absl::UnavailableError("a worker exited early (see its log above)");
    }
    if (absl::Now() > deadline) return absl::DeadlineExceededError("the cluster did not become ready in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::OkStatus();
}

absl::Status UpSupervisor::StartController() {
  ControllerFlags cf = plan_.controller;
  cf.router_grpc = admin_router_;
  cf.router_http = absl::StrJoin(router_https_, ",");
  if (absl::Status s = cf.Finish(); !s.ok()) return s;
  cf.daemon.bind = "127.0.0.1";
  cf.daemon.http_port = plan_.controller_port;
  auto d = controller::ControllerDaemon::Create(cf.daemon, pool_.get(), admin_.get());
  if (!d.ok() && cf.daemon.http_port != 0 && absl::IsUnavailable(d.status())) {
    // Another process has the port (a second `tandem up`): any free port will do here.
    std::fprintf(stderr, "tandem up: controller port %d: %s; using a free port instead\n", cf.daemon.http_port,
                 std::string(d.status().message()).c_str());
    cf.daemon.http_port = 0;
    d = controller::ControllerDaemon::Create(cf.daemon, pool_.get(), admin_.get());
  }
  if (!d.ok()) return absl::UnavailableError(StrCat("the controller did not start: ", d.status().message()));
  daemon_ = std::move(*d);
  daemon_->Start();
  return absl::OkStatus();
}

std::optional<int> UpSupervisor::Start() {
  for (const std::string& note : plan_.notes) std::fprintf(stderr, "tandem up: %s\n", note.c_str());
  std::signal(SIGINT, OnUpSignal);
  std::signal(SIGTERM, OnUpSignal);
  for (absl::Status (UpSupervisor::*step)() :
       {&UpSupervisor::StartRouter, &UpSupervisor::StartWorkers, &UpSupervisor::AwaitReady}) {
    if (absl::Status s = (this->*step)(); !s.ok()) {
      return StopAll(absl::IsCancelled(s) ? 130 : Fail("up", std::string(s.message())));
    }
  }
  if (plan_.run_controller) {
    if (absl::Status s = StartController(); !s.ok()) return StopAll(Fail("up", std::string(s.message())));
  }
  return std::nullopt;
}

void UpSupervisor::PrintReady() const {
  std::printf("\ntandem is ready: http://127.0.0.1:%d/v1  (model %s; workers: %d prefill, %d decode, %d mixed; "
              "%d compute threads per worker)\n\n",
              router_http_, router_model_.c_str(), plan_.prefill, plan_.decode, plan_.mixed,
              plan_.threads_per_worker);
  std::printf("  %-10s %-7s %-22s %-22s\n", "process", "pid", "gRPC", "HTTP (/metrics /healthz /readyz)");
  for (const auto& m : members_) {
    std::printf("  %-10s %-7d %-22s %-22s\n", m.role.c_str(), m.process->pid(), m.grpc.c_str(), m.http.c_str());
  }
  for (const auto& p : pool_->Processes()) {
    std::printf("  %-10s %-7d %-22s %-22s\n", p.role.c_str(), p.pid, p.grpc.c_str(), p.http.c_str());
  }
  if (daemon_) {
    const auto& log = plan_.controller.daemon.decision_log;
    std::printf("  %-10s %-7d %-22s 127.0.0.1:%-12d (in this process; decisions: %s; budget %d workers)\n",
                "controller", static_cast<int>(::getpid()), "-", daemon_->http_port(),
                log.empty() ? "not logged" : log.c_str(), plan_.controller.daemon.loop.planner.max_total_instances);
  }
  if (router_https_.size() == 1) {
    std::printf("\nthe router's gRPC column is its Generate API; workers and the controller call its internal port, "
                "%s\n",
                router_grpc_.c_str());
  } else {
    std::printf("\n%zu routers serve the same workers (each router's HTTP and gRPC columns are its public API); "
                "workers register with each one's internal port: %s\n",
                router_https_.size(), router_grpc_.c_str());
  }
  std::printf("\ntry:\n  curl http://127.0.0.1:%d/v1/chat/completions -H 'Content-Type: application/json' \\\n"
              "    -d '{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}]}'\n\n"
              "Ctrl-C stops everything.\n",
              router_http_, router_model_.c_str());
  std::fflush(stdout);
}

void UpSupervisor::RestartMember(Member& m) {
  if (m.restart_at == absl::InfinitePast()) {
    const absl::Duration delay = m.backoff.Next(m.started, absl::Now());
    std::fprintf(stderr, "tandem up: the %s process (pid %d) exited; starting it again in %s\n", m.role.c_str(),
                 m.process->pid(), absl::FormatDuration(delay).c_str());
    m.restart_at = absl::Now() + delay;
  }
  if (absl::Now() < m.restart_at) return;
  // A mixed worker comes back under a new id: the router refuses the old id from a new address
  // until the dead registration expires. The router keeps its argv (its ports).
  if (m.role == "mixed") m.argv = plan_.MixedWorkerArgv(self_, router_grpc_, next_mixed_++);
  auto child = ChildProcess::Spawn(m.argv, m.env);
  m.started = absl::Now();
  m.restart_at = absl::InfinitePast();
  if (!child.ok()) {
    std::fprintf(stderr, "tandem up: restarting the %s process: %s\n", m.role.c_str(),
                 std::string(child.status().message()).c_str());
    return;  // Running() of the old process stays false: tried again after the next delay
  }
  m.process = std::move(*child);
  std::fprintf(stderr, "tandem up: the %s process is running again (pid %d)\n", m.role.c_str(), m.process->pid());
}

int UpSupervisor::Supervise() {
  while (g_up_signal.load() == 0) {
    // Nothing stops the cluster but a signal: a crashed child is started again, with backoff.
    for (auto& m : members_) {
      if (!m.process->Running()) RestartMember(m);
    }
    for (const std::string& id : pool_->TakeUnexpectedExits()) {
      std::fprintf(stderr, "tandem up: worker %s exited; it is being started again\n", id.c_str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::fprintf(stderr, "tandem up: stopping (in-flight requests finish first)\n");
  return StopAll(0);
}

}  // namespace

int UpCommand(const std::vector<std::string>& args) {
  UpFlags up;
  FlagSet flags("tandem up [--http-port 8000] [--prefill 1] [--decode 1] [flags]",
                "Runs tandem on this machine: a router (OpenAI-compatible HTTP API and gRPC), prefill\n"
                "workers and decode workers, each a child process, with the bundled model (downloaded\n"
                "first if missing), and the ratio controller, which starts and stops workers (draining\n"
                "them first) as the traffic moves between prompt-heavy and generation-heavy. Prints the\n"
                "URL when everything is ready. Ctrl-C or SIGTERM stops all of it, letting in-flight\n"
                "requests finish first.");
  up.Register(flags);
  if (auto exit_code = ParseArgs(flags, args, "up")) return *exit_code;
  up.ApplyEnvironment();
  auto plan = PlanUp(up, static_cast<int>(std::thread::hardware_concurrency()));
  if (!plan.ok()) return Fail("up", std::string(plan.status().message()), 2);
  if (plan->run_controller) {
    // The controller starts once the cluster is ready; a flag it refuses (a bad --profile)
    // should not wait for that.
    ControllerFlags check = plan->controller;
    if (absl::Status s = check.Finish(); !s.ok()) return Fail("up", std::string(s.message()), 2);
  }
  // The internal plane's credential: the one given, else a fresh one for this cluster. Every
  // child inherits it in its environment (never on its command line).
  absl::StatusOr<std::string> token =
      up.cluster_token.Given() ? up.cluster_token.Resolve() : absl::StatusOr<std::string>(rpc::NewClusterToken());
  if (!token.ok()) return Fail("up", std::string(token.status().message()), 2);
  ::setenv(kClusterTokenEnv, token->c_str(), 1);
  // One machine: the workers' KV transfer (UCX over TCP) listens on loopback only, unless the
  // user chose the network devices.
  ::setenv("UCX_NET_DEVICES", "lo", /*overwrite=*/0);
  ::unsetenv(kClusterTokenFileEnv);
  plan->cluster_token = *token;
  // Fetch the model once here, with progress, rather than in every child at the same time.
  auto path = ResolveModelPath(up.router.model);
  if (!path.ok()) return Fail("up", std::string(path.status().message()));
  plan->SetModel(*path);
  UpSupervisor supervisor(std::move(*plan));
  if (std::optional<int> failed = supervisor.Start()) return *failed;
  supervisor.PrintReady();
  return supervisor.Supervise();
}

}  // namespace tandem::cli
