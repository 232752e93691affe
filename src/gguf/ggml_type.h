// Tensor element types as numbered in the GGUF format, with their block geometry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tandem::gguf {

enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kBF16 = 30,
};

struct TypeTraits {
  GgmlType type;
  std::string_view name;
  int64_t block_size;   // elements per block
  int64_t block_bytes;  // bytes per block
  bool supported;       // tandem can compute with it
};

// Traits of a known type, or nullopt for a type id tandem does not know at all.
std::optional<TypeTraits> GetTypeTraits(uint32_t type_id);
const TypeTraits& Traits(GgmlType type);  // CHECKs the type is known
std::string_view TypeName(GgmlType type);

// Bytes of a row of `n` elements; n must be a multiple of the block size.
inline int64_t RowBytes(GgmlType type, int64_t n) {
  const TypeTraits& t = Traits(type);
  return n / t.block_size * t.block_bytes;
}

}  // namespace tandem::gguf
