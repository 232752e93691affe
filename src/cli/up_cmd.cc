// `tandem up`: the whole cluster on this machine with the bundled model — a router, prefill and
// decode workers — started as child processes of this one, ready when this prints its URL.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <map>
#include <thread>

#include "cli/commands.h"
#include "cli/common_flags.h"
#include "cli/controller_flags.h"
#include "common/child_process.h"
#include "common/strings.h"
#include "controller/loop/admin_client.h"
#include "controller/loop/daemon.h"
#include "controller/loop/local_actuator.h"

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
};

}  // namespace

int UpCommand(const std::vector<std::string>& args) {
  int http_port = 8000, grpc_port = 50051, prefill = 1, decode = 1, mixed = 0, threads = 0, local_threshold = 0;
  int controller_port = 9400;
  int64_t kv_mb = 256;
  double ready_timeout = 120;
  bool run_controller = true, role_change = false;
  std::string model, ucx_tls, api_key;
  ControllerFlags cf;
  cf.daemon.decision_log = "tandem-decisions.jsonl";
  cf.daemon.loop.planner.max_total_instances = 0;  // 0: chosen below from the machine
  FlagSet flags("tandem up [--http-port 8000] [--prefill 1] [--decode 1] [flags]",
                "Runs tandem on this machine: a router (OpenAI-compatible HTTP API and gRPC), prefill\n"
                "workers and decode workers, each a child process, with the bundled model (downloaded\n"
                "first if missing), and the ratio controller, which starts and stops workers (draining\n"
                "them first) as the traffic moves between prompt-heavy and generation-heavy. Prints the\n"
                "URL when everything is ready. Ctrl-C or SIGTERM stops all of it, letting in-flight\n"
                "requests finish first.");
  flags.String("model", &model, "GGUF model file (default: the bundled SmolLM2-135M-Instruct)");
  flags.Int("http-port", &http_port, "port of the OpenAI-compatible HTTP API");
  flags.Int("grpc-port", &grpc_port, "port of the router's gRPC services");
  flags.Int("prefill", &prefill, "prefill workers at start");
  flags.Int("decode", &decode, "decode workers at start");
  flags.Int("mixed", &mixed, "mixed workers (prefill and decode in one process, no KV transfer; no controller)");
  flags.Int("threads", &threads, "compute threads per worker (0: the CPUs divided among the workers)");
  flags.Int("kv-cache-mb", &kv_mb, "KV cache per worker, MiB");
  flags.Int("local-prefill-threshold", &local_threshold,
            "prompts shorter than this many tokens prefill on the decode worker (0: never)");
  flags.String("ucx-tls", &ucx_tls, "UCX transports for KV transfers (default: UCX's choice)");
  flags.String("api-key", &api_key, "clients must send 'Authorization: Bearer <key>' (default: $TANDEM_API_KEY)");
  flags.Float("ready-timeout", &ready_timeout, "seconds to wait for the cluster to become ready");
  flags.Bool("controller", &run_controller, "run the ratio controller (--no-controller: fixed worker counts)");
  flags.Int("controller-port", &controller_port, "port of the controller's /metrics, /healthz, /readyz (0: any)");
  flags.Bool("role-change", &role_change,
             "the controller rebalances by flipping a drained worker's role rather than replacing it");
  cf.Register(flags, /*with_sources=*/false);
  if (absl::Status s = flags.Parse(args); !s.ok()) {
    return s.code() == absl::StatusCode::kCancelled ? 0 : Fail("up", std::string(s.message()), 2);
  }
  if (prefill < 0 || decode < 0 || mixed < 0 || decode + mixed < 1) {
    return Fail("up", "need at least one decode or mixed worker (--decode, --mixed)", 2);
  }
  if (mixed > 0 && run_controller) {
    std::fprintf(stderr, "tandem up: mixed workers run without the controller (it sizes prefill and decode pools)\n");
    run_controller = false;
  }
  const int cpus = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (cf.daemon.loop.planner.max_total_instances <= 0) {
    // One machine: room for one more worker than it starts with, at least 3, at most the CPUs.
    cf.daemon.loop.planner.max_total_instances = std::max({prefill + decode + 1, 3, std::min(cpus, 8)});
  }
  // Fetch the model once here, with progress, rather than in every child at the same time.
  auto path = ResolveModelPath(model);
  if (!path.ok()) return Fail("up", std::string(path.status().message()));
  const int workers = prefill + decode + mixed;
  if (threads <= 0) threads = std::max(1, cpus / workers);

  std::signal(SIGINT, OnUpSignal);
  std::signal(SIGTERM, OnUpSignal);
  const std::string self = ChildProcess::SelfPath();
  std::vector<Member> members;  // the router and mixed workers
  std::unique_ptr<controller::AdminClient> admin;
  std::unique_ptr<controller::LocalActuator> pool;  // prefill and decode workers
  std::unique_ptr<controller::ControllerDaemon> daemon;
  auto stop_all = [&](int code) {
    if (daemon) daemon->Stop();
    // Workers first (they drain and deregister), then the router.
    for (auto it = members.rbegin(); it != members.rend(); ++it) {
      if (it->role != "router" && it->process->Running()) it->process->Signal(SIGTERM);
    }
    if (pool) pool->StopAll();
    for (auto& m : members) {
      if (m.role != "router") m.process->Stop(absl::Seconds(35));
    }
    for (auto& m : members) {
      if (m.role == "router") m.process->Stop(absl::Seconds(10));
    }
    return code;
  };

  std::vector<std::string> router_argv = {self, "router", "--model", *path, "--http-port", std::to_string(http_port),
                                          "--grpc-port", std::to_string(grpc_port), "--local-prefill-threshold",
                                          std::to_string(local_threshold)};
  if (!api_key.empty()) {
    router_argv.push_back("--api-key");
    router_argv.push_back(api_key);
  }
  auto router = ChildProcess::Spawn(router_argv);
  if (!router.ok()) return Fail("up", std::string(router.status().message()));
  members.push_back({"router", std::move(*router), "", ""});
  auto line = members.back().process->ReadLine(absl::Seconds(60));
  if (!line.ok()) return stop_all(Fail("up", "the router did not start (see its log above)"));
  auto rf = ParseStatusFields(*line);
  members.back().grpc = StrCat("127.0.0.1:", rf["grpc_port"]);
  members.back().http = StrCat("127.0.0.1:", rf["http_port"]);
  const std::string router_grpc = members.back().grpc;
  const int router_http = std::stoi(rf["http_port"]);

  std::vector<std::string> worker_flags = {"--router", router_grpc, "--model", *path, "--threads",
                                           std::to_string(threads), "--kv-cache-mb", std::to_string(kv_mb)};
  if (!ucx_tls.empty()) {
    worker_flags.push_back("--ucx-tls");
    worker_flags.push_back(ucx_tls);
  }
  for (int i = 0; i < mixed; ++i) {
    std::vector<std::string> argv = {self, "worker", "--role", "mixed", "--worker-id", StrCat("mixed-", i)};
    argv.insert(argv.end(), worker_flags.begin(), worker_flags.end());
    auto child = ChildProcess::Spawn(argv);
    if (!child.ok()) return stop_all(Fail("up", std::string(child.status().message())));
    members.push_back({"mixed", std::move(*child), "", ""});
  }
  admin = std::make_unique<controller::AdminClient>(router_grpc);
  controller::LocalActuatorOptions lo;
  lo.tandem_binary = self;
  lo.worker_flags = worker_flags;
  lo.start_timeout = absl::Seconds(ready_timeout);
  lo.role_change = role_change;
  pool = std::make_unique<controller::LocalActuator>(lo, admin.get());
  for (int i = 0; i < prefill + decode; ++i) {
    if (g_up_signal.load() != 0) return stop_all(130);
    const auto role = i < prefill ? controller::Role::kPrefill : controller::Role::kDecode;
    if (absl::Status s = pool->StartAndWait(role); !s.ok()) return stop_all(Fail("up", std::string(s.message())));
  }
  for (auto& m : members) {
    if (m.role == "router") continue;
    auto wl = m.process->ReadLine(absl::Seconds(ready_timeout));
    if (!wl.ok()) return stop_all(Fail("up", StrCat("a ", m.role, " worker did not start (see its log above)")));
    auto wf = ParseStatusFields(*wl);
    m.grpc = StrCat("127.0.0.1:", wf["grpc_port"]);
    m.http = StrCat("127.0.0.1:", wf["http_port"]);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(ready_timeout);
  while (HttpGetStatus(router_http, "/readyz") != 200) {
    if (g_up_signal.load() != 0) return stop_all(130);
    for (auto& m : members) {
      if (!m.process->Running()) return stop_all(Fail("up", StrCat("the ", m.role, " process exited early")));
    }
    if (!pool->TakeUnexpectedExits().empty()) return stop_all(Fail("up", "a worker exited early (see its log above)"));
    if (absl::Now() > deadline) return stop_all(Fail("up", "the cluster did not become ready in time"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (run_controller) {
    cf.router_grpc = router_grpc;
    cf.router_http = StrCat("127.0.0.1:", router_http);
    if (absl::Status s = cf.Finish(); !s.ok()) return stop_all(Fail("up", std::string(s.message()), 2));
    cf.daemon.bind = "127.0.0.1";
    cf.daemon.http_port = controller_port;
    auto d = controller::ControllerDaemon::Create(cf.daemon, pool.get(), admin.get());
    if (!d.ok() && cf.daemon.http_port != 0 && absl::IsUnavailable(d.status())) {
      // Another process has the port (a second `tandem up`): any free port will do here.
      std::fprintf(stderr, "tandem up: controller port %d: %s; using a free port instead\n", cf.daemon.http_port,
                   std::string(d.status().message()).c_str());
      cf.daemon.http_port = 0;
      d = controller::ControllerDaemon::Create(cf.daemon, pool.get(), admin.get());
    }
    if (!d.ok()) return stop_all(Fail("up", StrCat("the controller did not start: ", d.status().message())));
    daemon = std::move(*d);
    daemon->Start();
  }

  std::printf("\ntandem is ready: http://127.0.0.1:%d/v1  (model %s; workers: %d prefill, %d decode, %d mixed; "
              "%d compute threads per worker)\n\n",
              router_http, rf["model"].c_str(), prefill, decode, mixed, threads);
  std::printf("  %-10s %-7s %-22s %-22s\n", "process", "pid", "gRPC", "HTTP (/metrics /healthz /readyz)");
  for (const auto& m : members) {
    std::printf("  %-10s %-7d %-22s %-22s\n", m.role.c_str(), m.process->pid(), m.grpc.c_str(), m.http.c_str());
  }
  for (const auto& p : pool->Processes()) {
    std::printf("  %-10s %-7d %-22s %-22s\n", p.role.c_str(), p.pid, p.grpc.c_str(), p.http.c_str());
  }
  if (daemon) {
    std::printf("  %-10s %-7d %-22s 127.0.0.1:%-12d (in this process; decisions: %s; budget %d workers)\n",
                "controller", static_cast<int>(::getpid()), "-", daemon->http_port(),
                cf.daemon.decision_log.empty() ? "not logged" : cf.daemon.decision_log.c_str(),
                cf.daemon.loop.planner.max_total_instances);
  }
  std::printf("\ntry:\n  curl http://127.0.0.1:%d/v1/chat/completions -H 'Content-Type: application/json' \\\n"
              "    -d '{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}]}'\n\n"
              "Ctrl-C stops everything.\n",
              router_http, rf["model"].c_str());
  std::fflush(stdout);

  while (g_up_signal.load() == 0) {
    for (auto& m : members) {
      if (!m.process->Running()) {
        std::fprintf(stderr, "tandem up: the %s process (pid %d) exited; stopping the cluster\n", m.role.c_str(),
                     m.process->pid());
        return stop_all(1);
      }
    }
    for (const std::string& id : pool->TakeUnexpectedExits()) {
      if (!daemon) {
        std::fprintf(stderr, "tandem up: worker %s exited; stopping the cluster\n", id.c_str());
        return stop_all(1);
      }
      std::fprintf(stderr, "tandem up: worker %s exited; the controller will replace it\n", id.c_str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::fprintf(stderr, "tandem up: stopping (in-flight requests finish first)\n");
  return stop_all(0);
}

}  // namespace tandem::cli
