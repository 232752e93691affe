// `tandem router`: the OpenAI-compatible HTTP API and the gRPC APIs in front of the workers.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "cli/commands.h"
#include "cli/common_flags.h"
#include "common/logging.h"
#include "router/router.h"

namespace tandem::cli {
namespace {

std::atomic<int> g_router_signal{0};
void OnRouterSignal(int sig) { g_router_signal.store(sig); }

}  // namespace

int RouterCommand(const std::vector<std::string>& args) {
  std::string model, bind = "0.0.0.0", served;
  const char* env_key = std::getenv("TANDEM_API_KEY");
  std::string api_key = env_key ? env_key : "";
  int http_port = 8000, grpc_port = 50051, threads = 2, local_threshold = 0, default_max_tokens = 0;
  double expiry = 3, timeout = 600, queue_timeout = 60;
  FlagSet flags("tandem router [--http-port 8000] [--grpc-port 50051] [flags]",
                "Serves the OpenAI-compatible API (POST /v1/chat/completions, POST /v1/completions,\n"
                "GET /v1/models; streaming with Server-Sent Events) and the gRPC Generate API, and sends\n"
                "each request's prompt to a prefill worker and its decoding to a decode worker. Workers\n"
                "register here (gRPC port). Reads the model file for its tokenizer and chat template only.");
  flags.String("model", &model, "GGUF model file (default: the bundled model)");
  flags.String("served-model-name", &served, "model id clients name (default: derived from the file name)");
  flags.Int("http-port", &http_port, "port of the HTTP API (0: any free port)");
  flags.Int("grpc-port", &grpc_port, "port of the gRPC services (0: any free port)");
  flags.String("bind", &bind, "address to listen on");
  flags.Int("http-threads", &threads, "threads serving HTTP connections");
  flags.Int("local-prefill-threshold", &local_threshold,
            "prompts shorter than this many tokens prefill on the decode worker (0: never)");
  flags.Int("default-max-tokens", &default_max_tokens, "max_tokens when a request gives none (0: the rest of the context)");
  flags.Float("worker-expiry", &expiry, "seconds without a heartbeat after which a worker is dropped");
  flags.Float("request-timeout", &timeout, "seconds a request may take in all");
  flags.String("api-key", &api_key,
               "clients must send 'Authorization: Bearer <key>' (default: $TANDEM_API_KEY; empty: no key)");
  flags.Float("queue-timeout", &queue_timeout,
              "seconds a request may wait for KV room on a decode worker before it is refused (HTTP 429)");
  if (absl::Status s = flags.Parse(args); !s.ok()) {
    return s.code() == absl::StatusCode::kCancelled ? 0 : Fail("router", std::string(s.message()), 2);
  }
  auto path = ResolveModelPath(model);
  if (!path.ok()) return Fail("router", std::string(path.status().message()));
  auto file = gguf::GgufFile::Open(*path);
  if (!file.ok()) return Fail("router", std::string(file.status().message()));
  router::RouterOptions o;
  o.bind_host = bind;
  o.http_port = http_port;
  o.grpc_port = grpc_port;
  o.http_threads = threads;
  o.served_model = served;
  o.local_prefill_threshold = local_threshold;
  o.default_max_tokens = default_max_tokens;
  o.worker_expiry = absl::Seconds(expiry);
  o.request_timeout = absl::Seconds(timeout);
  o.queue_timeout = absl::Seconds(queue_timeout);
  o.api_key = api_key;
  auto r = router::RouterProcess::Start(o, **file);
  if (!r.ok()) return Fail("router", std::string(r.status().message()));
  std::printf("router http_port=%d grpc_port=%d model=%s\n", (*r)->http_port(), (*r)->grpc_port(),
              (*r)->served_model().c_str());
  std::fflush(stdout);
  std::signal(SIGINT, OnRouterSignal);
  std::signal(SIGTERM, OnRouterSignal);
  while (g_router_signal.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  (*r)->Stop(absl::Seconds(5));
  return 0;
}

}  // namespace tandem::cli
