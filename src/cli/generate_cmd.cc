// `tandem generate`: one prompt through the engine in this process, the answer streamed to
// stdout as it is produced. Logs and the closing statistics go to stderr.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "cli/common_flags.h"
#include "common/logging.h"
#include "common/strings.h"
#include "engine/engine.h"
#include "text/chat_template.h"
#include "text/text_model.h"
#include "text/detokenizer.h"
#include "text/tokenizer.h"

namespace tandem::cli {
namespace {

std::atomic<int> g_interrupts{0};

void OnInterrupt(int) {
  if (g_interrupts.fetch_add(1) >= 1) std::_Exit(130);  // second Ctrl-C: leave at once
}

struct GenerateFlags {
  std::string prompt;
  std::string prompt_file;
  bool chat = false;
  std::string system;
  int max_tokens = 256;
  double temperature = 0.0;
  double top_p = 1.0;
  int top_k = 0;
  std::optional<int64_t> seed;
  bool ignore_eos = false;
  bool quiet = false;
  int parallel = 1;
  EngineFlags engine;

  void Register(FlagSet& flags) {
    flags.String("prompt", &prompt, "the prompt text");
    flags.String("prompt-file", &prompt_file, "read the prompt from this file instead");
    flags.Bool("chat", &chat, "wrap the prompt as a user message in the model's chat template");
    flags.String("system", &system, "system message for --chat (default: the template's own)");
    flags.Int("max-tokens", &max_tokens, "most tokens to generate");
    flags.Float("temperature", &temperature, "sampling temperature; 0 = greedy");
    flags.Float("top-p", &top_p, "nucleus sampling: keep the smallest set of tokens with this much probability");
    flags.Int("top-k", &top_k, "sample among the k most likely tokens (0 = all)");
    flags.OptionalInt("seed", &seed, "random seed; the same seed gives the same output (default: random)");
    flags.Bool("ignore-eos", &ignore_eos, "keep generating past end-of-sequence tokens");
    flags.Bool("quiet", &quiet, "no statistics on stderr");
    flags.Int("parallel", &parallel,
              "run the prompt this many times at once (a batch; a seed gives copy i seed + i); the first copy's "
              "answer is printed, the statistics count all");
    engine.Register(flags);
  }

