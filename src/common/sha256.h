// SHA-256 (OpenSSL's implementation) for model-file verification and prefix-cache block hashes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace tandem {

using Sha256Digest = std::array<uint8_t, 32>;

// Incremental hasher. Not thread-safe; one per thread of use.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  Sha256Digest Finish();

  static Sha256Digest Of(const void* data, size_t size);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string ToHex(const Sha256Digest& digest);

}  // namespace tandem
