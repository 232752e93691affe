#include "transfer/protocol/block_digest.h"

#include <cstddef>

// Header-only use of xxHash: inlined at its fastest, and no library for the runtime image to carry.
#define XXH_INLINE_ALL
#include "xxhash.h"

namespace tandem::transfer {

uint64_t BlockDigest(const uint8_t* block, int64_t bytes) {
  return XXH3_64bits(block, static_cast<size_t>(bytes));
}

}  // namespace tandem::transfer