  SamplingParams Sampling() const {
    SamplingParams p;
    p.temperature = static_cast<float>(temperature);
    p.top_p = static_cast<float>(top_p);
    p.top_k = top_k;
    if (seed) p.seed = static_cast<uint64_t>(*seed);
    p.max_tokens = max_tokens;
    p.ignore_eos = ignore_eos;
    return p;
  }
};

// The prompt's tokens: plain text with the model's BOS, or a user message in its chat template.
std::vector<int32_t> EncodePrompt(const GenerateFlags& g, const text::TextModel& model) {
  if (!g.chat) return model.tokenizer->Encode(g.prompt, /*add_special=*/true, /*parse_special=*/false);
  std::vector<text::ChatMessage> messages;
  if (!g.system.empty()) messages.push_back({"system", g.system});
  messages.push_back({"user", g.prompt});
  const text::RenderedChat chat = model.chat_template.Render(messages, /*add_generation_prompt=*/true);
  return model.tokenizer->EncodeChat(chat.text, chat.markup);
}

struct RunStats {
  double ttft_s = 0, total_s = 0;
  int generated = 0;        // by the printed request
  int all_generated = 0;    // by every request (--parallel)
  FinishReason finish = FinishReason::kNone;
};

// Steps the engine until the request ends, streaming its text to stdout.
absl::StatusOr<RunStats> StreamToStdout(Engine& engine, const std::vector<std::string>& ids,
                                        const text::Tokenizer& tokenizer, bool ignore_eos) {
  const std::string& id = ids.front();
  text::IncrementalDetokenizer detok(tokenizer);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  Clock::time_point first_token;
  RunStats stats;
  while (engine.HasWork()) {
    if (g_interrupts.load() > 0) {
      for (const std::string& other : ids) engine.Cancel(other);
    }
    auto outputs = engine.Step();
    if (!outputs.ok()) return outputs.status();
    for (const RequestOutput& out : *outputs) {
      stats.all_generated += static_cast<int>(out.new_tokens.size());
      if (out.id != id) continue;
      for (int32_t t : out.new_tokens) {
        if (stats.generated++ == 0) first_token = Clock::now();
        if (!ignore_eos && tokenizer.IsEog(t)) continue;
        const std::string piece = detok.Push(t);
        std::fwrite(piece.data(), 1, piece.size(), stdout);
      }
      std::fflush(stdout);
      if (out.finish != FinishReason::kNone) stats.finish = out.finish;
    }
  }
  const std::string rest = detok.Flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  // A terminal gets a final newline; a pipe gets exactly the generated text.
  if (::isatty(::fileno(stdout))) std::fputc('\n', stdout);
  std::fflush(stdout);
  stats.total_s = std::chrono::duration<double>(Clock::now() - start).count();
  stats.ttft_s = stats.generated > 0 ? std::chrono::duration<double>(first_token - start).count() : stats.total_s;
  return stats;
}

}  // namespace

int Fail(const std::string& command, const std::string& message, int code) {
  std::fprintf(stderr, "tandem %s: %s\n", command.c_str(), message.c_str());
  return code;
}

std::optional<int> ParseArgs(FlagSet& flags, const std::vector<std::string>& args, const std::string& command) {
  absl::Status s = flags.Parse(args);
  if (s.ok()) return std::nullopt;
  return s.code() == absl::StatusCode::kCancelled ? 0 : Fail(command, std::string(s.message()), 2);
}

int GenerateCommand(const std::vector<std::string>& args) {
  GenerateFlags g;
  FlagSet flags("tandem generate --prompt TEXT [flags]",
                "Runs the model on one prompt in this process and streams the generated text to stdout\n"
                "(logs and statistics go to stderr). Without --model it uses the bundled\n"
                "SmolLM2-135M-Instruct, downloading it first if it is not in the model store.");
  g.Register(flags);
  if (auto exit_code = ParseArgs(flags, args, "generate")) return *exit_code;
  if (!flags.positional().empty()) return Fail("generate", "unexpected argument '" + flags.positional()[0] + "'", 2);
  if (!g.prompt_file.empty()) {
    std::ifstream in(g.prompt_file, std::ios::binary);
    if (!in) return Fail("generate", "cannot read " + g.prompt_file);
    std::stringstream ss;
    ss << in.rdbuf();
    g.prompt = ss.str();
  }
  if (g.prompt.empty()) return Fail("generate", "give a prompt with --prompt or --prompt-file (see --help)", 2);

  auto path = ResolveModelPath(g.engine.model);
  if (!path.ok()) return Fail("generate", std::string(path.status().message()));
  auto file = gguf::GgufFile::Open(*path);
  if (!file.ok()) return Fail("generate", std::string(file.status().message()));
  auto text_model = text::LoadTextModel(**file);
  if (!text_model.ok()) return Fail("generate", std::string(text_model.status().message()));
  const text::Tokenizer& tokenizer = *text_model->tokenizer;
  const std::vector<int32_t> prompt = EncodePrompt(g, *text_model);
  auto engine = MakeEngineFor(g.engine, **file, tokenizer);
  if (!engine.ok()) return Fail("generate", std::string(engine.status().message()));

  if (g.parallel < 1) return Fail("generate", "--parallel must be >= 1", 2);
  std::vector<std::string> ids;
  for (int i = 0; i < g.parallel; ++i) {
    GenerateRequest request;
    request.id = StrCat("generate-", i);
    request.prompt = prompt;
    request.sampling = g.Sampling();
    if (request.sampling.seed) *request.sampling.seed += static_cast<uint64_t>(i);
    if (absl::Status s = (*engine)->Add(request); !s.ok()) return Fail("generate", std::string(s.message()));
    ids.push_back(request.id);
  }
  std::signal(SIGINT, OnInterrupt);
  auto stats = StreamToStdout(**engine, ids, tokenizer, g.ignore_eos);
  if (!stats.ok()) return Fail("generate", std::string(stats.status().message()));
  if (!g.quiet) {
    const double decode_s = stats->total_s - stats->ttft_s;
    std::fprintf(stderr,
                 "[%s] prompt %zu tokens, generated %d tokens (%s); time to first token %.3f s "
                 "(%.1f prompt tokens/s), decode %.1f tokens/s\n",
                 path->c_str(), prompt.size(), stats->generated, FinishReasonName(stats->finish), stats->ttft_s,
                 prompt.size() / std::max(stats->ttft_s, 1e-9),
                 stats->generated > 1 ? (stats->generated - 1) / std::max(decode_s, 1e-9) : 0.0);
    if (g.parallel > 1) {
      std::fprintf(stderr, "%d copies: %d tokens generated, decode %.1f tokens/s in all\n", g.parallel,
                   stats->all_generated,
                   (stats->all_generated - g.parallel) / std::max(stats->total_s - stats->ttft_s, 1e-9));
    }
    if (const EngineCounters& c = (*engine)->counters(); g.engine.speculative_ngram > 0) {
      std::fprintf(stderr, "speculative decoding: %lld of %lld draft tokens accepted (%.0f%%), %lld iterations\n",
                   static_cast<long long>(c.accepted_draft_tokens), static_cast<long long>(c.draft_tokens),
                   100.0 * c.accepted_draft_tokens / std::max<int64_t>(c.draft_tokens, 1),
                   static_cast<long long>(c.steps));
    }
  }
  return g_interrupts.load() > 0 ? 130 : 0;
}

}  // namespace tandem::cli
