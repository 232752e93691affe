// A backend's paged KV cache as the rest of the system sees it: its geometry and where its
// blocks live (host or GPU memory). KV transfer media read and write whole blocks through it;
// they need nothing else of the engine.
//
// Thread-safety: the accessors are constant after creation; the memory itself is written by the
// engine's step thread and by transfer media into blocks the engine has leased out.
// Ownership: created and owned by a backend (Backend::CreateKvCache).
#pragma once

#include <cstdint>
#include <string_view>

#include "types/kv_layout.h"

namespace tandem {

class KvCacheStorage {
 public:
  virtual ~KvCacheStorage() = default;
  const KvCacheLayout& layout() const { return layout_; }
  int64_t num_blocks() const { return num_blocks_; }
  // The cache's memory when it is host memory (nullptr otherwise): block b occupies
  // [host_base() + b * bytes_per_block(), + bytes_per_block()), all its layers together. KV
  // transports read and write whole blocks there.
  virtual uint8_t* host_base() { return nullptr; }
  // The same for a cache in GPU memory (CUDA backend): block b at device_base() +
  // b * bytes_per_block() on CUDA device `device()`; nullptr / -1 for host caches.
  virtual uint8_t* device_base() { return nullptr; }
  virtual int device() const { return -1; }
  // How the values are arranged inside a block (transfers require equal formats).
  virtual std::string_view block_format() const = 0;

 protected:
  KvCacheLayout layout_;
  int64_t num_blocks_ = 0;
};

}  // namespace tandem
