// Helpers shared by the src/gguf/ tests: a byte builder for hand-made (and deliberately broken)
// GGUF files, a per-test temporary directory, and parsing from an exactly sized heap copy so
// that AddressSanitizer sees any read past the end.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf_file.h"
#include "gtest/gtest.h"

namespace tandem::gguf::testing {

// Little-endian GGUF bytes written field by field, following the GGUF spec
// (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md), independent of GgufWriter.
class GgufBytes {
 public:
  template <typename T>
  GgufBytes& Put(T v) {
    const size_t at = bytes_.size();
    bytes_.resize(at + sizeof v);
    std::memcpy(bytes_.data() + at, &v, sizeof v);
    return *this;
  }
  GgufBytes& U8(uint8_t v) { return Put(v); }
  GgufBytes& U32(uint32_t v) { return Put(v); }
  GgufBytes& U64(uint64_t v) { return Put(v); }
  GgufBytes& Str(std::string_view s) {
    U64(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    return *this;
  }
  GgufBytes& Raw(const std::vector<uint8_t>& b) {
    bytes_.insert(bytes_.end(), b.begin(), b.end());
    return *this;
  }
  // Magic, version, tensor count, metadata count.
  GgufBytes& Header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    return U32(0x46554747).U32(version).U64(n_tensors).U64(n_kv);
  }
  // Key and value type; the caller appends the value.
  GgufBytes& Key(std::string_view key, ValueType type) {
    return Str(key).U32(static_cast<uint32_t>(type));
  }
  GgufBytes& KvU32(std::string_view key, uint32_t v) { return Key(key, ValueType::kUint32).U32(v); }
  GgufBytes& KvString(std::string_view key, std::string_view v) {
    return Key(key, ValueType::kString).Str(v);
  }
  GgufBytes& TensorInfo(std::string_view name, const std::vector<uint64_t>& dims, uint32_t type,
                        uint64_t offset) {
    Str(name).U32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) U64(d);
    return U32(type).U64(offset);
  }
  GgufBytes& PadTo(size_t alignment) {
    bytes_.resize((bytes_.size() + alignment - 1) / alignment * alignment, 0);
    return *this;
  }
  GgufBytes& Zeros(size_t n) {
    bytes_.resize(bytes_.size() + n, 0);
    return *this;
  }

  size_t size() const { return bytes_.size(); }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// Parses a heap copy of exactly `size` bytes: an out-of-bounds read is an ASan error, not a
// silent read of the caller's spare capacity. The result keeps the copy alive.
struct ParsedCopy {
  std::unique_ptr<uint8_t[]> buffer;
  absl::StatusOr<std::unique_ptr<GgufFile>> file;
};
inline ParsedCopy ParseCopy(const uint8_t* data, size_t size, std::string name = "test.gguf") {
  ParsedCopy out;
  out.buffer.reset(new uint8_t[size == 0 ? 1 : size]);
  if (size > 0) std::memcpy(out.buffer.get(), data, size);
  out.file = GgufFile::Parse(size == 0 ? nullptr : out.buffer.get(), size, std::move(name));
  return out;
}
inline ParsedCopy ParseCopy(const std::vector<uint8_t>& bytes, std::string name = "test.gguf") {
  return ParseCopy(bytes.data(), bytes.size(), std::move(name));
}

// A fresh directory under the system temp dir, removed with its contents at destruction.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string leaf = "tandem_gguf_";
    if (info != nullptr) {
      leaf.append(info->test_suite_name()).append("_").append(info->name());
    }
    leaf.append("_").append(std::to_string(::getpid()));
    for (char& c : leaf) {
      if (c == '/') c = '_';  // parameterized test names
    }
    path_ = std::filesystem::temp_directory_path() / leaf;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(std::string_view name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace tandem::gguf::testing
