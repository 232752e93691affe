// `tandem router`: the OpenAI-compatible HTTP API and the gRPC APIs in front of the workers.
#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "cli/cluster_token.h"
#include "cli/common_flags.h"
#include "cli/router_flags.h"
#include "common/logging.h"
#include "router/router.h"

namespace tandem::cli {
namespace {

std::atomic<int> g_router_signal{0};
void OnRouterSignal(int sig) { g_router_signal.store(sig); }

}  // namespace

int RouterCommand(const std::vector<std::string>& args) {
  RouterFlags rf;
  ClusterTokenFlags tf;
  FlagSet flags("tandem router [--http-port 8000] [--grpc-port 50051] [--internal-port 50053] [flags]",
                "Serves the OpenAI-compatible API (POST /v1/chat/completions, POST /v1/completions,\n"
                "GET /v1/models; streaming with Server-Sent Events) and the gRPC Generate API, and sends\n"
                "each request's prompt to a prefill worker and its decoding to a decode worker. Workers\n"
                "register, and the controller drains and re-roles them, on the internal port (cluster\n"
                "token required), which clients never need. Reads the model file for its tokenizer and\n"
                "chat template only.");
  rf.Register(flags);
  tf.Register(flags);
  if (auto exit_code = ParseArgs(flags, args, "router")) return *exit_code;
  rf.ApplyEnvironment();
  auto options = rf.ToOptions();
  if (!options.ok()) return Fail("router", std::string(options.status().message()), 2);
  auto token = tf.Resolve();
  if (!token.ok()) return Fail("router", std::string(token.status().message()), 2);
  options->cluster_token = *token;
  auto path = ResolveModelPath(rf.model);
  if (!path.ok()) return Fail("router", std::string(path.status().message()));
  auto file = gguf::GgufFile::Open(*path);
  if (!file.ok()) return Fail("router", std::string(file.status().message()));
  auto r = router::RouterProcess::Start(*options, **file);
  if (!r.ok()) return Fail("router", std::string(r.status().message()));
  std::printf("router http_port=%d grpc_port=%d internal_port=%d model=%s\n", (*r)->http_port(), (*r)->grpc_port(),
              (*r)->internal_port(), (*r)->served_model().c_str());
  std::fflush(stdout);
  std::signal(SIGINT, OnRouterSignal);
  std::signal(SIGTERM, OnRouterSignal);
  while (g_router_signal.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  (*r)->Stop(absl::Seconds(5));
  return 0;
}

}  // namespace tandem::cli
