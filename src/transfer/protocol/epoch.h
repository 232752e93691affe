// A transport's epoch: a random non-zero number chosen when it starts, published in its
// KvEndpoint and checked at every handshake, so that a restarted peer's stale endpoint is refused
// instead of silently used. Also serves wherever a process-unique random id is wanted.
// Thread-safety: any thread.
#pragma once

#include <cstdint>

namespace tandem::transfer {

// A random 64-bit number, never 0 (0 means "choose one" in the transports' options).
uint64_t RandomEpoch();

}  // namespace tandem::transfer
