// What the UCX sender and receiver know about this worker and its registered KV cache.
// Thread-safety: immutable after UcxKvTransport::Create (memh is used on the loop thread only).
#pragma once

#include <cstdint>
#include <string>

#include "tandem/kv_transport.h"
#include "ucp/api/ucp.h"

namespace tandem::transfer {

struct UcxLocalCache {
  std::string worker_id;
  uint64_t epoch = 0;
  KvLayoutInfo layout;
  uint8_t* base = nullptr;  // block 0 of the cache
  int64_t num_blocks = 0;
  int64_t bytes_per_block = 0;
  ucp_mem_h memh = nullptr;  // the whole cache, registered with ucp_mem_map
};

}  // namespace tandem::transfer
