// `tandem perplexity`: the teacher-forced perplexity of a model over a text file, computed as
// llama.cpp's `llama-perplexity` computes it (engine/perplexity.h), so a model file's quality
// under tandem can be compared with llama.cpp's number for number.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "cli/common_flags.h"
#include "engine/perplexity.h"
#include "gguf/gguf_file.h"
#include "text/text_model.h"
#include "text/tokenizer.h"

namespace tandem::cli {
namespace {

constexpr const char* kPerplexityDescription =
    R"(Measures a model's perplexity over a text file, teacher-forced, as llama.cpp's
llama-perplexity does: the text is tokenized (with the model's BOS when it adds one), cut into
whole chunks of --ctx tokens, each chunk is run on its own with its first token replaced by BOS
(when the model adds one), and the second half of each chunk is scored:

  perplexity = exp(mean of -log p(token | the tokens before it in its chunk))

Lower is better. The same file, --ctx and model give the same number as
`llama-perplexity -m MODEL -f FILE -c CTX` up to floating-point rounding (its "Final estimate").
The text must be at least two chunks long. Prints the running perplexity after each chunk,
then the scored token count and the standard error, and as its last line `perplexity: X`.
Exit status: 0 ok, 1 the model or the pass failed, 2 usage error (including a text too short).
)";

struct PerplexityFlags {
  std::string file;
  int ctx = 512;
  int chunks = 0;
  EngineFlags engine;

  void Register(FlagSet& flags) {
    flags.String("file", &file, "the text file to score (required)");
    flags.Int("ctx", &ctx, "tokens per chunk; the second half of each chunk is scored");
    flags.Int("chunks", &chunks, "score at most this many chunks (0: every whole chunk)");
    engine.Register(flags);
  }
};

std::string Eta(double seconds) {
  char buf[32];
  if (seconds >= 60) {
    std::snprintf(buf, sizeof(buf), "%dm%02ds", static_cast<int>(seconds) / 60, static_cast<int>(seconds) % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%.0fs", seconds);
  }
  return buf;
}

void PrintProgress(const PerplexityProgress& p) {
  const double per_chunk = p.elapsed_s / p.chunk;
  std::printf("[%d/%d] %.4f  (%.2f s per chunk, %s left)\n", p.chunk, p.chunks, p.running_ppl, per_chunk,
              Eta(per_chunk * (p.chunks - p.chunk)).c_str());
  std::fflush(stdout);
}

}  // namespace

int PerplexityCommand(const std::vector<std::string>& args) {
  PerplexityFlags g;
  FlagSet flags("tandem perplexity --file TEXT [--ctx N] [flags]", kPerplexityDescription);
  g.Register(flags);
  if (auto exit_code = ParseArgs(flags, args, "perplexity")) return *exit_code;
  if (!flags.positional().empty()) return Fail("perplexity", "unexpected argument '" + flags.positional()[0] + "'", 2);
  if (g.file.empty()) return Fail("perplexity", "give the text to score with --file (see --help)", 2);
  if (g.ctx < 4) return Fail("perplexity", "--ctx must be at least 4", 2);
  if (g.chunks < 0) return Fail("perplexity", "--chunks must be 0 (all) or more", 2);
  std::ifstream in(g.file, std::ios::binary);
  if (!in) return Fail("perplexity", "cannot read " + g.file);
  std::stringstream text;
  text << in.rdbuf();

  auto path = ResolveModelPath(g.engine.model);
  if (!path.ok()) return Fail("perplexity", std::string(path.status().message()));
  auto file = gguf::GgufFile::Open(*path);
  if (!file.ok()) return Fail("perplexity", std::string(file.status().message()));
  auto text_model = text::LoadTextModel(**file);
  if (!text_model.ok()) return Fail("perplexity", std::string(text_model.status().message()));
  const text::Tokenizer& tokenizer = *text_model->tokenizer;
  const std::vector<int32_t> tokens = tokenizer.Encode(text.str(), /*add_special=*/true, /*parse_special=*/false);
  if (tokens.size() < 2 * static_cast<size_t>(g.ctx)) {
    return Fail("perplexity",
                g.file + " is " + std::to_string(tokens.size()) + " tokens; --ctx " + std::to_string(g.ctx) +
                    " needs at least " + std::to_string(2 * g.ctx) + " (two chunks): give a longer text or a smaller --ctx",
                2);
  }
  auto engine = MakeEngineFor(g.engine, **file, tokenizer);
  if (!engine.ok()) return Fail("perplexity", std::string(engine.status().message()));

  PerplexityOptions options;
  options.ctx = g.ctx;
  options.max_chunks = g.chunks;
  if (tokenizer.add_bos()) options.bos = tokenizer.bos_id();
  std::printf("%s: %zu tokens, scoring %zu chunks of %d tokens\n", g.file.c_str(), tokens.size(),
              g.chunks > 0 ? std::min<size_t>(g.chunks, tokens.size() / g.ctx) : tokens.size() / g.ctx, g.ctx);
  auto result = ComputePerplexity(**engine, tokens, options, PrintProgress);
  if (!result.ok()) {
    std::string message(result.status().message());
    if (result.status().code() == absl::StatusCode::kResourceExhausted) {
      message += " (raise --kv-cache-mb or lower --ctx)";
    }
    return Fail("perplexity", message);
  }
  std::printf("[%s] %lld tokens scored in %d chunks of %d, %.1f s (%.0f tokens/s through the model); "
              "standard error +/- %.5f\n",
              path->c_str(), static_cast<long long>(result->scored_tokens), result->chunks, g.ctx, result->seconds,
              static_cast<double>(result->chunks) * g.ctx / std::max(result->seconds, 1e-9), result->ppl_error);
  std::printf("perplexity: %.4f\n", result->ppl);
  return 0;
}

}  // namespace tandem::cli
