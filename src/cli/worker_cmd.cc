// `tandem worker --role prefill|decode|mixed`: one model on this machine's CPU, serving the
// Worker gRPC API, registered with the router.
#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/cluster_token.h"
#include "cli/commands.h"
#include "cli/worker_flags.h"
#include "common/logging.h"
#include "common/strings.h"
#include "engine/model_config.h"
#include "text/tokenizer.h"
#include "transfer/transport_registry.h"
#include "worker/worker.h"

namespace tandem::cli {
namespace {

std::atomic<int> g_signal{0};
void OnSignal(int sig) { g_signal.store(sig); }

// The engine the flags describe, ending requests at the model's end-of-generation tokens.
absl::StatusOr<std::unique_ptr<Engine>> MakeWorkerEngine(const EngineFlags& flags, const gguf::GgufFile& file) {
  auto tok_config = text::TokenizerConfigFromGguf(file);
  if (!tok_config.ok()) return tok_config.status();
  auto tokenizer = text::Tokenizer::Create(std::move(*tok_config));
  if (!tokenizer.ok()) return tokenizer.status();
  return MakeEngineFor(flags, file, **tokenizer);
}

}  // namespace

int WorkerCommand(const std::vector<std::string>& args) {
  WorkerFlags wf;
  ClusterTokenFlags tf;
  FlagSet flags("tandem worker --role prefill|decode|mixed --router HOST:PORT [flags]",
                "Runs one model on this machine and serves the Worker gRPC API: prefill workers compute\n"
                "prompts and send their KV cache to decode workers, which generate the tokens; mixed\n"
                "workers do both. Registers with the router and reports its load. /metrics, /healthz and\n"
                "/readyz are served on --http-port. SIGTERM or Ctrl-C drains (finishes in-flight work)\n"
                "before exiting.");
  wf.Register(flags);
  tf.Register(flags);
  if (auto exit_code = ParseArgs(flags, args, "worker")) return *exit_code;
  auto wo = wf.ToOptions();
  if (!wo.ok()) return Fail("worker", std::string(wo.status().message()), 2);
  auto token = tf.Resolve();
  if (!token.ok()) return Fail("worker", std::string(token.status().message()), 2);
  wo->service.cluster_token = *token;

  auto path = ResolveModelPath(wf.engine.model);
  if (!path.ok()) return Fail("worker", std::string(path.status().message()));
  auto file = gguf::GgufFile::Open(*path);
  if (!file.ok()) return Fail("worker", std::string(file.status().message()));
  auto eng = MakeWorkerEngine(wf.engine, **file);
  if (!eng.ok()) return Fail("worker", std::string(eng.status().message()));
  // A GPU KV cache moves over CUDA IPC (prefill and decode workers on one node); a host cache
  // over UCX.
  transfer::TransportOptions transport;
  transport.medium = wf.engine.device == "cuda" ? "cuda-ipc" : "ucx";
  transport.ucx_tls = wf.ucx_tls;
  transport.block_checksums = wf.kv_checksums;
  auto w = worker::WorkerProcess::Start(*wo, **file, std::move(*eng), transport);
  if (!w.ok()) return Fail("worker", std::string(w.status().message()));
  // Machine-readable line for launchers (tandem up): the ports actually bound.
  std::printf("worker %s grpc_port=%d http_port=%d\n", (*w)->worker_id().c_str(), (*w)->grpc_port(),
              (*w)->http_port());
  std::fflush(stdout);

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  while (g_signal.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  GetLogger("worker")->info("signal {}: draining for up to {} s", g_signal.load(), wf.drain_seconds);
  (*w)->Stop(absl::Seconds(wf.drain_seconds));
  return 0;
}

}  // namespace tandem::cli
