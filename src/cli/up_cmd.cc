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
#include "common/child_process.h"
#include "common/strings.h"

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

// Parses "key=value" fields of a child's first output line.
std::map<std::string, std::string> Fields(const std::string& line) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos < line.size()) {
    size_t end = line.find(' ', pos);
    if (end == std::string::npos) end = line.size();
    const std::string word = line.substr(pos, end - pos);
    if (auto eq = word.find('='); eq != std::string::npos) out[word.substr(0, eq)] = word.substr(eq + 1);
    pos = end + 1;
  }
  return out;
}

struct Member {
  std::string role;
  std::unique_ptr<ChildProcess> process;
  std::string grpc, http;
};

}  // namespace

int UpCommand(const std::vector<std::string>& args) {
  int http_port = 8000, grpc_port = 50051, prefill = 1, decode = 1, mixed = 0, threads = 0, local_threshold = 0;
  int64_t kv_mb = 256;
  double ready_timeout = 120;
  std::string model, ucx_tls, api_key;
  FlagSet flags("tandem up [--http-port 8000] [--prefill 1] [--decode 1] [flags]",
                "Runs tandem on this machine: a router (OpenAI-compatible HTTP API and gRPC), prefill\n"
                "workers and decode workers, each a child process, with the bundled model (downloaded\n"
                "first if missing). Prints the URL when everything is ready. Ctrl-C or SIGTERM stops all\n"
                "of it, letting in-flight requests finish first.");
  flags.String("model", &model, "GGUF model file (default: the bundled SmolLM2-135M-Instruct)");
  flags.Int("http-port", &http_port, "port of the OpenAI-compatible HTTP API");
  flags.Int("grpc-port", &grpc_port, "port of the router's gRPC services");
  flags.Int("prefill", &prefill, "prefill workers");
  flags.Int("decode", &decode, "decode workers");
  flags.Int("mixed", &mixed, "mixed workers (prefill and decode in one process, no KV transfer)");
  flags.Int("threads", &threads, "compute threads per worker (0: the CPUs divided among the workers)");
  flags.Int("kv-cache-mb", &kv_mb, "KV cache per worker, MiB");
  flags.Int("local-prefill-threshold", &local_threshold,
            "prompts shorter than this many tokens prefill on the decode worker (0: never)");
  flags.String("ucx-tls", &ucx_tls, "UCX transports for KV transfers (default: UCX's choice)");
  flags.String("api-key", &api_key, "clients must send 'Authorization: Bearer <key>' (default: $TANDEM_API_KEY)");
  flags.Float("ready-timeout", &ready_timeout, "seconds to wait for the cluster to become ready");
  if (absl::Status s = flags.Parse(args); !s.ok()) {
    return s.code() == absl::StatusCode::kCancelled ? 0 : Fail("up", std::string(s.message()), 2);
  }
  if (prefill < 0 || decode < 0 || mixed < 0 || decode + mixed < 1) {
    return Fail("up", "need at least one decode or mixed worker (--decode, --mixed)", 2);
  }
  // Fetch the model once here, with progress, rather than in every child at the same time.
  auto path = ResolveModelPath(model);
  if (!path.ok()) return Fail("up", std::string(path.status().message()));
  const int workers = prefill + decode + mixed;
  if (threads <= 0) threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / workers);

  std::signal(SIGINT, OnUpSignal);
  std::signal(SIGTERM, OnUpSignal);
  const std::string self = ChildProcess::SelfPath();
  std::vector<Member> members;
  auto stop_all = [&members](int code) {
    // Workers first (they drain and deregister), then the router.
    for (auto it = members.rbegin(); it != members.rend(); ++it) {
      if (it->role != "router" && it->process->Running()) it->process->Signal(SIGTERM);
    }
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
  auto rf = Fields(*line);
  members.back().grpc = StrCat("127.0.0.1:", rf["grpc_port"]);
  members.back().http = StrCat("127.0.0.1:", rf["http_port"]);
  const std::string router_grpc = members.back().grpc;
  const int router_http = std::stoi(rf["http_port"]);

  for (int i = 0; i < workers; ++i) {
    const std::string role = i < prefill ? "prefill" : i < prefill + decode ? "decode" : "mixed";
    const int index = i < prefill ? i : i < prefill + decode ? i - prefill : i - prefill - decode;
    std::vector<std::string> argv = {self, "worker", "--role", role, "--router", router_grpc, "--model", *path,
                                     "--threads", std::to_string(threads), "--kv-cache-mb", std::to_string(kv_mb),
                                     "--worker-id", StrCat(role, "-", index)};
    if (!ucx_tls.empty()) {
      argv.push_back("--ucx-tls");
      argv.push_back(ucx_tls);
    }
    auto child = ChildProcess::Spawn(argv);
    if (!child.ok()) return stop_all(Fail("up", std::string(child.status().message())));
    members.push_back({role, std::move(*child), "", ""});
  }
  for (auto& m : members) {
    if (m.role == "router") continue;
    auto wl = m.process->ReadLine(absl::Seconds(ready_timeout));
    if (!wl.ok()) return stop_all(Fail("up", StrCat("a ", m.role, " worker did not start (see its log above)")));
    auto wf = Fields(*wl);
    m.grpc = StrCat("127.0.0.1:", wf["grpc_port"]);
    m.http = StrCat("127.0.0.1:", wf["http_port"]);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(ready_timeout);
  while (HttpGetStatus(router_http, "/readyz") != 200) {
    if (g_up_signal.load() != 0) return stop_all(130);
    for (auto& m : members) {
      if (!m.process->Running()) return stop_all(Fail("up", StrCat("the ", m.role, " process exited early")));
    }
    if (absl::Now() > deadline) return stop_all(Fail("up", "the cluster did not become ready in time"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  std::printf("\ntandem is ready: http://127.0.0.1:%d/v1  (model %s; workers: %d prefill, %d decode, %d mixed; "
              "%d compute threads per worker)\n\n",
              router_http, rf["model"].c_str(), prefill, decode, mixed, threads);
  std::printf("  %-8s %-7s %-22s %-22s\n", "process", "pid", "gRPC", "HTTP (/metrics /healthz /readyz)");
  for (const auto& m : members) {
    std::printf("  %-8s %-7d %-22s %-22s\n", m.role.c_str(), m.process->pid(), m.grpc.c_str(), m.http.c_str());
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
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::fprintf(stderr, "tandem up: stopping (in-flight requests finish first)\n");
  return stop_all(0);
}

}  // namespace tandem::cli
