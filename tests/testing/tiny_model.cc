#include "testing/tiny_model.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>

#include "common/check.h"
#include "common/strings.h"

namespace tandem::testing {

std::string TestTempDir() {
  static std::string dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string d = StrCat(base ? base : "/tmp", "/tandem-test-", ::getpid());
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(StrCat(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp", "/tandem-test-", ::getpid()), ec);
    });
    return d;
  }();
  return dir;
}

std::string TinyModelPath(const synth::SyntheticModelSpec& spec) {
  static std::mutex mu;
  static std::map<std::string, std::string> cache;
  const std::string key = StrCat(spec.arch, "-", spec.name, "-", spec.num_layers, "-", spec.hidden_size, "-", spec.seed, "-",
                                 static_cast<int>(spec.weight_type), "-", static_cast<int>(spec.embedding_type),
                                 spec.tied_embeddings ? "-tied" : "");
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const std::string path = StrCat(TestTempDir(), "/", key, ".gguf");
  auto vocab = synth::WriteSyntheticModel(spec, path);
  TANDEM_CHECK(vocab.ok()) << vocab.status().ToString();
  cache[key] = path;
  return path;
}

}  // namespace tandem::testing
