// `tandem worker --role prefill|decode|mixed`: one model on this machine's CPU, serving the
// Worker gRPC API, registered with the router.
#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "cli/common_flags.h"
#include "common/logging.h"
#include "common/strings.h"
#include "engine/model_config.h"
#include "text/tokenizer.h"
#include "worker/worker.h"

namespace tandem::cli {
namespace {

std::atomic<int> g_signal{0};
void OnSignal(int sig) { g_signal.store(sig); }

}  // namespace

absl::StatusOr<v1::WorkerRole> ParseRole(const std::string& role) {
  if (role == "prefill") return v1::WORKER_ROLE_PREFILL;
  if (role == "decode") return v1::WORKER_ROLE_DECODE;
  if (role == "mixed") return v1::WORKER_ROLE_MIXED;
  return absl::InvalidArgumentError(StrCat("--role must be prefill, decode or mixed, not '", role, "'"));
}

int WorkerCommand(const std::vector<std::string>& args) {
  std::string role = "mixed", router, host = "127.0.0.1", bind = "0.0.0.0", worker_id, ucx_tls;
  int grpc_port = 0, http_port = 0;
  double transfer_timeout = 30, drain_seconds = 30;
  int64_t headroom = 0;
  EngineFlags engine;
  FlagSet flags("tandem worker --role prefill|decode|mixed --router HOST:PORT [flags]",
                "Runs one model on this machine and serves the Worker gRPC API: prefill workers compute\n"
                "prompts and send their KV cache to decode workers, which generate the tokens; mixed\n"
                "workers do both. Registers with the router and reports its load. /metrics, /healthz and\n"
                "/readyz are served on --http-port. SIGTERM or Ctrl-C drains (finishes in-flight work)\n"
                "before exiting.");
  flags.String("role", &role, "prefill, decode or mixed");
  flags.String("router", &router, "the router's gRPC address to register with (empty: do not register)");
  flags.Int("grpc-port", &grpc_port, "port of the Worker gRPC service (0: any free port)");
  flags.Int("http-port", &http_port, "port of /metrics, /healthz and /readyz (0: any free port)");
  flags.String("host", &host, "address the router and other workers use to reach this worker");
  flags.String("bind", &bind, "address to listen on");
  flags.String("worker-id", &worker_id, "name of this worker (default: <role>-<host>-<pid>)");
  flags.String("ucx-tls", &ucx_tls, "UCX transports for the KV cache (UCX_TLS syntax; default: UCX's choice)");
  flags.Float("transfer-timeout", &transfer_timeout, "seconds a KV transfer may take");
  flags.Int("reserve-headroom-blocks", &headroom, "KV blocks kept free for running requests when reserving");
  flags.Float("drain-seconds", &drain_seconds, "on shutdown, seconds to wait for in-flight work");
  engine.Register(flags);
  if (absl::Status s = flags.Parse(args); !s.ok()) {
    return s.code() == absl::StatusCode::kCancelled ? 0 : Fail("worker", std::string(s.message()), 2);
  }
  auto parsed_role = ParseRole(role);
  if (!parsed_role.ok()) return Fail("worker", std::string(parsed_role.status().message()), 2);

  auto path = ResolveModelPath(engine.model);
  if (!path.ok()) return Fail("worker", std::string(path.status().message()));
  auto file = gguf::GgufFile::Open(*path);
  if (!file.ok()) return Fail("worker", std::string(file.status().message()));
  auto tok_config = text::TokenizerConfigFromGguf(**file);
  if (!tok_config.ok()) return Fail("worker", std::string(tok_config.status().message()));
  auto tokenizer = text::Tokenizer::Create(std::move(*tok_config));
  if (!tokenizer.ok()) return Fail("worker", std::string(tokenizer.status().message()));
  auto backend = MakeBackend(engine);
  if (!backend.ok()) return Fail("worker", std::string(backend.status().message()));
  EngineOptions eo = engine.ToEngineOptions();
  eo.eog_token_ids = (*tokenizer)->eog_ids();
  auto eng = Engine::Create(**file, std::move(*backend), eo);
  if (!eng.ok()) return Fail("worker", std::string(eng.status().message()));

  worker::WorkerOptions wo;
  wo.role = *parsed_role;
  wo.worker_id = worker_id;
  wo.advertise_host = host;
  wo.bind_host = bind;
  wo.grpc_port = grpc_port;
  wo.http_port = http_port;
  wo.router_address = router;
  wo.service.transfer_timeout = absl::Seconds(transfer_timeout);
  wo.service.reserve_headroom_blocks = headroom;
  // A GPU KV cache moves over CUDA IPC (prefill and decode workers on one node); a host cache
  // over UCX.
  transfer::TransportOptions transport;
  transport.medium = engine.device == "cuda" ? "cuda-ipc" : "ucx";
  transport.ucx_tls = ucx_tls;
  auto w = worker::WorkerProcess::Start(wo, **file, std::move(*eng), transport);
  if (!w.ok()) return Fail("worker", std::string(w.status().message()));
  // Machine-readable line for launchers (tandem up): the ports actually bound.
  std::printf("worker %s grpc_port=%d http_port=%d\n", (*w)->worker_id().c_str(), (*w)->grpc_port(),
              (*w)->http_port());
  std::fflush(stdout);

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  while (g_signal.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  GetLogger("worker")->info("signal {}: draining for up to {} s", g_signal.load(), drain_seconds);
  (*w)->Stop(absl::Seconds(drain_seconds));
  return 0;
}

}  // namespace tandem::cli
