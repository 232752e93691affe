// The checksum of one KV block as it leaves the sender and as it lands at the receiver: XXH3
// (64-bit) from Debian's xxHash, chosen because it runs at memory speed (a block is read once
// more at each end) and catches the corruptions a transfer can make (a flipped bit, a torn or
// misplaced block, bytes of another request). Not a MAC: it guards against accidents on the wire
// and in the media, not against a sender that lies (the handshake's credentials do that).
// Thread-safety: a plain function.
#pragma once

#include <cstdint>

namespace tandem::transfer {

uint64_t BlockDigest(const uint8_t* block, int64_t bytes);

}  // namespace tandem::transfer
