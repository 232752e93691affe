// Element types of activations and KV caches, and their sizes. Shared by the backends, the KV
// cache description that peers compare, and the transfer media.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tandem {

enum class DType : uint8_t { kF32, kF16, kBF16 };

size_t DTypeSize(DType t);
// "f32", "f16", "bf16" (as in the KV layout's description and error messages).
std::string_view DTypeName(DType t);

}  // namespace tandem
