// `tandem bench serve`: the load generator. Flags become bench::ServeOptions; the tokenizer
// of the served model is loaded here (the bundled model unless --tokenizer names a GGUF);
// everything else is in src/bench.

#include <cstdio>
#include <cstdlib>

#include "bench/serve.h"
#include "bench/workload.h"
#include "cli/commands.h"
#include "cli/environment.h"
#include "text/text_model.h"
#include "types/model_info.h"
#include "cli/common_flags.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "gguf/gguf_file.h"

namespace tandem::cli {
namespace {

constexpr const char* kBenchUsage = R"(usage: tandem bench serve [flags]

Commands:
  serve   load-test an OpenAI-compatible server (tandem, llama.cpp's llama-server, vLLM) and
          report TTFT, TPOT, ITL, end-to-end latency, throughput, SLO attainment and goodput

Run `tandem bench serve --help` for its flags.
)";

constexpr const char* kServeDescription =
    R"(Sends requests to an OpenAI-compatible server, open loop, and measures each one as it streams
back. Flag names follow vLLM's `bench serve`. One process, asynchronous C++; no Python in the
timing path.

Arrivals (one of):
  --request-rate R [--burstiness B]  gamma interarrivals, shape B, scale 1/(R*B): mean 1/R,
                                     CV^2 1/B; B = 1 is Poisson. R = inf sends all at once;
                                     with --max-concurrency N that is a closed loop keeping N in
                                     flight. --num-prompts requests.
  --schedule SPEC|FILE  phases "<seconds>s@<rate>[:<workload>]" separated by ';' (or one per
                        line in FILE, '#' comments), e.g. "60s@2:chat;60s@6:summarize;30s@0";
                        each phase is open loop at its rate with its workload (default
                        --workload); --burstiness applies. --num-prompts is ignored.
  --trace FILE          replay: JSON lines, one request each: arrival time ("arrival_s"
                        seconds, "arrival_ms" ms, Mooncake's "timestamp" ms or BurstGPT's
                        "Timestamp" s), input length ("input_tokens", "input_length" or
                        "Request tokens"), output length ("output_tokens", "output_length" or
                        "Response tokens"); BurstGPT's CSV is read too. Times start at the
                        first request; --trace-time-scale 0.5 replays twice as fast.

Prompts have exactly the requested number of tokens for the served model: text is drawn from
the vocabulary of --tokenizer (seeded) and re-encoded as the server will encode it (BOS for
/v1/completions; the chat template for /v1/chat/completions). Requests ask for max_tokens =
the output length with ignore_eos, stream with usage, and fail as length_mismatch if
usage.completion_tokens differs. Lengths are clipped to the model's context (max_model_len
from /v1/models, else the tokenizer GGUF's).

Metrics (vLLM's definitions): TTFT = send -> first content chunk; ITL = every gap between
content chunks; E2EL = send -> end of response; TPOT = (E2EL - TTFT) / (output tokens - 1).
--goodput "ttft:MS tpot:MS [e2el:MS]": a request is good if it succeeded and meets every SLO
given; SLO attainment = good / sent; goodput = good / duration. --find-max-rate bisects the
highest --request-rate whose mean attainment over --repeats runs is >= --attainment
(DistServe's goodput), each probe --num-prompts requests.

Exit status: 0 ok, 1 the run failed (server unreachable or not OpenAI-compatible, every
request failed, result file not written), 2 usage error.
)";

struct BenchFlags {
  bench::ServeOptions serve;
  std::string tokenizer;
  std::string goodput;
  int64_t seed = 0;

  void Register(FlagSet& f) {
    bench::ServeOptions& o = serve;
    f.String("base-url", &o.base_url, "server root URL (http only; requests go to <base-url><endpoint>)");
    f.String("endpoint", &o.endpoint, "API path: /v1/completions or /v1/chat/completions");
    f.String("model", &o.model, "model name to send (default: the first one GET /v1/models lists)");
    f.String("api-key", &o.api_key, "API key, sent as 'Authorization: Bearer KEY' (default: $OPENAI_API_KEY)");
    f.String("tokenizer", &tokenizer, "GGUF file whose tokenizer and chat template the server uses (default: the bundled model)");
    f.Int("num-prompts", &o.num_prompts, "requests to send (per probe with --find-max-rate)");
    f.Float("request-rate", &o.request_rate, "mean arrival rate in requests/s; inf = all at once");
    f.Float("burstiness", &o.burstiness, "gamma shape of the interarrival times: 1 = Poisson, < 1 burstier");
    f.Int("max-concurrency", &o.max_concurrency, "most requests in flight; later arrivals wait (0 = no limit)");
    f.Int("seed", &seed, "seed of arrivals, lengths and prompt text");
    f.String("workload", &o.workload, "length distribution: fixed, uniform, chat, summarize, shared-prefix[:key=value,...] (see below)");
    f.Int("input-len", &o.lengths.input_len, "input tokens for the fixed workload (uniform: the middle of its range)");
    f.Int("output-len", &o.lengths.output_len, "output tokens for the fixed workload (uniform: the middle of its range)");
    f.String("schedule", &o.schedule, "rate schedule: phases inline or a file (see above)");
    f.String("trace", &o.trace_file, "replay a trace file (JSON lines or BurstGPT CSV; see above)");
    f.Float("trace-time-scale", &o.trace_time_scale, "multiply trace times by this (0.5 = twice as fast)");
    f.String("goodput", &goodput, "SLOs in ms, e.g. \"ttft:2000 tpot:200\" (keys ttft, tpot, e2el)");
    f.String("result-file", &o.result_file, "write the configuration, summary and per-request records as JSON here (schema: docs/bench.md)");
    f.Bool("save-requests", &o.save_requests, "include per-request records in the result file");
    f.Bool("find-max-rate", &o.find_max_rate, "search the highest request rate meeting --attainment (needs --goodput)");
    f.Float("attainment", &o.search.attainment, "share of requests that must meet the SLOs, for --find-max-rate");
    f.Float("rate-min", &o.search.rate_min, "lowest rate the search probes (req/s)");
    f.Float("rate-max", &o.search.rate_max, "highest rate the search probes (req/s)");
    f.Int("search-iters", &o.search.iterations, "bisection steps after probing --rate-max and --rate-min");
    f.Int("repeats", &o.search.repeats, "runs per probed rate (the k-th rate probed: seeds seed+1000k, seed+1000k+1, ...), attainment averaged");
    f.Float("request-timeout", &o.request_timeout_s, "seconds a request may take before it counts as a timeout");
    f.Bool("ignore-eos", &o.ignore_eos, "ask the server to ignore end-of-sequence so outputs have the exact length");
    f.Float("temperature", &o.temperature, "sampling temperature sent with every request");
    f.Bool("progress", &o.progress, "show a progress line on stderr while running");
  }
};

struct LoadedTokenizer {
  std::unique_ptr<text::Tokenizer> tokenizer;
  text::ChatTemplate chat_template = text::ChatTemplate::ChatMl();
  std::string path;
  int context_length = 0;
};

// The tokenizer, chat template and context length of a GGUF file, as tandem's router loads them.
absl::StatusOr<LoadedTokenizer> LoadTokenizer(const std::string& flag) {
  LoadedTokenizer out;
  TANDEM_ASSIGN_OR_RETURN(out.path, ResolveModelPath(flag));
  TANDEM_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(out.path));
  TANDEM_ASSIGN_OR_RETURN(text::TextModel text_model, text::LoadTextModel(*file));
  out.tokenizer = std::move(text_model.tokenizer);
  out.chat_template = std::move(text_model.chat_template);
  if (auto info = ReadModelInfo(*file); info.ok()) out.context_length = info->context_length;
  return out;
}

int ServeCommand(const std::vector<std::string>& args) {
  BenchFlags b;
  b.serve.api_key = Env("OPENAI_API_KEY");
  FlagSet flags("tandem bench serve --base-url URL [flags]",
                std::string(kServeDescription) + "\n" + bench::WorkloadPresetHelp());
  b.Register(flags);
  if (auto exit_code = ParseArgs(flags, JoinGoodputWords(args), "bench serve")) return *exit_code;
  if (!flags.positional().empty()) {
    return Fail("bench serve", StrCat("unexpected argument '", flags.positional().front(), "' (see --help)"), 2);
  }
  b.serve.seed = static_cast<uint64_t>(b.seed);
  if (!b.goodput.empty()) {
    auto slo = bench::ParseSlo(b.goodput);
    if (!slo.ok()) return Fail("bench serve", StrCat("--goodput: ", slo.status().message()), 2);
    b.serve.slo = *slo;
  }
  auto traffic = bench::PrepareTraffic(b.serve);
  if (!traffic.ok()) return Fail("bench serve", std::string(traffic.status().message()), 2);
  auto tok = LoadTokenizer(b.tokenizer);
  if (!tok.ok()) {
    return Fail("bench serve", StrCat("loading the tokenizer: ", tok.status().message()), b.tokenizer.empty() ? 1 : 2);
  }
  bench::ServeContext context;
  context.tokenizer = tok->tokenizer.get();
  context.chat_template = &tok->chat_template;
  context.tokenizer_path = tok->path;
  context.tokenizer_context_length = tok->context_length;
  absl::Status s = bench::RunServeBenchmark(b.serve, *traffic, context);
  if (!s.ok()) return Fail("bench serve", std::string(s.message()), absl::IsInvalidArgument(s) ? 2 : 1);
  return 0;
}

}  // namespace

std::vector<std::string> JoinGoodputWords(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    out.push_back(args[i]);
    const bool bare = args[i] == "--goodput";
    if (!bare && !args[i].starts_with("--goodput=")) continue;
    if (bare && i + 1 < args.size()) out.push_back(args[++i]);
    while (i + 1 < args.size() && !args[i + 1].starts_with("-") && args[i + 1].find(':') != std::string::npos) {
      out.back() += " " + args[++i];
    }
  }
  return out;
}

int BenchCommand(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kBenchUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "serve") return ServeCommand(std::vector<std::string>(args.begin() + 1, args.end()));
  std::fprintf(stderr, "tandem bench: unknown command '%s'\n\n%s", args[0].c_str(), kBenchUsage);
  return 2;
}

}  // namespace tandem::cli
