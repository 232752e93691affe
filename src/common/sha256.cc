#include "common/sha256.h"

#include <openssl/evp.h>

#include "common/check.h"

namespace tandem {

struct Sha256::State {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : state_(std::make_unique<State>()) {
  state_->ctx = EVP_MD_CTX_new();
  TANDEM_CHECK(state_->ctx != nullptr);
  TANDEM_CHECK_EQ(EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr), 1);
}

Sha256::~Sha256() { EVP_MD_CTX_free(state_->ctx); }

void Sha256::Update(const void* data, size_t size) {
  TANDEM_CHECK_EQ(EVP_DigestUpdate(state_->ctx, data, size), 1);
}

Sha256Digest Sha256::Finish() {
  Sha256Digest out{};
  unsigned int len = 0;
  TANDEM_CHECK_EQ(EVP_DigestFinal_ex(state_->ctx, out.data(), &len), 1);
  TANDEM_CHECK_EQ(len, out.size());
  TANDEM_CHECK_EQ(EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr), 1);
  return out;
}

Sha256Digest Sha256::Of(const void* data, size_t size) {
  Sha256 h;
  h.Update(data, size);
  return h.Finish();
}

std::string ToHex(const Sha256Digest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (uint8_t b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

}  // namespace tandem
